"""The trainer client: train on private data, store the update, submit its CID and commitment on chain.

One code path, two ways to run it: standalone (``pocfl train``, :meth:`TrainerClient.run`) and as a Flower
ClientApp (:mod:`trainer_client.flower_client`, which calls :meth:`TrainerClient.train_round` per message).
Flower is imported only by that module.
"""

from pocfl.waiting import is_transient
from trainer_client.attacks import SUPPORTED_ATTACKS, parse_attack
from trainer_client.client import TrainerClient
from trainer_client.data import DataSpecError, DigitsSpec, digits_share, load_private_data, parse_digits_spec
from trainer_client.journal import Journal
from trainer_client.progress import TqdmReporter, TrainerReporter, describe_outcome
from trainer_client.results import (
    DataMismatchError,
    NotATrainerError,
    ProjectEndedError,
    RoundNotOpenError,
    RoundOutcome,
    RoundResult,
    RoundStatus,
    RoundSummary,
    TrainerError,
    UnknownAttackError,
)

__all__ = [
    "SUPPORTED_ATTACKS",
    "DataMismatchError",
    "DataSpecError",
    "DigitsSpec",
    "Journal",
    "NotATrainerError",
    "ProjectEndedError",
    "RoundNotOpenError",
    "RoundOutcome",
    "RoundResult",
    "RoundStatus",
    "RoundSummary",
    "TqdmReporter",
    "TrainerClient",
    "TrainerError",
    "TrainerReporter",
    "UnknownAttackError",
    "describe_outcome",
    "digits_share",
    "is_transient",
    "load_private_data",
    "parse_attack",
    "parse_digits_spec",
]
