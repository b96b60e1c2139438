"""The proven decision in numpy: features of an update, the circuit's witness, and its expected outputs (pure).

The aggregator computes the witness here (an eigendecomposition and a few medians the circuit only checks) and
ezkl evaluates the circuit on it; :func:`decide_features` is the float reference of the same decision, used to
build the witness and by tests to show that the circuit agrees with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pocfl.sketch import sketch
from zk.circuit import (
    AGREEMENT_ABS_FLOOR,
    AGREEMENT_REL_FLOOR,
    LOG_NORM_FLOOR,
    MAD_TO_SIGMA,
    MIN_DECIDE,
    UNIT_TOL,
    WitnessLayout,
    Z,
)

__all__ = [
    "FeatureDecision",
    "decide_features",
    "empty_features",
    "feature_seed",
    "quantize",
    "update_features",
]

F64 = npt.NDArray[np.float64]
MIN_LOG_NORM = -30.0
MAX_LOG_NORM = 30.0


FEATURE_SEED_DOMAIN = b"pocfl.feature.seed.v1"


def feature_seed(chain_id: int, market: str, project_id: int, round_: int, model_cid: str) -> bytes:
    """The round's sketch seed for committed features: fixed when the round opens (trainers need it to commit).

    ``keccak256(domain || abi.encode(chainid, market, projectId, round) || modelCid)``, where ``modelCid`` is the
    round's starting model (the manifest's initial weights in round 0), so it is unknown before the previous round
    is posted. See docs/verifiability.md for what a trainer who knows it can and cannot do.
    """
    from eth_abi.abi import encode
    from eth_utils.crypto import keccak

    body = encode(["uint256", "address", "uint256", "uint32"], [chain_id, market, project_id, round_])
    return keccak(FEATURE_SEED_DOMAIN + body + model_cid.encode())


def quantize(values: npt.ArrayLike, scale: int) -> F64:
    """Round to the circuit's fixed-point grid ``2**-scale`` (what ezkl feeds the circuit)."""
    v = np.asarray(values, dtype=np.float64)
    return np.round(v * 2.0**scale) / 2.0**scale


def update_features(update: npt.ArrayLike, seed: bytes, dim: int, scale: int) -> F64:
    """A trainer's committed feature vector: ``[unit CountSketch (dim), ln ||update||]`` on the fixed-point grid.

    A zero or non-finite update gives the zero vector (the circuit excludes it).
    """
    u = np.asarray(update, dtype=np.float64).reshape(-1)
    out = np.zeros(dim + 1)
    if not np.all(np.isfinite(u)):
        return out
    norm = float(np.linalg.norm(u))
    if norm <= 0.0:
        return out
    s = sketch(u, seed, dim)
    s_norm = float(np.linalg.norm(s))
    if s_norm <= 0.0:
        return out
    out[:dim] = s / s_norm
    out[dim] = min(max(math.log(norm), MIN_LOG_NORM), MAX_LOG_NORM)
    return quantize(out, scale)


def empty_features(dim: int) -> F64:
    """Features of an unused slot (all zero; excluded by the circuit)."""
    return np.zeros(dim + 1)


@dataclass(frozen=True)
class FeatureDecision:
    """The float reference decision and the circuit witness for one round.

    Attributes
    ----------
    outliers, excluded, disagreeing, abnormal_norm : tuple of bool
        Per slot.
    agreement : tuple of float
        ``median_{j != i} Gp[i, j]`` over active slots.
    witness : ndarray
        The circuit's witness vector (unquantized; ezkl rounds it).
    """

    outliers: tuple[bool, ...]
    excluded: tuple[bool, ...]
    disagreeing: tuple[bool, ...]
    abnormal_norm: tuple[bool, ...]
    agreement: tuple[float, ...]
    witness: F64


