"""Coalition utilities for contribution scoring (pure, no I/O).

The utility of a coalition ``S`` of a round's accepted updates is the validation metric of the model
obtained by applying the aggregate of ``S``'s updates to the current global model; nothing is
retrained (RESEARCH.md §1.6, §3.1). The empty coalition is the current global model itself.

Every estimator asks for the same coalitions many times, so utilities go through
:class:`CachedUtility`, which memoises them and counts distinct evaluations: that count is the cost
the Shapley benchmark reports.

Coalitions reach user callbacks as sorted tuples of player indices, and :func:`coalition_mean`
accumulates in that order with element-wise float64 operations only (no BLAS reductions), so a
coalition's aggregate, and with it every score, is the same bit for bit on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

P = TypeVar("P")

Coalition = tuple[int, ...]
"""Player indices of a coalition, sorted ascending, without repeats."""

Vector = NDArray[np.float64]


class CachedUtility:
    """Memoised coalition utility that counts distinct evaluations.

    Parameters
    ----------
    fn
        ``fn(coalition) -> float`` for a sorted tuple of player indices.
    n_players
        Number of players; coalitions may only hold indices in ``range(n_players)``.
    """

    def __init__(self, fn: Callable[[Coalition], float], n_players: int) -> None:
        if n_players < 0:
            raise ValueError(f"n_players must be >= 0, got {n_players}")
        self._fn = fn
        self.n_players = n_players
        self._cache: dict[int, float] = {}

    @property
    def evaluations(self) -> int:
        """Distinct coalitions evaluated so far (cache misses)."""
        return len(self._cache)

    @property
    def full_mask(self) -> int:
        """Bit mask of the grand coalition."""
        return (1 << self.n_players) - 1

    def mask_of(self, coalition: Iterable[int]) -> int:
        """Bit mask of a coalition (bit ``i`` set when player ``i`` is in it)."""
        mask = 0
        for i in coalition:
            if not 0 <= i < self.n_players:
                raise ValueError(f"player {i} out of range for {self.n_players} players")
            mask |= 1 << int(i)
        return mask

    def members(self, mask: int) -> Coalition:
        """Sorted player indices of a bit mask."""
        return tuple(i for i in range(self.n_players) if mask >> i & 1)

    def is_cached(self, mask: int) -> bool:
        """Whether the coalition with this mask was already evaluated."""
        return mask in self._cache

    def of_mask(self, mask: int) -> float:
        """Utility of the coalition given by a bit mask."""
        if not 0 <= mask <= self.full_mask:
            raise ValueError(f"mask {mask:#x} out of range for {self.n_players} players")
        hit = self._cache.get(mask)
        if hit is not None:
            return hit
        value = float(self._fn(self.members(mask)))
        if not np.isfinite(value):
            raise ValueError(f"utility of coalition {self.members(mask)} is not finite: {value}")
        self._cache[mask] = value
        return value

    def __call__(self, coalition: Iterable[int]) -> float:
        """Utility of a coalition given as player indices (any order, no repeats)."""
        players = list(coalition)
        if len(set(players)) != len(players):
            raise ValueError(f"coalition has repeated players: {players}")
        return self.of_mask(self.mask_of(players))


def coalition_mean(updates: Sequence[Vector], weights: Sequence[float] | None = None) -> Callable[[Coalition], Vector]:
    """The aggregation rule restricted to a coalition: weighted mean with renormalised weights.

    Parameters
    ----------
    updates
        One flat float64 update (model delta) per player, all the same shape.
    weights
        Aggregation weights (non-negative, e.g. sample counts); ``None`` for the plain mean.

    Returns
    -------
    Callable
        ``aggregate(coalition) -> delta``: ``sum(w_i * u_i) / sum(w_i)`` over the coalition, zeros for
        the empty coalition (or a coalition whose weights are all zero).
    """
    if not updates:
        raise ValueError("need at least one update")
    stacked = [np.asarray(u, dtype=np.float64) for u in updates]
    shape = stacked[0].shape
    if any(u.shape != shape for u in stacked):
        raise ValueError("all updates must have the same shape")
    w = [1.0] * len(stacked) if weights is None else [float(x) for x in weights]
    if len(w) != len(stacked):
        raise ValueError(f"{len(stacked)} updates but {len(w)} weights")
    if any(not np.isfinite(x) or x < 0 for x in w):
        raise ValueError("weights must be finite and non-negative")

    def aggregate(coalition: Coalition) -> Vector:
        acc = np.zeros(shape, dtype=np.float64)
        total = 0.0
        for i in coalition:  # fixed (sorted) order: float sums are order-dependent
            if w[i] == 0.0:
                continue
            acc += w[i] * stacked[i]
            total += w[i]
        return acc if total == 0.0 else acc / total

    return aggregate


def make_utility(
    aggregate_fn: Callable[[Coalition], P], evaluate_fn: Callable[[P], float], n_players: int
) -> CachedUtility:
    """Generic cached utility: ``U(S) = evaluate_fn(aggregate_fn(S))``.

    Parameters
    ----------
    aggregate_fn
        Model parameters for a coalition; ``aggregate_fn(())`` must return the current global model.
    evaluate_fn
        Validation metric of a model (higher is better, e.g. accuracy or negative loss).
    n_players
        Number of players (accepted updates).
    """
    return CachedUtility(lambda coalition: evaluate_fn(aggregate_fn(coalition)), n_players)


def delta_utility(
    global_params: Vector,
    updates: Sequence[Vector],
    evaluate_fn: Callable[[Vector], float],
    weights: Sequence[float] | None = None,
) -> CachedUtility:
    """Cached utility of "global model + coalition aggregate" for flat parameter vectors.

    Parameters
    ----------
    global_params
        Current global model as a flat float64 vector (the empty coalition's model).
    updates
        One model delta per player (``local - global``), same shape as ``global_params``.
    evaluate_fn
        Validation metric of a parameter vector (higher is better).
    weights
        Aggregation weights, renormalised within each coalition; ``None`` for the plain mean.

    Returns
    -------
    CachedUtility
        ``U(S) = evaluate_fn(global_params + coalition_mean(updates, weights)(S))``.
    """
    base = np.asarray(global_params, dtype=np.float64)
    mean = coalition_mean(updates, weights)
    if mean(()).shape != base.shape:
        raise ValueError("updates and global_params must have the same shape")
    return make_utility(lambda coalition: base + mean(coalition), evaluate_fn, len(updates))
