"""A round made ready to post: its inputs read and validated, the decision taken (and proven), the bytes encoded.

:meth:`RoundPreparer.prepare` reads the round's submissions and public inputs (:mod:`pocfl.rounds.inputs`),
validates every update (a bad one is a rejection with its reason), runs :func:`aggregator.round.decide_round`,
encodes the new global model and the round report, and journals the round as ``decided``.
:meth:`RoundPreparer.resume` instead reads back what an earlier run stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aggregator.node_context import NodeContext
from aggregator.node_records import hex0x
from aggregator.proving import RoundProver, stored_proof
from aggregator.round import RoundConfig, RoundDecision, decide_round
from aggregator.round_inputs import round_seeds
from aggregator.round_report import build_report
from aggregator.round_run import RoundInputs
from pocfl.chain.types import ProjectState
from pocfl.errors import PocflError
from pocfl.manifest import ProjectManifest
from pocfl.market import SubmittedUpdate, report_hash
from pocfl.rounds.inputs import (
    PRIOR_ROUNDS,
    RoundInputError,
    ValidatedUpdate,
    accepted_vectors,
    accuracy_history,
    global_model,
    posted_rounds,
    prior_updates,
    round_digest,
    round_hyperparams,
    validate_submission,
)
from pocfl.rounds.report import RoundReport
from pocfl.store import compute_cid
from pocfl.updates import EncryptionKeyPair, ModelSpec, encode_update

SUBMISSION_READS = 10
"""Reads of a round's submissions before a node whose logs lag the contract's count gives up."""


@dataclass
class PreparedRound:
    """A round computed and encoded, ready to store and post."""

    updates: list[SubmittedUpdate]
    report: RoundReport
    report_bytes: bytes
    model_bytes: bytes
    reveals: list[bytes] = field(default_factory=list)
    decision: RoundDecision | None = None
    proof_blob: bytes = b""
    """``postRound``'s proof argument (empty for projects without a verifier)."""


