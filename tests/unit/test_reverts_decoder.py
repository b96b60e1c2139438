"""The revert decoder turns every backend's way of reporting a custom error into the named exception."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError

from pocfl.chain import contract_errors as E  # noqa: N812 - short name for the many error classes
from pocfl.chain.contract_errors import ALL_ERRORS
from pocfl.chain.reverts import ContractRevert, UnknownRevert, decode_revert, decode_revert_data
from pocfl.contracts import marketplace_abi
from pocfl.errors import ChainError

pytestmark = pytest.mark.unit

ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
# Revert data as anvil returned it for getProject(99), captured from a real run.
PROJECT_NOT_FOUND_99 = "0xa89b369d" + "00" * 31 + "63"


def sample_value(abi_type: str, i: int) -> Any:
    if abi_type == "address":
        return ADDRESS
    if abi_type == "bytes32":
        return bytes([i + 1]) * 32
    if abi_type.startswith("uint"):
        return 2 ** int(abi_type[4:] or 256) - 1 - i  # the extremes exercise full-width decoding
    raise AssertionError(f"no sample for {abi_type}")


def revert_data(cls: type[ContractRevert]) -> tuple[bytes, tuple[Any, ...]]:
    values = tuple(sample_value(t, i) for i, t in enumerate(cls.arg_types()))
    return cls.selector() + encode(cls.arg_types(), list(values)), values


def eth_tester_style(data: bytes) -> Exception:
    return TransactionFailed(f"execution reverted: {data!r}")


def rpc_style(data: bytes) -> Exception:  # anvil, Hardhat 3
    return ContractCustomError("0x" + data.hex(), data="0x" + data.hex())


def hardhat2_style(data: bytes) -> Exception:
    return ContractLogicError("execution reverted", data={"message": "reverted", "data": "0x" + data.hex()})


def eth_tester_hex_style(data: bytes) -> Exception:
    return TransactionFailed(f"execution reverted: 0x{data.hex()}")


FORMATS = [eth_tester_style, rpc_style, hardhat2_style, eth_tester_hex_style]


@pytest.mark.parametrize("make_exc", FORMATS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_error_in_every_format(cls: type[ContractRevert], make_exc: Any) -> None:
    data, values = revert_data(cls)
    decoded = decode_revert(make_exc(data))
    assert type(decoded) is cls
    assert isinstance(decoded, ChainError)
    assert decoded.values == values
    for name, value in zip(cls.fields, values, strict=True):
        assert getattr(decoded, name) == value


def test_real_data_and_attributes() -> None:
    for exc in (
        rpc_style(bytes.fromhex(PROJECT_NOT_FOUND_99[2:])),
        eth_tester_style(bytes.fromhex(PROJECT_NOT_FOUND_99[2:])),
    ):
        err = decode_revert(exc)
        assert isinstance(err, E.ProjectNotFound)
        assert err.projectId == err.project_id == 99
        assert err.as_dict() == {"projectId": 99}
        assert str(err).startswith("ProjectNotFound(projectId=99): ")  # with the CLI hint
    data = E.WrongRound.selector() + encode(["uint256", "uint32", "uint32"], [1, 2, 1])
    err = decode_revert_data(data)
    assert isinstance(err, E.WrongRound)
    assert (err.project_id, err.round, err.current_round, err.currentRound) == (1, 2, 1, 1)
    assert err.name == "WrongRound"


def test_a_project_status_reads_as_its_name_and_not_found_points_to_the_list() -> None:
    """Issue 14: ``ProjectNotActive(projectId=1, status=2)`` showed a raw number."""
    err = decode_revert_data(E.ProjectNotActive.selector() + encode(["uint256", "uint8"], [1, 2]))
    assert str(err).startswith("ProjectNotActive(projectId=1, status=FINISHED): the project is over")
    assert isinstance(err, E.ProjectNotActive) and err.status == 2 and err.as_dict() == {"projectId": 1, "status": 2}
    unknown = decode_revert_data(E.ProjectNotEnded.selector() + encode(["uint256", "uint8"], [1, 9]))
    assert str(unknown).startswith("ProjectNotEnded(projectId=1, status=9): ")  # a status this client lacks
    missing = decode_revert_data(bytes.fromhex(PROJECT_NOT_FOUND_99[2:]))
    assert "`pocfl project list`" in str(missing)


def test_addresses_come_back_checksummed() -> None:
    data = E.NotOwner.selector() + encode(["uint256", "address", "address"], [7, ADDRESS.lower(), ADDRESS.lower()])
    err = decode_revert_data(data)
    assert isinstance(err, E.NotOwner)
    assert (err.caller, err.owner) == (ADDRESS, ADDRESS)


def test_bytes_arguments_render_as_hex() -> None:
    data = E.SubmissionsMismatch.selector() + encode(
        ["uint256", "uint32", "bytes32", "bytes32"], [1, 0, b"\x01" * 32, b"\x02" * 32]
    )
    err = decode_revert_data(data)
    assert isinstance(err, E.SubmissionsMismatch)
    assert err.as_dict()["expected"] == "0x" + "01" * 32
    assert err.computed == b"\x02" * 32


@pytest.mark.parametrize("make_exc", FORMATS, ids=lambda f: f.__name__)
def test_unknown_selector(make_exc: Any) -> None:
    data = bytes.fromhex("deadbeef") + encode(["uint256"], [5])
    err = decode_revert(make_exc(data))
    assert type(err) is UnknownRevert
    assert err.data == data
    assert "0xdeadbeef" in str(err)


def test_string_reason_and_panic_are_unknown() -> None:
    reason = keccak(text="Error(string)")[:4] + encode(["string"], ["no ether"])
    panic = keccak(text="Panic(uint256)")[:4] + encode(["uint256"], [0x11])
    for data in (reason, panic):
        err = decode_revert(rpc_style(data))
        assert type(err) is UnknownRevert and err.data == data
    err = decode_revert(ContractPanicError("Panic error 0x11", data="0x" + panic.hex()))
    assert type(err) is UnknownRevert and err.data == panic


def test_truncated_arguments_are_unknown() -> None:
    data, _ = revert_data(E.WrongRound)
    err = decode_revert_data(data[:40])
    assert type(err) is UnknownRevert and err.data == data[:40]


@pytest.mark.parametrize(
    "exc",
    [
        ContractLogicError("execution reverted", data="0x"),
        ContractLogicError("execution reverted", data=None),
        TransactionFailed("execution reverted: b''"),
        TransactionFailed("out of gas"),
    ],
    ids=["rpc-empty", "rpc-none", "tester-empty", "tester-no-data"],
)
def test_reverts_without_data(exc: Exception) -> None:
    err = decode_revert(exc)
    assert type(err) is UnknownRevert
    assert err.data == b""
    assert not str(err).startswith("(")  # the message, not web3's (message, data) args tuple


@pytest.mark.parametrize("exc", [ValueError("x"), ChainError("y"), KeyError("z")])
def test_other_exceptions_are_not_reverts(exc: Exception) -> None:
    assert decode_revert(exc) is None


def test_generated_classes_match_the_abi() -> None:
    abi_errors = {item["name"]: item for item in marketplace_abi() if item["type"] == "error"}
    assert {cls.__name__ for cls in ALL_ERRORS} == set(abi_errors)
    for cls in ALL_ERRORS:
        inputs = abi_errors[cls.__name__]["inputs"]
        # Enum arguments (ProjectStatus) are uint8 in the ABI.
        signature = f"{cls.__name__}({','.join(i['type'] for i in inputs)})"
        assert cls.signature == signature
        assert cls.selector() == keccak(text=signature)[:4]
        assert cls.fields == tuple(i["name"] for i in inputs)
        assert issubclass(cls, ContractRevert)


def test_selectors_are_unique() -> None:
    selectors = [cls.selector() for cls in ALL_ERRORS]
    assert len(set(selectors)) == len(selectors) == len(ALL_ERRORS)
