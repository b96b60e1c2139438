"""Turn reverts from every chain backend into named Python exceptions.

Backends report a contract's custom error differently:

- eth-tester (py-evm) raises ``TransactionFailed("execution reverted: b'...'")`` with the revert data
  only as a ``bytes`` repr inside the message;
- anvil and Hardhat 3 raise web3's ``ContractCustomError`` with ``data = "0x<selector><args>"``;
- Hardhat 2 raises the base ``ContractLogicError`` whose ``data`` is a dict holding the hex.

:func:`decode_revert` handles all three and returns an instance of the generated class for the error
(see :mod:`pocfl.chain.contract_errors`), e.g. ``WrongRound(project_id=1, round=2, current_round=1)``. The base
classes live in :mod:`pocfl.chain.revert_base` and are re-exported here.
"""

from __future__ import annotations

import ast
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address

from pocfl.chain.contract_errors import ALL_ERRORS
from pocfl.chain.revert_base import _HINTS as _HINTS
from pocfl.chain.revert_base import ContractRevert, UnknownRevert
from pocfl.errors import ChainError

__all__ = [
    "ContractRevert",
    "UnknownRevert",
    "decode_revert",
    "decode_revert_data",
    "revert_data_from_exception",
]


_REGISTRY: dict[bytes, type[ContractRevert]] = {cls.selector(): cls for cls in ALL_ERRORS}


def decode_revert_data(data: bytes, message: str = "execution reverted") -> ChainError:
    """Decode raw revert data into a named exception (or :class:`UnknownRevert`)."""
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
