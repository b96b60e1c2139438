"""The local IPFS daemon started by ``pocfl ipfs up``: starting and stopping it, and its record.

The daemon is Kubo (or the js-ipfs daemon from ``tools/ipfs-node``), detached and bound to 127.0.0.1, with its
repository in ``<state dir>/ipfs/repo`` and its log in ``<state dir>/ipfs/daemon.log``; it is recorded in
``<state dir>/ipfs.json``. :func:`stop_daemon` stops exactly the recorded PID, after checking that it is still an IPFS
daemon answering on the recorded URL.

:mod:`pocfl.store.daemon` is imported only to start, stop or probe a daemon: it pulls in web3 (through
:mod:`pocfl.chain.backends`), which costs seconds, and ``pocfl --help`` must stay fast.
"""

from __future__ import annotations

import contextlib
import socket
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocfl.deployment import state_dir
from pocfl.errors import ConfigError
from pocfl.local_node import Progress, Started, Stopped, iso_now, pid_alive, read_json_record, write_json_atomic

if TYPE_CHECKING:
    from pocfl.store.daemon import IpfsDaemon

RECORD_FILE = "ipfs.json"
IPFS_DIR = "ipfs"

# Daemons started by this process: kept referenced so their Popen handles are never reaped as garbage.
_STARTED: list[IpfsDaemon] = []


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
    return read_json_record(
        record_file(),
        lambda data: IpfsRecord(
            pid=int(data["pid"]),
            url=str(data["url"]),
            port=int(data["port"]),
            implementation=str(data["implementation"]),
            repo=str(data["repo"]),
            log_file=str(data.get("log_file", "")),
            started_at=str(data.get("started_at", "")),
        ),
        "not an IPFS daemon record: delete it and run `pocfl ipfs up`",
    )


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
    only liveness is checked; the API check in :func:`daemon_info` applies either way.
    """
    if not Path("/proc/self").exists():
        return pid_alive(pid)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"ipfs" in word for word in argv)


def port_free(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def api_version(url: str, timeout: float = 1.0) -> str | None:
    """The daemon's version if ``url`` serves the RPC API, else None (see :func:`pocfl.store.daemon.api_version`)."""
    from pocfl.store.daemon import api_version as probe

    return probe(url, timeout)


def daemon_info(record: IpfsRecord) -> dict[str, Any]:
    """The record plus ``running`` (our process is alive and its API answers) and the node's ``version``."""
    ours = pid_alive(record.pid) and is_ipfs_daemon(record.pid)
    version = api_version(record.url) if ours else None
    return {"running": version is not None, "version": version, **record.to_json()}


def recorded_store() -> str | None:
    """The RPC URL of the daemon ``pocfl ipfs up`` recorded, the default store of later commands; None without one.

    Only its process is checked (alive, an IPFS daemon), not its API: a busy daemon is still the store to use, and
    the store's own retries cover a slow answer.

    Raises
    ------
    ConfigError
        The record names a process that is gone: using the embedded store instead would miss what was stored.
    """
    record = read_record()
    if record is None:
        return None
    if not (pid_alive(record.pid) and is_ipfs_daemon(record.pid)):
        raise ConfigError(
            f"the IPFS daemon started by `pocfl ipfs up` ({record.url}, pid {record.pid}) is not running: start it "
            "again with `pocfl ipfs up`, or run `pocfl ipfs down` to forget it and use the embedded store"
        )
    return record.url


def drop_stale_locks(repo: Path) -> None:
    """Remove the lock files a daemon that died without cleaning up left in our repository."""
    for lock in ("repo.lock", "api"):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            (repo / lock).unlink()


def start_daemon(port: int, progress: Progress = lambda _text: nullcontext()) -> Started[IpfsRecord]:
    """Start a local IPFS daemon (detached, API on 127.0.0.1:``port``) and record it, unless the recorded one runs.

    A record of a daemon that no longer runs is dropped (with the locks it left when it died).

    Raises
    ------
    ConfigError
        ``port`` is in use.
    """
    existing = read_record()
    if existing is not None:
        info = daemon_info(existing)
        if info["running"]:
            return Started(False, existing, info)
        remove_record()
        if not pid_alive(existing.pid):
            drop_stale_locks(Path(existing.repo))
    if not port_free(port):
        raise ConfigError(f"port {port} on 127.0.0.1 is already in use: pick another with --port")
    from pocfl.store.daemon import IpfsDaemon

    folder = (state_dir() / IPFS_DIR).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    log_file = folder / "daemon.log"
    with progress(f"starting the IPFS daemon on port {port}"):
        daemon = IpfsDaemon.start(folder / "repo", api_port=port, log_file=log_file, detach=True)
    _STARTED.append(daemon)
    record = IpfsRecord(
        pid=daemon.pid,
        url=daemon.url,
        port=daemon.api_port,
        implementation=daemon.implementation,
        repo=str(daemon.repo),
        log_file=str(log_file),
        started_at=iso_now(),
    )
    write_record(record)
    return Started(True, record, daemon_info(record))


def stop_daemon() -> Stopped[IpfsRecord]:
    """Stop the recorded daemon (by its PID, only while it is an IPFS daemon answering on its URL) and forget it."""
    record = read_record()
    if record is None:
        return Stopped(None, False, "no IPFS daemon recorded")
    info = daemon_info(record)
    stopped = False
    reason = ""
    if not pid_alive(record.pid):
        reason = "the process had already exited"
        drop_stale_locks(Path(record.repo))
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
    return Stopped(record, stopped, reason)
