"""Turn reverts from every chain backend into named Python exceptions.

Backends report a contract's custom error differently:

- eth-tester (py-evm) raises ``TransactionFailed("execution reverted: b'...'")`` with the revert data
  only as a ``bytes`` repr inside the message;
- anvil and Hardhat 3 raise web3's ``ContractCustomError`` with ``data = "0x<selector><args>"``;
- Hardhat 2 raises the base ``ContractLogicError`` whose ``data`` is a dict holding the hex.

:func:`decode_revert` handles all three and returns an instance of the generated class for the error
(see :mod:`pocfl.chain.contract_errors`), e.g. ``WrongRound(project_id=1, round=2, current_round=1)``.
"""

from __future__ import annotations

import ast
import re
from typing import Any, ClassVar

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from pocfl.errors import ChainError


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ContractRevert(ChainError):
    """A contract call reverted with one of the marketplace's custom errors.

    Attributes carry the error's arguments under their Solidity names (``projectId``) and their
    snake_case aliases (``project_id``).
    """

    signature: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()

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
        args = ", ".join(f"{k}={v}" for k, v in self.as_dict().items())
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
    "ProjectNotFound": "check the project id with `pocfl project status`",
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
    "ProjectNotActive": "the project is finished or cancelled; see `pocfl project status`",
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


def _registry() -> dict[bytes, type[ContractRevert]]:
    from pocfl.chain.contract_errors import ALL_ERRORS

    return {cls.selector(): cls for cls in ALL_ERRORS}


_REGISTRY: dict[bytes, type[ContractRevert]] | None = None


def decode_revert_data(data: bytes, message: str = "execution reverted") -> ChainError:
    """Decode raw revert data into a named exception (or :class:`UnknownRevert`)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _registry()
    cls = _REGISTRY.get(data[:4])
    if cls is None:
        return UnknownRevert(message, data)
    try:
        values = abi_decode(cls.arg_types(), data[4:])
    except Exception:  # malformed arguments: keep the raw data
        return UnknownRevert(message, data)
    types = cls.arg_types()
    values = tuple(to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True))
    return cls(*values)


def _hex_to_bytes(value: str) -> bytes:
    value = value[2:] if value.startswith("0x") else value
    return bytes.fromhex(value)


def revert_data_from_exception(exc: BaseException) -> bytes | None:
    """Extract raw revert data from a backend's exception, or None if it carries none."""
    data: Any = getattr(exc, "data", None)
    if isinstance(data, dict):  # Hardhat 2: {"message": ..., "data": "0x..."}
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return _hex_to_bytes(data)
    if isinstance(data, bytes):
        return data
    text = str(exc.args[0]) if exc.args else str(exc)
    marker = "execution reverted: "
    if marker in text:  # eth-tester: "execution reverted: b'\\x..'"
        tail = text.split(marker, 1)[1].strip()
        if tail.startswith(("b'", 'b"')):
            try:
                literal = ast.literal_eval(tail)
            except (ValueError, SyntaxError):
                return None
            if isinstance(literal, bytes):
                return literal
        if tail.startswith("0x"):
            try:
                return _hex_to_bytes(tail.split()[0])
            except ValueError:
                return None
    return None


def decode_revert(exc: BaseException) -> ChainError | None:
    """Map a backend exception to a named :class:`ContractRevert`, or None if it is not a revert."""
    from eth_tester.exceptions import TransactionFailed
    from web3.exceptions import ContractLogicError

    if not isinstance(exc, TransactionFailed | ContractLogicError):
        return None
    # web3's errors keep (message, data) in args, so str(exc) would read like a tuple.
    message = getattr(exc, "message", None) or str(exc)
    data = revert_data_from_exception(exc)
    if not data:
        return UnknownRevert(message)
    return decode_revert_data(data, message)
