"""The next round's training hyper-parameters: a deterministic rule and its on-chain hash (pure, no I/O).

The aggregator proposes the hyper-parameters of round ``t + 1`` when it posts round ``t`` and commits
to them with ``RoundPost.hyperparamsHash`` (RESEARCH.md §1.8). Anyone holding the validation-accuracy
history can recompute the proposal with :func:`next_hyperparams` and the hash with
:meth:`HyperParams.hash`.

Rule (stateless, from the accuracy history of the global model, oldest first):

- ``gain = acc[-1] - max(acc[:-1])``: progress of the round just aggregated over the best earlier
  round (the best, not the previous, so an up-down oscillation does not count as progress);
- ``gain < -drop_tol`` (**dropped**): one local epoch fewer; on non-IID data a drop usually means client
  drift, which fewer local steps reduce;
- otherwise (**stalled**, ``gain < stall_tol``; **improving**; fewer than two rounds of history): unchanged;
- ``drop_tol`` is 5 points: on a 180-sample validation set two standard errors of an accuracy difference are
  about 5 points, and at 1 point noise cut the benchmark's local epochs to 1 for good (issue 12);
- the learning rate is never decayed (issue 12): halving it on stalls and drops took it from 0.1 to 1e-4 by
  round 8 on a plateau, and on a 180-sample validation set a 1-point "drop" is 2 samples, i.e. noise; the
  benchmark's label-flip runs lost 5-12 points to it. ``decay`` is kept for manifests that name it;
- the learning rate is clamped to ``[lr_min, lr_max]`` and epochs to ``[min_epochs, max_epochs]``.

Encoding: canonical JSON (UTF-8, keys sorted, no spaces, integers as decimal, floats as
``"%.9e"``, i.e. 10 significant digits); floats are rounded to that precision on construction, so
``HyperParams.from_json(h.to_json()) == h`` and the text is the same on every machine. The hash is
**keccak256** (``eth_utils.crypto.keccak``, as Solidity's ``keccak256``) of that text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum

from eth_utils.crypto import keccak

from pocfl.errors import PocflError
from pocfl.untrusted import UntrustedJsonError, clip, loads_untrusted, quote

SCHEMA_VERSION = 1

HYPERPARAMS_MAX_SIZE = 4096
"""Longest hyper-parameter text parsed; the canonical encoding is about 100 bytes."""


class HyperParamsError(PocflError, ValueError):
    """A hyper-parameter text (read from a round report) is not a valid encoding; a ``ValueError``."""


def _quantize(value: float) -> float:
    return float(f"{value:.9e}")


@dataclass(frozen=True)
class HyperParams:
    """Hyper-parameters every trainer uses in one round.

    Attributes
    ----------
    round
        The round these apply to.
    learning_rate
        Client learning rate (> 0), rounded to 10 significant digits.
    local_epochs
        Local epochs per round (>= 1).
    batch_size
        Local minibatch size (>= 1).
    version
        Schema version of the encoding.
    """

    round: int
    learning_rate: float
    local_epochs: int
    batch_size: int
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        for name in ("round", "local_epochs", "batch_size", "version"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if self.round < 0 or self.local_epochs < 1 or self.batch_size < 1:
            raise ValueError(f"invalid hyper-parameters: {self!r}")
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be finite and > 0, got {self.learning_rate}")
        object.__setattr__(self, "learning_rate", _quantize(float(self.learning_rate)))

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces, floats as ``%.9e``."""
        parts = []
        for name in sorted(f.name for f in fields(self)):
            value = getattr(self, name)
            parts.append(f'"{name}":{value:.9e}' if isinstance(value, float) else f'"{name}":{value:d}')
        return "{" + ",".join(parts) + "}"

    @classmethod
    def from_json(cls, text: str) -> HyperParams:
        """Parse :meth:`to_json` output (rejects unknown or missing keys).

        Raises
        ------
        HyperParamsError
            Not JSON, too long or too deep, other keys, or a value of the wrong type or range.
        """
        try:
            raw = loads_untrusted(text, max_size=HYPERPARAMS_MAX_SIZE, what="hyper-parameters")
        except UntrustedJsonError as exc:
            raise HyperParamsError(str(exc)) from exc
        names = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or set(raw) != names:
            raise HyperParamsError(f"expected keys {sorted(names)}, got {quote(text)}")
        try:
            return cls(
                round=raw["round"],
                learning_rate=float(raw["learning_rate"]),
                local_epochs=raw["local_epochs"],
                batch_size=raw["batch_size"],
                version=raw["version"],
            )
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: float() of a huge integer
            raise HyperParamsError(f"invalid hyper-parameters: {clip(str(exc), 200)}") from exc

    def hash(self) -> bytes:
        """``keccak256(to_json().encode())``: the 32 bytes posted as ``hyperparamsHash``."""
        return keccak(self.to_json().encode("utf-8"))


@dataclass(frozen=True)
class HyperParamRule:
    """Constants of :func:`next_hyperparams` (accuracies as fractions in [0, 1])."""

    decay: float = 0.5
    stall_tol: float = 0.002
    drop_tol: float = 0.05
    lr_min: float = 1e-4
    lr_max: float = 1.0
    min_epochs: int = 1
    max_epochs: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.decay <= 1 or not 0 < self.lr_min <= self.lr_max:
            raise ValueError(f"invalid rule: {self!r}")
        if not 1 <= self.min_epochs <= self.max_epochs or self.stall_tol < 0 or self.drop_tol < 0:
            raise ValueError(f"invalid rule: {self!r}")


class Trend(StrEnum):
    """How the last round moved the validation accuracy."""

    WARMUP = "warmup"
    IMPROVING = "improving"
    STALLED = "stalled"
    DROPPED = "dropped"


def trend(accuracy_history: Sequence[float], rule: HyperParamRule = HyperParamRule()) -> Trend:
    """Classify the last round from the global model's validation accuracy history (oldest first)."""
    if any(not math.isfinite(a) for a in accuracy_history):
        raise ValueError("accuracies must be finite")
    if len(accuracy_history) < 2:
        return Trend.WARMUP
    gain = accuracy_history[-1] - max(accuracy_history[:-1])
    if gain < -rule.drop_tol:
        return Trend.DROPPED
    if gain < rule.stall_tol:
        return Trend.STALLED
    return Trend.IMPROVING


def next_hyperparams(
    current: HyperParams, accuracy_history: Sequence[float], rule: HyperParamRule = HyperParamRule()
) -> HyperParams:
    """Hyper-parameters for round ``current.round + 1`` (see the module docstring for the rule).

    Parameters
    ----------
    current
        The hyper-parameters of the round just aggregated.
    accuracy_history
        Validation accuracy of the global model after each aggregated round, oldest first; the last
        entry is the model this round produced.
    rule
        The rule's constants.
    """
    lr, epochs = current.learning_rate, current.local_epochs
    move = trend(accuracy_history, rule)
    if move is Trend.DROPPED:
        epochs -= 1  # drift: fewer local steps; the learning rate stays (see the module docstring)
    return HyperParams(
        round=current.round + 1,
        learning_rate=min(max(lr, rule.lr_min), rule.lr_max),
        local_epochs=min(max(epochs, rule.min_epochs), rule.max_epochs),
        batch_size=current.batch_size,
    )
