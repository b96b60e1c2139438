"""What the trainer client reports: its errors, a round's result and outcome (:mod:`trainer_client.client`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pocfl.errors import PocflError
from pocfl.rounds.hyperparams import HyperParams

# --- errors ---------------------------------------------------------------------------------------------------


class TrainerError(PocflError):
    """A trainer cannot take part in a round; the message says why and what to do."""


class RoundNotOpenError(TrainerError):
    """The round has not opened yet (before the start time, too few trainers, or a later round)."""


class ProjectEndedError(TrainerError):
    """The project is finished or cancelled: there is nothing left to train."""


class NotATrainerError(TrainerError):
    """The signing account is not registered in the project."""


class DataMismatchError(TrainerError):
    """The local data does not fit the project's model (feature count or label range)."""


class UnknownAttackError(TrainerError, ValueError):
    """An attack name the trainer client does not implement."""


# --- results --------------------------------------------------------------------------------------------------


class RoundStatus(StrEnum):
    """What :meth:`TrainerClient.train_round` did."""

    SUBMITTED = "submitted"
    ALREADY_SUBMITTED = "already_submitted"
    LATE = "late"


@dataclass(frozen=True)
class RoundResult:
    """One round from the trainer's side.

    Attributes
    ----------
    project_id, round, trainer
        Which submission.
    status
        Submitted now, submitted before (never twice), or skipped because the window had closed.
    message
        One readable line about it.
    cid, commitment
        The stored object's CID (the encryption envelope when sealed) and the commitment to the plaintext; None
        when nothing was submitted.
    encrypted
        Whether the stored object is sealed to the aggregator (None when unknown: submitted by an earlier run).
    attack
        The attack applied, if any.
    model_cid
        The global model trained from.
    hyperparams
        The round's hyper-parameters.
    num_examples
        Local samples trained on.
    update_norm
        L2 norm of the submitted delta.
    local_accuracy, local_loss
        The trained model on the local data (before any attack).
    tx_hash, block
        The submit transaction.
    source
        Where a submission was found: ``"this run"``, ``"chain"`` or ``"journal"``.
    timings
        Seconds spent per step: ``fetch``, ``train``, ``submit``.
    plaintext
        The plaintext update file submitted by this run (kept for evidence, see :mod:`trainer_client.self_check`;
        never printed nor written to JSON).
    """

    project_id: int
    round: int
    trainer: str
    status: RoundStatus
    message: str
    cid: str | None = None
    commitment: bytes | None = None
    encrypted: bool | None = None
    attack: str | None = None
    model_cid: str | None = None
    hyperparams: HyperParams | None = None
    num_examples: int = 0
    update_norm: float | None = None
    local_accuracy: float | None = None
    local_loss: float | None = None
    tx_hash: str | None = None
    block: int | None = None
    source: str = "this run"
    timings: dict[str, float] = field(default_factory=dict)
    plaintext: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def submitted(self) -> bool:
        """Whether the round has this trainer's submission on chain (now or from before)."""
        return self.status is not RoundStatus.LATE

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (bytes as 0x hex, hyper-parameters as a dict)."""
        return {
            "project_id": self.project_id,
            "round": self.round,
            "trainer": self.trainer,
            "status": self.status.value,
            "message": self.message,
            "cid": self.cid,
            "commitment": None if self.commitment is None else "0x" + self.commitment.hex(),
            "encrypted": self.encrypted,
            "attack": self.attack,
            "model_cid": self.model_cid,
            "hyperparams": None if self.hyperparams is None else json.loads(self.hyperparams.to_json()),
            "num_examples": self.num_examples,
            "update_norm": self.update_norm,
            "local_accuracy": self.local_accuracy,
            "local_loss": self.local_loss,
            "tx_hash": self.tx_hash,
            "block": self.block,
            "source": self.source,
            "timings": dict(self.timings),
        }


@dataclass(frozen=True)
class RoundOutcome:
    """How a round ended for this trainer, once the aggregator posted it (or it failed).

    Attributes
    ----------
    project_id, round, trainer
        Which round.
    state
        ``posted``, ``failed`` or ``cancelled`` (the project ended without settling the round).
    submitted
        Whether the round's posted submissions include this trainer.
    score, outlier, credited_wei
        This trainer's posted score, outlier flag and credit for the round (None / 0 when not in the round).
    earned_wei
        Everything this trainer was credited in the project so far.
    claimable_wei
        The account's claimable credits over all projects (``credits``).
    model_cid
        The new global model (posted rounds).
    verdict, reason
        This trainer's entry in the round report (``scored``, ``outlier``, ``free_rider``, ``copy``, ``stale``,
        ``rejected``) and the rejection reason; None when the report could not be read.
    accuracy
        Validation accuracy of the new global model, from the report.
    why
        Why this trainer was rejected, flagged or paid nothing: the rule, its statistic and threshold
        (:func:`pocfl.rounds.report.explain_entry`); None when it was scored above 0 or the report is unreadable.
    complaint
        The trainer's own check of its treatment (:mod:`trainer_client.self_check`): one plain sentence when it
        was rejected, flagged or misreported; None otherwise.
    evidence
        The evidence file saved with a complaint (``pocfl audit --evidence FILE``).
    """

    project_id: int
    round: int
    trainer: str
    state: str
    submitted: bool
    score: int | None = None
    outlier: bool | None = None
    credited_wei: int = 0
    earned_wei: int = 0
    claimable_wei: int = 0
    model_cid: str | None = None
    verdict: str | None = None
    reason: str | None = None
    accuracy: float | None = None
    complaint: str | None = None
    evidence: str | None = None
    why: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "project_id": self.project_id,
            "round": self.round,
            "trainer": self.trainer,
            "state": self.state,
            "submitted": self.submitted,
            "score": self.score,
            "outlier": self.outlier,
            "credited_wei": self.credited_wei,
            "earned_wei": self.earned_wei,
            "claimable_wei": self.claimable_wei,
            "model_cid": self.model_cid,
            "verdict": self.verdict,
            "reason": self.reason,
            "accuracy": self.accuracy,
            "why": self.why,
            "complaint": self.complaint,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class RoundSummary:
    """A round of :meth:`TrainerClient.run`: what was submitted and, once settled, how it was scored."""

    result: RoundResult
    outcome: RoundOutcome | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "result": self.result.to_json(),
            "outcome": None if self.outcome is None else self.outcome.to_json(),
        }
