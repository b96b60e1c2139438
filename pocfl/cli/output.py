"""Output of the CLI: human tables on stdout, notes on stderr, ``--json`` documents, and errors.

Rules every command follows:

- with ``--json`` stdout carries exactly one JSON document and nothing else (notes and progress go to
  stderr), also on failure: ``{"error": NAME, "message": ..., "args": {...}}`` with exit code 1;
- without it, results go to stdout as text and tables, errors to stderr as one red line with the fix;
- expected errors (:class:`pocfl.errors.PocflError`) never show a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pocfl.chain.types import jsonable
from pocfl.cli.parse import WEI_PER_ETH
from pocfl.errors import (
    ChainConnectionError,
    ChainRequestError,
    InsufficientFundsError,
    NonceConflictError,
    PocflError,
)

if TYPE_CHECKING:
    from pocfl.local_node import Stopped

P = ParamSpec("P")
R = TypeVar("R")


class ProcessRecord(Protocol):
    """The record of a local process a command started (``chain up``, ``ipfs up``)."""

    @property
    def pid(self) -> int:
        """Its process id."""
        ...

    @property
    def url(self) -> str:
        """Where it answers."""
        ...


Rec = TypeVar("Rec", bound=ProcessRecord)


FIX_HINTS: dict[str, str] = {
    "chain": "{message} (pass --rpc or set POCFL_RPC)",
    "chain-url": "{message}; start one with `pocfl chain up` or check --rpc",
    "chain-down": "{message}, or pass --rpc URL",
    "chain-none": "{message}, or pass --rpc URL (or set POCFL_RPC)",
    "key-env": "{message} (or name the variable holding it with --key ENV_VAR), or pass --keystore FILE",
    "key-name": "--key takes the NAME of an environment variable, not the key itself (keys on the command line "
    "leak into shell history): `export POCFL_PRIVATE_KEY=...` and drop --key",
    "signer": "this command sends a transaction: pass --key ENV_VAR or --keystore FILE",
    "market": "{message} (--market)",
    "funds": "{message}: fund it (`pocfl chain fund ADDRESS --eth 10` on a local node) or sign with another "
    "--key/--keystore",
}
"""How the CLI words a library error's ``fix`` (:class:`pocfl.errors.PocflError`): its options, which library
messages do not name. ``{message}`` is the library's message."""


def error_message(err: PocflError) -> str:
    """One-line message of ``err`` with the CLI's fix for it (contract errors carry theirs, see ``revert_base``)."""
    message = str(err)
    hint = FIX_HINTS.get(err.fix) if err.fix else None
    return hint.replace("{message}", message) if hint else message


def error_document(err: PocflError) -> dict[str, Any]:
    """The ``--json`` form of an error: ``{"error": name, "message": ..., "args": {...}}``."""
    from pocfl.chain.reverts import ContractRevert

    if isinstance(err, ContractRevert):
        return {"error": err.name, "message": error_message(err), "args": jsonable(err.as_dict())}
    name = "ChainError" if isinstance(err, _REPORTED_AS_CHAIN_ERROR) else type(err).__name__
    return {"error": name, "message": error_message(err), "args": {}}


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=False)


class Output:
    """Where a command writes: ``--json`` or human mode."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.out = _console(stderr=False)
        self.err = _console(stderr=True)

    def json(self, document: Any) -> None:
        """Write ``document`` as the command's JSON result on stdout."""
        sys.stdout.write(json.dumps(jsonable(document), indent=2) + "\n")
        sys.stdout.flush()

    def result(self, document: Any, human: Callable[[], None]) -> None:
        """Emit the command's result: the JSON document with ``--json``, else call ``human``."""
        if self.as_json:
            self.json(document)
        else:
            human()

    def print(self, text: str = "") -> None:
        """A human line on stdout (rich markup allowed); silent with ``--json``."""
        if not self.as_json:
            self.out.print(text, soft_wrap=True)

    def table(self, table: Table) -> None:
        """A table on stdout; silent with ``--json``."""
        if not self.as_json:
            self.out.print(table)

    def note(self, text: str) -> None:
        """A side note on stderr (shown in both modes)."""
        self.err.print(f"[dim]{escape(text)}[/dim]", soft_wrap=True)

    def warn(self, text: str) -> None:
        """A warning on stderr."""
        self.err.print(f"[yellow]warning:[/yellow] {escape(text)}", soft_wrap=True)

    @contextmanager
    def status(self, text: str) -> Iterator[Callable[[str], None]]:
        """A spinner on stderr while a slow step runs; yields a function that updates its text."""
        if not self.err.is_terminal:
            self.note(text)
            yield self.note
            return
        with self.err.status(text) as st:
            yield lambda msg: st.update(msg)

    def fail(self, err: PocflError) -> None:
        """Report an expected error (JSON on stdout with ``--json``, else a red line on stderr)."""
        if self.as_json:
            self.json(error_document(err))
        else:
            self.err.print(f"[bold red]error:[/bold red] {escape(error_message(err))}", soft_wrap=True)


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command: expected errors become a clean message and exit code 1.

    The command's ``json_out`` keyword (the ``--json`` flag) selects the error format. Set
    ``POCFL_DEBUG=1`` to get the traceback of chain failures translated by :func:`translate`.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        out = Output(bool(kwargs.get("json_out", False)))
        try:
            return fn(*args, **kwargs)
        except PocflError as err:
            out.fail(err)
            raise typer.Exit(1) from None
        except Exception as exc:
            translated = translate(exc)
            if translated is None or os.environ.get("POCFL_DEBUG"):
                raise
            out.fail(translated)
            raise typer.Exit(1) from None

    return wrapper


