"""A round's public inputs in one value, and the decision taken on them: what the node and the auditor both run.

The node (:mod:`aggregator.preparing`) reads a round's inputs with :mod:`pocfl.rounds.inputs` and decides with
:meth:`RoundInputs.decide`; an auditor that reads the same inputs and calls the same method recomputes the
decision bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aggregator.round import RoundConfig, RoundDecision, RoundSeeds, decide_round
from pocfl.rounds.hyperparams import HyperParams

Vector = NDArray[np.float32]

DECIDE_KEYWORDS = ("seeds", "hyperparams", "accuracy_history", "prior_updates", "config")
"""The :class:`RoundInputs` fields :func:`decide_round` takes as keywords of the same names."""


@dataclass(frozen=True)
class RoundInputs:
    """Everything :func:`aggregator.round.decide_round` needs besides the updates and the validation set.

    Attributes
    ----------
    model_in, global_vector
        The global model the round trained from: its CID and weights.
    hyperparams
        The round's hyper-parameters.
    accuracy_history
        The validation accuracy of earlier rounds.
    prior_updates
        Earlier rounds' accepted deltas (the screening's history).
    config
        The round settings.
    seeds
        The seeds derived from the round's submissions digest.
    """

    model_in: str
    global_vector: Vector
    hyperparams: HyperParams
    accuracy_history: Sequence[float]
    prior_updates: Sequence[Vector]
    config: RoundConfig
    seeds: RoundSeeds

    def decide(
        self,
        vectors: Sequence[Vector | None],
        validation: tuple[Any, Any],
        *,
        outlier_flags: Sequence[bool] | None = None,
        decide: Callable[..., RoundDecision] = decide_round,
    ) -> RoundDecision:
        """The round's decision on ``vectors`` (None: a rejected update), with the circuit's flags when proven.

        ``decide`` is the decision function (default :func:`decide_round`); a caller passes its own module's name
        for it so a test can replace that caller's decision alone.
        """
        named = {name: getattr(self, name) for name in DECIDE_KEYWORDS}
        return decide(self.global_vector, vectors, validation=validation, outlier_flags=outlier_flags, **named)
