"""Process and port helpers shared by the chain and IPFS daemon managers (kept free of heavy imports)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time

__all__ = ["free_port", "stop_pid"]


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop_pid(pid: int, timeout: float = 10.0) -> bool:
    """Stop a process we started earlier (by PID): SIGTERM, wait, then SIGKILL. Returns False if it was gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True
