"""Payout math, exactly as the marketplace contract does it (pure, no I/O).

A round's budget is ``budget // num_rounds``. It is split pro rata over the weights
``w_i = max(score_i, 0)`` of non-outliers (outliers weigh 0): ``share_i = round_budget * w_i // sum(w)``,
rounding down. If every weight is zero nobody is credited. What is not credited (rounding dust, a round
where nobody earns, a failed round, the ``budget % num_rounds`` remainder) stays in escrow and returns to
the owner when the project ends. See ``docs/payouts.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pocfl.errors import PocflError

INT128_MIN = -(2**127)
INT128_MAX = 2**127 - 1
UINT128_MAX = 2**128 - 1


class PayoutInputError(PocflError, ValueError):
    """Inputs the contract would refuse: mismatched lengths or values out of range."""


@dataclass(frozen=True)
class Allocation:
    """A round's credits.

    Attributes
    ----------
    shares
        Wei credited to each submission, in submission order.
    credited
        Sum of ``shares``.
    unallocated
        ``round_budget - credited``: stays in escrow for the owner.
    """

    shares: tuple[int, ...]
    credited: int
    unallocated: int


def round_budget(budget: int, num_rounds: int) -> int:
    """Budget of each round: ``budget // num_rounds`` (the remainder is never allocated)."""
    if num_rounds <= 0:
        raise PayoutInputError(f"num_rounds must be positive, got {num_rounds}")
    if not 0 < budget <= UINT128_MAX:
        raise PayoutInputError(f"budget must be in (0, 2**128), got {budget}")
    return budget // num_rounds


def weight(score: int, outlier: bool) -> int:
    """Payout weight of one submission: 0 for outliers, else ``max(score, 0)``."""
    return 0 if outlier or score <= 0 else score


def allocate(budget_of_round: int, scores: Sequence[int], outliers: Sequence[bool]) -> Allocation:
    """Split ``budget_of_round`` wei over the submissions exactly as ``PocMarketplace.postRound`` does.

    Parameters
    ----------
    budget_of_round
        The round's budget in wei (see :func:`round_budget`).
    scores
        One signed integer score per submission (int128 range, any fixed-point scale).
    outliers
        One flag per submission.

    Returns
    -------
    Allocation
        Integer wei shares in submission order, their sum, and the unallocated rest.
    """
    if len(scores) != len(outliers):
        raise PayoutInputError(f"{len(scores)} scores but {len(outliers)} outlier flags")
    if not 0 <= budget_of_round <= UINT128_MAX:
        raise PayoutInputError(f"round budget out of range: {budget_of_round}")
    for i, s in enumerate(scores):
        if not INT128_MIN <= s <= INT128_MAX:
            raise PayoutInputError(f"score {i} out of int128 range: {s}")
    weights = [weight(s, o) for s, o in zip(scores, outliers, strict=True)]
    total = sum(weights)
    shares = tuple(0 if total == 0 else budget_of_round * w // total for w in weights)
    credited = sum(shares)
    return Allocation(shares=shares, credited=credited, unallocated=budget_of_round - credited)
