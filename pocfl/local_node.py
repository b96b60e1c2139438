"""The local node started by ``pocfl chain up``: starting and stopping it, and its record (``<state dir>/chain.json``).

Connections that name no chain (:class:`pocfl.connection.Connection`) use the URL recorded here when that node is
still alive, and ``pocfl chain down`` stops exactly the recorded PID (after checking it still is an anvil process).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pocfl import fsutil
from pocfl.deployment import state_dir
from pocfl.errors import ConfigError
from pocfl.rpc import node_chain_id

if TYPE_CHECKING:
    from pocfl.chain.backends import AnvilProcess

NODE_FILE = "chain.json"
STATE_FILE_NAME = "anvil-state.json"
LOG_FILE_NAME = "anvil.log"

T = TypeVar("T")

Progress = Callable[[str], AbstractContextManager[Any]]
"""Shows a slow step while it runs (the CLI's spinner): called with the step's description."""

# Popen handles of nodes started by this process: kept referenced so they are never reaped as garbage.
_STARTED: list[AnvilProcess] = []


@dataclass(frozen=True)
class NodeRecord:
    """A node started by ``pocfl chain up``."""

    pid: int
    url: str
    port: int
    state_file: str | None
    log_file: str | None
    started_at: str

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-serialisable dict."""
        return asdict(self)


def node_file() -> Path:
    """Path of the node record in the state folder."""
    return state_dir() / NODE_FILE


def read_json_record(path: Path, build: Callable[[dict[str, Any]], T], fix: str) -> T | None:
    """The local record in ``path`` built by ``build``, or None when there is none.

    Raises
    ------
    ConfigError
        The file exists but is not such a record; ``fix`` ends the message (``"not a node record: ..."``).
    """
    if not path.exists():
        return None
    try:
        return build(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} is {fix}") from None


def read_node() -> NodeRecord | None:
    """The recorded node, or None when there is no (readable) record."""
    return read_json_record(
        node_file(),
        lambda data: NodeRecord(
            pid=int(data["pid"]),
            url=str(data["url"]),
            port=int(data["port"]),
            state_file=data.get("state_file"),
            log_file=data.get("log_file"),
            started_at=str(data.get("started_at", "")),
        ),
        "not a node record: delete it and run `pocfl chain up`",
    )


def write_node(record: NodeRecord) -> None:
    """Write the record atomically."""
    write_json_atomic(node_file(), record.to_json())


def write_json_atomic(path: Path, document: Any) -> None:
    """Write a local record (mode 0600) atomically, so readers never see half a file."""
    fsutil.write_json_atomic(path, document, mode=fsutil.PRIVATE)


def remove_node() -> None:
    """Delete the record (if any)."""
    with contextlib.suppress(FileNotFoundError):
        node_file().unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def is_anvil(pid: int) -> bool:
    """Whether ``pid`` runs anvil (checked through /proc where it exists; assumed elsewhere)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        return pid_alive(pid)
    try:
        argv0 = cmdline.read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return Path(argv0.decode(errors="replace")).name.startswith("anvil")


def live_node() -> NodeRecord | None:
    """The recorded node if its process is alive and answers RPC, else None."""
    record = read_node()
    if record is None or not pid_alive(record.pid):
        return None
    return record if node_chain_id(record.url) is not None else None


def iso_now() -> str:
    """The wall-clock time of a record's ``started_at``: ``2025-01-31T12:00:00Z``."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def node_info(record: NodeRecord) -> dict[str, Any]:
    """The record plus ``running`` (alive and answering RPC) and the node's ``chain_id``."""
    alive = pid_alive(record.pid)
    chain_id = node_chain_id(record.url) if alive else None
    return {"running": alive and chain_id is not None, "chain_id": chain_id, **record.to_json()}


@dataclass(frozen=True)
class Started(Generic[T]):
    """A local process started and recorded (``record``), or the recorded one already running (``started`` False).

    ``info`` is the record plus whether the process runs and what it answers (:func:`node_info`).
    """

    started: bool
    record: T
    info: dict[str, Any]


@dataclass(frozen=True)
class NodeStart(Started[NodeRecord]):
    """``start_node``'s outcome; ``process`` is the node when this call started it."""

    process: AnvilProcess | None = None


def start_node(
    port: int,
    state_file: Path | None,
    block_time: int,
    *,
    detach: bool = True,
    progress: Progress = lambda _text: nullcontext(),
) -> NodeStart:
    """Start a local anvil node on 127.0.0.1 and record it, unless the recorded one still runs.

    Parameters
    ----------
    port
        Port to listen on.
    state_file
        Load the chain from and save it to this file; None: an empty chain that is not saved.
    block_time
        Mine a block every so many seconds; 0 mines only on demand.
    detach
        Let the node outlive this process (else it stops with it).
    progress
        Shows the start while it runs.

    Raises
    ------
    ConfigError
        Something else answers on ``port``.
    """
    existing = read_node()
    if existing is not None:
        info = node_info(existing)
        if info["running"]:
            return NodeStart(False, existing, info)
        remove_node()
    if node_chain_id(f"http://127.0.0.1:{port}") is not None:
        raise ConfigError(f"something already answers on port {port}: pick another with --port")
    from pocfl.chain.backends import AnvilProcess  # imports web3: only when a node is really started

    home = state_dir()
    home.mkdir(parents=True, exist_ok=True)
    log_file = (home / LOG_FILE_NAME).resolve()
    with progress(f"starting anvil on port {port}"):
        proc = AnvilProcess.start(
            port=port, state_file=state_file, log_file=log_file, detach=detach, block_time=block_time or None
        )
    _STARTED.append(proc)
    record = NodeRecord(
        pid=proc.pid,
        url=proc.url,
        port=port,
        state_file=str(state_file) if state_file else None,
        log_file=str(log_file),
        started_at=iso_now(),
    )
    write_node(record)
    return NodeStart(True, record, node_info(record), proc)


@dataclass(frozen=True)
class Stopped(Generic[T]):
    """A recorded local process stopped or not, and its record forgotten (``record`` None: there was none).

    ``reason`` says why it was not stopped (empty when it was).
    """

    record: T | None
    stopped: bool
    reason: str


def stop_node() -> Stopped[NodeRecord]:
    """Stop the recorded node (by its PID, only while it still runs anvil) and forget it."""
    record = read_node()
    if record is None:
        return Stopped(None, False, "no node recorded")
    stopped = False
    reason = ""
    if not pid_alive(record.pid):
        reason = "the process had already exited"
    elif not is_anvil(record.pid):
        reason = f"pid {record.pid} is no longer anvil; left it alone"
    else:
        from pocfl.procs import stop_pid

        stopped = stop_pid(record.pid)
    remove_node()
    return Stopped(record, stopped, reason)
