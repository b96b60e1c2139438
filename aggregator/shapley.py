"""Contribution scores: Shapley estimators, copycat/free-rider screening, integer scores (pure, no I/O).

Players are a round's accepted updates; ``U(S)`` is a :class:`~aggregator.utility.CachedUtility`
(validation metric of "global model + aggregate of S"). Estimators (RESEARCH.md §3):

- :func:`exact_shapley`: all ``2**N`` coalitions, ``N <= 12``;
- :func:`permutation_shapley`: Monte-Carlo over uniform random permutations;
- :func:`gtg_shapley`: GTG-Shapley (Liu et al., ACM TIST 2022): guided sampling (the first position
  cycles through every player), within-round truncation, between-round truncation, convergence rule;
- :func:`surrogate_shapley`: exact Shapley of a quadratic surrogate of the aggregation game fitted to
  sampled coalitions (not in the paper; meets the N = 10, 100-evaluation accuracy goal GTG misses);
- :func:`leave_one_out`: ``U(N) - U(N minus i)``;
- :func:`banzhaf_msr`: Banzhaf values (every coalition weighs alike) by maximum sample reuse; exact and
  surrogate also give Banzhaf values with ``ScoringConfig.value = "banzhaf"`` (the ``trust`` rule's choice).

Randomness comes only from a 32-byte seed the aggregator cannot choose (:mod:`aggregator.seeds`), and
every sum runs in a fixed order, so the same seed and utilities give the same scores bit for bit on a
given platform. (The surrogate's least-squares solve goes through LAPACK, and ``evaluate_fn`` itself
usually through BLAS; another CPU or library build may differ in the last bits.)

Paying by Shapley value alone rewards cheap strategies: with plain-mean aggregation a near-zero update
shrinks an overshooting step and can earn a real share (16 % of the round budget in the benchmark at
round 5), and a copy takes a share of its original's value. :func:`screen_updates` removes them from
the game before scoring (docs/benchmarks.md, "Shapley accuracy"):

- **free riders**: an update whose norm is below ``free_rider_rel_norm`` times the median norm of the
  round's non-outlier updates (a zero update, or the current global model sent back) scores 0;
- **stale copies**: an update whose cosine similarity to a public earlier update (``prior_updates``,
  e.g. last round's aggregate delta or last round's updates) reaches ``copy_cosine`` scores 0;
- **copycats**: an update whose cosine similarity to an earlier submission of the same round reaches
  ``copy_cosine`` is a copy; the earliest on-chain submission is the original. Copies score 0 and
  are left out of the game, so the original and everyone else score exactly as if the copy had
  never been submitted: a copycat pair earns what the original alone earns.

:func:`to_int_scores` turns values into the ``int128`` scores ``postRound`` takes: ``SCORE_SCALE``
(``10**9``) per utility unit, exact round-half-even, clamped to ``int128``. The contract pays pro
rata over ``max(score, 0)`` of non-outliers (:func:`pocfl.payouts.allocate`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from aggregator.seeds import generator_from_seed, permutation, uniform_float
from aggregator.utility import CachedUtility, delta_utility
from pocfl.errors import PocflError
from pocfl.payouts import INT128_MAX, INT128_MIN

EXACT_MAX_PLAYERS = 12
"""Largest N :func:`exact_shapley` accepts (``2**12 = 4096`` utility evaluations)."""

SCORE_SCALE = 10**9
"""Integer score units per utility unit (1.0 of accuracy, or 1 nat of validation loss, = 10**9 units)."""

Vector = NDArray[np.float64]
Method = Literal["auto", "exact", "surrogate", "gtg", "permutation", "loo", "msr"]
Value = Literal["shapley", "banzhaf"]


class ShapleyError(PocflError, ValueError):
    """Estimator inputs that cannot be honoured (too many players, budget too small)."""


@dataclass(frozen=True, eq=False)
class ShapleyResult:
    """Contribution estimates of one round.

    Attributes
    ----------
    values
        One float64 value per player, in player order.
    evaluations
        Distinct utility evaluations this call added to the cache.
    permutations
        Complete permutations sampled (0 for exact, surrogate and leave-one-out).
    method
        ``"exact"``, ``"surrogate"``, ``"permutation"``, ``"gtg"``, ``"loo"`` (or ``"none"`` when no
        submission was eligible).
    converged
        False when a sampler stopped on its budget before its convergence rule held.
    """

    values: Vector
    evaluations: int
    permutations: int
    method: str
    converged: bool = True


class _BudgetExhausted(Exception):
    """Internal: the next coalition would exceed ``max_evaluations``."""


class _Meter:
    """Utility access that refuses a new (uncached) coalition once the budget is spent."""

    def __init__(self, utility: CachedUtility, max_evaluations: int | None) -> None:
        if max_evaluations is not None and max_evaluations < 0:
            raise ShapleyError(f"max_evaluations must be >= 0, got {max_evaluations}")
        self.utility = utility
        self.start = utility.evaluations
        self.limit = max_evaluations

    @property
    def used(self) -> int:
        return self.utility.evaluations - self.start

    def __call__(self, mask: int) -> float:
        if self.limit is not None and self.used >= self.limit and not self.utility.is_cached(mask):
            raise _BudgetExhausted
        return self.utility.of_mask(mask)

    def endpoints(self) -> tuple[float, float]:
        """``U(empty)`` and ``U(N)``, which every sampler needs first.

        Raises
        ------
        ShapleyError
            When the budget does not cover them.
        """
        try:
            return self(0), self(self.utility.full_mask)
        except _BudgetExhausted:
            raise ShapleyError(f"max_evaluations={self.limit} cannot cover U(empty) and U(N)") from None


def _coefficients(n: int, value: Value = "shapley") -> Vector:
    """Weight of one coalition ``S`` of each size ``|S| = 0..N-1`` in player ``i``'s semivalue.

    Shapley: ``|S|! (N-|S|-1)! / N!``; Banzhaf: ``1 / 2**(N-1)`` (every coalition of the others alike).
    """
    if value == "banzhaf":
        return np.full(n, 0.5 ** (n - 1), dtype=np.float64)
    return np.array(
        [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)], dtype=np.float64
    )


def _semivalues_of_table(u: Vector, n: int, value: Value = "shapley") -> Vector:
    """Exact Shapley (or Banzhaf) values of a game given as ``u[mask]`` for all ``2**n`` masks.

    Each player's sum is done with :func:`math.fsum` (correctly rounded, so independent of order).
    """
    masks = np.arange(1 << n, dtype=np.int64)
    sizes = np.array([m.bit_count() for m in range(1 << n)], dtype=np.int64)
    coef = _coefficients(n, value)
    values = np.zeros(n, dtype=np.float64)
    for i in range(n):
        without = masks[(masks >> i) & 1 == 0]
        values[i] = math.fsum((coef[sizes[without]] * (u[without | (1 << i)] - u[without])).tolist())
    return values


def exact_shapley(utility: CachedUtility, value: Value = "shapley") -> ShapleyResult:
    """Exact Shapley values from all ``2**N`` coalitions.

    ``phi_i = sum_{S not containing i} |S|! (N-|S|-1)! / N! * (U(S + i) - U(S))``; with
    ``value="banzhaf"`` every coalition weighs ``1 / 2**(N-1)`` instead (:func:`banzhaf_msr`).

    Raises
    ------
    ShapleyError
        If ``N > EXACT_MAX_PLAYERS``.
    """
    n = utility.n_players
    if n > EXACT_MAX_PLAYERS:
        raise ShapleyError(f"exact Shapley needs 2**N evaluations; N={n} > {EXACT_MAX_PLAYERS}, use gtg_shapley")
    start = utility.evaluations
    u = np.array([utility.of_mask(m) for m in range(1 << n)], dtype=np.float64)
    return ShapleyResult(_semivalues_of_table(u, n, value), utility.evaluations - start, 0, "exact")


def leave_one_out(utility: CachedUtility) -> ShapleyResult:
    """Leave-one-out contributions ``U(N) - U(N minus i)`` (N + 1 evaluations).

    This is what the seed paper's FedML code computes (RESEARCH.md §1.6). It is not a Shapley value:
    two redundant players both get about 0.
    """
    n = utility.n_players
    start = utility.evaluations
    full = utility.full_mask
    u_full = utility.of_mask(full)
    values = np.array([u_full - utility.of_mask(full & ~(1 << i)) for i in range(n)], dtype=np.float64)
    return ShapleyResult(values, utility.evaluations - start, 0, "loo")


def _walk(meter: _Meter, order: Sequence[int], u_empty: float, u_full: float, gap: float) -> Vector:
    """Marginal contributions along one permutation.

    Stops (remaining marginals 0) once ``|U(N) - U(prefix)| < gap``, on the heuristic that the players
    still to come then add little (GTG's within-round truncation; ``gap = 0`` never truncates). It
    biases late positions toward 0 and drops up to ``gap`` of efficiency per permutation.
    """
    marginals = np.zeros(meter.utility.n_players, dtype=np.float64)
    prefix, prev = 0, u_empty
    for player in order:
        if abs(u_full - prev) < gap:
            break
        prefix |= 1 << int(player)
        cur = meter(prefix)
        marginals[player] = cur - prev
        prev = cur
    return marginals


def _relative_change(new: Vector, old: Vector) -> float:
    scale = math.fsum(np.abs(new).tolist())
    return math.fsum(np.abs(new - old).tolist()) / scale if scale > 0 else 0.0


def _free_after_full_cache(utility: CachedUtility, k: int) -> int:
    """Loop bound without ``max_permutations``: stop once every coalition is cached (nothing left to buy)."""
    return k if utility.evaluations >= 1 << utility.n_players else k + 1


@dataclass(frozen=True)
class _Sampling:
    """What a permutation sampler starts from: its seeded RNG, the metered utility, ``U(empty)`` and ``U(N)``."""

    rng: np.random.Generator
    meter: _Meter
    u_empty: float
    u_full: float

    @classmethod
    def start(cls, utility: CachedUtility, seed: bytes, max_evaluations: int | None) -> _Sampling | None:
        """The start of a sampler's run; None without players (a negative budget is refused all the same)."""
        rng = generator_from_seed(seed)
        meter = _Meter(utility, max_evaluations)
        if utility.n_players == 0:
            return None
        return cls(rng, meter, *meter.endpoints())


def permutation_shapley(
    utility: CachedUtility,
    seed: bytes,
    *,
    max_permutations: int | None = 1000,
    max_evaluations: int | None = None,
) -> ShapleyResult:
    """Monte-Carlo Shapley over uniform random permutations (no truncation).

    Parameters
    ----------
    utility
        Cached coalition utility.
    seed
        32-byte seed (:func:`aggregator.seeds.shapley_seed`).
    max_permutations
        Stop after this many complete permutations (``None``: only the budget stops it).
    max_evaluations
        Hard cap on new utility evaluations; a permutation that would exceed it is dropped.

    Raises
    ------
    ShapleyError
        If neither limit is set, or the budget does not cover one permutation.
    """
    if max_permutations is None and max_evaluations is None:
        raise ShapleyError("set max_permutations or max_evaluations")
    run = _Sampling.start(utility, seed, max_evaluations)
    if run is None:
        return ShapleyResult(np.zeros(0), 0, 0, "permutation")
    n = utility.n_players
    sums = np.zeros(n, dtype=np.float64)
    k = 0
    while k < (max_permutations if max_permutations is not None else _free_after_full_cache(utility, k)):
        order = permutation(run.rng, n)
        try:
            marginals = _walk(run.meter, order.tolist(), run.u_empty, run.u_full, 0.0)
        except _BudgetExhausted:
            break
        sums += marginals
        k += 1
    if k == 0:
        raise ShapleyError(f"max_evaluations={max_evaluations} does not cover one permutation of {n} players")
    return ShapleyResult(sums / k, run.meter.used, k, "permutation", converged=k == max_permutations)


def gtg_shapley(
    utility: CachedUtility,
    seed: bytes,
    *,
    within_tol: float = 0.01,
    between_tol: float = 0.0,
    max_evaluations: int | None = None,
    max_permutations: int | None = 1000,
    min_permutations: int = 30,
    convergence_tol: float = 0.05,
    convergence_window: int = 10,
) -> ShapleyResult:
    """GTG-Shapley (Liu, Chen, Yu, Liu, Cui; ACM TIST 2022), as in RESEARCH.md §3.6.

    - **Between-round truncation**: if ``|U(N) - U(empty)| <= between_tol`` the round changed nothing
      worth paying for and every value is 0 (2 evaluations).
    - **Guided sampling**: permutations come in cycles of N; within a cycle every player is first
      exactly once (cycle order shuffled, so no index is favoured when the budget ends mid-cycle),
      the other positions are a uniform shuffle.
    - **Within-round truncation**: along a permutation, once
      ``|U(N) - U(prefix)| < within_tol * |U(N) - U(empty)|`` the remaining marginals are 0. The paper
      uses an absolute 0.001 on accuracy; a relative tolerance works the same for any utility scale.
    - **Convergence**: after ``min_permutations``, stop when the relative L1 change of the running
      estimate, ``sum|phi_t - phi_{t-1}| / sum|phi_t|``, stayed below ``convergence_tol`` for the last
      ``convergence_window`` permutations.

    Parameters
    ----------
    utility, seed
        As for :func:`permutation_shapley`.
    within_tol, between_tol
        Truncation tolerances (relative and absolute, see above).
    max_evaluations
        Hard cap on new utility evaluations (includes ``U(empty)`` and ``U(N)``); a permutation that
        would exceed it is dropped and sampling stops.
    max_permutations, min_permutations, convergence_tol, convergence_window
        Stopping rule.

    Raises
    ------
    ShapleyError
        On a budget below one permutation, or nonsensical tolerances.
    """
    if within_tol < 0 or between_tol < 0 or convergence_tol < 0 or convergence_window < 1:
        raise ShapleyError("tolerances must be >= 0 and convergence_window >= 1")
    run = _Sampling.start(utility, seed, max_evaluations)
    if run is None:
        return ShapleyResult(np.zeros(0), 0, 0, "gtg")
    n = utility.n_players
    total_gain = abs(run.u_full - run.u_empty)
    if total_gain <= between_tol:
        return ShapleyResult(np.zeros(n), run.meter.used, 0, "gtg")
    gap = within_tol * total_gain

    sums = np.zeros(n, dtype=np.float64)
    estimate = np.zeros(n, dtype=np.float64)
    changes: list[float] = []
    firsts: list[int] = []
    k = 0
    converged = False
    while k < (max_permutations if max_permutations is not None else _free_after_full_cache(utility, k)):
        if not firsts:
            firsts = permutation(run.rng, n).tolist()[::-1]  # pop() from the end = shuffled cycle order
        try:
            marginals = _walk(run.meter, _guided(run.rng, n, firsts[-1]), run.u_empty, run.u_full, gap)
        except _BudgetExhausted:
            break
        firsts.pop()
        sums += marginals
        k += 1
        new_estimate = sums / k
        changes.append(_relative_change(new_estimate, estimate))
        estimate = new_estimate
        if k >= max(min_permutations, convergence_window + 1) and max(changes[-convergence_window:]) < convergence_tol:
            converged = True
            break
    if k == 0:
        raise ShapleyError(f"max_evaluations={max_evaluations} does not cover one permutation of {n} players")
    return ShapleyResult(estimate, run.meter.used, k, "gtg", converged=converged)


def _guided(rng: np.random.Generator, n: int, first: int) -> list[int]:
    """A GTG permutation: ``first`` leads, the other players follow in a uniform shuffle."""
    rest = permutation(rng, np.array([p for p in range(n) if p != first], dtype=np.int64))
    return [first, *rest.tolist()]


def _aggregation_features(masks: NDArray[np.int64], n: int, weights: Vector) -> Vector:
    """Quadratic features of the coalitions' aggregation weights: ``w_i`` and ``w_i * w_j`` (i <= j).

    ``w`` is the coalition's renormalised weight vector (``1/|S|`` on members for the plain mean), so a
    model ``U(S) ~ theta . features(S)`` is a second-order expansion of ``f(global + sum_i w_i u_i)``.
    """
    member = ((masks[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(np.float64) * weights
    w = member / member.sum(axis=1, keepdims=True)
    rows, cols = np.triu_indices(n)
    return np.concatenate([w, w[:, rows] * w[:, cols]], axis=1)


def _random_coalition(rng: np.random.Generator, n: int, size_cdf: Sequence[float]) -> int:
    """A coalition whose size follows ``size_cdf`` (sizes 1..n-1) and whose members are uniform."""
    r = uniform_float(rng)
    size = next((s + 1 for s, c in enumerate(size_cdf) if r < c), n - 1)
    mask = 0
    for player in permutation(rng, n)[:size].tolist():
        mask |= 1 << player
    return mask


def surrogate_shapley(
    utility: CachedUtility,
    seed: bytes,
    *,
    max_evaluations: int = 100,
    weights: Sequence[float] | None = None,
    ridge: float = 1e-8,
    value: Value = "shapley",
) -> ShapleyResult:
    """Shapley values of a fitted quadratic surrogate of the aggregation game (not in the paper).

    The utility of a coalition is ``f(global + sum_i w_i(S) u_i)`` with ``w(S)`` the coalition's
    renormalised aggregation weights, and ``f`` (validation loss) is smooth, so ``U(S)`` is close to a
    quadratic in ``w(S)``; exactly so when ``f`` is quadratic. The estimator evaluates ``U(empty)``,
    ``U(N)``, every singleton and then coalitions drawn with Shapley-kernel size probabilities
    (``p(s) ~ 1 / (s (N - s))``, members uniform) until ``max_evaluations`` distinct coalitions are
    known; fits ``N + N(N+1)/2`` coefficients by ridge least squares; and returns the exact Shapley
    values of the game that uses the true utility where it was evaluated and the fit elsewhere. The
    result is efficient (sums to ``U(N) - U(empty)``) and equals exact Shapley once every coalition is
    evaluated.

    Parameters
    ----------
    utility
        Cached coalition utility; must be an aggregation game (``U(S)`` depends on ``S`` only through
        the weighted mean of its updates).
    seed
        32-byte seed (:func:`aggregator.seeds.shapley_seed`).
    max_evaluations
        Distinct utility evaluations allowed (at least ``N + 2``).
    weights
        The aggregation weights the utility uses; ``None`` for the plain mean.
    ridge
        Ridge penalty relative to the mean diagonal of the normal matrix (the features are collinear:
        ``sum_i w_i = 1``).

    Raises
    ------
    ShapleyError
        If ``N > EXACT_MAX_PLAYERS`` or the budget is below ``N + 2``.
    """
    n = utility.n_players
    if n > EXACT_MAX_PLAYERS:
        raise ShapleyError(f"surrogate Shapley enumerates 2**N surrogate values; N={n} > {EXACT_MAX_PLAYERS}")
    if max_evaluations < n + 2:
        raise ShapleyError(f"max_evaluations={max_evaluations} < N + 2 = {n + 2}")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ShapleyError("surrogate Shapley needs one positive finite weight per player")
    meter = _Meter(utility, max_evaluations)
    if n == 0:
        return ShapleyResult(np.zeros(0), 0, 0, "surrogate")
    full = utility.full_mask
    known = [0, full, *(1 << i for i in range(n))]
    if max_evaluations >= 1 << n:
        known = list(range(1 << n))
    truth = {m: meter(m) for m in known}
    rng = generator_from_seed(seed)
    kernel = [1.0 / (s * (n - s)) for s in range(1, n)]
    total = math.fsum(kernel)
    size_cdf = [math.fsum(kernel[: s + 1]) / total for s in range(n - 1)]
    draws = 0
    while meter.used < max_evaluations and len(truth) < 1 << n and draws < 100 * max_evaluations:
        draws += 1
        mask = _random_coalition(rng, n, size_cdf)
        if mask not in truth:
            truth[mask] = meter(mask)

    table = np.empty(1 << n, dtype=np.float64)
    if len(truth) < 1 << n:
        fitted = np.array(sorted(m for m in truth if m != 0), dtype=np.int64)
        features = _aggregation_features(fitted, n, w)
        target = np.array([truth[int(m)] for m in fitted], dtype=np.float64)
        normal = features.T @ features
        penalty = ridge * float(np.trace(normal)) / normal.shape[0]
        theta = np.linalg.solve(normal + penalty * np.eye(normal.shape[0]), features.T @ target)
        table[1:] = _aggregation_features(np.arange(1, 1 << n, dtype=np.int64), n, w) @ theta
    for mask, known_value in truth.items():
        table[mask] = known_value
    return ShapleyResult(_semivalues_of_table(table, n, value), meter.used, 0, "surrogate")


def _half_coalition(rng: np.random.Generator, n: int) -> int:
    """A coalition holding each of ``n`` players with probability 1/2 (raw 64-bit draws, low bits first)."""
    mask = 0
    for word in range((n + 63) // 64):
        mask |= int(rng.bit_generator.random_raw()) << (64 * word)
    return mask & ((1 << n) - 1)


def banzhaf_msr(
    utility: CachedUtility,
    seed: bytes,
    *,
    max_evaluations: int = 1024,
    batch: int = 64,
    rel_tol: float = 0.1,
) -> ShapleyResult:
    """Banzhaf values by maximum sample reuse (Wang and Jia, "Data Banzhaf", AISTATS 2023).

    ``beta_i = sum_{S not containing i} (U(S + i) - U(S)) / 2**(N-1)`` is estimated as the mean utility of
    the sampled coalitions that contain ``i`` minus the mean of those that do not, every coalition drawn
    with each player in it independently with probability 1/2 (so each sample serves every player).
    Banzhaf weighs every coalition alike, which Wang and Jia show makes the ranking the most robust of all
    semivalues to noise in the utility (here: 180-360 validation samples).

    At most ``max_evaluations`` coalitions are drawn, in batches of ``batch``; from the second batch on, sampling
    stops once every estimate's standard error is at most ``rel_tol`` times the largest ``|beta_i|``
    (``converged``).

    Raises
    ------
    ShapleyError
        If the budget is below 4 evaluations.
    """
    n = utility.n_players
    if max_evaluations < 4:
        raise ShapleyError(f"max_evaluations={max_evaluations} < 4")
    if n == 0:
        return ShapleyResult(np.zeros(0), 0, 0, "msr")
    meter = _Meter(utility, max_evaluations)
    rng = generator_from_seed(seed)
    rows: list[list[bool]] = []
    utilities: list[float] = []
    values, converged = np.zeros(n, dtype=np.float64), False
    while not converged and len(rows) < max_evaluations:
        for _ in range(min(batch, max_evaluations - len(rows))):  # draws <= budget: the meter never refuses
            mask = _half_coalition(rng, n)
            utilities.append(meter(mask))
            rows.append([bool(mask >> i & 1) for i in range(n)])
        values, errors = _msr_values(rows, utilities, n)
        converged = len(rows) >= 2 * batch and float(np.max(errors)) <= rel_tol * float(np.max(np.abs(values)))
    return ShapleyResult(values, meter.used, 0, "msr", converged=converged)


def _msr_values(rows: list[list[bool]], utilities: list[float], n: int) -> tuple[Vector, Vector]:
    """Per player, the MSR estimate and its standard error.

    The estimate is the mean utility of the sampled coalitions with the player minus that of those without it;
    the error is ``inf`` while either side has fewer than two samples.
    """
    member = np.asarray(rows, dtype=bool).reshape(len(rows), n)
    u = np.asarray(utilities, dtype=np.float64)
    values, errors = np.zeros(n, dtype=np.float64), np.full(n, np.inf)
    for i in range(n):
        inside, outside = u[member[:, i]], u[~member[:, i]]
        if inside.size and outside.size:
            values[i] = math.fsum(inside.tolist()) / inside.size - math.fsum(outside.tolist()) / outside.size
        if inside.size > 1 and outside.size > 1:
            errors[i] = math.sqrt(np.var(inside, ddof=1) / inside.size + np.var(outside, ddof=1) / outside.size)
    return values, errors


# --------------------------------------------------------------------------- integer scores


def to_int_scores(values: Sequence[float] | Vector, scale: int = SCORE_SCALE) -> tuple[int, ...]:
    """Fixed-point ``int128`` scores for ``postRound``.

    ``score = round_half_even(value * scale)`` computed exactly on the float's binary value (through
    :class:`fractions.Fraction`, so no second rounding), then clamped to ``[INT128_MIN, INT128_MAX]``;
    ``+inf``/``-inf`` clamp to the bounds.

    Raises
    ------
    ValueError
        On NaN or a non-positive scale.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    out: list[int] = []
    for v in np.asarray(values, dtype=np.float64).tolist():
        if math.isnan(v):
            raise ValueError("cannot convert NaN to a score")
        if math.isinf(v):
            out.append(INT128_MAX if v > 0 else INT128_MIN)
            continue
        out.append(min(max(round(Fraction(v) * scale), INT128_MIN), INT128_MAX))
    return tuple(out)


# --------------------------------------------------------------------------- screening


class Status(StrEnum):
    """Why a submission is (or is not) in the Shapley game."""

    OK = "ok"
    OUTLIER = "outlier"
    FREE_RIDER = "free_rider"
    STALE = "stale"
    COPY = "copy"


@dataclass(frozen=True)
class Screening:
    """Per-submission screening verdicts, in on-chain submission order.

    Attributes
    ----------
    status
        One :class:`Status` per submission.
    copy_of
        For a copy, the index of the original (the earliest submission it duplicates); else ``None``.
    """

    status: tuple[Status, ...]
    copy_of: tuple[int | None, ...]

    @property
    def eligible(self) -> tuple[int, ...]:
        """Submissions that play the Shapley game (status ``OK``)."""
        return tuple(i for i, s in enumerate(self.status) if s is Status.OK)


def _norm(v: Vector) -> float:
    return math.sqrt(float(np.sum(v * v)))  # numpy pairwise sum, not BLAS: same result on every CPU


def _cosine(a: Vector, b: Vector, na: float, nb: float) -> float:
    return float(np.sum(a * b)) / (na * nb)


def screen_updates(
    updates: Sequence[Vector],
    *,
    outliers: Sequence[bool] | None = None,
    prior_updates: Sequence[Vector] = (),
    copy_cosine: float = 0.99,
    free_rider_rel_norm: float = 0.01,
) -> Screening:
    """Flag free riders, stale copies and copycats (see the module docstring).

    Parameters
    ----------
    updates
        Model deltas (``local - global``) in on-chain submission order.
    outliers
        Outlier flags from the robust filter; outliers are not screened further.
    prior_updates
        Updates public before this round (previous aggregate delta, previous rounds' updates).
    copy_cosine
        Cosine similarity at or above which two updates count as the same update.
    free_rider_rel_norm
        Fraction of the median non-outlier update norm below which an update is a free ride.
    """
    n = len(updates)
    flags = [False] * n if outliers is None else list(outliers)
    if len(flags) != n:
        raise ValueError(f"{n} updates but {len(flags)} outlier flags")
    vecs = [np.asarray(u, dtype=np.float64).ravel() for u in updates]
    norms = [_norm(v) for v in vecs]
    kept = [norms[i] for i in range(n) if not flags[i]]
    floor = free_rider_rel_norm * float(np.median(kept)) if kept else 0.0
    priors = [(p, _norm(p)) for p in (np.asarray(q, dtype=np.float64).ravel() for q in prior_updates)]

    status: list[Status] = []
    copy_of: list[int | None] = []
    for i, v in enumerate(vecs):
        original: int | None = None
        if flags[i]:
            s = Status.OUTLIER
        elif norms[i] <= floor or norms[i] == 0.0:
            s = Status.FREE_RIDER
        elif any(pn > 0 and _cosine(v, p, norms[i], pn) >= copy_cosine for p, pn in priors):
            s = Status.STALE
        else:
            s = Status.OK
            for j in range(i):  # earliest match wins: the on-chain order decides who is original
                if norms[j] == 0.0 or status[j] is Status.FREE_RIDER:  # a zero outlier is nobody's original
                    continue
                if _cosine(v, vecs[j], norms[i], norms[j]) >= copy_cosine:
                    s, original = Status.COPY, copy_of[j] if copy_of[j] is not None else j
                    break
        status.append(s)
        copy_of.append(original)
    return Screening(tuple(status), tuple(copy_of))


# --------------------------------------------------------------------------- the round pipeline


@dataclass(frozen=True)
class ScoringConfig:
    """How :func:`round_scores` scores a round.

    Attributes
    ----------
    method
        ``"auto"``: exact when ``2**N <= max_evaluations``, else surrogate up to ``N = 12``, else GTG
        (Banzhaf: maximum sample reuse) (:func:`estimate`).
    value
        The semivalue estimated: ``shapley`` or ``banzhaf`` (every coalition weighs alike; the ``trust``
        rule's choice, :class:`aggregator.round.RoundConfig`). Permutation samplers (GTG, permutation)
        estimate Shapley only: with ``banzhaf`` they are replaced by :func:`banzhaf_msr`.
    max_evaluations
        Utility-evaluation budget of the samplers (and the exact/GTG switch of ``"auto"``).
    within_tol, between_tol
        GTG truncation tolerances (:func:`gtg_shapley`).
    copy_cosine, free_rider_rel_norm
        Screening thresholds (:func:`screen_updates`).
    scale
        Integer score units per utility unit.
    """

    method: Method = "auto"
    max_evaluations: int = 1024
    value: Value = "shapley"
    within_tol: float = 0.01
    between_tol: float = 0.0
    copy_cosine: float = 0.99
    free_rider_rel_norm: float = 0.01
    scale: int = SCORE_SCALE


@dataclass(frozen=True, eq=False)
class RoundScores:
    """Scores of one round, in submission order.

    Attributes
    ----------
    scores
        ``int128`` scores for ``postRound`` (0 for every screened-out submission).
    values
        Float contribution per submission (0 for screened-out ones).
    screening
        The screening verdicts.
    result
        The estimator's result over the eligible submissions only.
    """

    scores: tuple[int, ...]
    values: Vector
    screening: Screening
    result: ShapleyResult = field(repr=False)


def estimate(
    utility: CachedUtility,
    seed: bytes,
    config: ScoringConfig = ScoringConfig(),
    weights: Sequence[float] | None = None,
) -> ShapleyResult:
    """Run the estimator ``config.method`` selects on a cached aggregation utility.

    ``"auto"`` picks exact Shapley when ``2**N <= config.max_evaluations`` (and ``N <= 12``), else the
    surrogate estimator while ``N <= 12`` (it needs the aggregation structure, which
    :func:`round_scores` guarantees), else GTG-Shapley. ``weights`` are the aggregation weights the
    utility uses (for the surrogate).
    """
    n = utility.n_players
    method = config.method
    if method == "auto" and n > EXACT_MAX_PLAYERS:
        method = "msr" if config.value == "banzhaf" else "gtg"
    elif method == "auto":
        method = "exact" if (1 << n) <= config.max_evaluations else "surrogate"
    if method == "exact":
        return exact_shapley(utility, config.value)
    if method == "loo":
        return leave_one_out(utility)
    if method == "surrogate":
        return surrogate_shapley(
            utility, seed, max_evaluations=config.max_evaluations, weights=weights, value=config.value
        )
    if method == "msr" or config.value == "banzhaf":
        return banzhaf_msr(utility, seed, max_evaluations=config.max_evaluations)
    if method == "permutation":
        return permutation_shapley(utility, seed, max_permutations=None, max_evaluations=config.max_evaluations)
    return gtg_shapley(
        utility,
        seed,
        within_tol=config.within_tol,
        between_tol=config.between_tol,
        max_evaluations=config.max_evaluations,
    )


def round_scores(
    global_params: Vector,
    updates: Sequence[Vector],
    evaluate_fn: Callable[[Vector], float],
    seed: bytes,
    *,
    outliers: Sequence[bool] | None = None,
    weights: Sequence[float] | None = None,
    prior_updates: Sequence[Vector] = (),
    config: ScoringConfig = ScoringConfig(),
) -> RoundScores:
    """Screen a round's updates, estimate Shapley values of the eligible ones, and make int scores.

    Parameters
    ----------
    global_params
        Current global model (flat float64), the empty coalition's model.
    updates
        Model deltas in on-chain submission order.
    evaluate_fn
        Validation metric of a parameter vector (higher is better).
    seed
        32-byte seed from :func:`aggregator.seeds.shapley_seed`.
    outliers
        Outlier flags from the robust filter (outliers score 0 and are left out of coalitions).
    weights
        Aggregation weights (renormalised within each coalition); ``None`` for the plain mean.
    prior_updates
        Public earlier updates for stale-copy detection.
    config
        Estimator and screening settings.

    Returns
    -------
    RoundScores
        Scores ready for ``postRound`` together with the outlier flags.
    """
    screening = screen_updates(
        updates,
        outliers=outliers,
        prior_updates=prior_updates,
        copy_cosine=config.copy_cosine,
        free_rider_rel_norm=config.free_rider_rel_norm,
    )
    players = screening.eligible
    if weights is not None and len(weights) != len(updates):
        raise ValueError(f"{len(updates)} updates but {len(weights)} weights")
    if players:
        utility = delta_utility(
            global_params,
            [updates[i] for i in players],
            evaluate_fn,
            None if weights is None else [weights[i] for i in players],
        )
        result = estimate(utility, seed, config, None if weights is None else [weights[i] for i in players])
    else:
        result = ShapleyResult(np.zeros(0), 0, 0, "none")
    values = np.zeros(len(updates), dtype=np.float64)
    values[list(players)] = result.values
    return RoundScores(to_int_scores(values, config.scale), values, screening, result)
