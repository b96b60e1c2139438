"""Fixtures of the end-to-end suites: one anvil per module, fresh funded actors whose keys live only in
environment variables, a private ``POCFL_HOME`` per test, and a runner for the ``pocfl`` app.

Keys are generated at run time and handed to the CLI by environment variable name (``--key E2E_T1_KEY``),
exactly as users do; none is written in code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner, Result

from pocfl.chain.accounts import new_account
from pocfl.chain.backends import AnvilProcess, Chain, rpc_chain
from pocfl.cli.main import app

ACTOR_FUNDS = 100 * 10**18
POCFL_ENV_VARS = (
    "POCFL_RPC",
    "POCFL_PRIVATE_KEY",
    "POCFL_KEYSTORE",
    "POCFL_KEYSTORE_PASSWORD",
    "POCFL_DEPLOYMENT",
)


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
