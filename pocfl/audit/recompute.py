"""Recomputing a posted round's decision from public data (:class:`RoundRecomputer`).

:func:`aggregator.round.decide_round` runs again with the seeds derived from the on-chain submissions digest,
the same global model, hyper-parameters, accuracy history, prior updates and validation set, reading the round
inputs with the functions the aggregator node uses (:mod:`pocfl.rounds.inputs`), so an honest node and an auditor
agree bit for bit. Outlier flags, integer scores and statuses must be equal bit for bit; Shapley values, weights,
ratios, accuracies and losses equal to float precision; the new model re-encoded must have the posted
``modelCid``; the next hyper-parameters must hash to ``hyperparamsHash``; the payout rule
(:func:`pocfl.payouts.allocate`) of the recomputed scores must give the credited amounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aggregator.round import RoundConfig, RoundDecision, RoundSeeds, decide_round
from aggregator.round_inputs import round_config
from pocfl.audit.history import ProjectHistory
from pocfl.audit.proofs import CircuitCache, proven_flags
from pocfl.audit.rejections import RejectionChecker, SubmissionReader
from pocfl.audit.reports import check_config
from pocfl.audit.result import Findings, RoundAudit, close, error_text, same_hex, short, to_hex
from pocfl.errors import PocflError
from pocfl.manifest import ProjectManifest, ProofConfig
from pocfl.market import Market
from pocfl.payouts import allocate
from pocfl.rounds import inputs
from pocfl.rounds.hyperparams import HyperParams
from pocfl.rounds.report import RoundReport
from pocfl.store import StoreUnavailableError, compute_cid
from pocfl.untrusted import quote
from pocfl.updates import ModelSpec, encode_update

Vector = NDArray[np.float32]
Validation = tuple[NDArray[np.float32], NDArray[np.int64]]


def encode_model_cid(vector: NDArray[np.floating], spec: ModelSpec) -> str:
    """The CID of a global model ``vector`` written as the node writes it: a ``weights`` update file."""
    return compute_cid(encode_update(spec.unflatten(np.asarray(vector, dtype=np.float32)), spec, kind="weights"))


@dataclass
class _Inputs:
    """A round's recomputation inputs, read as the node reads them."""

    model_in: str
    global_vector: Vector
    hyper: HyperParams
    history: Sequence[float]
    prior: Any
    config: RoundConfig
    proof_cfg: ProofConfig | None
    seeds: RoundSeeds