def pad_slots(
    features: Sequence[npt.ArrayLike], rejected: Sequence[bool], scores: Sequence[float], *, slots: int, dim: int
) -> tuple[list[F64], list[bool], list[float]]:
    """Pad per-submission circuit inputs to ``slots``: unused slots are rejected, with zero features and score."""
    n = len(features)
    if n > slots:
        raise ValueError(f"{n} submissions exceed the circuit's {slots} slots")
    if len(rejected) != n or len(scores) != n:
        raise ValueError("features, rejected and scores must have one entry per submission")
    pad = slots - n
    feats = [np.asarray(f, dtype=np.float64).reshape(dim + 1) for f in features] + [empty_features(dim)] * pad
    return feats, [bool(r) for r in rejected] + [True] * pad, [float(x) for x in scores] + [0.0] * pad


def _median(v: F64) -> float:
    return float(np.median(v)) if v.size else 0.0


def decide_features(
    features: Sequence[npt.ArrayLike], rejected: Sequence[bool], scores: Sequence[float], *, dim: int
) -> FeatureDecision:
    """Reference of :class:`zk.circuit.RoundCircuit` on (already quantized) features.

    Parameters
    ----------
    features
        One ``dim + 1`` vector per slot.
    rejected
        Slots the aggregator rejected before the decision (failed validation, or an unused slot).
    scores
        The witness scores (floats on the circuit grid); echoed as 0 for outliers.
    dim
        Sketch dimension.
    """
    k = len(features)
    lay = WitnessLayout(k)
    q = np.asarray([np.asarray(f, dtype=np.float64).reshape(dim + 1) for f in features]).reshape(k, dim + 1)
    x, log_norm = q[:, :dim], q[:, dim]
    rej = np.asarray(rejected, dtype=bool)
    unit_bad = np.abs((x * x).sum(axis=1) - 1.0) > UNIT_TOL
    excluded = rej | unit_bad
    active = ~excluded
    xa = x * active[:, None]
    gram = xa @ xa.T
    n = int(active.sum())
    lam, vec = np.linalg.eigh(gram)
    order = np.argsort(-lam, kind="stable")
    lam, vec = lam[order], vec[:, order]
    m = math.ceil(n / 2)
    top = np.arange(k) < m
    projected = (vec * (lam * top)[None, :]) @ vec.T
    agreement = np.zeros(k)
    idx = np.flatnonzero(active)
    for i in idx:
        others = idx[idx != i]
        agreement[i] = _median(projected[i, others])
    c_a = _median(agreement[idx])
    mad_a = _median(np.abs(agreement[idx] - c_a))
    c_l = _median(log_norm[idx])
    mad_l = _median(np.abs(log_norm[idx] - c_l))
    scale_a = max(MAD_TO_SIGMA * mad_a, AGREEMENT_REL_FLOOR * abs(c_a), AGREEMENT_ABS_FLOOR)
    scale_l = max(MAD_TO_SIGMA * mad_l, LOG_NORM_FLOOR)
    enough = n >= MIN_DECIDE
    disagree = active & (c_a - agreement > Z * scale_a) & enough
    abnormal = active & (np.abs(log_norm - c_l) > Z * scale_l) & enough
    outliers = excluded | disagree | abnormal
    w = np.zeros(lay.size)
    w[lay.vectors] = vec.reshape(-1)
    w[lay.eigenvalues] = lam
    w[lay.agreement] = agreement
    w[lay.centre_agreement] = c_a
    w[lay.mad_agreement] = mad_a
    w[lay.centre_log_norm] = c_l
    w[lay.mad_log_norm] = mad_l
    w[lay.rejected] = rej.astype(np.float64)
    w[lay.scores] = np.asarray(scores, dtype=np.float64)
    return FeatureDecision(
        outliers=tuple(bool(o) for o in outliers),
        excluded=tuple(bool(e) for e in excluded),
        disagreeing=tuple(bool(d) for d in disagree),
        abnormal_norm=tuple(bool(a) for a in abnormal),
        agreement=tuple(float(a) for a in agreement),
        witness=w,
    )
