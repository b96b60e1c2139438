"""Options shared by every chain command, and the :class:`Session` that opens what they name.

A session turns the options into a connection, a signing account and the marketplace client.

- ``--rpc``: ``embedded`` (in-process, throwaway), ``anvil`` (a throwaway local node) or an http(s) URL;
  default ``$POCFL_RPC``, else the node recorded by ``pocfl chain up`` if it is alive.
- ``--key NAME``: the *name* of the environment variable holding the hex private key (default
  ``POCFL_PRIVATE_KEY``); ``--keystore FILE`` (``$POCFL_KEYSTORE``) an encrypted keystore instead, whose
  password comes from ``$POCFL_KEYSTORE_PASSWORD`` or a prompt. Keys never go on the command line.
- ``--deployment FILE`` (``$POCFL_DEPLOYMENT``, default ``<state dir>/deployments.json``) and
  ``--market ADDRESS`` to use another contract than the recorded one.
- ``--ipfs``: the content store, ``$POCFL_IPFS``, else the embedded store in ``<state dir>/store``; an IPFS
  node's RPC URL (``http://127.0.0.1:5001``) or multiaddr, or a directory (see :func:`pocfl.store.open_store`).
- ``--json``: one JSON document on stdout, nothing else.
- ``--deadline-margin SECONDS`` (``$POCFL_DEADLINE_MARGIN``), on commands that send window-bound transactions:
  how close to a deadline by the chain's clock they are still sent (:func:`pocfl.waiting.check_deadline`).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import typer

from pocfl.cli.output import Output
from pocfl.cli.parse import parse_address
from pocfl.cli.state import live_node, node_file, read_node
from pocfl.deployment import Deployment, check_code, default_deployment_file, lookup
from pocfl.errors import ChainUnavailableError, ConfigError
from pocfl.waiting import DEADLINE_MARGIN

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from pocfl.chain.backends import Chain
    from pocfl.chain.client import MarketplaceClient
    from pocfl.market import Market
    from pocfl.store import ContentStore

# web3 and eth-account take a second to import: chain modules are imported where needed, so that
# `pocfl --help` and `pocfl chain up|down|status` start fast. These equal pocfl.chain.accounts' names.
DEFAULT_KEY_ENV = "POCFL_PRIVATE_KEY"
PASSWORD_ENV = "POCFL_KEYSTORE_PASSWORD"
PANEL = "Connection and output"
THROWAWAY = ("embedded", "anvil")

RpcOpt = Annotated[
    str | None,
    typer.Option(
        "--rpc",
        envvar="POCFL_RPC",
        metavar="URL",
        help="Chain: an http(s) JSON-RPC URL, 'embedded' or 'anvil' (throwaway chains). "
        "Default: the node started by `pocfl chain up`.",
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
KeyOpt = Annotated[
    str,
    typer.Option(
        "--key",
        metavar="ENV_VAR",
        help="Name of the environment variable that holds the account's hex private key.",
        rich_help_panel=PANEL,
    ),
]
KeystoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--keystore",
        envvar="POCFL_KEYSTORE",
        metavar="FILE",
        help=f"Encrypted keystore to sign with instead (password from ${PASSWORD_ENV} or a prompt).",
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout (errors too) for scripts.", rich_help_panel=PANEL),
]
DeploymentOpt = Annotated[
    Path | None,
    typer.Option(
        "--deployment",
        envvar="POCFL_DEPLOYMENT",
        metavar="FILE",
        help="Deployment file. Default: <state dir>/deployments.json ($POCFL_HOME, else ./.pocfl).",
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
MarketOpt = Annotated[
    str | None,
    typer.Option(
        "--market",
        metavar="ADDRESS",
        help="Marketplace contract address (overrides the deployment file).",
        rich_help_panel=PANEL,
        show_default=False,
    ),
]

IpfsOpt = Annotated[
    str | None,
    typer.Option(
        "--ipfs",
        envvar="POCFL_IPFS",
        metavar="URL|DIR",
        help="Content store: an IPFS node's RPC URL (http://127.0.0.1:5001) or an embedded store directory. "
        "Default: the embedded store in <state dir>/store.",
        rich_help_panel=PANEL,
        show_default=False,
    ),
]

DeadlineMarginOpt = Annotated[
    int | None,
    typer.Option(
        "--deadline-margin",
        envvar="POCFL_DEADLINE_MARGIN",
        min=0,
        metavar="SECONDS",
        help="Do not send a window-bound transaction (register, submit, post, cancel) when the chain's clock is this "
        "close to its deadline: the block it lands in may be stamped past it, and it would revert and still cost gas. "
        "Default 4 (a few blocks of a local chain mining every second); on a public chain give 2-3 block times "
        "(e.g. 36 on Ethereum). 0 sends it anyway.",
        rich_help_panel=PANEL,
        show_default=False,
    ),
]

_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


def chain_now(chain: Chain) -> int:
    """The chain's time: its latest block's timestamp, the time the contract's checks see in calls and estimates.

    Not the wall clock: a node that mines on demand lags it until its next block, and a window open by the wall
    clock is then still closed for the contract (see :mod:`pocfl.waiting`).
    """
    return chain.now()


class Session:
    """What one command invocation connects to and signs with (opened lazily, closed on exit)."""

    def __init__(
        self,
        rpc: str | None = None,
        key: str = DEFAULT_KEY_ENV,
        keystore: Path | None = None,
        json_out: bool = False,
        deployment: Path | None = None,
        market: str | None = None,
        ipfs: str | None = None,
        *,
        deadline_margin: int | None = None,
    ) -> None:
        self.deadline_margin = DEADLINE_MARGIN if deadline_margin is None else deadline_margin
        self._rpc = rpc.strip() if rpc else None
        self.ipfs = ipfs
        self._store: ContentStore | None = None
        self.key = key
        self.keystore = keystore
        self.out = Output(json_out)
        self.deployment_file = deployment or default_deployment_file()
        self.market_override = parse_address(market, "--market") if market else None
        self._chain: Chain | None = None
        self._account: LocalAccount | None = None
        self._deployment: Deployment | None = None

    # ---- chain -----------------------------------------------------------------------------------

    @property
    def rpc(self) -> str:
        """The chain to use: ``--rpc``/``$POCFL_RPC``, else the live node of ``pocfl chain up``.

        Raises
        ------
        ChainUnavailableError
            The node of `pocfl chain up` is recorded but does not answer (a transient error: long-running
            commands wait for it).
        ConfigError
            If neither is available, with both fixes.
        """
        if self._rpc:
            return self._rpc
        node = live_node()
        if node is not None:
            self._rpc = node.url
            return node.url
        record = read_node()
        if record is not None:
            # an outage (stopped, restarting): `pocfl train` and `aggregate --follow` wait for it to come back
            raise ChainUnavailableError(
                f"the node started by `pocfl chain up` ({record.url}, pid {record.pid}) is not running: "
                "start it again with `pocfl chain up`, or pass --rpc URL"
            )
        raise ConfigError(
            f"no chain given and no local node recorded in {node_file()}: start one with `pocfl chain up`, "
            "or pass --rpc URL (or set POCFL_RPC)"
        )

    @property
    def throwaway(self) -> bool:
        """Whether the chain vanishes when the command exits (``embedded``, ``anvil``)."""
        return self.rpc in THROWAWAY

    def chain(self) -> Chain:
        """The open connection (connecting on first use)."""
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
        """The signing account from ``--keystore`` or the ``--key`` environment variable.

        Raises
        ------
        ConfigError
            If no account is configured, the keystore cannot be opened, or ``--key`` got a key itself.
        """
        if self._account is not None:
            return self._account
        from pocfl.chain.accounts import account_from_env, account_from_keystore

        if _HEX_KEY.match(self.key.strip()):
            raise ConfigError(
                "--key takes the NAME of an environment variable, not the key itself (keys on the command line "
                f"leak into shell history): `export {DEFAULT_KEY_ENV}=...` and drop --key"
            )
        if self.keystore is not None:
            password = os.environ.get(PASSWORD_ENV)
            if password is None:
                if not sys.stdin.isatty():
                    raise ConfigError(
                        f"set {PASSWORD_ENV} to the password of {self.keystore} (no terminal to prompt on)"
                    )
                password = typer.prompt(f"Password for {self.keystore}", hide_input=True, err=True)
            self._account = account_from_keystore(self.keystore, password=password, prompt=False)
        else:
            if not os.environ.get(self.key):
                raise ConfigError(
                    f"environment variable {self.key} is not set: export the account's private key there "
                    "(or name the variable holding it with --key ENV_VAR), or pass --keystore FILE"
                )
            self._account = account_from_env(self.key)
        return self._account

    # ---- marketplace -------------------------------------------------------------------------------

    def deployment(self) -> Deployment | None:
        """The recorded deployment for the connected chain (None when ``--market`` overrides it)."""
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
            Load the signing account (commands that send transactions); views need none.
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
        """The content store named by ``--ipfs`` (opened on first use)."""
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
        """Close the connection (stopping a throwaway anvil) and the store."""
        if self._chain is not None:
            self._chain.close()
            self._chain = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