class RoundRecomputer:
    """Recomputes the posted rounds of one project and compares each with what was posted.

    Parameters
    ----------
    history
        The project's history.
    manifest, validation
        The project's manifest and validation set.
    checker
        Re-checks posted rejections (extra stores, trainers' evidence); shared by every round.
    circuits
        Compiled round circuits (proven projects).
    strict
        Count rejections that cannot be checked as differences.
    """

    def __init__(
        self,
        history: ProjectHistory,
        manifest: ProjectManifest,
        validation: Validation,
        checker: RejectionChecker,
        circuits: CircuitCache,
        *,
        strict: bool,
    ) -> None:
        self.history, self.manifest, self.validation = history, manifest, validation
        self.checker, self.circuits, self.strict = checker, circuits, strict
        self.market = history.market

    def recompute(self, r: int, report: RoundReport, audit: RoundAudit, digest: bytes) -> tuple[str | None, Findings]:
        """Recompute round ``r`` and compare; returns why it could not be recomputed (None when it was).

        Raises
        ------
        StoreUnavailableError
            The store could not be reached (transient: nothing can be concluded).
        """
        out = Findings(self.history.project_id)
        try:
            return self._recompute(out, r, report, audit, digest), out
        except StoreUnavailableError:
            raise
        except PocflError as exc:
            return f"inputs unavailable: {type(exc).__name__}: {error_text(exc)}", out

    def _recompute(self, out: Findings, r: int, report: RoundReport, audit: RoundAudit, digest: bytes) -> str | None:
        spec = self.manifest.model.spec()
        got = self._inputs(out, r, report, audit, digest)
        vectors: list[Vector | None] = []
        unverifiable: list[str] = []
        reader = SubmissionReader(self.history.ref, self.market, self.checker, strict=self.strict, out=out)
        subs = self.history.rounds[r].submissions
        for u, entry, s in zip(subs, report.submissions, audit.submissions, strict=True):
            proven = got.proof_cfg is not None
            vector = reader.read(r, u, entry, s, spec, self.manifest.max_update_size, proven=proven)
            if s.source == "unverifiable":
                unverifiable.append(f"submission {u.index} ({short(u.trainer)}): {s.note}")
            vectors.append(vector)
        if unverifiable:
            return "; ".join(unverifiable)

        flags: list[bool] | None = None
        if got.proof_cfg is not None:
            ref, market = self.history.ref, self.market
            vectors, flags, found = proven_flags(
                ref, market, self.circuits, r, subs, vectors, got.model_in, got.proof_cfg, audit, report
            )
            out.extend(found)
        decision = decide_round(
            got.global_vector,
            vectors,
            validation=self.validation,
            seeds=got.seeds,
            hyperparams=got.hyper,
            accuracy_history=got.history,
            prior_updates=got.prior,
            config=got.config,
            outlier_flags=flags,
        )
        audit.accuracy_before, audit.accuracy, audit.loss = decision.accuracy_before, decision.accuracy, decision.loss
        audit.shapley_method = decision.shapley_method
        _compare_decision(out, r, report, audit, decision, self.history.state.round_budget)
        self._check_outputs(out, r, audit, decision, spec)
        return None

    def _inputs(self, out: Findings, r: int, report: RoundReport, audit: RoundAudit, digest: bytes) -> _Inputs:
        """Read the round's inputs as the node does, checking the report's account of them."""
        h, manifest = self.history, self.manifest
        pid, start = h.project_id, h.from_block
        model_in, global_vector = inputs.global_model(self.market, manifest, h.state, r, from_block=start)
        if report.model_in != model_in:
            out.diff(
                r,
                "model_in",
                f"report {audit.report_cid} starts from model {quote(report.model_in)}, the chain's global model "
                f"of the round is {model_in}",
                posted=report.model_in,
                recomputed=model_in,
            )
        audit.model_in = model_in
        hyper = inputs.round_hyperparams(self.market, manifest, pid, r, from_block=start)
        if report.hyperparams != hyper.to_json():
            out.diff(
                r,
                "hyperparams",
                f"report {audit.report_cid} says the round trained with {quote(report.hyperparams)}, the rule gives "
                f"{hyper.to_json()}",
                posted=report.hyperparams,
                recomputed=hyper.to_json(),
            )
        history = inputs.accuracy_history(self.market, pid, r, from_block=start)
        prior = inputs.prior_updates(self.market, manifest, pid, r, from_block=start)
        config = round_config(manifest)
        proof_cfg = manifest.proof if int(h.state.params.verifier, 16) != 0 else None
        if proof_cfg is not None:
            # Proven rounds post scores on the circuit's fixed-point grid.
            config = replace(config, scoring=replace(config.scoring, scale=1 << proof_cfg.scale))
        out.extend(check_config(pid, r, report, audit, config, history))
        seeds = RoundSeeds.derive(h.chain_id, h.address, pid, r, digest)
        for name, got, want in (
            ("shapley_seed", report.shapley_seed, seeds.shapley),
            ("sketch_seed", report.sketch_seed, seeds.sketch),
        ):
            if not same_hex(got, to_hex(want)):
                out.diff(r, "seeds", f"report {audit.report_cid} has {name} {quote(got)}, derived {to_hex(want)}")
        return _Inputs(model_in, global_vector, hyper, history, prior, config, proof_cfg, seeds)

    def _check_outputs(
        self, out: Findings, r: int, audit: RoundAudit, decision: RoundDecision, spec: ModelSpec
    ) -> None:
        """The new global model re-encodes to the posted ``modelCid``; the next hyper-parameters hash as posted."""
        model_cid = encode_model_cid(decision.new_global, spec)
        if model_cid != audit.model_cid:
            out.diff(
                r,
                "model_cid",
                f"posted model {audit.model_cid}, the recomputed model encodes to {model_cid}",
                posted=audit.model_cid,
                recomputed=model_cid,
            )
        elif audit.model_cid is not None and not _readable(self.market, audit.model_cid):
            out.warnings.append(
                f"round {r}: the posted model {audit.model_cid} is not in the store {self.market.store.location}"
            )
        next_hash = to_hex(decision.next_hyperparams.hash())
        if not same_hex(next_hash, audit.hyperparams_hash):
            out.diff(
                r,
                "hyperparams_hash",
                f"posted hyperparamsHash {audit.hyperparams_hash}, recomputed {next_hash} "
                f"({decision.next_hyperparams.to_json()})",
                posted=audit.hyperparams_hash,
                recomputed=next_hash,
            )


