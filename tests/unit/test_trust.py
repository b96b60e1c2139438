"""The ``trust`` round decision (issue 12): attack rejection under non-IID data, replication robustness, pay rule."""

from __future__ import annotations

import hashlib
from functools import cache

import numpy as np
import pytest
from numpy.typing import NDArray

from aggregator.round import RoundConfig, RoundDecision, RoundSeeds, decide_round, gain_noise_floor
from aggregator.trust import TrustConfig, trust_aggregate
from pocfl.ml import dirichlet_partition, initial_vector, load_digits_split, local_train
from pocfl.ml.training import sample_losses
from pocfl.payouts import allocate
from pocfl.rounds.hyperparams import HyperParams
from pocfl.testing.attacks import flip_labels

HYPER = HyperParams(round=0, learning_rate=0.1, local_epochs=2, batch_size=16)
TRUST = RoundConfig(rule="trust")
BUDGET = 10**18
Round = tuple[NDArray[np.float32], list[NDArray[np.float32]], tuple[NDArray[np.float32], NDArray[np.int64]]]


@cache
def digits_round(n: int, attackers: tuple[int, ...] = (), label_flip: bool = False, seed: int = 3) -> Round:
    """One round on digits, Dirichlet 0.5 (label-skewed) over ``n`` trainers, 180 owner validation samples.

    The global model is warmed up for two FedAvg rounds first, so updates are not all the first step's.
    """
    x, y, _, _ = load_digits_split(seed)
    perm = np.random.default_rng(seed).permutation(len(y))
    own, pool = perm[:180], np.sort(perm[180:])
    parts = [pool[p] for p in dirichlet_partition(y[pool], n, 0.5, seed, min_size=8)]
    w = initial_vector(seed)

    def train(i: int, r: int) -> NDArray[np.float32]:
        yi = flip_labels(y[parts[i]]) if label_flip and i in attackers else y[parts[i]]
        return local_train(w, x[parts[i]], yi, epochs=2, lr=0.1, batch_size=16, seed=100 * r + i)

    for r in range(2):
        w = (w + np.mean([train(i, r) for i in range(n) if i not in attackers], axis=0)).astype(np.float32)
    return w, [train(i, 2) for i in range(n)], (x[own], y[own])


def seeds(tag: str) -> RoundSeeds:
    s = hashlib.sha256(tag.encode()).digest()
    return RoundSeeds(shapley=s, sketch=hashlib.sha256(s).digest())


def decide(w: NDArray[np.float32], updates: list[NDArray[np.float32]], val: tuple, **kw: object) -> RoundDecision:
    config = kw.pop("config", TRUST)
    return decide_round(w, updates, validation=val, seeds=seeds("t"), hyperparams=HYPER, config=config)  # type: ignore[arg-type]


def test_sign_flip_rejected_under_non_iid() -> None:
    attackers = (1, 4, 7, 10)
    w, honest, val = digits_round(12, attackers)
    sent = [-u if i in attackers else u for i, u in enumerate(honest)]
    d = decide(w, sent, val)
    assert all(d.outliers[i] for i in attackers)
    assert sum(d.outliers) == len(attackers)  # no honest trainer flagged
    assert sum(d.scores[i] for i in attackers) == 0
    assert d.accuracy > d.accuracy_before


def test_label_flip_kept_out_of_the_model_under_non_iid() -> None:
    attackers = (0, 3, 6, 9)
    w, sent, val = digits_round(12, attackers, label_flip=True)
    d = decide(w, sent, val)
    # label flippers' updates are near-orthogonal to the owner's reference: flagged or weighted down
    assert sum(d.weights[i] for i in attackers) <= 0.10
    pay = allocate(BUDGET, d.scores, d.outliers).shares
    assert sum(pay[i] for i in attackers) <= 0.02 * BUDGET
    assert sum(d.outliers[i] for i in range(12) if i not in attackers) <= 1


@pytest.mark.parametrize("noise", [0.01, 0.1, 0.3, 0.5])
def test_copy_adds_no_pay_and_no_weight_in_either_order(noise: float) -> None:
    w, updates, val = digits_round(6)
    alone = decide(w, updates, val)
    victim = int(np.argmax(allocate(BUDGET, alone.scores, alone.outliers).shares))
    z = np.random.default_rng(7).normal(size=updates[victim].shape)
    copy = (updates[victim] + z / np.linalg.norm(z) * noise * np.linalg.norm(updates[victim])).astype(np.float32)
    before = allocate(BUDGET, alone.scores, alone.outliers).shares[victim]
    after = decide(w, [*updates, copy], val)
    pay = allocate(BUDGET, after.scores, after.outliers).shares
    assert pay[victim] + pay[-1] <= 1.05 * before
    assert after.weights[victim] + after.weights[-1] == pytest.approx(alone.weights[victim])
    front = decide(w, [copy, *updates], val)  # the copy front-runs the original
    first = allocate(BUDGET, front.scores, front.outliers).shares
    assert first[victim + 1] >= 0.45 * before  # the original keeps at least about half
    assert first[victim + 1] + first[0] <= 1.05 * before


