"""Attack suite: how Byzantine, lazy or dishonest trainers corrupt a round (pure NumPy, seeded).

For simulations and benchmarks: the trainer client's ``--attack`` options (a trainer that misbehaves on purpose,
as the demo and the robustness benchmark run them) and ``scripts/bench_robustness.py`` use it.

Model-poisoning attacks take the ``(K, d)`` matrix of the updates every trainer *would* send if honest
(attackers' rows included: an attacker trains on its own data too) and the indices of the attackers,
and return a new matrix whose attacker rows are replaced; honest rows are never touched and the input
is never modified. The omniscient attacks (ALIE, IPM) use the honest statistics, as in their papers.

Data poisoning (:func:`flip_labels`) acts before local training instead, on the attacker's labels.

:class:`Attack` names every attack so a benchmark or the demo can pick one by string, and
:func:`apply_attack` runs any of them through one signature.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

Matrix = NDArray[np.floating]
Labels = NDArray[np.integer]


class Attack(StrEnum):
    """Every attack of the suite, by the name benchmarks and the demo use."""

    NONE = "none"
    SIGN_FLIP = "sign_flip"
    SCALING = "scaling"
    GAUSSIAN_NOISE = "gaussian_noise"
    ALIE = "alie"
    IPM = "ipm"
    LABEL_FLIP = "label_flip"
    FREE_RIDER = "free_rider"
    STALE = "stale"
    COPYCAT = "copycat"

    @property
    def poisons_data(self) -> bool:
        """True if the attack changes the attacker's training data rather than its update."""
        return self is Attack.LABEL_FLIP


def _attacker_indices(updates: Matrix, attackers: Iterable[int]) -> NDArray[np.int64]:
    """Validate the update matrix and the attacker set; return the sorted, unique attacker indices."""
    if updates.ndim != 2:
        raise ValueError(f"updates must be a (K, d) matrix, got shape {updates.shape}")
    idx = np.unique(np.asarray(list(attackers), dtype=np.int64))
    if idx.size and (idx[0] < 0 or idx[-1] >= updates.shape[0]):
        raise ValueError(f"attacker indices must lie in 0..{updates.shape[0] - 1}, got {idx.tolist()}")
    return idx