class RoundPreparer:
    """Reads, validates, decides and encodes a round (see the module docstring).

    Parameters
    ----------
    ctx
        The node's shared context.
    manifest, spec, config
        The project manifest, its model spec and the round settings.
    keypair
        Decryption key for sealed updates (None rejects them).
    validation
        The validation set (loaded on first use).
    prover
        The prover of a project with a verifier; None otherwise.
    """

    def __init__(
        self,
        ctx: NodeContext,
        manifest: ProjectManifest,
        spec: ModelSpec,
        config: RoundConfig,
        keypair: EncryptionKeyPair | None,
        validation: Callable[[], tuple[Any, Any]],
        prover: RoundProver | None,
    ) -> None:
        self.ctx, self.manifest, self.spec, self.config = ctx, manifest, spec, config
        self.keypair, self.validation, self.prover = keypair, validation, prover

    def submissions(self, r: int, state: ProjectState) -> list[SubmittedUpdate]:
        """The round's submissions, retried until the node's logs show as many as the contract counted."""
        ctx = self.ctx
        for attempt in range(SUBMISSION_READS):
            updates = ctx.market.submitted_updates(ctx.project_id, r, from_block=ctx.from_block)
            if len(updates) == state.submission_count and [u.index for u in updates] == list(range(len(updates))):
                return updates
            if attempt < SUBMISSION_READS - 1:
                ctx.sleep(ctx.poll)
        raise RoundInputError(
            f"project {ctx.project_id} round {r}: the contract counts {state.submission_count} submissions, the "
            f"node's logs show {len(updates)} (a lagging or pruned node? pass an archive RPC)"
        )

    def validate(self, r: int, updates: Sequence[SubmittedUpdate]) -> list[ValidatedUpdate]:
        """Every update fetched, opened and checked (a bad one carries its rejection reason)."""
        ctx, validated = self.ctx, []
        for i, u in enumerate(updates):
            ctx.say(f"round {r}: validating updates", i, len(updates))
            validated.append(
                validate_submission(
                    ctx.market, u, ctx.project_id, r, self.spec, self.keypair, self.manifest.max_update_size
                )
            )
        ctx.say(f"round {r}: validating updates", len(updates), len(updates))
        return validated

    def inputs(self, r: int, state: ProjectState) -> tuple[bytes, RoundInputs]:
        """The round's submissions digest (checked against the contract's) and its :class:`RoundInputs`."""
        ctx, manifest, pid, start = self.ctx, self.manifest, self.ctx.project_id, self.ctx.from_block
        digest = round_digest(ctx.market, pid, r, from_block=start)
        if digest != state.submissions_digest:
            raise RoundInputError(
                f"round {r}: the logs give submissions digest {hex0x(digest)}, the contract holds "
                f"{hex0x(state.submissions_digest)}"
            )
        seeds = round_seeds(ctx.market, pid, r, digest=digest)
        model_in, global_vector = global_model(ctx.market, manifest, state, r, from_block=start)
        hyper = round_hyperparams(ctx.market, manifest, pid, r, from_block=start)
        history = accuracy_history(ctx.market, pid, r, from_block=start)
        priors = prior_updates(ctx.market, manifest, pid, r, from_block=start)
        return digest, RoundInputs(model_in, global_vector, hyper, history, priors, self.config, seeds)

    def prepare(self, r: int, state: ProjectState) -> PreparedRound:
        """Decide round ``r`` from its submissions and inputs; journal it as ``decided``."""
        ctx = self.ctx
        updates = self.submissions(r, state)
        validated = self.validate(r, updates)
        digest, got = self.inputs(r, state)
        flags, zk = None, None
        if self.prover is not None:
            validated, zk = self.prover.committed_features(r, validated, got.model_in)
            flags = zk.flags()
            # Proven rounds post scores on the circuit's fixed-point grid.
            config = got.config
            got = replace(got, config=replace(config, scoring=replace(config.scoring, scale=zk.setup.shape.score_unit)))
        ctx.say(f"round {r}: scoring {sum(v.accepted for v in validated)} accepted updates")
        # decide_round by this module's name: tests replace the node's decision alone
        decision = got.decide(accepted_vectors(validated), self.validation(), outlier_flags=flags, decide=decide_round)
        proof_blob, proof_info = b"", None
        if zk is not None:
            assert self.prover is not None
            proof_blob, proof_info = self.prover.prove(r, zk, decision)
        model_bytes = encode_update(self.spec.unflatten(decision.new_global), self.spec, kind="weights")
        report = self._report(r, digest, got, decision, validated, compute_cid(model_bytes), proof_info)
        report_bytes = report.to_json()
        report_cid = compute_cid(report_bytes)
        ctx.journal.record(
            r,
            "decided",
            model_cid=report.model_out,
            report_cid=report_cid,
            report_hash=hex0x(report_hash(report_cid)),
            submissions=len(updates),
        )
        reveals = [v.plaintext for v in validated if v.plaintext is not None]
        return PreparedRound(updates, report, report_bytes, model_bytes, reveals, decision, proof_blob)

    def _report(
        self,
        r: int,
        digest: bytes,
        got: RoundInputs,
        decision: RoundDecision,
        validated: list[ValidatedUpdate],
        model_out: str,
        proof_info: dict[str, Any] | None,
    ) -> RoundReport:
        ctx = self.ctx
        prior_rounds = posted_rounds(ctx.market, ctx.project_id, before=r, from_block=ctx.from_block)
        return build_report(
            project_id=ctx.project_id,
            round_=r,
            chain_id=ctx.client.chain.chain_id,
            market=ctx.client.address,
            digest=digest,
            model_in=got.model_in,
            model_out=model_out,
            seeds_shapley=got.seeds.shapley,
            seeds_sketch=got.seeds.sketch,
            hyperparams=got.hyperparams,
            decision=decision,
            validated=validated,
            config=got.config,
            extra_config={
                **({"proof": proof_info} if proof_info is not None else {}),
                "accuracy_history": list(got.accuracy_history),
                "prior_update_rounds": [p.round for p in prior_rounds][-PRIOR_ROUNDS:],
            },
        )

    def resume(self, r: int, entry: dict[str, Any]) -> PreparedRound | None:
        """Read back what an earlier run stored for the round; None if anything is missing or inconsistent."""
        ctx = self.ctx
        try:
            report_bytes = ctx.market.fetch(str(entry["report_cid"]))
            model_bytes = ctx.market.fetch(str(entry["model_cid"]), self.spec.nbytes + (1 << 20))
            report = RoundReport.from_json(report_bytes)
        except (KeyError, PocflError):
            return None
        updates = ctx.market.submitted_updates(ctx.project_id, r, from_block=ctx.from_block)
        same = [(u.trainer, hex0x(u.commitment), u.cid) for u in updates] == [
            (s.trainer, s.commitment, s.cid) for s in report.submissions
        ]
        if not same or report.round != r or report.model_out != entry["model_cid"]:
            return None
        proof_blob = b""
        if self.prover is not None:
            found = stored_proof(ctx, report)
            if found is None:
                return None
            proof_blob = found
        ctx.say(f"round {r}: resuming from the journal")
        return PreparedRound(updates, report, report_bytes, model_bytes, proof_blob=proof_blob)
