"""``pocfl ipfs``: a local IPFS daemon that survives between commands, bound to 127.0.0.1 only.

``pocfl ipfs up`` starts Kubo (or the js-ipfs daemon from ``tools/ipfs-node``) detached, with its repository in
``<state dir>/ipfs/repo`` and its log in ``<state dir>/ipfs/daemon.log``, and records it in
``<state dir>/ipfs.json``; ``pocfl ipfs down`` stops exactly the recorded PID, after checking that it is still an
IPFS daemon answering on the recorded URL. Commands use the daemon only when told to (``--ipfs URL`` or
``$POCFL_IPFS``): without either they keep using the embedded store.
"""

from __future__ import annotations

import contextlib
import json
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pocfl.cli.output import Output, guarded, kv_table
from pocfl.cli.session import JsonOpt
from pocfl.cli.state import pid_alive, write_json_atomic
from pocfl.deployment import state_dir
from pocfl.errors import ConfigError

if TYPE_CHECKING:
    from pocfl.store.daemon import IpfsDaemon

app = typer.Typer(
    name="ipfs",
    help="Run a local IPFS daemon (127.0.0.1 only) that survives between commands; use it with --ipfs URL.",
    no_args_is_help=True,
)

# Daemons started by this process: kept referenced so their Popen handles are never reaped as garbage.
_STARTED: list[IpfsDaemon] = []

DEFAULT_PORT = 5001
RECORD_FILE = "ipfs.json"
IPFS_DIR = "ipfs"

# pocfl.store.daemon is imported only to start or stop a daemon: it pulls in web3 (through
# pocfl.chain.backends), which costs seconds, and `pocfl --help` / `pocfl ipfs status` must stay fast.


@dataclass(frozen=True)
class IpfsRecord:
    """A daemon started by ``pocfl ipfs up``."""

    pid: int
    url: str
    port: int
    implementation: str
    repo: str
    log_file: str
    started_at: str

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-serialisable dict."""
        return asdict(self)


def record_file() -> Path:
    """Path of the daemon record: ``<state dir>/ipfs.json``."""
    return state_dir() / RECORD_FILE


def read_record() -> IpfsRecord | None:
    """The recorded daemon, or None when there is no record.

    Raises
    ------
    ConfigError
        If the file exists but is not a daemon record.
    """
    path = record_file()
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return IpfsRecord(
            pid=int(data["pid"]),
            url=str(data["url"]),
            port=int(data["port"]),
            implementation=str(data["implementation"]),
            repo=str(data["repo"]),
            log_file=str(data.get("log_file", "")),
            started_at=str(data.get("started_at", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} is not an IPFS daemon record: delete it and run `pocfl ipfs up`") from None


def write_record(record: IpfsRecord) -> None:
    """Write the record atomically."""
    write_json_atomic(record_file(), record.to_json())


def remove_record() -> None:
    """Delete the record (if any)."""
    with contextlib.suppress(FileNotFoundError):
        record_file().unlink()


def is_ipfs_daemon(pid: int) -> bool:
    """Whether ``pid`` looks like an IPFS daemon: its command line (from /proc) mentions ``ipfs``.

    Kubo runs as ``ipfs daemon``; js-ipfs rewrites its process title to ``ipfs``. Where /proc does not exist
    only liveness is checked; the API check in :func:`_info` applies either way.
    """
    if not Path("/proc/self").exists():
        return pid_alive(pid)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"ipfs" in word for word in argv)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _iso_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def api_version(url: str, timeout: float = 1.0) -> str | None:
    """The daemon's version if ``url`` serves the RPC API, else None (see :func:`pocfl.store.daemon.api_version`)."""
    from pocfl.store.daemon import api_version as probe

    return probe(url, timeout)
    return None


def _info(record: IpfsRecord) -> dict[str, Any]:
    """The record plus ``running`` (our process is alive and its API answers) and the node's ``version``."""
    ours = pid_alive(record.pid) and is_ipfs_daemon(record.pid)
    version = api_version(record.url) if ours else None
    return {"running": version is not None, "version": version, **record.to_json()}


def _drop_stale_locks(repo: Path) -> None:
    """Remove the lock files a daemon that died without cleaning up left in our repository."""
    for lock in ("repo.lock", "api"):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            (repo / lock).unlink()


