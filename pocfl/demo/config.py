"""What the demos run: the amounts and windows both share, the scripted demo's model, the FL demo's settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pocfl.errors import ConfigError
from pocfl.updates import ENVELOPE_OVERHEAD, ModelSpec

ETH = 10**18
FUNDING = 10 * ETH
STAKE = ETH // 10
ROUND_BUDGET = ETH
START_IN = 60
SUBMISSION_WINDOW = 600
AGGREGATION_WINDOW = 600

# --- the scripted demo ------------------------------------------------------------------------------------------

NUM_TRAINERS = 3
"""Trainers of the scripted demo (its script gives each of them a score)."""
SEED = 2023
"""Default seed of the scripted demo's initial model and of every trainer's update: the same files on every run."""
POISON_SCALE = 100.0
"""How much larger than an honest delta the update of a trainer the script flags as an outlier is."""
MODEL_SPEC = ModelSpec(
    (
        ("fc1.weight", (16, 8), "F32"),
        ("fc1.bias", (16,), "F32"),
        ("fc2.weight", (2, 16), "F32"),
        ("fc2.bias", (2,), "F32"),
    ),
    name="pocfl-demo-mlp",
)
"""The scripted demo's model: a tiny two-layer perceptron (178 parameters)."""
MAX_UPDATE_SIZE = MODEL_SPEC.nbytes + 4096 + ENVELOPE_OVERHEAD
"""The scripted aggregator refuses any update object larger than the model's tensors plus header room."""
REPORT_FORMAT = "pocfl-demo-report/1"

# --- the federated-learning demo --------------------------------------------------------------------------------

DEFAULT_ROUNDS = 4
DEFAULT_TRAINERS = 8
DEFAULT_ATTACKS = ("sign_flip", "scaling")
DEFAULT_FREE_RIDERS = 1
DEFAULT_HIDDEN = 32
DEFAULT_EPOCHS = 3
DEFAULT_LEARNING_RATE = 0.3
DEFAULT_BATCH_SIZE = 16
DEFAULT_ALPHA = 0.5
DEFAULT_SEED = 4
HONEST = "honest"
FREE_RIDER = "free_rider"


@dataclass(frozen=True)
class FlDemoConfig:
    """What the federated-learning demo runs.

    Attributes
    ----------
    rounds
        Training rounds (at least 1).
    trainers
        Trainers in all (honest + attackers + free riders).
    attacks
        One attack per attacking trainer (names :func:`trainer_client.parse_attack` knows).
    free_riders
        Trainers that submit zero updates.
    hidden, epochs, learning_rate, batch_size
        Model width and round-0 local training settings.
    alpha
        Dirichlet concentration of the label skew of the trainers' data shares.
    seed
        Seed of the initial weights, the data split and partition, and local training.
    encrypt
        Whether the manifest carries the aggregator's key (trainers seal their updates to it).
    prove
        Prove every round (``zk/``): deploy an ezkl verifier for a ``trainers``-slot circuit, set it as the project's
        verifier, and have trainers commit to ``sketch_dim`` features; the contract verifies each round's proof.
    sketch_dim
        Feature (sketch) dimension of the proven decision.
    zk_cache
        Where circuit setups (proving keys, local SRS) are cached; default a temporary folder.
    """

    rounds: int = DEFAULT_ROUNDS
    trainers: int = DEFAULT_TRAINERS
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    free_riders: int = DEFAULT_FREE_RIDERS
    hidden: int = DEFAULT_HIDDEN
    epochs: int = DEFAULT_EPOCHS
    learning_rate: float = DEFAULT_LEARNING_RATE
    batch_size: int = DEFAULT_BATCH_SIZE
    alpha: float = DEFAULT_ALPHA
    seed: int = DEFAULT_SEED
    encrypt: bool = True
    prove: bool = False
    sketch_dim: int = 16
    zk_cache: Path | None = None

    def roles(self) -> tuple[str, ...]:
        """Each trainer's role (``honest``, an attack name or ``free_rider``), dishonest ones spread out.

        Raises
        ------
        ConfigError
            Fewer than 3 trainers, no honest trainer, or an unknown attack.
        """
        from trainer_client import parse_attack

        dishonest = [parse_attack(a) for a in self.attacks]
        names = [a.value if a is not None else HONEST for a in dishonest] + [FREE_RIDER] * self.free_riders
        if self.rounds < 1:
            raise ConfigError(f"the demo needs at least one round, got {self.rounds}")
        if self.trainers < 3:
            raise ConfigError(f"the demo needs at least 3 trainers, got {self.trainers}")
        if len(names) >= self.trainers:
            raise ConfigError(
                f"{len(names)} attackers and free riders leave no honest trainer among {self.trainers} trainers"
            )
        roles = [HONEST] * self.trainers
        n, d = self.trainers, len(names)
        for k, name in enumerate(names):  # evenly spread: 8 trainers, 3 dishonest -> trainers 2, 5 and 8
            roles[min(n - 1, round((k + 0.5) * n / d))] = name
        return tuple(roles)

    def data_spec(self, i: int) -> str:
        """Trainer ``i``'s private data: its share of the digits training split."""
        return f"digits:part={i}:of={self.trainers}:alpha={self.alpha:g}:seed={self.seed}"

    def to_json(self) -> dict[str, object]:
        """The settings as ``pocfl demo --json`` shows them (``zk_cache`` is where, not what: left out)."""
        return {
            "rounds": self.rounds,
            "trainers": self.trainers,
            "attacks": list(self.attacks),
            "free_riders": self.free_riders,
            "hidden": self.hidden,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "alpha": self.alpha,
            "seed": self.seed,
            "encrypt": self.encrypt,
            "prove": self.prove,
            "sketch_dim": self.sketch_dim,
        }


def group_of(role: str) -> str:
    """``honest``, ``attacker`` or ``free rider``."""
    if role == HONEST:
        return "honest"
    return "free rider" if role == FREE_RIDER else "attacker"
