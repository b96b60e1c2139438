"""The round circuit (zk.circuit) against its float reference (zk.decision), without proving.

The torch forward is fed exactly what ezkl gets from ``zk.prover``: the committed features (already on the
``2**-13`` grid) and the reference witness, rounded to the same grid as ezkl's input quantisation does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import numpy.typing as npt
import pytest
import torch

from zk.circuit import (
    AGREEMENT_ABS_FLOOR,
    AGREEMENT_REL_FLOOR,
    EIG_TOL,
    LOG_NORM_FLOOR,
    MAD_TO_SIGMA,
    MIN_DECIDE,
    UNIT_TOL,
    RoundCircuit,
    WitnessLayout,
    Z,
)
from zk.decision import FeatureDecision, decide_features, empty_features, feature_seed, quantize, update_features
from zk.prover import BN254_MODULUS, feature_commitment, felt_to_int, int_to_felt, signed

pytestmark = pytest.mark.unit

F64 = npt.NDArray[np.float64]
SCALE = 13
GRID = 2.0**-SCALE
D = 256  # update dimension
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
# A slot whose float decision is this close to a threshold may round either way in fixed point (not compared).
NEAR = 2e-3


@dataclasses.dataclass(frozen=True)
class Outputs:
    """The circuit's outputs for one round, next to the float reference."""

    decision: FeatureDecision
    ok: float
    outliers: tuple[bool, ...]
    scores: F64
    rejected: tuple[bool, ...]


@cache
def circuit(slots: int, dim: int) -> RoundCircuit:
    return RoundCircuit(slots, dim).eval()


def forward(features: Sequence[F64], witness: F64, dim: int) -> F64:
    """The torch forward on float32 inputs, the witness rounded to the circuit grid (as ezkl does)."""
    k = len(features)
    ins = [torch.tensor(np.asarray(f), dtype=torch.float32).reshape(1, dim + 1) for f in features]
    ins.append(torch.tensor(quantize(witness, SCALE), dtype=torch.float32).reshape(1, WitnessLayout(k).size))
    with torch.no_grad():
        out = circuit(k, dim)(*ins)
    assert tuple(out.shape) == (1, 1 + 3 * k)
    return np.asarray(out.reshape(-1).numpy(), dtype=np.float64)


def as_flags(values: F64) -> tuple[bool, ...]:
    assert np.all((values == 0.0) | (values == 1.0)), values
    return tuple(bool(v) for v in values)


def run(features: Sequence[F64], rejected: Sequence[bool], scores: Sequence[float], dim: int) -> Outputs:
    decision = decide_features(features, rejected, scores, dim=dim)
    return outputs(features, decision, decision.witness, dim)


def outputs(features: Sequence[F64], decision: FeatureDecision, witness: F64, dim: int) -> Outputs:
    k = len(features)
    out = forward(features, witness, dim)
    assert out[0] in (0.0, 1.0)
    return Outputs(
        decision=decision,
        ok=float(out[0]),
        outliers=as_flags(out[1 : 1 + k]),
        scores=out[1 + k : 1 + 2 * k],
        rejected=as_flags(out[1 + 2 * k :]),
    )


def near_threshold(features: Sequence[F64], decision: FeatureDecision, dim: int) -> set[int]:
    """Active slots whose float decision lies within NEAR of a threshold (fixed point may decide either way)."""
    k = len(features)
    lay = WitnessLayout(k)
    w = decision.witness
    if sum(not e for e in decision.excluded) < MIN_DECIDE:
        return set()
    c_a, mad_a = w[lay.centre_agreement], w[lay.mad_agreement]
    c_l, mad_l = w[lay.centre_log_norm], w[lay.mad_log_norm]
    scale_a = max(MAD_TO_SIGMA * mad_a, AGREEMENT_REL_FLOOR * abs(c_a), AGREEMENT_ABS_FLOOR)
    scale_l = max(MAD_TO_SIGMA * mad_l, LOG_NORM_FLOOR)
    near = set()
    for i in range(k):
        if decision.excluded[i]:
            continue
        margin_a = (c_a - decision.agreement[i]) - Z * scale_a
        margin_l = abs(features[i][dim] - c_l) - Z * scale_l
        if min(abs(margin_a), abs(margin_l)) < NEAR:
            near.add(i)
    return near


