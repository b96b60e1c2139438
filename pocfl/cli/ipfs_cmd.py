"""``pocfl ipfs``: a local IPFS daemon that survives between commands, bound to 127.0.0.1 only.

``pocfl ipfs up`` starts Kubo (or the js-ipfs daemon from ``tools/ipfs-node``) detached, with its repository in
``<state dir>/ipfs/repo`` and its log in ``<state dir>/ipfs/daemon.log``, and records it in
``<state dir>/ipfs.json``; ``pocfl ipfs down`` stops exactly the recorded PID, after checking that it is still an
IPFS daemon answering on the recorded URL. While it is recorded, it is the default store of every later command
(as ``pocfl chain up``'s node is the default chain); ``--ipfs`` or ``$POCFL_IPFS`` still choose another, and after
``pocfl ipfs down`` the default is the embedded store again.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pocfl.cli.output import Output, guarded, node_down, node_running, node_status
from pocfl.cli.session import JsonOpt
from pocfl.local_ipfs import (
    IpfsRecord,
    api_version,
    daemon_info,
    read_record,
    record_file,
    remove_record,
    write_record,
)

# The record's API stays importable from here, where tests and scripts know it.
__all__ = ["IpfsRecord", "api_version", "app", "read_record", "record_file", "remove_record", "write_record"]

app = typer.Typer(
    name="ipfs",
    help="Run a local IPFS daemon (127.0.0.1 only) that survives between commands; later commands use it.",
    no_args_is_help=True,
)

DEFAULT_PORT = 5001


@app.command("up")
@guarded
def up(
    port: Annotated[int, typer.Option(min=1, max=65535, help="RPC API port to listen on (127.0.0.1 only).")] = (
        DEFAULT_PORT
    ),
    json_out: JsonOpt = False,
) -> None:
    """Start a local IPFS daemon in the background and remember it (stop it with `pocfl ipfs down`).

    Its repository and log live in <state dir>/ipfs/. Later commands use it by default (--ipfs or $POCFL_IPFS
    choose another store), until `pocfl ipfs down`.
    """
    from pocfl.local_ipfs import start_daemon

    out = Output(json_out)
    start = start_daemon(port, progress=out.status)
    record, info = start.record, start.info
    if not start.started:
        node_running(out, "ipfs", info)
        return

    def human() -> None:
        out.print(
            f"{record.implementation} {info['version']} is running at [bold]{record.url}[/bold] (pid {record.pid})"
        )
        out.print(f"repository: {record.repo}")
        out.print(f"log: {record.log_file}")
        out.print("Later commands on this machine use it by default; for processes elsewhere:")
        out.print(f"  export POCFL_IPFS={record.url}")
        out.print("Stop it with `pocfl ipfs down` (the default store is then the embedded one again).")

    out.result({"started": True, "export": f"POCFL_IPFS={record.url}", **info}, human)


@app.command("down")
@guarded
def down(json_out: JsonOpt = False) -> None:
    """Stop the daemon started by `pocfl ipfs up` (by its recorded PID) and forget it."""
    from pocfl.local_ipfs import stop_daemon

    node_down(Output(json_out), "IPFS daemon", stop_daemon(), "repo", _stopped_lines)


def _stopped_lines(record: IpfsRecord) -> list[str]:
    return [
        f"Stopped {record.implementation} (pid {record.pid}) at {record.url}.",
        f"Its objects stay in {record.repo}; `pocfl ipfs up` serves them again.",
    ]


@app.command("status")
@guarded
def status(json_out: JsonOpt = False) -> None:
    """Show the daemon started by `pocfl ipfs up` and whether it answers. Exits 1 when none is running."""
    node_status(Output(json_out), "ipfs", read_record(), daemon_info, _status_rows, record_file())


def _status_rows(record: IpfsRecord, info: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("implementation", f"{record.implementation} {info['version'] or ''}".strip()),
        ("repository", record.repo),
        ("log", record.log_file),
        ("started", record.started_at),
    ]
