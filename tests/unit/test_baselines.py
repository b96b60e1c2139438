"""Baseline rules: hand-checked results on tiny inputs, and equality with Flower's own functions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.baselines import BASELINES, aggregate, bulyan_max_f, trim_proportion

pytestmark = pytest.mark.unit

# Four honest points on a line and one far outlier.
TINY = np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0], [4.0, 5.0], [100.0, -100.0]])
COUNTS = np.array([1, 1, 1, 1, 1])


def test_fedavg_weights_by_sample_counts() -> None:
    u = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert np.allclose(aggregate("fedavg", u, [3, 1]), [0.75, 0.25])
    assert np.allclose(aggregate("fedavg", TINY, COUNTS), TINY.mean(axis=0))


def test_krum_hand_checked() -> None:
    # f=1, K=5: each score sums the K-f-2 = 2 smallest squared distances to others.
    # [2,3]: 2 + 2 = 4 and [3,4]: 2 + 2 = 4 tie at the minimum; argmin takes the first.
    assert np.array_equal(aggregate("krum", TINY, COUNTS, f=1), [2.0, 3.0])


def test_multi_krum_hand_checked() -> None:
    # keeps K - f = 4 lowest scores: the four honest points, averaged with their counts
    assert np.allclose(aggregate("multi_krum", TINY, COUNTS, f=1), [2.5, 3.5])
    assert np.allclose(
        aggregate("multi_krum", TINY, [1, 1, 1, 5, 1], f=1), [(1 + 2 + 3 + 20) / 8, (2 + 3 + 4 + 25) / 8]
    )


def test_median_and_trimmed_mean_hand_checked() -> None:
    assert np.array_equal(aggregate("median", TINY, COUNTS), [3.0, 3.0])
    # trims 1 from each end per coordinate: x {2,3,4} -> 3; y {2,3,4} -> 3
    assert np.allclose(aggregate("trimmed_mean", TINY, COUNTS, f=1), [3.0, 3.0])
    assert np.allclose(aggregate("trimmed_mean", TINY, COUNTS, f=2), [3.0, 3.0])
    assert np.allclose(aggregate("trimmed_mean", TINY, COUNTS, f=0), TINY.mean(axis=0))


def test_bulyan_hand_checked() -> None:
    # K=7, f=1: Krum picks theta = 5 updates (the outliers go), then per coordinate
    # averages the beta = 3 values closest to the median of those 5.
    u = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [50.0], [-60.0]])
    assert np.allclose(aggregate("bulyan", u, None, f=1), [2.0])
    with pytest.raises(ValueError, match="4f \\+ 3"):
        aggregate("bulyan", u, None, f=2)
    assert bulyan_max_f(15) == 3 and bulyan_max_f(6) == 0


@pytest.mark.parametrize(("k", "f"), [(5, 0), (5, 1), (5, 2), (15, 4), (15, 7), (3, 1), (100, 49)])
def test_trim_proportion_cuts_exactly_f(k: int, f: int) -> None:
    p = trim_proportion(k, f)
    assert 0 <= p < 0.5 and int(p * k) == f


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown baseline"):
        aggregate("geomed", TINY, COUNTS)
    with pytest.raises(ValueError, match="f must lie"):
        aggregate("krum", TINY, COUNTS, f=5)
    with pytest.raises(ValueError, match="positive counts"):
        aggregate("fedavg", TINY, [1, 1, 1, 1, 0])
    with pytest.raises(ValueError, match="NaN"):
        aggregate("median", np.array([[np.nan]]))
    with pytest.raises(ValueError, match="2f < K"):
        aggregate("trimmed_mean", TINY, COUNTS, f=3)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(7, 16), d=st.integers(1, 6))
def test_matches_flower_strategies_directly(seed: int, k: int, d: int) -> None:
    from flwr.server.strategy import aggregate as fa

    rng = np.random.default_rng(seed)
    u = rng.normal(size=(k, d))
    counts = rng.integers(1, 50, size=k)
    f = bulyan_max_f(k)
    res = [([row.copy()], int(n)) for row, n in zip(u, counts, strict=True)]
    expected = {
        "fedavg": fa.aggregate(res),
        "krum": fa.aggregate_krum(res, f, 0),
        "multi_krum": fa.aggregate_krum(res, f, k - f),
        "bulyan": fa.aggregate_bulyan(list(res), f, fa.aggregate_krum, to_keep=0),
        "median": fa.aggregate_median(res),
        "trimmed_mean": fa.aggregate_trimmed_avg(res, f / k + 1e-9),
    }
    for name in BASELINES:
        assert np.allclose(aggregate(name, u, counts, f), expected[name][0]), name