def _compare_decision(
    out: Findings, r: int, report: RoundReport, audit: RoundAudit, decision: RoundDecision, round_budget: int
) -> None:
    """The recomputed decision against the posted one: per submission, then the round's metrics and settings."""
    _compare_submissions(out, r, report, audit, decision, round_budget)
    for name, got, want in (
        ("accuracy_before", report.accuracy_before, decision.accuracy_before),
        ("loss_before", report.loss_before, decision.loss_before),
        ("accuracy", report.accuracy, decision.accuracy),
        ("loss", report.loss, decision.loss),
    ):
        if not close(float(got), float(want)):
            out.diff(r, name, f"report {name} {quote(got)}, recomputed {want!r}", posted=got, recomputed=want)
    if report.shapley_method != decision.shapley_method or report.shapley_evaluations != decision.shapley_evaluations:
        out.diff(
            r,
            "shapley",
            f"report says {quote(report.shapley_method)} with {quote(report.shapley_evaluations)} evaluations, "
            "recomputed "
            f"{decision.shapley_method} with {decision.shapley_evaluations}",
        )
    if report.next_hyperparams != decision.next_hyperparams.to_json():
        out.diff(
            r,
            "hyperparams",
            f"report next_hyperparams {quote(report.next_hyperparams)}, "
            f"recomputed {decision.next_hyperparams.to_json()}",
            posted=report.next_hyperparams,
            recomputed=decision.next_hyperparams.to_json(),
        )


def _compare_submissions(
    out: Findings, r: int, report: RoundReport, audit: RoundAudit, decision: RoundDecision, round_budget: int
) -> None:
    """Flags, scores and credits exactly; statuses as reported; values, weights and ratios to float precision."""
    expected = allocate(round_budget, decision.scores, decision.outliers)
    for i, (s, entry) in enumerate(zip(audit.submissions, report.submissions, strict=True)):
        s.status, s.score, s.outlier = decision.statuses[i], decision.scores[i], decision.outliers[i]
        s.value, s.expected_wei = decision.values[i], expected.shares[i]
        at = out.at(r, s)
        exact: tuple[tuple[str, object, object, str], ...] = (
            (
                "outlier",
                s.posted_outlier,
                s.outlier,
                f"posted outlier flag {_flag(s.posted_outlier)}, recomputed {_flag(s.outlier)}",
            ),
            ("score", s.posted_score, s.score, f"posted score {s.posted_score}, recomputed {s.score}"),
            ("status", entry.status, s.status, f"report status {quote(entry.status)}, recomputed {s.status}"),
        )
        for name, posted, recomputed, message in exact:
            if posted is not None and posted != recomputed:
                at.diff(name, message, posted=posted, recomputed=recomputed)
        for name, got, want in (
            ("value", entry.value, decision.values[i]),
            ("weight", entry.weight, decision.weights[i]),
            ("ratio", entry.ratio, decision.ratios[i]),
        ):
            if not close(float(got), float(want)):
                at.diff(name, f"report {name} {quote(got)}, recomputed {want!r}", posted=got, recomputed=want)
        if s.credited_wei is not None and s.credited_wei != s.expected_wei:
            at.diff(
                "credit",
                f"credited {s.credited_wei} wei, recomputed {s.expected_wei} wei",
                posted=s.credited_wei,
                recomputed=s.expected_wei,
            )


def _flag(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _readable(market: Market, cid: str) -> bool:
    try:
        return bool(market.store.has(cid))
    except PocflError:
        return False
