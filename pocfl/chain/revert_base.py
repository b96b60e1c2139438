"""The base classes of the named contract errors: :class:`ContractRevert`, :class:`UnknownRevert`, their fix hints.

The generated :mod:`pocfl.chain.contract_errors` subclasses :class:`ContractRevert` once per custom error of the
contract; :mod:`pocfl.chain.reverts` decodes a backend's revert into one of them. Both import this module, which
imports neither.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from eth_utils.crypto import keccak

from pocfl.errors import ChainError


def _readable(field: str, value: Any) -> Any:
    """An argument as people read it: a project ``status`` by its name (``FINISHED``), not its number."""
    if field == "status" and isinstance(value, int):
        from pocfl.chain.types import ProjectStatus

        try:
            return ProjectStatus(value).name
        except ValueError:  # a status this client does not know: the number is all there is
            return value
    return value


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ContractRevert(ChainError):
    """A contract call reverted with one of the marketplace's custom errors.

    Attributes carry the error's arguments under their Solidity names (``projectId``) and their
    snake_case aliases (``project_id``). A subclass declares only :attr:`params`, the error's parameter list as
    Solidity writes it; :attr:`signature` and :attr:`fields` are derived from it and the class name.
    """

    params: ClassVar[str] = ""
    signature: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        typed = [p.split() for p in cls.params.split(",") if p.strip()]
        cls.signature = f"{cls.__name__}({','.join(t for t, _ in typed)})"
        cls.fields = tuple(n for _, n in typed)

    def __init__(self, *values: Any) -> None:
        self.values = tuple(values)
        for name, value in zip(self.fields, values, strict=False):
            setattr(self, name, value)
            setattr(self, _snake(name), value)
        super().__init__(self._describe())

    @property
    def name(self) -> str:
        """The Solidity error name."""
        return type(self).__name__

    def as_dict(self) -> dict[str, Any]:
        """The arguments as a JSON-friendly dict."""
        out: dict[str, Any] = {}
        for k, v in zip(self.fields, self.values, strict=False):
            out[k] = "0x" + v.hex() if isinstance(v, bytes) else v
        return out

    def _describe(self) -> str:
        args = ", ".join(f"{k}={_readable(k, v)}" for k, v in self.as_dict().items())
        hint = _HINTS.get(self.name)
        return f"{self.name}({args})" + (f": {hint}" if hint else "")

    @classmethod
    def selector(cls) -> bytes:
        """The 4-byte selector of the error."""
        return keccak(text=cls.signature)[:4]

    @classmethod
    def arg_types(cls) -> list[str]:
        """ABI types of the arguments, from the signature."""
        inner = cls.signature[cls.signature.index("(") + 1 : -1]
        return [t for t in inner.split(",") if t]


class UnknownRevert(ChainError):
    """A revert whose data matches none of the known custom errors (or carries no data)."""

    def __init__(self, message: str, data: bytes = b"") -> None:
        self.data = data
        super().__init__(message if not data else f"{message} (revert data 0x{data.hex()})")


_HINTS: dict[str, str] = {
    "ProjectNotFound": "no project has this id; `pocfl project list` lists the projects on this market",
    "NotOwner": "use the owner's key (--key/--keystore)",
    "NotAggregator": "only the project's aggregator may post rounds",
    "RegistrationClosed": "registration ends when training starts",
    "NotRegistered": "register first with `pocfl register`",
    "WrongRound": "submit or post for the project's current round",
    "SubmissionWindowClosed": "the submission deadline passed; wait for the next round",
    "SubmissionWindowOpen": "results can be posted only after the submission window",
    "AggregationWindowClosed": "the aggregation window passed; anyone can now fail the round",
    "AggregationWindowOpen": "the aggregator still has time to post",
    "NotEnoughTrainers": "too few trainers registered; anyone can cancel the project",
    "NothingToWithdraw": "nothing is owed to this account",
    "ProjectNotEnded": "wait until the project is finished or cancelled",
    "WrongStake": "send exactly the project's stake",
    "StartTimeInPast": "choose a start time in the future",
    "ProjectNotActive": "the project is over (finished or cancelled); see `pocfl project status ID`",
    "ZeroBudget": "pass --budget ETH (or --budget-wei) greater than zero",
    "BudgetTooLarge": "the budget must fit 128 bits of wei",
    "ZeroAggregator": "pass the aggregator's address with --aggregator",
    "InvalidRounds": "pass --rounds 1 or more",
    "InvalidWindows": "both windows must be at least 1 second",
    "InvalidTrainerBounds": "need 1 <= --min-trainers <= --max-trainers <= 512",
    "NotAllowlistMode": "the project has open registration; anyone may register",
    "NotAllowlisted": "ask the project owner to run `pocfl project allow ID ADDRESS`",
    "AlreadyRegistered": "this account is registered already; see `pocfl project status`",
    "ProjectFull": "the project reached --max-trainers",
    "RoundNotOpen": "training has not started yet; wait for the start time (`pocfl chain advance` on a local node)",
    "AlreadySubmitted": "one submission per trainer and round; wait for the next round",
    "InvalidCid": "CIDs must be 1 to 128 bytes",
    "SubmissionCountMismatch": "post exactly the round's submissions (see `pocfl round show`)",
    "LengthMismatch": "give one score and one outlier flag per submission",
    "SubmissionsMismatch": "the submissions must be the recorded ones, in order (see `pocfl round show`)",
    "ProofRejected": "the project's verifier rejected the proof; check --proof-file",
    "CannotCancel": "the owner may cancel before the start time; anyone once an undersubscribed project started",
    "NoStakeHeld": "this account has no stake in the project (already released, or none was paid)",
    "TransferFailed": "the recipient refused the ether; use --to with another address",
    "ZeroRecipient": "pass a non-zero --to address",
    "ReentrantCall": "a withdrawal re-entered the contract",
    "ScheduleOverflow": "the start time plus both windows must fit 64-bit timestamps",
}
