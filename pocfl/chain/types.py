"""Typed values exchanged with the marketplace contract: parameters, state, receipts and events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any

ZERO_ADDRESS = "0x" + "00" * 20
ZERO_BYTES32 = b"\x00" * 32


class RegistrationMode(IntEnum):
    """Who may register for a project."""

    OPEN = 0
    ALLOWLIST = 1


class ProjectStatus(IntEnum):
    """Lifecycle of a project (``NONE`` means the id does not exist)."""

    NONE = 0
    ACTIVE = 1
    FINISHED = 2
    CANCELLED = 3


class CancelReason(IntEnum):
    """Why a project was cancelled."""

    OWNER = 0
    UNDERSUBSCRIBED = 1
    AGGREGATOR_TIMEOUT = 2


def jsonable(value: Any) -> Any:
    """Make ``value`` JSON-serialisable, recursively.

    Bytes become 0x-hex, enums lower-case names, mappings (including web3's AttributeDict) dicts and
    tuples lists; ints stay exact.
    """
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, IntEnum):
        return value.name.lower()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


class _Jsonable:
    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (bytes as 0x-hex, enums as lower-case names)."""
        out: dict[str, Any] = jsonable(asdict(self))  # type: ignore[call-overload]
        return out


@dataclass(frozen=True)
class ProjectParams(_Jsonable):
    """Parameters fixed at project creation (see ``IPocMarketplace.ProjectParams``)."""

    aggregator: str
    start_time: int
    num_rounds: int
    submission_window: int
    aggregation_window: int
    min_trainers: int
    max_trainers: int
    initial_model_cid: str
    registration_mode: RegistrationMode = RegistrationMode.OPEN
    stake: int = 0
    validation_set_commitment: bytes = ZERO_BYTES32
    verifier: str = ZERO_ADDRESS

    def to_abi(self) -> tuple[Any, ...]:
        """The struct as the ABI tuple, in Solidity field order."""
        return (
            self.aggregator,
            self.verifier,
            self.start_time,
            self.num_rounds,
            self.submission_window,
            self.aggregation_window,
            self.min_trainers,
            self.max_trainers,
            int(self.registration_mode),
            self.stake,
            self.validation_set_commitment,
            self.initial_model_cid,
        )

    @classmethod
    def from_abi(cls, t: Any) -> ProjectParams:
        """Build from the ABI tuple (or web3's attribute dict)."""
        t = tuple(t.values()) if isinstance(t, dict) else tuple(t)
        return cls(
            aggregator=t[0],
            verifier=t[1],
            start_time=t[2],
            num_rounds=t[3],
            submission_window=t[4],
            aggregation_window=t[5],
            min_trainers=t[6],
            max_trainers=t[7],
            registration_mode=RegistrationMode(t[8]),
            stake=t[9],
            validation_set_commitment=bytes(t[10]),
            initial_model_cid=t[11],
        )


@dataclass(frozen=True)
class Submission(_Jsonable):
    """One recorded submission: who, and what it committed to."""

    trainer: str
    commitment: bytes
    feature_commitment: bytes = ZERO_BYTES32

    def to_abi(self) -> tuple[str, bytes, bytes]:
        """ABI tuple."""
        return (self.trainer, self.commitment, self.feature_commitment)


@dataclass(frozen=True)
class RoundPost(_Jsonable):
    """A round's results as posted by the aggregator."""

    model_cid: str
    submissions: tuple[Submission, ...]
    scores: tuple[int, ...]
    outliers: tuple[bool, ...]
    report_hash: bytes = ZERO_BYTES32
    hyperparams_hash: bytes = ZERO_BYTES32

    def to_abi(self) -> tuple[Any, ...]:
        """ABI tuple, in Solidity field order."""
        return (
            self.model_cid,
            self.report_hash,
            self.hyperparams_hash,
            [s.to_abi() for s in self.submissions],
            list(self.scores),
            list(self.outliers),
        )


@dataclass(frozen=True)
class ProjectState(_Jsonable):
    """A project's parameters and live state (``getProject``)."""

    project_id: int
    owner: str
    params: ProjectParams
    status: ProjectStatus
    budget: int
    round_budget: int
    escrow: int
    stakes_held: int
    trainer_count: int
    current_round: int
    round_opened_at: int
    submission_deadline: int
    aggregation_deadline: int
    submission_count: int
    failed_rounds: int
    consecutive_failures: int
    submissions_digest: bytes
    model_cid: str

    @classmethod
    def from_abi(cls, project_id: int, t: Any) -> ProjectState:
        """Build from the ``ProjectView`` ABI tuple."""
        t = tuple(t.values()) if isinstance(t, dict) else tuple(t)
        return cls(
            project_id=project_id,
            owner=t[0],
            params=ProjectParams.from_abi(t[1]),
            status=ProjectStatus(t[2]),
            budget=t[3],
            round_budget=t[4],
            escrow=t[5],
            stakes_held=t[6],
            trainer_count=t[7],
            current_round=t[8],
            round_opened_at=t[9],
            submission_deadline=t[10],
            aggregation_deadline=t[11],
            submission_count=t[12],
            failed_rounds=t[13],
            consecutive_failures=t[14],
            submissions_digest=bytes(t[15]),
            model_cid=t[16],
        )

    def phase(self, now: int) -> str:
        """Human-readable phase at timestamp ``now``."""
        if self.status != ProjectStatus.ACTIVE:
            return self.status.name.lower()
        if now < self.params.start_time:
            return "registration"
        if self.trainer_count < self.params.min_trainers:
            return "undersubscribed"
        if now < self.submission_deadline:
            return f"round {self.current_round}: submissions open"
        if now < self.aggregation_deadline:
            return f"round {self.current_round}: aggregating"
        return f"round {self.current_round}: overdue (anyone may fail it)"


@dataclass(frozen=True)
class TrainerState(_Jsonable):
    """A trainer's state in one project (``getTrainer``)."""

    allowed: bool
    registered: bool
    stake_held: bool
    submitted_current_round: bool


@dataclass(frozen=True)
class EventRecord(_Jsonable):
    """A decoded contract event."""

    name: str
    args: dict[str, Any]
    block_number: int
    log_index: int
    tx_hash: str


@dataclass(frozen=True)
class Receipt(_Jsonable):
    """A mined, successful transaction and the marketplace events it emitted.

    ``fee_wei`` is what the sender paid (``gasUsed * effectiveGasPrice``); ``contract_address`` is set
    for deployments.
    """

    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[EventRecord, ...] = field(default_factory=tuple)
    fee_wei: int = 0
    contract_address: str | None = None

    def event(self, name: str) -> EventRecord:
        """The first event called ``name``.

        Raises
        ------
        KeyError
            If the transaction emitted no such event.
        """
        for e in self.events:
            if e.name == name:
                return e
        raise KeyError(f"transaction {self.tx_hash} emitted no {name} event")