def assert_agrees(
    features: Sequence[F64], rejected: Sequence[bool], scores: Sequence[float], dim: int, *, max_near: int = 0
) -> Outputs:
    """The circuit accepts the reference witness and makes the reference decision; scores and mask are echoed."""
    out = run(features, rejected, scores, dim)
    assert out.ok == 1.0
    near = near_threshold(features, out.decision, dim)
    assert len(near) <= max_near, f"slots {sorted(near)} are within {NEAR} of a threshold"
    for i, (got, want) in enumerate(zip(out.outliers, out.decision.outliers, strict=True)):
        if i not in near:
            assert got == want, f"slot {i}: circuit {got}, reference {want}"
    assert out.rejected == tuple(bool(r) for r in rejected)
    expected_scores = np.where(out.outliers, 0.0, np.asarray(scores, dtype=np.float64))
    np.testing.assert_allclose(out.scores, expected_scores, atol=GRID)
    # Excluded slots (rejected, zero or malformed features) are always outliers.
    assert all(o for o, e in zip(out.outliers, out.decision.excluded, strict=True) if e)
    return out


# ---------------------------------------------------------------------------------------------
# Rounds
# ---------------------------------------------------------------------------------------------


def honest_updates(rng: np.random.Generator, n: int, noise: float) -> list[F64]:
    """Updates around one shared direction, norms within a factor of about 1.5 of each other."""
    base = rng.normal(size=D)
    base /= np.linalg.norm(base)
    return [(base + noise * rng.normal(size=D) / math.sqrt(D)) * rng.uniform(0.8, 1.2) for _ in range(n)]


def features_of(updates: Sequence[F64], seed: bytes, dim: int) -> list[F64]:
    return [update_features(u, seed, dim, SCALE) for u in updates]


def grid_scores(rng: np.random.Generator, n: int) -> list[float]:
    return [float(s) for s in quantize(rng.uniform(-2.0, 2.0, size=n), SCALE)]


def random_shape(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(4, 11)), int(rng.integers(8, 33))


def test_clean_rounds_agree_and_flag_nobody() -> None:
    for s in range(40):
        rng = np.random.default_rng(s)
        k, dim = random_shape(rng)
        feats = features_of(honest_updates(rng, k, noise=0.3), rng.bytes(32), dim)
        out = assert_agrees(feats, [False] * k, grid_scores(rng, k), dim)
        assert not any(out.outliers), f"seed {s}: honest trainers flagged {out.outliers}"


def test_noisy_rounds_agree() -> None:
    """Larger noise (some rounds flag someone): the circuit still follows the reference."""
    flagged = 0
    for s in range(40):
        rng = np.random.default_rng(1000 + s)
        k, dim = random_shape(rng)
        feats = features_of(honest_updates(rng, k, noise=float(rng.uniform(0.5, 3.0))), rng.bytes(32), dim)
        out = assert_agrees(feats, [False] * k, grid_scores(rng, k), dim, max_near=1)
        flagged += sum(out.outliers)
    assert flagged < 40  # not a degenerate "flag everyone" circuit