def _honest_mask(k: int, idx: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Boolean mask of the honest rows."""
    mask = np.ones(k, dtype=bool)
    mask[idx] = False
    return mask


def _replace(updates: Matrix, idx: NDArray[np.int64], rows: Matrix | float) -> Matrix:
    """Copy of ``updates`` with rows ``idx`` set to ``rows`` (broadcast), dtype preserved."""
    out = np.array(updates, copy=True)
    out[idx] = rows
    return out


def sign_flip(updates: Matrix, attackers: Iterable[int]) -> Matrix:
    """Attackers send the negation of their honest update: ``u_i -> -u_i``."""
    idx = _attacker_indices(updates, attackers)
    return _replace(updates, idx, -updates[idx])


def scaling(updates: Matrix, attackers: Iterable[int], factor: float = 10.0) -> Matrix:
    """Attackers send their honest update times ``factor`` (boosting; ``factor < 0`` also reverses it)."""
    idx = _attacker_indices(updates, attackers)
    return _replace(updates, idx, factor * updates[idx])


def gaussian_noise(updates: Matrix, attackers: Iterable[int], *, sigma: float = 1.0, seed: int = 0) -> Matrix:
    """Attackers send pure noise ``N(0, sigma^2 I)`` instead of an update (a "random" Byzantine worker)."""
    idx = _attacker_indices(updates, attackers)
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=(idx.size, updates.shape[1]))
    return _replace(updates, idx, noise)


def alie_z(n_clients: int, n_attackers: int) -> float:
    """The ``z_max`` of "A Little Is Enough" (Baruch et al., NeurIPS 2019).

    With ``s = floor(n/2 + 1) - f`` honest workers the attackers must win over for a majority,
    ``z_max = Phi^-1((n - s) / n)``: the largest shift that still looks like an ordinary honest worker
    to a median or Krum.
    """
    if not 0 < n_attackers < n_clients:
        raise ValueError(f"need 0 < attackers < clients, got {n_attackers} of {n_clients}")
    s = n_clients // 2 + 1 - n_attackers
    # Clamp to (0, 1): with an attacker majority s <= 0 and Phi^-1(1) would be infinite.
    p = min(max((n_clients - s) / n_clients, 1e-6), 1 - 1e-6)
    return NormalDist().inv_cdf(p)


def alie(updates: Matrix, attackers: Iterable[int], *, z: float | None = None) -> Matrix:
    """ALIE ("A Little Is Enough"): every attacker sends ``mean - z * std`` coordinate-wise, over all K rows.

    The statistics are those of the honest computations of all trainers (attackers know their own
    honest updates and, in the omniscient model, everyone's). ``z`` defaults to :func:`alie_z`.
    """
    idx = _attacker_indices(updates, attackers)
    if idx.size == 0:
        return np.array(updates, copy=True)
    z_val = alie_z(updates.shape[0], idx.size) if z is None else z
    mean = updates.mean(axis=0)
    std = updates.std(axis=0)
    return _replace(updates, idx, mean - z_val * std)


def ipm(updates: Matrix, attackers: Iterable[int], *, eps: float = 0.5) -> Matrix:
    """Inner-product manipulation (Xie, Koyejo, Gupta, UAI 2019): attackers send ``-eps * mean(honest)``.

    Its inner product with the honest mean is ``-eps * |mean|^2 < 0``; small ``eps`` slips past
    distance-based rules, large ``eps`` (above ``(K - f) / f``) reverses a plain average.
    """
    idx = _attacker_indices(updates, attackers)
    honest = _honest_mask(updates.shape[0], idx)
    if idx.size and not honest.any():
        raise ValueError("IPM needs at least one honest update")
    if idx.size == 0:
        return np.array(updates, copy=True)
    return _replace(updates, idx, -eps * updates[honest].mean(axis=0))


def free_rider(updates: Matrix, attackers: Iterable[int], *, previous_delta: Matrix | None = None) -> Matrix:
    """Free riders train nothing: they send a zero update, or replay ``previous_delta``.

    Replaying the previous round's global delta gives a *stale* update that looks plausible.
    """
    idx = _attacker_indices(updates, attackers)
    if previous_delta is None:
        return _replace(updates, idx, 0.0)
    prev = np.asarray(previous_delta)
    if prev.shape != (updates.shape[1],):
        raise ValueError(f"previous_delta must have shape ({updates.shape[1]},), got {prev.shape}")
    return _replace(updates, idx, prev)


def copycat(
    updates: Matrix,
    attackers: Iterable[int],
    *,
    relative_noise: float = 0.01,
    seed: int = 0,
) -> Matrix:
    """Copycats send another (honest) trainer's update plus small Gaussian noise to hide the copy.

    Each attacker copies a victim drawn uniformly from the honest trainers; the noise has standard
    deviation ``relative_noise`` times the victim's root-mean-square coordinate, so the copy is within
    a relative distance of about ``relative_noise`` of the original.
    """
    idx = _attacker_indices(updates, attackers)
    honest = np.flatnonzero(_honest_mask(updates.shape[0], idx))
    if idx.size == 0:
        return np.array(updates, copy=True)
    if honest.size == 0:
        raise ValueError("copycats need at least one honest update to copy")
    rng = np.random.default_rng(seed)
    victims = rng.choice(honest, size=idx.size)
    copies = updates[victims].astype(np.float64)
    rms = np.sqrt(np.mean(copies**2, axis=1, keepdims=True))
    copies += rng.normal(size=copies.shape) * (relative_noise * rms)
    return _replace(updates, idx, copies)


def flip_labels(y: Labels, n_classes: int = 10, permutation: NDArray[np.integer] | None = None) -> Labels:
    """Data poisoning: map every label ``c`` to ``n_classes - 1 - c`` (or to ``permutation[c]``).

    Applied to an attacker's labels before local training; the attacker then sends an honestly
    computed update of a poisoned objective.
    """
    labels = np.asarray(y)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    if permutation is None:
        return (n_classes - 1 - labels).astype(labels.dtype)
    perm = np.asarray(permutation)
    if perm.shape != (n_classes,) or not np.array_equal(np.sort(perm), np.arange(n_classes)):
        raise ValueError(f"permutation must be a permutation of 0..{n_classes - 1}")
    return perm[labels].astype(labels.dtype)


#: parameters each attack accepts in :func:`apply_attack` (anything else is an error)
ATTACK_PARAMS: Mapping[Attack, frozenset[str]] = {
    Attack.NONE: frozenset(),
    Attack.SIGN_FLIP: frozenset(),
    Attack.SCALING: frozenset({"factor"}),
    Attack.GAUSSIAN_NOISE: frozenset({"sigma"}),
    Attack.ALIE: frozenset({"z"}),
    Attack.IPM: frozenset({"eps"}),
    Attack.LABEL_FLIP: frozenset(),
    Attack.FREE_RIDER: frozenset(),
    Attack.STALE: frozenset(),
    Attack.COPYCAT: frozenset({"relative_noise"}),
}


def apply_attack(
    attack: Attack | str,
    updates: Matrix,
    attackers: Iterable[int],
    *,
    seed: int = 0,
    previous_delta: Matrix | None = None,
    **params: float,
) -> Matrix:
    """Apply the model-poisoning side of ``attack`` to a round's update matrix.

    Parameters
    ----------
    attack
        An :class:`Attack` or its name, e.g. ``"alie"``.
    updates
        ``(K, d)`` honest updates of all trainers.
    attackers
        Indices of the attacking trainers.
    seed
        Seed of the randomised attacks (noise, copycat); use a new one each round.
    previous_delta
        The previous round's global delta, replayed by :attr:`Attack.STALE` (zeros if ``None``).
    **params
        Attack parameters listed in :data:`ATTACK_PARAMS` (``factor``, ``sigma``, ``z``, ``eps``,
        ``relative_noise``).

    Returns
    -------
    numpy.ndarray
        The ``(K, d)`` matrix the aggregator receives. :attr:`Attack.NONE` and the data-poisoning
        :attr:`Attack.LABEL_FLIP` return an unchanged copy: label flipping acts through
        :func:`flip_labels` before training.
    """
    kind = Attack(attack)
    unknown = sorted(set(params) - ATTACK_PARAMS[kind])
    if unknown:
        raise TypeError(f"attack {kind.value!r} takes no parameter(s) {unknown}")
    if kind is Attack.SIGN_FLIP:
        return sign_flip(updates, attackers)
    if kind is Attack.SCALING:
        return scaling(updates, attackers, **params)
    if kind is Attack.GAUSSIAN_NOISE:
        return gaussian_noise(updates, attackers, seed=seed, **params)
    if kind is Attack.ALIE:
        return alie(updates, attackers, **params)
    if kind is Attack.IPM:
        return ipm(updates, attackers, **params)
    if kind is Attack.FREE_RIDER:
        return free_rider(updates, attackers)
    if kind is Attack.STALE:
        prev = np.zeros(updates.shape[1]) if previous_delta is None else previous_delta
        return free_rider(updates, attackers, previous_delta=prev)
    if kind is Attack.COPYCAT:
        return copycat(updates, attackers, seed=seed, **params)
    _attacker_indices(updates, attackers)  # NONE / LABEL_FLIP: still validate the inputs
    return np.array(updates, copy=True)
