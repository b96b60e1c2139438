"""The proof checks of the audit.

With a verifier the contract only accepts proven posts, so ``RoundPosted.proven`` must be set
(:func:`check_proof_flag`); without one the results are *unproven*, recomputed only. For a proven round,
:func:`proven_flags` checks each update against its on-chain ``featureCommitment`` and recomputes the outlier
flags with the circuit itself (:class:`CircuitCache` compiles it from the code with the settings the report
names), or with its float reference when those settings are not available.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pocfl.audit.history import ProjectHistory
from pocfl.audit.rejections import FEATURE_MISMATCH, error_name
from pocfl.audit.result import Difference, Findings, ProjectRef, RoundAudit, short
from pocfl.chain.types import ZERO_ADDRESS
from pocfl.errors import PocflError
from pocfl.manifest import ProofConfig
from pocfl.market import Market, SubmittedUpdate
from pocfl.rounds.report import RoundReport
from pocfl.untrusted import quote

Vector = NDArray[np.float32]


def check_proof_flag(history: ProjectHistory, r: int, audit: RoundAudit) -> list[Difference]:
    """A project with a verifier posts proven rounds only; without one, the round is noted as unproven."""
    out = Findings(history.project_id)
    if history.state.params.verifier.lower() != ZERO_ADDRESS:
        if not audit.proven:
            out.diff(r, "proof", "the project has a verifier but RoundPosted says the round is not proven")
    else:
        audit.notes.append("no verifier: the results are unproven (recomputed only)")
    return out.differences


class CircuitCache:
    """Compiled round circuits (no keys), keyed and verified by the settings' hash, in the user's own cache.

    ``zk.cache``: ``<state dir>/zk`` by default; never a shared temp folder another user could plant a circuit
    in. An unsafe cache folder falls back to a private temporary one, removed with this object.

    Parameters
    ----------
    cache_dir
        The cache folder (None: ``zk.cache.default_cache_dir()``).
    """

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self._private: Path | None = None

    def compiled(self, r: int, shape: Any, settings: bytes, warn: Callable[[str], None]) -> Any:
        """Compile (or reuse from the cache) the circuit of round ``r``; ``warn`` hears of a fallback."""
        from zk.cache import UnsafeCacheError, default_cache_dir
        from zk.prover import RoundCircuitSetup

        try:
            return RoundCircuitSetup.compiled_only(shape, settings, self.cache_dir or default_cache_dir())
        except UnsafeCacheError as exc:
            warn(f"round {r}: {exc}; compiling the circuit in a private temporary folder instead")
            if self._private is None:
                self._private = Path(tempfile.mkdtemp(prefix="pocfl-zk-"))  # 0700, this user's
                weakref.finalize(self, shutil.rmtree, self._private, ignore_errors=True)
            self.cache_dir = self._private
            return RoundCircuitSetup.compiled_only(shape, settings, self.cache_dir)


def proven_flags(
    ref: ProjectRef,
    market: Market,
    circuits: CircuitCache,
    r: int,
    subs: Sequence[SubmittedUpdate],
    vectors: list[Vector | None],
    model_in: str,
    proof_cfg: ProofConfig,
    audit: RoundAudit,
    report: RoundReport,
) -> tuple[list[Vector | None], list[bool], Findings]:
    """A proven round: the committed features (checked against each update) and the circuit's decision on them.

    The contract verified that the posted flags and scores are the circuit's function of the on-chain feature
    commitments; what it cannot see is whether each commitment describes its update, which is checked here.
    The flags are recomputed with the circuit itself (compiled from the code with the settings the report
    names, evaluated by ezkl: bit-exact), or with its float reference when those settings are not available.
    """
    from zk.commitment import committed_features
    from zk.decision import decide_features, feature_seed, pad_slots

    out = Findings(ref.project_id)
    seed = feature_seed(ref.chain_id, ref.market, ref.project_id, r, model_in)
    cf = committed_features(
        vectors, [u.feature_commitment for u in subs], seed, dim=proof_cfg.sketch_dim, scale=proof_cfg.scale
    )
    for u, entry, why in zip(subs, report.submissions, cf.reasons, strict=True):
        posted_mismatch = entry.status == "rejected" and error_name(entry.reason) == FEATURE_MISMATCH
        if why is not None and not posted_mismatch:
            out.at(r, u).diff(
                "status",
                f"the update does not match its featureCommitment but the aggregator did not reject it for that "
                f"(status {entry.status})",
                posted=entry.status,
                recomputed="rejected",
            )
        elif posted_mismatch and why is None and vectors[u.index] is not None:
            out.at(r, u).diff(
                "status",
                f"the aggregator rejected the update for {FEATURE_MISMATCH}, but it matches its featureCommitment",
                posted=entry.reason,
                recomputed="accepted",
            )
        elif why is not None:
            audit.notes.append(f"submission {u.index} ({short(u.trainer)}): {why}")
    n, k = len(subs), proof_cfg.slots
    if n > k:
        out.diff(r, "proof", f"{n} submissions exceed the circuit's {k} slots")
        return vectors, [True] * n, out
    feats, rej, scores = pad_slots(cf.features, cf.rejected, [0.0] * n, slots=k, dim=proof_cfg.sketch_dim)
    decision = decide_features(feats, rej, scores, dim=proof_cfg.sketch_dim)
    kept = [None if rej else v for v, rej in zip(vectors, cf.rejected, strict=True)]
    flags = list(decision.outliers[:n])
    circuit = _round_circuit(market, circuits, out, r, report.config.get("proof"), proof_cfg)
    if circuit is not None:
        exact = list(circuit.evaluate(cf.features, cf.rejected))
        if exact != flags:
            audit.notes.append(
                f"the circuit's flags {exact} differ from its float reference {flags} at a threshold; "
                "the circuit's are the ones proven"
            )
        flags = exact
    return kept, flags, out


def _round_circuit(
    market: Market, circuits: CircuitCache, out: Findings, r: int, info: Any, proof_cfg: ProofConfig
) -> Any:
    """The round circuit compiled with the settings the report names (None, with a warning, when unavailable)."""
    from zk.prover import CircuitShape, ProverError

    if not isinstance(info, dict) or "settings_cid" not in info:
        out.warnings.append(f"round {r}: the report names no circuit settings; flags recomputed in float")
        return None
    try:
        settings = market.fetch(str(info["settings_cid"]))
        shape = CircuitShape(proof_cfg.slots, proof_cfg.sketch_dim, proof_cfg.scale)
        return circuits.compiled(r, shape, settings, out.warnings.append)
    except (PocflError, ProverError, OSError, ValueError) as exc:
        out.warnings.append(f"round {r}: cannot rebuild the circuit ({quote(str(exc))}); flags recomputed in float")
        return None
