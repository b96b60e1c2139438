"""Shared fixtures: one chain per backend for the whole session, the marketplace deployed once on
each, and per-test isolation through snapshots.

``POCFL_TEST_BACKENDS`` (comma list, default ``embedded,anvil``) selects the backends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from pocfl.chain.backends import Chain, connect
from pocfl.chain.client import MarketplaceClient
from pocfl.chain.gas import fast_gas_estimate
from tests.helpers import ACCOUNT_FUNDS, Env, Project, create_project, deploy_env, isolated

KNOWN_BACKENDS = ("embedded", "anvil")


def _selected_backends() -> list[str]:
    raw = os.environ.get("POCFL_TEST_BACKENDS", ",".join(KNOWN_BACKENDS))
    chosen = [b.strip() for b in raw.split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(KNOWN_BACKENDS))
    if unknown or not chosen:
        raise pytest.UsageError(f"POCFL_TEST_BACKENDS={raw!r}: choose from {', '.join(KNOWN_BACKENDS)}")
    return chosen


@pytest.fixture(scope="session", params=_selected_backends())
def chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    """A chain per backend, shared by the session (anvil is started once and stopped at the end)."""
    opened = connect(None if request.param == "embedded" else "anvil")
    opened.control.use_fast_gas_estimate(fast_gas_estimate)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def deployment(chain: Chain) -> Env:
    """The marketplace and verifier deployed once per backend, with funded actors."""
    return deploy_env(chain)


@pytest.fixture
def env(deployment: Env) -> Iterator[Env]:
    """The deployment, with every change the test makes rolled back afterwards."""
    with isolated(deployment.chain):
        yield deployment


@pytest.fixture
def market(env: Env) -> MarketplaceClient:
    """The isolated deployment's marketplace client, signing as the standard project owner."""
    return env.market


@pytest.fixture
def funded_accounts(env: Env) -> Callable[..., list[LocalAccount]]:
    """Factory of fresh random accounts funded from the node's dev account: ``funded_accounts(n, wei)``."""

    def make(n: int = 1, wei: int = ACCOUNT_FUNDS) -> list[LocalAccount]:
        return env.funded_accounts(n, wei)

    return make


@pytest.fixture
def new_project(env: Env) -> Callable[..., Project]:
    """Factory of standard projects: ``new_project(budget=..., owner=..., **param_overrides)``."""

    def make(**kwargs: Any) -> Project:
        return create_project(env, **kwargs)

    return make


# ---------------------------------------------------------------------------------------------
# IPFS
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ipfs_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The RPC URL of a real IPFS daemon on 127.0.0.1, started once per session and stopped by PID.

    ``POCFL_TEST_IPFS_URL`` points the tests at a node someone else runs. Otherwise Kubo (if on PATH) or the
    js-ipfs daemon from ``tools/ipfs-node`` is started. A missing daemon fails the tests (CI must exercise the
    real node) unless ``POCFL_ALLOW_NO_IPFS=1``, which skips them instead.
    """
    external = os.environ.get("POCFL_TEST_IPFS_URL")
    if external:
        yield external
        return
    from pocfl.errors import ConfigError
    from pocfl.store.daemon import IpfsDaemon, find_ipfs

    try:
        implementation = find_ipfs()
    except ConfigError as exc:
        if os.environ.get("POCFL_ALLOW_NO_IPFS") == "1":
            pytest.skip(str(exc))
        pytest.fail(f"{exc} (or set POCFL_ALLOW_NO_IPFS=1 to skip the IPFS tests)")
    root = tmp_path_factory.mktemp("ipfs")
    daemon = IpfsDaemon.start(root / "repo", log_file=root / "daemon.log", implementation=implementation)
    try:
        yield daemon.url
    finally:
        daemon.stop()
