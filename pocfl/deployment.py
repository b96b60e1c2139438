"""The deployment file: where the marketplace contract lives on each chain.

``pocfl deploy`` records one :class:`Deployment` per chain id in a JSON file (by default
``<state dir>/deployments.json``, the state dir being ``$POCFL_HOME`` or ``./.pocfl``); later commands
look the contract up for the chain they are connected to, and check that the code at that address is
still the compiled ``PocMarketplace`` (a local node restarted without its state has none).

The file looks like::

    {
      "version": 1,
      "deployments": {
        "31337": {"chain_id": 31337, "address": "0x...", "rpc": "http://127.0.0.1:8545", ...}
      }
    }

Writes are atomic (:func:`pocfl.fsutil.write_json_atomic`), so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pocfl.contracts import MARKETPLACE, load_artifact
from pocfl.errors import ConfigError
from pocfl.fsutil import PUBLIC, write_json_atomic

FILE_VERSION = 1
HOME_ENV = "POCFL_HOME"
DEPLOYMENT_ENV = "POCFL_DEPLOYMENT"
DEFAULT_HOME = ".pocfl"
DEFAULT_FILE_NAME = "deployments.json"


def state_dir() -> Path:
    """The state folder of pocfl: ``$POCFL_HOME``, or ``./.pocfl`` (git-ignored) when unset."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME)


def default_deployment_file() -> Path:
    """``$POCFL_DEPLOYMENT``, or ``deployments.json`` in the state folder."""
    env = os.environ.get(DEPLOYMENT_ENV)
    return Path(env) if env else state_dir() / DEFAULT_FILE_NAME


def _hex_to_bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith(("0x", "0X")) else value)


def runtime_code(contract: str = MARKETPLACE) -> bytes:
    """The compiled runtime bytecode (``deployedBytecode``) of ``contract``."""
    return _hex_to_bytes(str(load_artifact(contract)["deployedBytecode"]))


def code_sha256(code: bytes) -> str:
    """Hex sha256 of a contract's runtime code (what :attr:`Deployment.bytecode_sha256` records)."""
    return hashlib.sha256(code).hexdigest()


def compiler_version(contract: str = MARKETPLACE) -> str:
    """The solc version that compiled the artifact of ``contract``."""
    return str(load_artifact(contract)["compiler"]["version"])


@dataclass(frozen=True)
class Deployment:
    """Where and how the marketplace was deployed on one chain.

    Attributes
    ----------
    chain_id
        The chain's id (``eth_chainId``).
    address
        Checksummed contract address.
    rpc
        The RPC URL the deployment went through (informational).
    block_number
        Block of the deployment transaction; event queries start there.
    tx_hash
        The deployment transaction.
    deployer
        The account that deployed it.
    deployed_at
        ISO 8601 UTC time of the deployment (wall clock of the deploying machine).
    contract
        Contract name (``PocMarketplace``).
    bytecode_sha256
        sha256 of the artifact's runtime bytecode; equals sha256 of ``eth_getCode`` at ``address``.
    compiler
        solc version of the artifact.
    """

    chain_id: int
    address: str
    rpc: str
    block_number: int
    tx_hash: str
    deployer: str
    deployed_at: str
    contract: str = MARKETPLACE
    bytecode_sha256: str = ""
    compiler: str = ""

    @classmethod
    def new(
        cls,
        *,
        chain_id: int,
        address: str,
        rpc: str,
        block_number: int,
        tx_hash: str,
        deployer: str,
        contract: str = MARKETPLACE,
        deployed_at: datetime | None = None,
    ) -> Deployment:
        """Record a fresh deployment of ``contract``, filling in the artifact's hash and compiler version."""
        from eth_utils.address import to_checksum_address

        when = (deployed_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        return cls(
            chain_id=int(chain_id),
            address=to_checksum_address(address),
            rpc=rpc,
            block_number=int(block_number),
            tx_hash=tx_hash,
            deployer=to_checksum_address(deployer),
            deployed_at=when.isoformat().replace("+00:00", "Z"),
            contract=contract,
            bytecode_sha256=code_sha256(runtime_code(contract)),
            compiler=compiler_version(contract),
        )

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str = "deployment record") -> Deployment:
        """Parse a record written by :meth:`to_json`.

        Raises
        ------
        ConfigError
            If fields are missing or have the wrong type.
        """
        from eth_utils.address import is_address, to_checksum_address

        if not isinstance(data, dict):
            raise ConfigError(f"{where} is not a JSON object")
        known = {f.name for f in fields(cls)}
        required = {"chain_id", "address", "rpc", "block_number", "tx_hash", "deployer", "deployed_at"}
        missing = sorted(required - data.keys())
        if missing:
            raise ConfigError(f"{where} lacks {', '.join(missing)}: run `pocfl deploy` to write a new one")
        values = {k: v for k, v in data.items() if k in known}
        try:
            for name in ("chain_id", "block_number"):
                if isinstance(values[name], bool) or not isinstance(values[name], int):
                    raise TypeError(name)
            for name in ("address", "rpc", "tx_hash", "deployer", "deployed_at", "contract", "bytecode_sha256"):
                if name in values and not isinstance(values[name], str):
                    raise TypeError(name)
            if not is_address(values["address"]):
                raise TypeError("address")
            values["address"] = to_checksum_address(values["address"])
        except TypeError as exc:
            raise ConfigError(f"{where} has an invalid {exc.args[0]}: run `pocfl deploy` to write a new one") from None
        return cls(**values)