def attacked_round(seed: int, attack: Callable[[F64], F64], *, noise: float = 0.3) -> tuple[list[F64], set[int], int]:
    """Honest updates with a minority (at most a third) replaced by ``attack`` of themselves."""
    rng = np.random.default_rng(seed)
    k, dim = random_shape(rng)
    ups = honest_updates(rng, k, noise)
    attackers = {int(i) for i in rng.choice(k, size=int(rng.integers(1, k // 3 + 1)), replace=False)}
    ups = [attack(u) if i in attackers else u for i, u in enumerate(ups)]
    return features_of(ups, rng.bytes(32), dim), attackers, dim


@pytest.mark.parametrize(
    "attack",
    [lambda u: -u, lambda u: 100.0 * u, lambda u: 0.01 * u, lambda u: -3.0 * u],
    ids=["sign-flip", "scale-x100", "scale-x0.01", "sign-flip-x3"],
)
def test_attacks_flagged_and_honest_kept(attack: Callable[[F64], F64]) -> None:
    for s in range(12):
        feats, attackers, dim = attacked_round(s, attack)
        k = len(feats)
        scores = grid_scores(np.random.default_rng(s), k)
        out = assert_agrees(feats, [False] * k, scores, dim)
        assert {i for i, o in enumerate(out.outliers) if o} == attackers, f"seed {s}"
        for i in attackers:
            assert out.scores[i] == 0.0
        for i in set(range(k)) - attackers:
            assert out.scores[i] == pytest.approx(scores[i], abs=GRID)


def test_sign_flip_is_a_disagreement_and_scaling_an_abnormal_norm() -> None:
    feats, attackers, dim = attacked_round(3, lambda u: -u)
    out = run(feats, [False] * len(feats), [1.0] * len(feats), dim)
    assert {i for i, d in enumerate(out.decision.disagreeing) if d} == attackers
    assert not any(out.decision.abnormal_norm)
    feats, attackers, dim = attacked_round(3, lambda u: 100.0 * u)
    out = run(feats, [False] * len(feats), [1.0] * len(feats), dim)
    assert {i for i, a in enumerate(out.decision.abnormal_norm) if a} == attackers


def test_zero_and_non_finite_updates_are_excluded() -> None:
    for s in range(10):
        rng = np.random.default_rng(2000 + s)
        k, dim = random_shape(rng)
        ups = honest_updates(rng, k, noise=0.3)
        ups[0] = np.zeros(D)
        ups[-1] = np.full(D, np.nan)
        feats = features_of(ups, rng.bytes(32), dim)
        assert not feats[0].any() and not feats[-1].any()
        out = assert_agrees(feats, [False] * k, grid_scores(rng, k), dim)
        assert out.outliers == (True,) + (False,) * (k - 2) + (True,)
        assert out.decision.excluded == out.outliers
        assert out.scores[0] == out.scores[-1] == 0.0
        assert out.rejected == (False,) * k  # excluded for its features, not rejected


def test_malformed_features_are_excluded() -> None:
    """A committed sketch that is not unit-norm (within UNIT_TOL) is excluded whatever its direction."""
    rng = np.random.default_rng(7)
    k, dim = 6, 16
    feats = features_of(honest_updates(rng, k, noise=0.3), rng.bytes(32), dim)
    stretched = feats[1].copy()
    stretched[:dim] = quantize(stretched[:dim] * math.sqrt(1.0 + 3 * UNIT_TOL), SCALE)
    shrunk = feats[2].copy()
    shrunk[:dim] = quantize(shrunk[:dim] * math.sqrt(1.0 - 3 * UNIT_TOL), SCALE)
    feats[1], feats[2] = stretched, shrunk
    out = assert_agrees(feats, [False] * k, grid_scores(rng, k), dim)
    assert out.outliers == (False, True, True, False, False, False)


def test_rejected_slots_are_outliers_and_echoed() -> None:
    for s in range(15):
        rng = np.random.default_rng(3000 + s)
        k, dim = random_shape(rng)
        feats = features_of(honest_updates(rng, k, noise=0.3), rng.bytes(32), dim)
        rejected = [bool(r) for r in rng.random(k) < 0.3]
        out = assert_agrees(feats, rejected, grid_scores(rng, k), dim)
        assert out.rejected == tuple(rejected)
        active = k - sum(rejected)
        assert out.outliers == tuple(rejected), f"seed {s}: {active} active"


def test_padded_unused_slots() -> None:
    """A round with fewer submissions than slots: the rest are zero features, rejected (as the prover pads)."""
    for s in range(15):
        rng = np.random.default_rng(4000 + s)
        k, dim = random_shape(rng)
        n = int(rng.integers(3, k + 1))
        ups = honest_updates(rng, n, noise=0.3)
        ups[0] = -ups[0]
        feats = features_of(ups, rng.bytes(32), dim) + [empty_features(dim)] * (k - n)
        rejected = [False] * n + [True] * (k - n)
        scores = grid_scores(rng, n) + [0.0] * (k - n)
        out = assert_agrees(feats, rejected, scores, dim)
        assert out.rejected == tuple(rejected)
        assert out.outliers[n:] == (True,) * (k - n)
        if n >= 4:  # one flipped among at least three honest
            assert out.outliers[:n] == (True,) + (False,) * (n - 1), f"seed {s}"


@pytest.mark.parametrize("active", [0, 1, 2])
def test_fewer_than_three_active_slots_flag_only_exclusions(active: int) -> None:
    for s in range(8):
        rng = np.random.default_rng(5000 + 10 * active + s)
        k, dim = random_shape(rng)
        ups = honest_updates(rng, k, noise=0.3)
        if active >= 2:
            ups[1] = -100.0 * ups[1]  # would be flagged twice over with enough slots
        feats = features_of(ups, rng.bytes(32), dim)
        rejected = [i >= active for i in range(k)]
        out = assert_agrees(feats, rejected, grid_scores(rng, k), dim)
        assert out.outliers == tuple(rejected)
        assert not any(out.decision.disagreeing) and not any(out.decision.abnormal_norm)


def test_zero_scores_and_negative_scores_echoed() -> None:
    rng = np.random.default_rng(9)
    k, dim = 5, 12
    feats = features_of(honest_updates(rng, k, noise=0.3), rng.bytes(32), dim)
    scores = [0.0, -1.5, 1.5, -GRID, 1000.0]
    out = assert_agrees(feats, [False] * k, scores, dim)
    np.testing.assert_allclose(out.scores, scores, atol=GRID)


# ---------------------------------------------------------------------------------------------
# Tampered witnesses: ok drops to 0
# ---------------------------------------------------------------------------------------------


def base_round(seed: int = 11, k: int = 6, dim: int = 16, flip: int | None = 2) -> tuple[list[F64], FeatureDecision]:
    """A round of k honest-looking trainers (one sign-flipped unless ``flip`` is None) and its reference decision."""
    rng = np.random.default_rng(seed)
    ups = honest_updates(rng, k, noise=0.3)
    if flip is not None:
        ups[flip] = -ups[flip]
    feats = features_of(ups, rng.bytes(32), dim)
    decision = decide_features(feats, [False] * k, [1.0] * k, dim=dim)
    return feats, decision


def tampered(feats: list[F64], decision: FeatureDecision, edit: Callable[[F64, WitnessLayout], None]) -> Outputs:
    w = decision.witness.copy()
    edit(w, WitnessLayout(len(feats)))
    return outputs(feats, decision, w, dim=len(feats[0]) - 1)


def test_the_untampered_base_round_is_ok() -> None:
    feats, decision = base_round()
    out = outputs(feats, decision, decision.witness, dim=16)
    assert out.ok == 1.0
    assert out.outliers == decision.outliers == (False, False, True, False, False, False)


def vectors(w: F64, lay: WitnessLayout) -> F64:
    return w[lay.vectors].reshape(lay.slots, lay.slots)


def set_vectors(w: F64, lay: WitnessLayout, v: F64) -> None:
    w[lay.vectors] = v.reshape(-1)


def _wrong_top_eigenvalue(w: F64, lay: WitnessLayout) -> None:
    w[lay.eigenvalues.start] += 0.5


def _wrong_bottom_eigenvalue(w: F64, lay: WitnessLayout) -> None:
    # Lowered, so the order still holds and the projected Gram (top half only) is unchanged: only G V = V diag(lam)
    # can catch it.
    w[lay.eigenvalues.stop - 1] -= 0.5


def _scaled_bottom_vector(w: F64, lay: WitnessLayout) -> None:
    # Still an eigenvector (of eigenvalue ~0), outside the top subspace: only V^T V = I can catch it.
    v = vectors(w, lay)
    v[:, -1] *= 1.5
    set_vectors(w, lay, v)


def _rotated_top_vectors(w: F64, lay: WitnessLayout) -> None:
    v = vectors(w, lay)
    c, s = math.cos(0.3), math.sin(0.3)
    v0, v1 = v[:, 0].copy(), v[:, 2].copy()
    v[:, 0], v[:, 2] = c * v0 - s * v1, s * v0 + c * v1
    set_vectors(w, lay, v)


def _swapped_top_pair(w: F64, lay: WitnessLayout) -> None:
    # Both in the top subspace, so Gp and every median are unchanged: only the ordering check can catch it.
    lam = w[lay.eigenvalues].copy()
    assert lam[0] - lam[1] > 5 * EIG_TOL
    w[lay.eigenvalues.start], w[lay.eigenvalues.start + 1] = lam[1], lam[0]
    v = vectors(w, lay)
    v[:, [0, 1]] = v[:, [1, 0]]
    set_vectors(w, lay, v)


def _outlier_agreement_forged(w: F64, lay: WitnessLayout) -> None:
    # The flipped trainer's agreement set to the centre, to hide it.
    w[lay.agreement.start + 2] = w[lay.centre_agreement]


def _honest_agreement_forged(w: F64, lay: WitnessLayout) -> None:
    w[lay.agreement.start + 0] -= 0.5


def _centre_agreement_raised(w: F64, lay: WitnessLayout) -> None:
    w[lay.centre_agreement] += 1.0


def _mad_agreement_inflated(w: F64, lay: WitnessLayout) -> None:
    w[lay.mad_agreement] = 10.0


def _centre_log_norm_moved(w: F64, lay: WitnessLayout) -> None:
    w[lay.centre_log_norm] += 1.0


def _mad_log_norm_inflated(w: F64, lay: WitnessLayout) -> None:
    w[lay.mad_log_norm] = 5.0


def _mad_log_norm_zeroed(w: F64, lay: WitnessLayout) -> None:
    w[lay.mad_log_norm] = 0.0


TAMPERS: dict[str, Callable[[F64, WitnessLayout], None]] = {
    "wrong-top-eigenvalue": _wrong_top_eigenvalue,
    "wrong-bottom-eigenvalue": _wrong_bottom_eigenvalue,
    "non-orthonormal-vector": _scaled_bottom_vector,
    "rotated-vectors": _rotated_top_vectors,
    "unsorted-eigenvalues": _swapped_top_pair,
    "outlier-agreement-forged": _outlier_agreement_forged,
    "honest-agreement-forged": _honest_agreement_forged,
    "wrong-centre-agreement": _centre_agreement_raised,
    "wrong-mad-agreement": _mad_agreement_inflated,
    "wrong-centre-log-norm": _centre_log_norm_moved,
    "inflated-mad-log-norm": _mad_log_norm_inflated,
    "zeroed-mad-log-norm": _mad_log_norm_zeroed,
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tampered_witness_is_not_ok(name: str) -> None:
    feats, decision = base_round()
    assert outputs(feats, decision, decision.witness, dim=16).ok == 1.0
    assert tampered(feats, decision, TAMPERS[name]).ok == 0.0


def test_median_tolerance_accepts_any_median_of_an_even_count() -> None:
    """The checks accept any value between the two middle ones: the defining counts, not numpy's midpoint."""
    feats, decision = base_round(flip=None)
    log_norms = sorted(float(f[16]) for f in feats)
    assert log_norms[3] - log_norms[2] > 4 * GRID

    def low_median(w: F64, lay: WitnessLayout) -> None:
        w[lay.centre_log_norm] = log_norms[2]
        w[lay.mad_log_norm] = float(np.median(np.abs(np.asarray([f[16] for f in feats]) - log_norms[2])))

    assert tampered(feats, decision, low_median).ok == 1.0


def test_hiding_a_scaled_attacker_needs_a_forged_witness() -> None:
    """Un-flagging an x100 trainer by inflating the log-norm MAD makes the circuit say ok = 0."""
    rng = np.random.default_rng(12)
    k, dim = 6, 16
    ups = honest_updates(rng, k, noise=0.3)
    ups[4] = 100.0 * ups[4]
    feats = features_of(ups, rng.bytes(32), dim)
    decision = decide_features(feats, [False] * k, [1.0] * k, dim=dim)
    assert decision.outliers == (False, False, False, False, True, False)
    forged = tampered(feats, decision, _mad_log_norm_inflated)
    assert forged.outliers[4] is False  # the decision the forgery buys ...
    assert forged.ok == 0.0  # ... is one the circuit does not vouch for


# ---------------------------------------------------------------------------------------------
# Features, seeds, commitments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [8, 16, 32])
def test_update_features_unit_sketch_and_log_norm_on_the_grid(dim: int) -> None:
    rng = np.random.default_rng(dim)
    seed = rng.bytes(32)
    for _ in range(20):
        u = rng.normal(size=D) * float(rng.uniform(1e-3, 1e3))
        f = update_features(u, seed, dim, SCALE)
        assert f.shape == (dim + 1,)
        assert np.array_equal(f * 2**SCALE, np.round(f * 2**SCALE))  # on the 2**-13 grid
        assert abs(float(np.sum(f[:dim] ** 2)) - 1.0) < UNIT_TOL / 4
        assert f[dim] == pytest.approx(math.log(float(np.linalg.norm(u))), abs=GRID / 2)
        # Scale-invariant sketch: the direction part does not move with the norm.
        g = update_features(7.0 * u, seed, dim, SCALE)
        assert np.array_equal(g[:dim], f[:dim])
        assert g[dim] == pytest.approx(f[dim] + math.log(7.0), abs=GRID)


def test_update_features_depends_on_the_seed() -> None:
    u = np.random.default_rng(0).normal(size=D)
    assert not np.array_equal(update_features(u, bytes(32), 16, SCALE), update_features(u, b"\x01" * 32, 16, SCALE))
    assert np.array_equal(update_features(u, bytes(32), 16, SCALE), update_features(u.copy(), bytes(32), 16, SCALE))


@pytest.mark.parametrize(
    "update",
    [np.zeros(D), np.full(D, np.nan), np.r_[np.ones(D - 1), np.inf], np.r_[np.ones(D - 1), -np.inf], np.zeros(0)],
    ids=["zero", "nan", "inf", "-inf", "empty"],
)
def test_update_features_of_zero_or_non_finite_updates_are_zero(update: F64) -> None:
    f = update_features(update, bytes(32), 8, SCALE)
    assert np.array_equal(f, empty_features(8))
    assert f.shape == (9,)


def test_update_features_log_norm_is_clamped() -> None:
    u = np.random.default_rng(1).normal(size=D)
    assert update_features(u * 1e-20, bytes(32), 8, SCALE)[8] == -30.0
    assert update_features(u * 1e20, bytes(32), 8, SCALE)[8] == 30.0


def test_quantize_rounds_to_the_grid() -> None:
    values = [0.0, GRID * 0.49, GRID * 0.51, -GRID * 1.51, 1.0]
    assert np.array_equal(quantize(values, SCALE), [0.0, 0.0, GRID, -2 * GRID, 1.0])


def test_feature_seed_is_deterministic_and_binds_every_argument() -> None:
    args: tuple[int, str, int, int, str] = (31337, MARKET, 5, 2, "bafy-model")
    seed = feature_seed(*args)
    assert len(seed) == 32
    assert feature_seed(*args) == seed
    variants = [
        (1, MARKET, 5, 2, "bafy-model"),
        (31337, "0x" + "11" * 20, 5, 2, "bafy-model"),
        (31337, MARKET, 6, 2, "bafy-model"),
        (31337, MARKET, 5, 3, "bafy-model"),
        (31337, MARKET, 5, 2, "bafy-model2"),
    ]
    seeds = {feature_seed(*v) for v in variants}
    assert len(seeds) == len(variants) and seed not in seeds


# The BN254 scalar field r (ezkl's curve), written out independently: the order of the G1 group.
BN254_R = 0x30644E72E131A029B85045B68181585D2833E84879B9709143E1F593F0000001


def test_field_encoding_matches_ezkl() -> None:
    """Negative fixed-point values are ``r - |v|`` exactly as ezkl encodes them (posted scores can be negative)."""
    import ezkl

    assert BN254_MODULUS == BN254_R
    for value in (0, 1, -1, 819, -819, 2**20, -(2**20)):
        felt = felt_to_int(ezkl.float_to_felt(value * GRID, SCALE, ezkl.PyInputType.F64))
        assert felt == int_to_felt(value)
        assert signed(felt) == value
    with pytest.raises(ValueError):
        int_to_felt(BN254_MODULUS)


def test_feature_commitment_deterministic_and_distinct() -> None:
    rng = np.random.default_rng(3)
    feats = features_of(honest_updates(rng, 3, noise=0.3), rng.bytes(32), 8)
    c = [feature_commitment(f) for f in feats]
    assert all(len(x) == 32 and int.from_bytes(x, "big") < BN254_MODULUS for x in c)
    assert [feature_commitment(f.copy()) for f in feats] == c
    assert len(set(c)) == 3
    # One grid step in one coordinate changes it; so does moving a value between coordinates.
    bumped = feats[0].copy()
    bumped[3] += GRID
    assert feature_commitment(bumped) != c[0]
    swapped = feats[0].copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert feature_commitment(swapped) != c[0]
    empty = feature_commitment(empty_features(8))
    assert empty not in c and empty == feature_commitment(np.zeros(9))
