"""The deployment file: typed records keyed by chain id, atomic writes, clear errors, code checks."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eth_utils.address import to_checksum_address

from pocfl.chain.accounts import new_account
from pocfl.contracts import load_artifact
from pocfl.deployment import (
    FILE_VERSION,
    Deployment,
    check_code,
    code_sha256,
    default_deployment_file,
    load_deployments,
    lookup,
    record_deployment,
    runtime_code,
    save_deployments,
    state_dir,
)
from pocfl.errors import ConfigError

pytestmark = pytest.mark.unit


def make(chain_id: int = 31337, block: int = 7) -> Deployment:
    return Deployment.new(
        chain_id=chain_id,
        address=new_account().address.lower(),
        rpc="http://127.0.0.1:8545",
        block_number=block,
        tx_hash="0x" + "12" * 32,
        deployer=new_account().address,
        deployed_at=datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
    )


def test_new_record_carries_artifact_identity() -> None:
    dep = make()
    artifact = load_artifact("PocMarketplace")
    assert dep.contract == "PocMarketplace"
    assert dep.compiler == artifact["compiler"]["version"]
    assert dep.bytecode_sha256 == code_sha256(bytes.fromhex(artifact["deployedBytecode"].removeprefix("0x")))
    assert dep.deployed_at == "2025-01-02T03:04:05Z"
    assert dep.address == to_checksum_address(dep.address)  # given in lower case, stored checksummed
    assert Deployment.from_json(json.loads(json.dumps(dep.to_json()))) == dep


def test_save_and_load_round_trip_keyed_by_chain_id(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deployments.json"
    records = {31337: make(31337), 11155111: make(11155111, block=123)}
    save_deployments(path, records)
    raw = json.loads(path.read_text())
    assert raw["version"] == FILE_VERSION
    assert sorted(raw["deployments"]) == ["11155111", "31337"]
    assert raw["deployments"]["31337"]["chain_id"] == 31337
    assert load_deployments(path) == records
    assert lookup(path, 11155111).block_number == 123
    assert path.stat().st_mode & 0o777 == 0o644


def test_record_replaces_only_its_own_chain(tmp_path: Path) -> None:
    path = tmp_path / "deployments.json"
    assert record_deployment(path, make(1)) is None
    first = make(31337)
    assert record_deployment(path, first) is None
    second = make(31337, block=99)
    assert record_deployment(path, second) == first
    loaded = load_deployments(path)
    assert loaded[31337] == second and 1 in loaded


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "deployments.json"
    original = {31337: make()}
    save_deployments(path, original)

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_deployments(path, {1: make(1)})
    monkeypatch.undo()
    assert load_deployments(path) == original  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["deployments.json"]  # and no temporary file is left


def test_missing_file_and_missing_chain(tmp_path: Path) -> None:
    path = tmp_path / "deployments.json"
    assert load_deployments(path) == {}
    with pytest.raises(ConfigError, match=r"no pocfl deployment for chain 31337 .*does not exist.*run `pocfl deploy`"):
        lookup(path, 31337)
    save_deployments(path, {1: make(1)})
    where = re.escape(str(path))
    with pytest.raises(ConfigError, match=rf"no pocfl deployment for chain 31337 in {where}: run `pocfl deploy`"):
        lookup(path, 31337)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a pocfl deployment file"),
        (json.dumps({"version": 99, "deployments": {}}), "version 99"),
        (json.dumps({"version": FILE_VERSION, "deployments": {"1": {"chain_id": 1}}}), "lacks address"),
    ],
)
def test_malformed_files_are_reported(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "deployments.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_deployments(path)


def test_bad_field_types_and_mismatched_keys(tmp_path: Path) -> None:
    record = make(5).to_json()
    with pytest.raises(ConfigError, match="invalid chain_id"):
        Deployment.from_json({**record, "chain_id": "5"})
    with pytest.raises(ConfigError, match="invalid address"):
        Deployment.from_json({**record, "address": "0x1234"})
    path = tmp_path / "deployments.json"
    path.write_text(json.dumps({"version": FILE_VERSION, "deployments": {"6": record}}))
    with pytest.raises(ConfigError, match="under chain 6 says chain_id 5"):
        load_deployments(path)
    extra = Deployment.from_json({**record, "future_field": 1})  # unknown fields from newer versions are ignored
    assert extra == Deployment(**record)


def test_check_code() -> None:
    address = new_account().address
    check_code(address, runtime_code(), 31337)
    with pytest.raises(ConfigError, match=r"no contract code .* restarted without its state.*pocfl deploy"):
        check_code(address, b"", 31337)
    with pytest.raises(ConfigError, match="not this pocfl's PocMarketplace"):
        check_code(address, runtime_code()[:-1] + b"\x00", 31337)


def test_state_dir_and_default_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("POCFL_HOME", raising=False)
    monkeypatch.delenv("POCFL_DEPLOYMENT", raising=False)
    assert state_dir() == Path(".pocfl")
    assert default_deployment_file() == Path(".pocfl") / "deployments.json"
    monkeypatch.setenv("POCFL_HOME", str(tmp_path))
    assert default_deployment_file() == tmp_path / "deployments.json"
    monkeypatch.setenv("POCFL_DEPLOYMENT", str(tmp_path / "other.json"))
    assert default_deployment_file() == tmp_path / "other.json"
