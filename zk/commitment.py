"""The feature commitment of a proven round: ezkl's field encoding, the Poseidon hash, and the check against it.

A trainer posts :func:`feature_commitment` of its update's features on chain as ``featureCommitment``; the round
proof's public instances are the same hashes, and :func:`committed_features` checks each update against its posted
commitment (aggregator node and audit alike). :mod:`zk.decision` stays free of ezkl; :mod:`zk.prover` builds on this
module and re-exports its names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pocfl.errors import PocflError
from zk.decision import F64, empty_features, update_features

__all__ = [
    "BN254_MODULUS",
    "DEFAULT_SCALE",
    "CommittedFeatures",
    "ProverError",
    "committed_features",
    "feature_commitment",
    "felt_to_int",
    "int_to_felt",
    "load_ezkl",
    "signed",
]

BN254_MODULUS = 21888242871839275222246405745257275088548364400416034343698204186575808495617
"""Scalar field of BN254 (ezkl's curve); negative fixed-point values are ``p - |v|``."""
DEFAULT_SCALE = 13


class ProverError(PocflError):
    """An ezkl step failed (setup, witness, proof or verification), or its output did not have the expected form."""


def load_ezkl() -> Any:
    """The ezkl module (a :class:`ProverError` if it is missing)."""
    try:
        import ezkl
    except ImportError as exc:  # pragma: no cover - ezkl is a dependency
        raise ProverError("ezkl is not installed (pip install ezkl==23.0.5)") from exc
    return ezkl


def felt_to_int(felt_hex: str) -> int:
    """Ezkl's little-endian hex field element -> integer in ``[0, p)``."""
    return int.from_bytes(bytes.fromhex(felt_hex.removeprefix("0x")), "little")


def int_to_felt(value: int) -> int:
    """Signed integer -> field element (``p - |v|`` for negatives), as the verifier sees it."""
    if not -BN254_MODULUS < value < BN254_MODULUS:
        raise ValueError("value outside the field")
    return value % BN254_MODULUS


def signed(felt: int) -> int:
    """Field element -> signed integer (values above ``p/2`` are negative)."""
    return felt - BN254_MODULUS if felt > BN254_MODULUS // 2 else felt


def feature_commitment(features: npt.ArrayLike, scale: int = DEFAULT_SCALE) -> bytes:
    """Poseidon hash of a feature vector in ezkl's hashed-input encoding, as 32 big-endian bytes.

    This is what a trainer posts on chain as ``featureCommitment``; it equals the proof's public instance for that
    input.
    """
    ezkl = load_ezkl()
    felts = [ezkl.float_to_felt(float(x), scale, ezkl.PyInputType.F64) for x in np.asarray(features).reshape(-1)]
    (digest,) = ezkl.poseidon_hash(felts)
    return felt_to_int(digest).to_bytes(32, "big")


@dataclass(frozen=True)
class CommittedFeatures:
    """A proven round's circuit inputs, one entry per submission (see :func:`committed_features`)."""

    features: list[F64]
    rejected: list[bool]
    reasons: list[str | None]
    """Why a submission that passed validation is rejected here (its commitment does not match), else None."""


def committed_features(
    vectors: Sequence[npt.ArrayLike | None], commitments: Sequence[bytes], seed: bytes, *, dim: int, scale: int
) -> CommittedFeatures:
    """Features of each validated update, checked against its on-chain ``featureCommitment``.

    ``vectors[i]`` is None for a submission that already failed validation. An update whose commitment is not the
    Poseidon hash of its features is rejected (the circuit only sees committed features, so it must not be
    aggregated). Used by the aggregator node and by ``pocfl audit`` alike.
    """
    features: list[F64] = []
    rejected: list[bool] = []
    reasons: list[str | None] = []
    for vector, posted in zip(vectors, commitments, strict=True):
        f, reason = empty_features(dim), None
        if vector is not None:
            f = update_features(vector, seed, dim, scale)
            if feature_commitment(f, scale) != posted:
                reason = (
                    f"FeatureCommitmentMismatch: featureCommitment 0x{posted.hex()} is not the Poseidon hash of this "
                    "update's features"
                )
                f = empty_features(dim)
        features.append(f)
        rejected.append(vector is None or reason is not None)
        reasons.append(reason)
    return CommittedFeatures(features, rejected, reasons)
