"""Starting a standalone trainer (``pocfl train``) and reading what it earned, without any terminal output.

:func:`prepare_trainer` loads the private data and waits for the chain, the store and the project to answer;
:meth:`PreparedTrainer.start` builds the :class:`~trainer_client.TrainerClient`; :func:`training_result` reads
the credits once it stopped. Every chain or store read waits out outages (:func:`pocfl.waiting.start_when_up`): a
trainer started during one waits for it instead of exiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pocfl.chain.types import ProjectState
from pocfl.market import Market
from pocfl.testing.attacks import Attack
from pocfl.waiting import start_when_up
from trainer_client import RoundSummary, TrainerClient, TrainerReporter, load_private_data, parse_attack


@dataclass(frozen=True)
class PreparedTrainer:
    """A trainer's data and connection, before its client starts.

    Attributes
    ----------
    market
        The trainer's market (its client signs as the trainer).
    project_id
        The project.
    state
        The project as read at start.
    x, y
        The private data.
    attack
        The demo attack, or None for an honest trainer.
    rounds
        The rounds it will submit: those asked for, else those left in the project (at least one).
    """

    market: Market
    project_id: int
    state: ProjectState
    x: NDArray[np.floating]
    y: NDArray[np.integer]
    attack: Attack | None
    rounds: int

    def describe(self) -> str:
        """One line: who trains on what."""
        return (
            f"trainer {self.market.client.sender}, project {self.project_id}: {self.x.shape[0]} samples x "
            f"{self.x.shape[1]} features" + (f", attack {self.attack.value}" if self.attack is not None else "")
        )

    def start(
        self,
        *,
        seed: int,
        state_dir: Path,
        reporter: TrainerReporter,
        from_block: int,
        say: Callable[[str], None],
    ) -> TrainerClient:
        """The trainer's client (its journal in ``state_dir``), once the chain and the store answer."""
        return start_when_up(
            "start the trainer",
            lambda: TrainerClient(
                self.market,
                self.project_id,
                self.x,
                self.y,
                seed=seed,
                attack=self.attack,
                state_dir=state_dir,
                reporter=reporter,
                from_block=from_block,
            ),
            say=say,
        )


def prepare_trainer(
    connect: Callable[[], Market],
    project_id: int,
    data: str,
    *,
    label_column: str | None = None,
    attack: str | None = None,
    rounds: int | None = None,
    say: Callable[[str], None],
) -> PreparedTrainer:
    """Load the private data, connect and read the project (waiting out outages).

    Parameters
    ----------
    connect
        Opens the trainer's market.
    project_id
        The project.
    data
        The private data (see :func:`trainer_client.load_private_data`).
    label_column
        CSV label column (default: ``label`` if present, else the last).
    attack
        A demo attack's name (see :func:`trainer_client.parse_attack`).
    rounds
        Rounds to submit; default those left in the project.
    say
        Status lines while waiting.
    """
    chosen = parse_attack(attack)
    x, y = load_private_data(data, label_column=label_column)
    market = start_when_up("connect to the chain", connect, say=say)
    state = start_when_up("read the project", lambda: market.client.project(project_id), say=say)
    total = rounds if rounds is not None else max(state.params.num_rounds - state.current_round, 1)
    return PreparedTrainer(market, project_id, state, x, y, chosen, total)


@dataclass(frozen=True)
class TrainingResult:
    """What a trainer did and earned.

    Attributes
    ----------
    project_id, trainer
        The project and the trainer's address.
    project_status
        The project's status at the end (``active``, ``finished``, ``cancelled``).
    rounds
        One summary per round handled.
    earned
        Wei credited to the trainer in this project.
    claimable
        Wei the trainer can withdraw from the marketplace in all (every project).
    """

    project_id: int
    trainer: str
    project_status: str
    rounds: list[RoundSummary]
    earned: int
    claimable: int

    def to_json(self) -> dict[str, Any]:
        """``pocfl train --json``'s document."""
        return {
            "project_id": self.project_id,
            "trainer": self.trainer,
            "project_status": self.project_status,
            "rounds": [item.to_json() for item in self.rounds],
            "earned_wei": self.earned,
            "claimable_wei": self.claimable,
        }


def training_result(
    client: TrainerClient, summaries: list[RoundSummary], *, say: Callable[[str], None]
) -> TrainingResult:
    """Read the final credits and the project's status after :meth:`TrainerClient.run` (waiting out outages)."""
    m = client.market.client
    earned, claimable, final = start_when_up(
        "read the final credits",
        lambda: (client.earned(), m.credits(m.sender), m.project(client.project_id)),
        say=say,
    )
    return TrainingResult(client.project_id, m.sender, final.status.name.lower(), summaries, earned, claimable)


__all__ = ["PreparedTrainer", "TrainingResult", "prepare_trainer", "training_result"]
