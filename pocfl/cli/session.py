"""Options shared by every chain command, and the :class:`Session` that opens what they name.

A session is the :class:`pocfl.connection.Connection` the options describe (the chain, a signing account, the
marketplace client and the content store), plus the command's :class:`~pocfl.cli.output.Output` and a password
prompt for keystores.

- ``--rpc`` (alias ``--rpc-url``, as in Foundry's cast): ``embedded`` (in-process, throwaway), ``anvil`` (a
  throwaway local node) or an http(s) URL; default ``$POCFL_RPC``, else ``$ETH_RPC_URL``, else the node recorded by
  ``pocfl chain up`` if it is alive.
- ``--key NAME``: the *name* of the environment variable holding the hex private key (default
  ``POCFL_PRIVATE_KEY``); ``--keystore FILE`` (``$POCFL_KEYSTORE``) an encrypted keystore instead, whose
  password comes from ``--password-file FILE`` (its first line), else ``$POCFL_KEYSTORE_PASSWORD``, else a prompt.
  Keys and passwords never go on the command line.
- ``--deployment FILE`` (``$POCFL_DEPLOYMENT``, default ``<state dir>/deployments.json``) and
  ``--market ADDRESS`` (``$POCFL_MARKET``) to use another contract than the recorded one.
- ``--ipfs``: the content store, ``$POCFL_IPFS``, else the daemon of ``pocfl ipfs up``, else the embedded store in
  ``<state dir>/store``; an IPFS
  node's RPC URL (``http://127.0.0.1:5001``) or multiaddr, or a directory (see :func:`pocfl.store.open_store`).
- ``--json``: one JSON document on stdout, nothing else.
- ``--deadline-margin SECONDS`` (``$POCFL_DEADLINE_MARGIN``), on commands that send window-bound transactions:
  how close to a deadline by the chain's clock they are still sent (:func:`pocfl.waiting.check_deadline`).
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pocfl.cli.common import option
from pocfl.cli.output import Output
from pocfl.cli.parse import parse_address
from pocfl.connection import DEFAULT_KEY_ENV, PASSWORD_ENV, RPC_ENVS, THROWAWAY, Connection, chain_now
from pocfl.deployment import default_deployment_file
from pocfl.errors import ConfigError
from pocfl.waiting import DEADLINE_MARGIN

__all__ = [
    "DEFAULT_KEY_ENV",
    "PANEL",
    "PASSWORD_ENV",
    "THROWAWAY",
    "DeadlineMarginOpt",
    "DeploymentOpt",
    "IpfsOpt",
    "JsonOpt",
    "KeyOpt",
    "KeystoreOpt",
    "MarketOpt",
    "PasswordFileOpt",
    "RpcOpt",
    "Session",
    "chain_now",
    "connected",
]

PANEL = "Connection and output"

RpcOpt = Annotated[
    str | None,
    option(
        "--rpc",
        "--rpc-url",
        envvar=list(RPC_ENVS),
        metavar="URL",
        help="Chain: an http(s) JSON-RPC URL, 'embedded' or 'anvil' (throwaway chains). "
        "Default: $POCFL_RPC, $ETH_RPC_URL, else the node started by `pocfl chain up`.",
        rich_help_panel=PANEL,
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
    option(
        "--keystore",
        envvar="POCFL_KEYSTORE",
        metavar="FILE",
        help=f"Encrypted keystore to sign with instead (password from --password-file, ${PASSWORD_ENV} or a prompt).",
        rich_help_panel=PANEL,
    ),
]
PasswordFileOpt = Annotated[
    Path | None,
    option(
        "--password-file",
        metavar="FILE",
        help=f"Read the keystore's password from the first line of FILE (mode 0600) instead of ${PASSWORD_ENV}.",
        rich_help_panel=PANEL,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout (errors too) for scripts.", rich_help_panel=PANEL),
]
DeploymentOpt = Annotated[
    Path | None,
    option(
        "--deployment",
        envvar="POCFL_DEPLOYMENT",
        metavar="FILE",
        help="Deployment file. Default: <state dir>/deployments.json ($POCFL_HOME, else ./.pocfl).",
        rich_help_panel=PANEL,
    ),
]
MarketOpt = Annotated[
    str | None,
    option(
        "--market",
        envvar="POCFL_MARKET",
        metavar="ADDRESS",
        help="Marketplace contract address (overrides the deployment file).",
        rich_help_panel=PANEL,
    ),
]

IpfsOpt = Annotated[
    str | None,
    option(
        "--ipfs",
        envvar="POCFL_IPFS",
        metavar="URL|DIR",
        help="Content store: an IPFS node's RPC URL (http://127.0.0.1:5001) or an embedded store directory. "
        "Default: the embedded store in <state dir>/store.",
        rich_help_panel=PANEL,
    ),
]

DeadlineMarginOpt = Annotated[
    int | None,
    option(
        "--deadline-margin",
        envvar="POCFL_DEADLINE_MARGIN",
        min=0,
        metavar="SECONDS",
        help="Do not send a window-bound transaction (register, submit, post, cancel) when the chain's clock is this "
        "close to its deadline: the block it lands in may be stamped past it, and it would revert and still cost gas. "
        "Default 4 (a few blocks of a local chain mining every second); on a public chain give 2-3 block times "
        "(e.g. 36 on Ethereum). 0 sends it anyway.",
        rich_help_panel=PANEL,
    ),
]


def _prompt_password(keystore: Path) -> str:
    if not sys.stdin.isatty():
        raise ConfigError(f"set {PASSWORD_ENV} to the password of {keystore} (no terminal to prompt on)")
    password: str = typer.prompt(f"Password for {keystore}", hide_input=True, err=True)
    return password


class Session(Connection):
    """What one command invocation connects to and signs with (opened lazily, closed on exit), and its output."""

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
        password_file: Path | None = None,
    ) -> None:
        super().__init__(
            rpc_setting=rpc,
            key=key,
            keystore=keystore,
            deployment_file=deployment or default_deployment_file(),
            market_override=parse_address(market, "--market") if market else None,
            ipfs=ipfs,
            deadline_margin=DEADLINE_MARGIN if deadline_margin is None else deadline_margin,
            password=_prompt_password,
            password_file=password_file,
            warn=lambda message: self.out.warn(message),
        )
        self.out = Output(json_out)

    def __enter__(self) -> Session:
        return self


R = TypeVar("R")

# The connection options in the order `--help` lists them, with their defaults; declared once, here.
_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("rpc", RpcOpt, None),
    ("key", KeyOpt, DEFAULT_KEY_ENV),
    ("keystore", KeystoreOpt, None),
    ("password_file", PasswordFileOpt, None),
    ("json_out", JsonOpt, False),
    ("deployment", DeploymentOpt, None),
    ("market", MarketOpt, None),
    ("ipfs", IpfsOpt, None),
    ("deadline_margin", DeadlineMarginOpt, None),
)


def connected(
    *, sign: bool = True, store: bool = False, deadline: bool = False
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Give a command the connection options and call it with the :class:`Session` they describe.

    The command declares a keyword-only parameter ``s: Session`` instead of the options; this adds ``--rpc``,
    ``--json``, ``--deployment`` and ``--market`` to its signature (what typer reads), with ``--key``,
    ``--keystore`` and ``--password-file`` when it signs, ``--ipfs`` when it uses the content store and
    ``--deadline-margin`` when it sends window-bound transactions. The session is closed when the command returns.
    Put :func:`guarded` above it: it reads ``json_out`` to choose the error format.

    Parameters
    ----------
    sign
        The command signs transactions (``--key``, ``--keystore``, ``--password-file``).
    store
        The command uses the content store (``--ipfs``).
    deadline
        The command sends window-bound transactions (``--deadline-margin``).
    """
    skip = set() if sign else {"key", "keystore", "password_file"}
    skip |= set() if store else {"ipfs"}
    skip |= set() if deadline else {"deadline_margin"}
    options = [(name, hint, default) for name, hint, default in _OPTIONS if name not in skip]

    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        own = inspect.signature(fn, eval_str=True)
        params = [p for p in own.parameters.values() if p.name != "s"]
        params += [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=hint, default=default)
            for name, hint, default in options
        ]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> R:
            given = {name: kwargs.pop(name, default) for name, _, default in options}
            with Session(
                given["rpc"],
                given.get("key", DEFAULT_KEY_ENV),
                given.get("keystore"),
                given["json_out"],
                given["deployment"],
                given["market"],
                given.get("ipfs"),
                deadline_margin=given.get("deadline_margin"),
                password_file=given.get("password_file"),
            ) as session:
                return fn(*args, s=session, **kwargs)

        wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        # typer also reads the annotations: name the options, not the session the wrapper supplies as ``s``
        wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": own.return_annotation}
        return wrapper

    return decorate
