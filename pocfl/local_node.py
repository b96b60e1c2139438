"""The record of the local node started by ``pocfl chain up`` (``<state dir>/chain.json``).

Connections that name no chain (:class:`pocfl.connection.Connection`) use the URL recorded here when that node is
still alive, and ``pocfl chain down`` stops exactly the recorded PID (after checking it still is an anvil process).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pocfl import fsutil
from pocfl.deployment import state_dir
from pocfl.errors import ConfigError
from pocfl.rpc import node_chain_id

NODE_FILE = "chain.json"


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


def read_node() -> NodeRecord | None:
    """The recorded node, or None when there is no (readable) record."""
    path = node_file()
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return NodeRecord(
            pid=int(data["pid"]),
            url=str(data["url"]),
            port=int(data["port"]),
            state_file=data.get("state_file"),
            log_file=data.get("log_file"),
            started_at=str(data.get("started_at", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} is not a node record: delete it and run `pocfl chain up`") from None


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