def test_identical_colluders_weigh_as_one() -> None:
    w, updates, val = digits_round(6)
    twin = updates[2].copy()
    d = decide(w, [*updates, twin, twin.copy()], val)
    assert d.weights[6] == d.weights[7] == 0.0 or d.weights[2] == 0.0
    assert d.weights[2] + d.weights[6] + d.weights[7] == pytest.approx(decide(w, updates, val).weights[2])


def test_trust_aggregate_is_order_free_and_f_free() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=50)
    ups = np.stack([ref + rng.normal(scale=3.0, size=50) for _ in range(8)] + [-ref * 5])
    a = trust_aggregate(ups, ref, TrustConfig())
    perm = rng.permutation(9)
    b = trust_aggregate(ups[perm], ref, TrustConfig())
    assert np.allclose(a.aggregate, b.aggregate)
    assert tuple(a.outliers[i] for i in perm) == b.outliers
    assert a.outliers[8] and not any(a.outliers[:8])
    # a well-aligned update ten times the median norm is a norm anomaly, whatever its direction
    huge = trust_aggregate(np.vstack([ups[:8], 10 * ups[0] / a.norm_ratios[0]]), ref, TrustConfig())
    assert huge.outliers[8] and huge.trust[8] > 0 and huge.norm_ratios[8] > 4


def test_no_pay_for_a_gain_inside_the_noise_exact_to_the_wei() -> None:
    w, updates, val = digits_round(6)
    paid = decide(w, updates, val, config=RoundConfig(rule="trust", noise_z=0.0))
    assert paid.gain > 0 and "scored" in paid.statuses
    alloc = allocate(BUDGET, paid.scores, paid.outliers)
    assert alloc.credited + alloc.unallocated == BUDGET and alloc.unallocated < len(updates)
    # the same round under a floor it cannot clear credits nobody: the whole budget stays for the owner
    unpaid = decide(w, updates, val, config=RoundConfig(rule="trust", noise_z=1e9))
    assert unpaid.gain == paid.gain and unpaid.noise_floor > unpaid.gain
    assert set(unpaid.scores) == {0} and "unpaid" in unpaid.statuses
    assert allocate(BUDGET, unpaid.scores, unpaid.outliers).unallocated == BUDGET
    # the floor is the paired standard error of the per-sample loss change
    before, _ = sample_losses(w, *val)
    after, _ = sample_losses(unpaid.new_global, *val)
    diff = after - before
    expected = np.std(diff, ddof=1) / np.sqrt(diff.size)
    assert gain_noise_floor(w, unpaid.new_global, val, TRUST) == pytest.approx(expected, rel=1e-12)


def test_skewed_honest_update_is_kept_at_the_floor_weight_and_a_flip_is_not() -> None:
    """An update slightly against the reference (a trainer holding other classes) keeps a floor weight; one
    clearly against it (a sign flip: below -0.5 median trusts) is an outlier; weights are capped at the median."""
    rng = np.random.default_rng(0)
    d = 200
    ref = rng.normal(size=d)
    ref /= np.linalg.norm(ref)

    def with_cosine(c: float) -> NDArray[np.float64]:
        noise = rng.normal(size=d)
        noise -= (noise @ ref) * ref
        return c * ref + np.sqrt(1 - c * c) * noise / np.linalg.norm(noise)

    honest = [with_cosine(c) for c in (0.3, 0.4, 0.5, 0.6, 0.9)]
    skewed, flipped = with_cosine(-0.05), -honest[2]
    res = trust_aggregate(np.stack([*honest, skewed, flipped]), ref, TrustConfig())
    assert res.outliers == (False,) * 6 + (True,)
    med = float(np.median(np.maximum(res.trust, 0.0)))  # over every cluster, the outlier's as 0
    w = np.asarray(res.weights) / res.weights[0] * res.trust[0]  # undo the normalisation: w[0] = trust 0.3
    assert med == pytest.approx(0.4)
    assert w[5] == pytest.approx(0.1 * med)  # floor
    assert w[3] == pytest.approx(med) and w[4] == pytest.approx(med)  # capped
    assert w[6] == 0.0
