"""Baseline aggregation rules, delegated to Flower's own implementations (``flwr.server.strategy.aggregate``).

Flower works on ``list[tuple[NDArrays, int]]`` (per-client layer lists and sample counts); here every
update is one flat vector, so each client becomes ``([vector], num_examples)``. All robust rules need
the number of attackers ``f`` in advance: that is the assumption the Flag Aggregator drops.

===============  ==========================================================  ==========================
name             rule                                                        Flower function
===============  ==========================================================  ==========================
``fedavg``       mean weighted by sample counts                              ``aggregate``
``krum``         the update with the smallest sum of squared distances to    ``aggregate_krum``
                 its ``K - f - 2`` nearest neighbours (Blanchard et al. 2017)
``multi_krum``   the sample-weighted mean of the ``K - f`` best Krum scores   ``aggregate_krum``
``bulyan``       Krum selects ``K - 2f``; coordinate-wise mean of the         ``aggregate_bulyan``
                 ``K - 4f`` values closest to the median (needs K >= 4f + 3)
``median``       coordinate-wise median                                      ``aggregate_median``
``trimmed_mean`` coordinate-wise mean without the ``f`` lowest and highest   ``aggregate_trimmed_avg``
===============  ==========================================================  ==========================
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Final

import numpy as np
from numpy.typing import NDArray

with warnings.catch_warnings():
    # flwr pulls in typer 0.20, which touches click APIs that click 8.5 deprecates; nothing else is hidden.
    warnings.filterwarnings("ignore", message=r"'click\.", category=DeprecationWarning)
    from flwr.server.strategy import aggregate as flwr_agg

BASELINES: Final = ("fedavg", "krum", "multi_krum", "bulyan", "median", "trimmed_mean")


def bulyan_max_f(k: int) -> int:
    """Largest ``f`` Bulyan accepts with ``k`` clients (``k >= 4f + 3``); negative if none."""
    return (k - 3) // 4


def trim_proportion(k: int, f: int) -> float:
    """Flower's ``proportiontocut`` that trims exactly ``f`` values from each end of ``k``.

    Flower cuts ``int(proportion * k)`` values per side; the midpoint of the admissible interval keeps
    that exact under float rounding.
    """
    if not 0 <= 2 * f < k:
        raise ValueError(f"trimmed mean needs 0 <= 2f < K, got f={f}, K={k}")
    upper = min((f + 1) / k, 0.5)
    return (f / k + upper) / 2


def _results(
    updates: NDArray[np.floating], num_examples: NDArray[np.integer]
) -> list[tuple[list[NDArray[np.float64]], int]]:
    """Flower's input layout: one single-layer client per row."""
    return [([np.array(row, dtype=np.float64)], int(n)) for row, n in zip(updates, num_examples, strict=True)]


def aggregate(
    name: str,
    updates: NDArray[np.floating],
    num_examples: Sequence[int] | NDArray[np.integer] | None = None,
    f: int = 0,
    *,
    to_keep: int | None = None,
) -> NDArray[np.float64]:
    """Aggregate a round's updates with a baseline rule.

    Parameters
    ----------
    name
        One of :data:`BASELINES`.
    updates
        ``(K, d)`` matrix, one update per row.
    num_examples
        ``(K,)`` positive sample counts; used by ``fedavg`` and by ``multi_krum``'s final mean
        (Flower's behaviour), ignored by the others. ``None`` means equal weights.
    f
        Number of attackers the rule must tolerate (Flower's ``num_malicious_clients``).
    to_keep
        Multi-Krum only: how many updates to average; default ``K - f``.

    Returns
    -------
    numpy.ndarray
        The aggregate, float64 ``(d,)``.

    Raises
    ------
    ValueError
        Unknown name, a malformed matrix, or an ``f`` the rule cannot tolerate (e.g. Bulyan with
        ``K < 4f + 3``).
    """
    mat = np.asarray(updates)
    if mat.ndim != 2 or mat.shape[0] == 0:
        raise ValueError(f"updates must be a non-empty (K, d) matrix, got shape {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise ValueError("updates hold NaN or infinity")
    k = mat.shape[0]
    counts = np.ones(k, dtype=np.int64) if num_examples is None else np.asarray(num_examples, dtype=np.int64)
    if counts.shape != (k,) or np.any(counts <= 0):
        raise ValueError(f"num_examples must be {k} positive counts, got {counts.tolist()}")
    if not 0 <= f < k:
        raise ValueError(f"f must lie in 0..{k - 1}, got {f}")
    results = _results(mat, counts)

    if name == "fedavg":
        out = flwr_agg.aggregate(results)
    elif name == "krum":
        out = flwr_agg.aggregate_krum(results, num_malicious=f, to_keep=0)
    elif name == "multi_krum":
        keep = k - f if to_keep is None else to_keep
        if not 1 <= keep <= k:
            raise ValueError(f"to_keep must lie in 1..{k}, got {keep}")
        out = flwr_agg.aggregate_krum(results, num_malicious=f, to_keep=keep)
    elif name == "bulyan":
        if f > bulyan_max_f(k):
            raise ValueError(f"Bulyan needs K >= 4f + 3: f={f} is too many for K={k} (at most {bulyan_max_f(k)})")
        out = flwr_agg.aggregate_bulyan(results, num_malicious=f, aggregation_rule=flwr_agg.aggregate_krum, to_keep=0)
    elif name == "median":
        out = flwr_agg.aggregate_median(results)
    elif name == "trimmed_mean":
        out = flwr_agg.aggregate_trimmed_avg(results, proportiontocut=trim_proportion(k, f))
    else:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return np.asarray(out[0], dtype=np.float64).reshape(mat.shape[1])
