"""What an entry point connects to and signs with: the chain, the account, the deployment and the content store.

A :class:`Connection` is built once from plain settings (no command-line library involved) and opens each part
lazily, on first use; closing it stops a throwaway anvil and closes the store. The CLI builds one from its options
(:class:`pocfl.cli.session.Session` adds its output and its password prompt), the Flower apps from their run config
(:meth:`Connection.from_settings`).

Settings:

- ``rpc``: ``embedded`` (in-process, throwaway), ``anvil`` (a throwaway local node) or an http(s) URL; None means the
  node recorded by ``pocfl chain up`` if it is alive (:mod:`pocfl.local_node`).
- ``key``: the *name* of the environment variable holding the hex private key (default ``POCFL_PRIVATE_KEY``);
  ``keystore``: an encrypted keystore instead, whose password comes from ``password_file`` (its first line),
  else ``$POCFL_KEYSTORE_PASSWORD``, else the ``password`` callback (default: a prompt on the terminal).
- ``deployment``: the deployment file (default ``<state dir>/deployments.json``); ``market``: a contract address
  that overrides it.
- ``ipfs``: the content store (see :func:`pocfl.store.open_store`); None means the daemon recorded by ``pocfl ipfs up``
  if there is one (:mod:`pocfl.local_ipfs`), else the embedded store in the state folder.
- ``deadline_margin``: how close to a deadline by the chain's clock window-bound transactions are still sent
  (:func:`pocfl.waiting.check_deadline`).

Errors carry a ``fix`` key instead of naming command-line options (see :class:`pocfl.errors.PocflError`).
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pocfl.deployment import Deployment, check_code, default_deployment_file, lookup
from pocfl.errors import ChainUnavailableError, ConfigError
from pocfl.local_node import live_node, node_file, read_node
from pocfl.waiting import DEADLINE_MARGIN

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from pocfl.chain.backends import Chain
    from pocfl.chain.client import MarketplaceClient
    from pocfl.market import Market
    from pocfl.store import ContentStore

__all__ = [
    "DEFAULT_KEY_ENV",
    "PASSWORD_ENV",
    "RPC_ENVS",
    "THROWAWAY",
    "Connection",
    "chain_now",
    "read_password_file",
]

# web3 and eth-account take a second to import: chain modules are imported where needed, so that
# `pocfl --help` and `pocfl chain up|down|status` start fast. These equal pocfl.chain.accounts' names.
DEFAULT_KEY_ENV = "POCFL_PRIVATE_KEY"
PASSWORD_ENV = "POCFL_KEYSTORE_PASSWORD"
THROWAWAY = ("embedded", "anvil")
RPC_ENVS = ("POCFL_RPC", "ETH_RPC_URL")
"""Environment variables naming the chain, the first set wins (``ETH_RPC_URL`` as Foundry's cast reads it)."""

_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


def chain_now(chain: Chain) -> int:
    """The chain's time: its latest block's timestamp, the time the contract's checks see in calls and estimates.

    Not the wall clock: a node that mines on demand lags it until its next block, and a window open by the wall
    clock is then still closed for the contract (see :mod:`pocfl.waiting`).
    """
    return chain.now()


def _checksum_address(text: str) -> str:
    from eth_utils.address import is_address, to_checksum_address

    value = text.strip()
    if not is_address(value):
        raise ConfigError(f"the market is not an Ethereum address (0x and 40 hex digits): {text!r}", fix="market")
    return to_checksum_address(value)


def _terminal_password(keystore: Path) -> str:
    """Prompt for the keystore's password on the terminal (on stderr, not echoed); an error without one."""
    if not sys.stdin.isatty():
        raise ConfigError(f"set {PASSWORD_ENV} to the password of {keystore} (no terminal to prompt on)")
    return getpass.getpass(f"Password for {keystore}: ", stream=sys.stderr)


def _stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def read_password_file(path: Path, warn: Callable[[str], None] = _stderr) -> str:
    """The password in ``path``: its first line, without the line break (the rest of the file is ignored).

    A file that others than its owner may read is used, with a warning through ``warn``: ``chmod 600`` it.

    Raises
    ------
    ConfigError
        The file cannot be read, or its first line is empty.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the password file {path}: {exc}") from None
    if mode & 0o077:
        warn(f"password file {path} is readable by others (mode {mode & 0o777:o}): chmod 600 {path}")
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError(f"the password file {path} is empty (the password is its first line)")
    return password


@dataclass(eq=False)
class Connection:
    """What one entry point connects to and signs with (each part opened lazily, all closed by :meth:`close`)."""

    rpc_setting: str | None = None
    key: str = DEFAULT_KEY_ENV
    keystore: Path | None = None
    deployment_file: Path = field(default_factory=default_deployment_file)
    market_override: str | None = None
    ipfs: str | None = None
    deadline_margin: int = DEADLINE_MARGIN
    password: Callable[[Path], str] = _terminal_password
    """Asked for the keystore's password when ``$POCFL_KEYSTORE_PASSWORD`` is not set (default: a terminal prompt)."""
    password_file: Path | None = None
    """A file whose first line is the keystore's password (before ``$POCFL_KEYSTORE_PASSWORD``)."""
    warn: Callable[[str], None] = _stderr
    """Where warnings about the settings go (a password file others may read)."""

    _chain: Chain | None = field(default=None, init=False, repr=False)
    _account: LocalAccount | None = field(default=None, init=False, repr=False)
    _deployment: Deployment | None = field(default=None, init=False, repr=False)
    _store: ContentStore | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.rpc_setting = self.rpc_setting.strip() if self.rpc_setting else None
        if self.market_override is not None:
            self.market_override = _checksum_address(self.market_override)

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, Any],
        *,
        prefix: str = "pocfl-",
        key_env: str = "key-env",
        keystore: str = "keystore",
    ) -> Connection:
        """Build from a settings mapping (a Flower run or node config): ``pocfl-rpc``, ``pocfl-key-env``, ...

        Empty values count as unset. ``key_env`` and ``keystore`` name the account's settings (the trainer's
        ``trainer-key-env`` and ``trainer-keystore``, say).
        """

        def get(name: str) -> str | None:
            value = settings.get(prefix + name)
            return str(value) if value not in (None, "") else None

        return cls(
            rpc_setting=get("rpc"),
            key=get(key_env) or DEFAULT_KEY_ENV,
            keystore=Path(k) if (k := get(keystore)) else None,
            deployment_file=Path(d) if (d := get("deployment")) else default_deployment_file(),
            market_override=get("market"),
            ipfs=get("ipfs"),
            password_file=Path(f) if (f := get("password-file")) else None,
        )

    # ---- chain -----------------------------------------------------------------------------------

    @property
    def rpc(self) -> str:
        """The chain to use: the ``rpc`` setting, else the live node of ``pocfl chain up``.

        Raises
        ------
        ChainUnavailableError
            The node of `pocfl chain up` is recorded but does not answer (a transient error: long-running
            entry points wait for it).
        ConfigError
            If neither is available.
        """
        if self.rpc_setting:
            return self.rpc_setting
        node = live_node()
        if node is not None:
            self.rpc_setting = node.url
            return node.url
        record = read_node()
        if record is not None:
            # an outage (stopped, restarting): `pocfl train` and `aggregate --follow` wait for it to come back
            raise ChainUnavailableError(
                f"the node started by `pocfl chain up` ({record.url}, pid {record.pid}) is not running: "
                "start it again with `pocfl chain up`",
                fix="chain-down",
            )
        raise ConfigError(
            f"no chain given and no local node recorded in {node_file()}: start one with `pocfl chain up`",
            fix="chain-none",
        )

    @property
    def throwaway(self) -> bool:
        """Whether the chain vanishes when the connection closes (``embedded``, ``anvil``)."""
        return self.rpc in THROWAWAY

    def chain(self) -> Chain:
        """The open chain connection (connecting on first use)."""
        if self._chain is None:
            from pocfl.chain.backends import connect

            self._chain = connect(self.rpc)
        return self._chain

    def now(self) -> int:
        """Best estimate of the chain's current time (see :func:`chain_now`)."""
        return chain_now(self.chain())

    # ---- account ---------------------------------------------------------------------------------

    def has_account(self) -> bool:
        """Whether an account is configured (keystore given or the key variable set)."""
        return self.keystore is not None or bool(os.environ.get(self.key))

    def account(self) -> LocalAccount:
        """The signing account from the keystore or the key's environment variable.

        Raises
        ------
        ConfigError
            If no account is configured, the keystore cannot be opened, or ``key`` is a key itself.
        """
        if self._account is not None:
            return self._account
        from pocfl.chain.accounts import account_from_env, account_from_keystore

        if _HEX_KEY.match(self.key.strip()):
            raise ConfigError(
                "the key setting takes the NAME of an environment variable, not the key itself (keys in settings "
                f"leak into logs and shell history): `export {DEFAULT_KEY_ENV}=...` and name that variable",
                fix="key-name",
            )
        if self.keystore is not None:
            if self.password_file is not None:
                password: str | None = read_password_file(self.password_file, self.warn)
            else:
                password = os.environ.get(PASSWORD_ENV)
            if password is None:
                password = self.password(self.keystore)
            self._account = account_from_keystore(self.keystore, password=password, prompt=False)
        else:
            if not os.environ.get(self.key):
                raise ConfigError(
                    f"environment variable {self.key} is not set: export the account's private key there",
                    fix="key-env",
                )
            self._account = account_from_env(self.key)
        return self._account

    # ---- marketplace -------------------------------------------------------------------------------

    def deployment(self) -> Deployment | None:
        """The recorded deployment for the connected chain (None when ``market`` overrides it)."""
        if self.market_override is not None:
            return None
        if self._deployment is None:
            self._deployment = lookup(self.deployment_file, self.chain().chain_id)
        return self._deployment

    @property
    def from_block(self) -> int:
        """First block worth searching for marketplace events."""
        dep = self.deployment()
        return dep.block_number if dep is not None else 0

    def market(self, signer: bool = True) -> MarketplaceClient:
        """The marketplace client, after checking the contract's code is there.

        Parameters
        ----------
        signer
            Load the signing account (callers that send transactions); views need none.
        """
        from pocfl.chain.client import MarketplaceClient

        chain = self.chain()
        dep = self.deployment()
        address = self.market_override if dep is None else dep.address
        assert address is not None
        check_code(address, bytes(chain.w3.eth.get_code(address)), chain.chain_id)  # type: ignore[arg-type]
        return MarketplaceClient(
            chain, address, self.account() if signer else None, deadline_margin=self.deadline_margin
        )

    # ---- content store ---------------------------------------------------------------------------------

    def store(self) -> ContentStore:
        """The content store named by ``ipfs`` (opened on first use)."""
        if self._store is None:
            from pocfl.store import open_store

            self._store = open_store(self.ipfs)
        return self._store

    def store_market(self, signer: bool = True) -> Market:
        """The marketplace bound to the content store: CIDs go on chain only for stored bytes."""
        from pocfl.market import Market

        return Market(self.market(signer), self.store())

    # ---- lifetime ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the chain connection (stopping a throwaway anvil) and the store."""
        if self._chain is not None:
            self._chain.close()
            self._chain = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