def load_deployments(path: Path) -> dict[int, Deployment]:
    """All deployments recorded in ``path`` (empty when the file does not exist).

    Raises
    ------
    ConfigError
        If the file is not a deployment file.
    """
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read deployment file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"deployment file {path} is not valid JSON ({exc}): fix or delete it, then run `pocfl deploy`"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("deployments"), dict):
        raise ConfigError(f"{path} is not a pocfl deployment file (no 'deployments' object)")
    if data.get("version") != FILE_VERSION:
        raise ConfigError(f"{path} has version {data.get('version')!r}; this pocfl reads version {FILE_VERSION}")
    out: dict[int, Deployment] = {}
    for key, record in data["deployments"].items():
        dep = Deployment.from_json(record, where=f"deployment for chain {key} in {path}")
        if str(dep.chain_id) != key:
            raise ConfigError(f"{path}: the record under chain {key} says chain_id {dep.chain_id}")
        out[dep.chain_id] = dep
    return out


def save_deployments(path: Path, deployments: dict[int, Deployment]) -> None:
    """Write ``deployments`` to ``path`` atomically (mode 0644)."""
    payload = {
        "version": FILE_VERSION,
        "deployments": {str(cid): deployments[cid].to_json() for cid in sorted(deployments)},
    }
    write_json_atomic(path, payload, mode=PUBLIC)  # the file holds nothing secret


def record_deployment(path: Path, deployment: Deployment) -> Deployment | None:
    """Store ``deployment`` for its chain in ``path``; returns the record it replaced, if any."""
    deployments = load_deployments(path)
    previous = deployments.get(deployment.chain_id)
    deployments[deployment.chain_id] = deployment
    save_deployments(path, deployments)
    return previous


def lookup(path: Path, chain_id: int) -> Deployment:
    """The deployment recorded for ``chain_id``.

    Raises
    ------
    ConfigError
        If the file or the chain's record is missing, with the command that fixes it.
    """
    deployments = load_deployments(path)
    if chain_id not in deployments:
        where = f"in {path}" if path.exists() else f"({path} does not exist)"
        raise ConfigError(
            f"no pocfl deployment for chain {chain_id} {where}: run `pocfl deploy` "
            "(or pass --deployment FILE / --market ADDRESS)"
        )
    return deployments[chain_id]


def check_code(address: str, code: bytes, chain_id: int, contract: str = MARKETPLACE) -> None:
    """Check that ``code`` (``eth_getCode`` at ``address``) is the compiled ``contract``.

    Raises
    ------
    ConfigError
        If there is no code there (e.g. a local node restarted without its state) or other code.
    """
    if not code:
        raise ConfigError(
            f"no contract code at {address} on chain {chain_id}: the node was probably restarted without its "
            "state (or this is another chain with the same id); run `pocfl deploy` again"
        )
    expected = runtime_code(contract)
    if code != expected:
        raise ConfigError(
            f"the code at {address} on chain {chain_id} is not this pocfl's {contract} "
            f"(sha256 {code_sha256(code)[:12]}…, expected {code_sha256(expected)[:12]}…): "
            "deploy this version with `pocfl deploy` or pass the right --market ADDRESS"
        )