def translate(exc: Exception) -> PocflError | None:
    """The typed chain error of a node or library failure that reached the CLI untyped (a call not wrapped).

    See :func:`pocfl.chain.transport.request_error`. None for anything else (a bug: its traceback should be seen).
    """
    from pocfl.chain.transport import request_error

    return request_error(exc)


_REPORTED_AS_CHAIN_ERROR = (InsufficientFundsError, NonceConflictError, ChainConnectionError, ChainRequestError)
"""The transport errors the ``--json`` output names ``ChainError``, as it did before they were typed (scripts match
the name); library callers catch the subclasses."""


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


def eth(wei: int) -> str:
    """Exact ether amount of ``wei`` as a decimal string without trailing zeros (``"0.1"``)."""
    sign = "-" if wei < 0 else ""
    whole, frac = divmod(abs(wei), WEI_PER_ETH)
    text = f"{whole}.{frac:018d}".rstrip("0").rstrip(".")
    return sign + text


def eth_wei(wei: int) -> str:
    """``"1.5 ETH (1500000000000000000 wei)"``."""
    return f"{eth(wei)} ETH ({wei} wei)"


def utc(timestamp: int) -> str:
    """A unix timestamp as ``2025-01-31 12:00:00 UTC``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(timestamp: int, now: int) -> str:
    """``"in 5m"``, ``"2h 3m ago"`` or ``"now"``."""
    delta = timestamp - now
    if delta == 0:
        return "now"
    seconds = abs(delta)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    span = " ".join(parts)
    return f"in {span}" if delta > 0 else f"{span} ago"


def when(timestamp: int, now: int) -> str:
    """Absolute UTC time and relative time together."""
    return f"{utc(timestamp)} ({relative(timestamp, now)})"


def short(address: str) -> str:
    """``0x1234…abcd`` for narrow tables."""
    return f"{address[:6]}…{address[-4:]}" if len(address) == 42 else address


def kv_table(rows: Sequence[tuple[str, Any]], title: str | None = None) -> Table:
    """A two-column key/value table."""
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, escape(str(value)))
    return table


def node_status(
    out: Output,
    command: str,
    record: Rec | None,
    info_of: Callable[[Rec], dict[str, Any]],
    rows_of: Callable[[Rec, dict[str, Any]], list[tuple[str, Any]]],
    record_file: Path,
) -> None:
    """Render ``pocfl chain status`` / ``pocfl ipfs status`` (``command``): exit 1 unless the process runs.

    ``record`` is the recorded process (None: nothing recorded in ``record_file``); ``info_of`` says whether it runs
    (``running``, with its ``url`` and ``pid``); the table shows status, URL, PID and ``rows_of(record, info)``.
    """
    what = "node" if command == "chain" else "IPFS daemon"
    if record is None:
        out.result(
            {"running": False, "record": str(record_file)},
            lambda: out.print(f"No {what} is running: start one with `pocfl {command} up`."),
        )
        raise typer.Exit(1)
    info = info_of(record)
    running = "running" if info["running"] else f"not running (`pocfl {command} up` to restart it)"
    table = kv_table([("status", running), ("url", info["url"]), ("pid", info["pid"]), *rows_of(record, info)])
    out.result(info, lambda: out.table(table))
    if not info["running"]:
        raise typer.Exit(1)


def node_running(out: Output, command: str, info: dict[str, Any]) -> None:
    """Render ``pocfl chain up`` / ``pocfl ipfs up`` (``command``) finding the recorded process still running."""
    what = "A node" if command == "chain" else "An IPFS daemon"
    out.result(
        {"started": False, **info},
        lambda: out.print(
            f"{what} is already running at [bold]{info['url']}[/bold] (pid {info['pid']}); "
            f"stop it with `pocfl {command} down` first to start another."
        ),
    )


def node_down(out: Output, what: str, stop: Stopped[Rec], field: str, done: Callable[[Rec], list[str]]) -> None:
    """Render ``pocfl chain down`` / ``pocfl ipfs down``: ``done(record)`` once stopped, else why not.

    ``what`` names the process (``node``, ``IPFS daemon``); the JSON document adds the record's ``field``.
    """
    record = stop.record
    if record is None:
        out.result({"stopped": False, "reason": stop.reason}, lambda: out.print(f"No {what} is recorded."))
        return
    document = {"stopped": stop.stopped, "pid": record.pid, "url": record.url, field: getattr(record, field)}
    if stop.reason:
        document["reason"] = stop.reason
    forgot = f"Forgot the {what} at {document['url']}: {stop.reason}."

    def human() -> None:
        for line in done(record) if stop.stopped else [forgot]:
            out.print(line)

    out.result(document, human)