@app.command("up")
@guarded
def up(
    port: Annotated[int, typer.Option(min=1, max=65535, help="RPC API port to listen on (127.0.0.1 only).")] = (
        DEFAULT_PORT
    ),
    json_out: JsonOpt = False,
) -> None:
    """Start a local IPFS daemon in the background and remember it (stop it with `pocfl ipfs down`).

    Its repository and log live in <state dir>/ipfs/. Commands use it when given --ipfs URL (or $POCFL_IPFS).
    """
    out = Output(json_out)
    existing = read_record()
    if existing is not None:
        info = _info(existing)
        if info["running"]:
            out.result(
                {"started": False, **info},
                lambda: out.print(
                    f"An IPFS daemon is already running at [bold]{existing.url}[/bold] (pid {existing.pid}); "
                    "stop it with `pocfl ipfs down` first to start another."
                ),
            )
            return
        remove_record()
        if not pid_alive(existing.pid):
            _drop_stale_locks(Path(existing.repo))
    if not _port_free(port):
        raise ConfigError(f"port {port} on 127.0.0.1 is already in use: pick another with --port")
    from pocfl.store.daemon import IpfsDaemon

    folder = (state_dir() / IPFS_DIR).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    log_file = folder / "daemon.log"
    with out.status(f"starting the IPFS daemon on port {port}"):
        daemon = IpfsDaemon.start(folder / "repo", api_port=port, log_file=log_file, detach=True)
    _STARTED.append(daemon)
    record = IpfsRecord(
        pid=daemon.pid,
        url=daemon.url,
        port=daemon.api_port,
        implementation=daemon.implementation,
        repo=str(daemon.repo),
        log_file=str(log_file),
        started_at=_iso_now(),
    )
    write_record(record)
    info = _info(record)

    def human() -> None:
        out.print(
            f"{record.implementation} {info['version']} is running at [bold]{record.url}[/bold] (pid {record.pid})"
        )
        out.print(f"repository: {record.repo}")
        out.print(f"log: {record.log_file}")
        out.print("Commands use it when told to; for this shell:")
        out.print(f"  export POCFL_IPFS={record.url}")
        out.print("Stop it with `pocfl ipfs down`.")

    out.result({"started": True, "export": f"POCFL_IPFS={record.url}", **info}, human)


@app.command("down")
@guarded
def down(json_out: JsonOpt = False) -> None:
    """Stop the daemon started by `pocfl ipfs up` (by its recorded PID) and forget it."""
    out = Output(json_out)
    record = read_record()
    if record is None:
        out.result(
            {"stopped": False, "reason": "no IPFS daemon recorded"},
            lambda: out.print("No IPFS daemon is recorded."),
        )
        return
    info = _info(record)
    stopped = False
    reason = ""
    if not pid_alive(record.pid):
        reason = "the process had already exited"
        _drop_stale_locks(Path(record.repo))
    elif not info["running"]:
        reason = f"pid {record.pid} is no longer an IPFS daemon answering on {record.url}; left it alone"
    else:
        from pocfl.store.daemon import IpfsDaemon

        daemon = IpfsDaemon(
            pid=record.pid, api_port=record.port, repo=Path(record.repo), implementation=record.implementation
        )
        daemon.stop()
        stopped = not pid_alive(record.pid)
        if not stopped:
            reason = f"pid {record.pid} did not exit"
    remove_record()
    document: dict[str, Any] = {"stopped": stopped, "pid": record.pid, "url": record.url, "repo": record.repo}
    if reason:
        document["reason"] = reason

    def human() -> None:
        if stopped:
            out.print(f"Stopped {record.implementation} (pid {record.pid}) at {record.url}.")
            out.print(f"Its objects stay in {record.repo}; `pocfl ipfs up` serves them again.")
        else:
            out.print(f"Forgot the IPFS daemon at {record.url}: {reason}.")

    out.result(document, human)


@app.command("status")
@guarded
def status(json_out: JsonOpt = False) -> None:
    """Show the daemon started by `pocfl ipfs up` and whether it answers. Exits 1 when none is running."""
    out = Output(json_out)
    record = read_record()
    if record is None:
        out.result(
            {"running": False, "record": str(record_file())},
            lambda: out.print("No IPFS daemon is running: start one with `pocfl ipfs up`."),
        )
        raise typer.Exit(1)
    info = _info(record)
    rows: list[tuple[str, Any]] = [
        ("status", "running" if info["running"] else "not running (`pocfl ipfs up` to restart it)"),
        ("url", record.url),
        ("pid", record.pid),
        ("implementation", f"{record.implementation} {info['version'] or ''}".strip()),
        ("repository", record.repo),
        ("log", record.log_file),
        ("started", record.started_at),
    ]
    out.result(info, lambda: out.table(kv_table(rows)))
    if not info["running"]:
        raise typer.Exit(1)
