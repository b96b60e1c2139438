"""Properties of the pure payout math (pocfl.payouts), which mirrors PocMarketplace._credit."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocfl.payouts import (
    INT128_MAX,
    INT128_MIN,
    UINT128_MAX,
    Allocation,
    PayoutInputError,
    allocate,
    round_budget,
    weight,
)

pytestmark = pytest.mark.unit

SCORES = st.one_of(st.integers(INT128_MIN, INT128_MAX), st.integers(-50, 50))
BUDGETS = st.one_of(st.integers(0, UINT128_MAX), st.integers(0, 10_000))


@st.composite
def rounds(draw: st.DrawFn, min_size: int = 0) -> tuple[int, list[int], list[bool]]:
    n = draw(st.integers(min_size, 40))
    scores = draw(st.lists(SCORES, min_size=n, max_size=n))
    outliers = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return draw(BUDGETS), scores, outliers


def test_worked_example() -> None:
    # 100 wei over weights 3, 1, 0 (score 0), 0 (negative), 0 (outlier): 75 + 25, nothing left.
    assert allocate(100, [3, 1, 0, -4, 9], [False, False, False, False, True]) == Allocation(
        shares=(75, 25, 0, 0, 0), credited=100, unallocated=0
    )
    # Thirds round down; the dust wei stays unallocated.
    assert allocate(100, [1, 1, 1], [False] * 3) == Allocation((33, 33, 33), 99, 1)


@pytest.mark.parametrize(
    ("scores", "outliers"),
    [([], []), ([0, -1, INT128_MIN], [False] * 3), ([5, 6], [True, True]), ([-5, 6], [False, True])],
)
def test_nobody_earns(scores: list[int], outliers: list[bool]) -> None:
    result = allocate(10**18, scores, outliers)
    assert result.shares == (0,) * len(scores)
    assert (result.credited, result.unallocated) == (0, 10**18)


@settings(max_examples=300, deadline=None)
@given(rounds())
def test_conservation_and_dust_bound(case: tuple[int, list[int], list[bool]]) -> None:
    budget, scores, outliers = case
    result = allocate(budget, scores, outliers)
    positive = sum(1 for s, o in zip(scores, outliers, strict=True) if not o and s > 0)
    assert len(result.shares) == len(scores)
    assert all(share >= 0 for share in result.shares)
    assert result.credited == sum(result.shares) <= budget
    assert result.credited + result.unallocated == budget
    # Each positive-weight share loses less than one wei to rounding; nobody else takes any.
    if positive:
        assert result.unallocated < positive
    else:
        assert result.unallocated == budget


@settings(max_examples=300, deadline=None)
@given(rounds(min_size=1))
def test_outliers_and_non_positive_get_nothing(case: tuple[int, list[int], list[bool]]) -> None:
    budget, scores, outliers = case
    result = allocate(budget, scores, outliers)
    for share, s, o in zip(result.shares, scores, outliers, strict=True):
        if o or s <= 0:
            assert share == 0
    # Flagging a paid submission as an outlier zeroes its share and never lowers anyone else's.
    if not outliers[0] and scores[0] > 0:
        flagged = allocate(budget, scores, [True, *outliers[1:]])
        assert flagged.shares[0] == 0
        assert all(b >= a for a, b in zip(result.shares[1:], flagged.shares[1:], strict=True))


@settings(max_examples=300, deadline=None)
@given(rounds(min_size=1))
def test_proportional_and_monotone(case: tuple[int, list[int], list[bool]]) -> None:
    budget, scores, outliers = case
    result = allocate(budget, scores, outliers)
    weights = [weight(s, o) for s, o in zip(scores, outliers, strict=True)]
    total = sum(weights)
    for share, w in zip(result.shares, weights, strict=True):
        if total:
            # share = floor(budget * w / total): within one wei of the exact pro-rata amount.
            exact = Fraction(budget * w, total)
            assert share <= exact < share + 1
    # A higher weight never earns less.
    ranked = sorted(zip(weights, result.shares, strict=True))
    assert [share for _, share in ranked] == sorted(share for _, share in ranked)


@settings(max_examples=200, deadline=None)
@given(rounds(min_size=1), st.integers(2, 1000))
def test_scale_invariant(case: tuple[int, list[int], list[bool]], factor: int) -> None:
    # Scores are fixed point "at any scale": multiplying them all by k changes nothing.
    budget, scores, outliers = case
    small = [s // factor // 2 for s in scores]  # leave room so the scaled scores stay in int128
    scaled = [s * factor for s in small]
    assert allocate(budget, small, outliers).shares == allocate(budget, scaled, outliers).shares


@settings(deadline=None)
@given(st.integers(1, UINT128_MAX), st.integers(1, 2**32 - 1))
def test_round_budget(budget: int, num_rounds: int) -> None:
    per_round = round_budget(budget, num_rounds)
    assert per_round == budget // num_rounds
    assert 0 <= budget - per_round * num_rounds < num_rounds


@pytest.mark.parametrize(
    ("budget", "num_rounds", "message"),
    [
        (10, 0, "num_rounds"),
        (10, -1, "num_rounds"),
        (0, 1, "budget"),
        (-1, 1, "budget"),
        (UINT128_MAX + 1, 1, "budget"),
    ],
)
def test_round_budget_rejects(budget: int, num_rounds: int, message: str) -> None:
    with pytest.raises(PayoutInputError, match=message):
        round_budget(budget, num_rounds)


@pytest.mark.parametrize(
    ("budget", "scores", "outliers", "message"),
    [
        (1, [1, 2], [False], "2 scores but 1 outlier flags"),
        (1, [1], [False, True], "1 scores but 2 outlier flags"),
        (-1, [1], [False], "round budget out of range"),
        (UINT128_MAX + 1, [1], [False], "round budget out of range"),
        (1, [1, INT128_MAX + 1], [False, False], "score 1 out of int128 range"),
        (1, [INT128_MIN - 1], [True], "score 0 out of int128 range"),
    ],
)
def test_allocate_rejects(budget: int, scores: list[int], outliers: list[bool], message: str) -> None:
    with pytest.raises(PayoutInputError, match=message):
        allocate(budget, scores, outliers)


def test_extremes_fit() -> None:
    # The contract's worst case: the largest round budget and 512 maximal scores.
    result = allocate(UINT128_MAX, [INT128_MAX] * 512, [False] * 512)
    assert result.shares == (UINT128_MAX // 512,) * 512
    assert result.unallocated == UINT128_MAX % 512
