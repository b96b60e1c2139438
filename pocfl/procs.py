"""Process and port helpers shared by the chain and IPFS daemon managers (kept free of heavy imports)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

__all__ = ["free_port", "spawn_logged", "stop_pid", "stop_process", "wait_ready"]


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


def spawn_logged(
    argv: list[str], log_file: Path | None, *, detach: bool, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log_file`` (discarded when None).

    ``detach`` starts it in its own session so that it outlives this process. The child keeps its own
    descriptor of the log, so ours is closed once it has started.
    """
    if log_file is None:
        return subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=detach
        )
    with open(log_file, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=detach)


def wait_ready(
    popen: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float, interval: float
) -> Literal["ready", "exited", "timeout"]:
    """Poll a starting process every ``interval`` seconds until ``ready()`` holds, it exits, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            return "exited"
        if ready():
            return "ready"
        time.sleep(interval)
    return "timeout"


def stop_process(popen: subprocess.Popen[bytes] | None, pid: int, timeout: float = 10.0) -> None:
    """Stop a process we started: SIGTERM, then SIGKILL, reaping it when this process holds its ``popen``.

    Without a ``popen`` (a daemon started by an earlier command), it is stopped by ``pid`` (:func:`stop_pid`).
    """
    if popen is None:
        stop_pid(pid, timeout)
        return
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout)
