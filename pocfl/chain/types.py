"""Typed values exchanged with the marketplace contract: parameters, state, receipts and events."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
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


def _from_abi(names: tuple[str, ...], t: Any, convert: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """An ABI tuple (or web3's attribute dict) as keyword arguments: ``names`` in Solidity order, some converted."""
    t = tuple(t.values()) if isinstance(t, dict) else tuple(t)
    return {n: convert[n](v) if n in convert else v for n, v in zip(names, t, strict=False)}


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
        return tuple(int(v) if isinstance(v, IntEnum) else v for v in (getattr(self, n) for n in _PARAMS_ABI_ORDER))

    @classmethod
    def from_abi(cls, t: Any) -> ProjectParams:
        """Build from the ABI tuple (or web3's attribute dict)."""
        return cls(
            **_from_abi(
                _PARAMS_ABI_ORDER, t, {"registration_mode": RegistrationMode, "validation_set_commitment": bytes}
            )
        )


_PARAMS_ABI_ORDER = (
    "aggregator",
    "verifier",
    "start_time",
    "num_rounds",
    "submission_window",
    "aggregation_window",
    "min_trainers",
    "max_trainers",
    "registration_mode",
    "stake",
    "validation_set_commitment",
    "initial_model_cid",
)
"""The fields of ``IPocMarketplace.ProjectParams`` in Solidity order (the dataclass puts the defaulted ones last)."""


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
        """Build from the ``ProjectView`` ABI tuple (its fields in the order of this class's, after the id)."""
        order = tuple(f.name for f in fields(cls))[1:]
        convert = {"params": ProjectParams.from_abi, "status": ProjectStatus, "submissions_digest": bytes}
        return cls(project_id=project_id, **_from_abi(order, t, convert))

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
