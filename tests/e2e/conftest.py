"""Fixtures of the end-to-end suites: one anvil per module, fresh funded actors whose keys live only in
environment variables, a private ``POCFL_HOME`` per test (whose embedded content store the CLI uses), real model
and update files, and a runner for the ``pocfl`` app.

Keys are generated at run time and handed to the CLI by environment variable name (``--key E2E_T1_KEY``),
exactly as users do; none is written in code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner, Result

from pocfl.chain.accounts import new_account
from pocfl.chain.backends import AnvilProcess, Chain, rpc_chain
from pocfl.cli.main import app
from pocfl.store import EmbeddedStore
from pocfl.updates import ModelSpec, encode_update

ACTOR_FUNDS = 100 * 10**18
POCFL_ENV_VARS = (
    "POCFL_RPC",
    "POCFL_PRIVATE_KEY",
    "POCFL_KEYSTORE",
    "POCFL_KEYSTORE_PASSWORD",
    "POCFL_DEPLOYMENT",
    "POCFL_IPFS",
    "POCFL_MARKET",
    "ETH_RPC_URL",  # read after POCFL_RPC, as Foundry's cast does
)

SPEC = ModelSpec((("fc.weight", (4, 3), "F32"), ("fc.bias", (4,), "F32")), name="e2e-model")
"""The small model architecture of the end-to-end tests."""


@pytest.fixture(scope="module")
def anvil_node() -> Iterator[AnvilProcess]:
    """An anvil started for this module on a free port, stopped (by this fixture only) at the end."""
    node = AnvilProcess.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def anvil_chain(anvil_node: AnvilProcess) -> Iterator[Chain]:
    """A web3 connection to the module's anvil (for funding and checks outside the CLI)."""
    chain = rpc_chain(anvil_node.url)
    try:
        yield chain
    finally:
        chain.close()


@pytest.fixture
def pocfl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private state folder (``POCFL_HOME``) and no pocfl variables inherited from the shell."""
    home = tmp_path / "pocfl-home"
    monkeypatch.setenv("POCFL_HOME", str(home))
    for var in POCFL_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return home


@dataclass(frozen=True)
class Actor:
    """A funded account whose private key is in environment variable ``env``."""

    name: str
    account: LocalAccount
    env: str

    @property
    def address(self) -> str:
        """Checksummed address."""
        return str(self.account.address)


@dataclass(frozen=True)
class Actors:
    """The cast of a test: owner, aggregator, three trainers and an outsider."""

    owner: Actor
    aggregator: Actor
    t1: Actor
    t2: Actor
    t3: Actor
    outsider: Actor

    @property
    def trainers(self) -> tuple[Actor, Actor, Actor]:
        """The three trainers in registration order."""
        return (self.t1, self.t2, self.t3)


@pytest.fixture
def actors(anvil_chain: Chain, monkeypatch: pytest.MonkeyPatch) -> Actors:
    """Fresh random accounts funded from anvil's dev account; keys exported as ``E2E_<NAME>_KEY``."""
    made: dict[str, Actor] = {}
    for name in ("owner", "aggregator", "t1", "t2", "t3", "outsider"):
        account = new_account()
        env = f"E2E_{name.upper()}_KEY"
        monkeypatch.setenv(env, account.key.hex())
        anvil_chain.fund(account.address, ACTOR_FUNDS)
        made[name] = Actor(name, account, env)
    return Actors(**made)


class Cli:
    """Runs the ``pocfl`` app in-process against the module's anvil and checks exit codes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0, rpc: bool = True, input: str | None = None) -> Result:
        argv = [*args, *(["--rpc", self.url] if rpc else [])]
        result = self.runner.invoke(app, argv, input=input)
        if result.exit_code != code:
            raise AssertionError(
                f"pocfl {' '.join(argv)} exited {result.exit_code}, expected {code}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n--- exception\n{result.exception!r}"
            )
        assert "Traceback" not in result.output
        return result

    def json(self, *args: str, code: int = 0, rpc: bool = True) -> Any:
        """Run with ``--json``; stdout must be exactly one JSON document."""
        result = self(*args, "--json", code=code, rpc=rpc)
        return json.loads(result.stdout)


@pytest.fixture
def cli(anvil_node: AnvilProcess, pocfl_home: Path) -> Cli:
    """The CLI runner, with ``--rpc`` pointing at the module's anvil and a private ``POCFL_HOME``."""
    return Cli(anvil_node.url)


@pytest.fixture
def store(pocfl_home: Path) -> EmbeddedStore:
    """The embedded content store the CLI uses by default under the test's ``POCFL_HOME``."""
    return EmbeddedStore(pocfl_home / "store")


class Files:
    """Writes real pocfl files (a model or an update of :data:`SPEC`, deterministic per seed) into a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _write(self, name: str, kind: str, seed: int) -> Path:
        rng = np.random.default_rng(seed)
        tensors = {t.name: rng.normal(0, 0.1, t.shape).astype(np.float32) for t in SPEC}
        path = self.root / name
        path.write_bytes(encode_update(tensors, SPEC, kind=kind))
        return path

    def model(self, name: str = "model.safetensors", seed: int = 0) -> Path:
        """A full model (``kind = weights``)."""
        return self._write(name, "weights", seed)

    def update(self, name: str, seed: int) -> Path:
        """A model delta (``kind = delta``)."""
        return self._write(name, "delta", seed)

    def text(self, name: str, content: str) -> Path:
        """Any other file (a round report)."""
        path = self.root / name
        path.write_text(content)
        return path


@pytest.fixture
def files(tmp_path: Path) -> Files:
    """Real model, update and report files in the test's temporary folder."""
    return Files(tmp_path / "files")
