"""Generated error classes and artifacts agree with the ABI."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak

from pocfl.chain import contract_errors
from pocfl.chain.reverts import ContractRevert
from pocfl.contracts import load_artifact, marketplace_abi

pytestmark = pytest.mark.unit


def _signature(item: dict[str, object]) -> str:
    inputs = item["inputs"]
    assert isinstance(inputs, list)
    return f"{item['name']}({','.join(i['type'] for i in inputs)})"


def test_every_abi_error_has_a_named_exception() -> None:
    errors = [i for i in marketplace_abi() if i["type"] == "error"]
    assert len(errors) == len(contract_errors.ALL_ERRORS)
    for item in errors:
        cls = getattr(contract_errors, item["name"])
        assert issubclass(cls, ContractRevert)
        assert cls.signature == _signature(item)
        assert cls.selector() == keccak(text=_signature(item))[:4]
        assert cls.fields == tuple(i["name"] for i in item["inputs"])


def test_artifacts_are_complete() -> None:
    art = load_artifact("PocMarketplace")
    assert art["bytecode"].startswith("0x60") and len(art["bytecode"]) > 1000
    assert {"createProject", "submit", "postRound", "claim"} <= {i.get("name") for i in art["abi"]}
    assert art["testOnly"] is False
    assert load_artifact("ReentrantClaimer")["testOnly"] is True
    with pytest.raises(FileNotFoundError):
        load_artifact("NoSuchContract")


def test_every_error_message_suggests_a_fix() -> None:
    from pocfl.chain.reverts import _HINTS

    names = {cls.__name__ for cls in contract_errors.ALL_ERRORS}
    assert names <= set(_HINTS), f"errors without a fix hint: {sorted(names - set(_HINTS))}"
    err = contract_errors.ZeroBudget()
    assert str(err) == "ZeroBudget(): pass --budget ETH (or --budget-wei) greater than zero"
