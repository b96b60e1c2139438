"""The demo and benchmark attacks a trainer client can play (:func:`parse_attack`, :func:`attacked`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from pocfl.testing.attacks import Attack, copycat, free_rider, gaussian_noise, scaling, sign_flip
from trainer_client.results import UnknownAttackError

Vector = NDArray[np.float32]

COPYCAT_NOISE = 0.01
SCALING_FACTOR = 10.0
GAUSSIAN_SIGMA = 1.0

SUPPORTED_ATTACKS: tuple[Attack, ...] = (
    Attack.SIGN_FLIP,
    Attack.SCALING,
    Attack.GAUSSIAN_NOISE,
    Attack.FREE_RIDER,
    Attack.LABEL_FLIP,
    Attack.COPYCAT,
)
_ATTACK_ALIASES = {"gaussian": Attack.GAUSSIAN_NOISE, "zero": Attack.FREE_RIDER}


def parse_attack(name: str | None) -> Attack | None:
    """The attack a name selects; None for no attack (``None``, ``""`` or ``"none"``).

    Raises
    ------
    UnknownAttackError
        A name that is not one of :data:`SUPPORTED_ATTACKS` (``gaussian`` is accepted for ``gaussian_noise``).
    """
    if name is None or not name.strip() or name.strip().lower() == "none":
        return None
    key = name.strip().lower().replace("-", "_")
    attack = _ATTACK_ALIASES.get(key)
    if attack is None:
        try:
            attack = Attack(key)
        except ValueError:
            attack = None
    if attack is None or attack not in SUPPORTED_ATTACKS:
        known = ", ".join(["gaussian" if a is Attack.GAUSSIAN_NOISE else a.value for a in SUPPORTED_ATTACKS])
        raise UnknownAttackError(f"unknown attack {name!r}; the trainer client implements: {known}")
    return attack


def attacked(
    attack: Attack | None, delta: Vector, seed: int, victim: Callable[[], Vector | None], warn: Callable[[str], None]
) -> Vector:
    """``delta`` as ``attack`` changes it (label flipping happens before training: ``delta`` is kept).

    Parameters
    ----------
    attack
        The attack; None for an honest trainer.
    delta
        The honest update.
    seed
        Seed of randomised attacks.
    victim
        Another trainer's readable delta of the round (asked only by ``copycat``); None when none is readable.
    warn
        Told when ``copycat`` finds nothing to copy (it then sends a zero update).
    """
    if attack is None or attack is Attack.LABEL_FLIP:
        return delta
    rows = delta[None, :].astype(np.float64)
    if attack is Attack.SIGN_FLIP:
        out = sign_flip(rows, [0])
    elif attack is Attack.SCALING:
        out = scaling(rows, [0], factor=SCALING_FACTOR)
    elif attack is Attack.GAUSSIAN_NOISE:
        out = gaussian_noise(rows, [0], sigma=GAUSSIAN_SIGMA, seed=seed)
    elif attack is Attack.FREE_RIDER:
        out = free_rider(rows, [0])
    else:  # COPYCAT
        copied = victim()
        if copied is None:
            warn("no readable update to copy; sending a zero update")
            out = free_rider(rows, [0])
        else:
            out = copycat(np.stack([copied.astype(np.float64), rows[0]]), [1], relative_noise=COPYCAT_NOISE, seed=seed)[
                1:
            ]
    return np.asarray(out[0], dtype=np.float32)
