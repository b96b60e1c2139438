"""Start and stop a local IPFS daemon with the Kubo RPC API, bound to 127.0.0.1 only.

Kubo (``ipfs`` on PATH, or ``$POCFL_KUBO``) is preferred. Where no Kubo binary can be installed (no Kubo ships on
PyPI, npm or Debian without an internet download), the js-ipfs 0.66.1 daemon from ``tools/ipfs-node`` (npm) is
used: it serves the same ``/api/v0`` RPC and gives Kubo-identical CIDs for pocfl's importer settings. It needs a
``Promise.withResolvers`` polyfill on Node 20 and four npm overrides (both in ``tools/ipfs-node``).

Either way the repository is initialised with the ``test`` profile and then reconfigured: API, gateway and swarm
on 127.0.0.1 ports, no bootstrap peers, MDNS off, so the node never announces itself beyond this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pocfl.errors import ConfigError
from pocfl.fsutil import PRIVATE, write_json_atomic
from pocfl.procs import free_port, spawn_logged, stop_process, wait_ready
from pocfl.store.errors import StoreUnavailableError

JSIPFS_DIR_ENV = "POCFL_JSIPFS_DIR"
KUBO_ENV = "POCFL_KUBO"
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class IpfsImplementation:
    """How to run one IPFS implementation's command line."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]


def find_kubo() -> IpfsImplementation | None:
    """Kubo from ``$POCFL_KUBO`` or ``ipfs`` on PATH, if present."""
    binary = os.environ.get(KUBO_ENV) or shutil.which("ipfs")
    if not binary:
        return None
    return IpfsImplementation("kubo", (binary,), {})


def find_jsipfs() -> IpfsImplementation | None:
    """The js-ipfs daemon ``scripts/install`` puts in ``tools/ipfs-node`` (or ``$POCFL_JSIPFS_DIR``)."""
    node = shutil.which("node")
    roots = [Path(os.environ[JSIPFS_DIR_ENV])] if os.environ.get(JSIPFS_DIR_ENV) else []
    roots += [_REPO_ROOT / "tools" / "ipfs-node", Path.cwd() / "tools" / "ipfs-node"]
    for root in roots:
        cli = root / "node_modules" / "ipfs" / "src" / "cli.js"
        polyfill = root / "polyfill.cjs"
        if node and cli.is_file() and polyfill.is_file():
            options = f"{os.environ.get('NODE_OPTIONS', '')} --require {polyfill.resolve()}".strip()
            return IpfsImplementation("js-ipfs", (node, str(cli.resolve())), {"NODE_OPTIONS": options})
    return None


def find_ipfs() -> IpfsImplementation:
    """Kubo if installed, else js-ipfs; ConfigError with the install command when neither is."""
    found = find_kubo() or find_jsipfs()
    if found is None:
        raise ConfigError(
            "no IPFS daemon is installed: install Kubo (`ipfs` on PATH) or run `scripts/install` in the pocfl "
            "checkout (it installs the js-ipfs daemon into tools/ipfs-node, about 3 minutes)"
        )
    return found


@dataclass
class IpfsDaemon:
    """An IPFS daemon this process started (and must stop).

    Attributes
    ----------
    pid
        Process id of the daemon.
    api_port
        Port of the RPC API on 127.0.0.1.
    repo
        The daemon's repository directory (``IPFS_PATH``).
    implementation
        ``kubo`` or ``js-ipfs``.
    """

    pid: int
    api_port: int
    repo: Path
    implementation: str
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Base URL of the RPC API."""
        return f"http://127.0.0.1:{self.api_port}"

    @classmethod
    def start(
        cls,
        repo: Path,
        *,
        api_port: int | None = None,
        log_file: Path | None = None,
        detach: bool = False,
        timeout: float = 90.0,
        implementation: IpfsImplementation | None = None,
    ) -> IpfsDaemon:
        """Initialise ``repo`` if needed, bind everything to 127.0.0.1, start the daemon and wait for its API.

        Parameters
        ----------
        repo
            Repository directory; created and initialised on first use, reused afterwards.
        api_port
            RPC API port (a free one by default); gateway and swarm get free ports too.
        log_file
            Where the daemon's output goes (discarded by default).
        detach
            Start it in its own session so it outlives this process (``pocfl ipfs up``).
        timeout
            Seconds to wait for ``/api/v0/version`` to answer.
        implementation
            Which daemon to run; by default :func:`find_ipfs`.
        """
        impl = implementation or find_ipfs()
        repo = repo.resolve()
        repo.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **impl.env, "IPFS_PATH": str(repo)}
        if not (repo / "config").is_file():
            init = subprocess.run(
                [*impl.argv, "init", "--profile", "test"], env=env, capture_output=True, timeout=120, check=False
            )
            if init.returncode != 0:
                raise StoreUnavailableError(
                    f"`{impl.name} init` failed ({init.returncode}): {init.stderr.decode(errors='replace')[-500:]}"
                )
        api_port = api_port or free_port()
        _configure_loopback(repo / "config", api_port, kubo=impl.name == "kubo")
        popen = spawn_logged([*impl.argv, "daemon"], log_file, detach=detach, env=env)
        daemon = cls(pid=popen.pid, api_port=api_port, repo=repo, implementation=impl.name, _popen=popen)
        state = wait_ready(popen, lambda: api_version(daemon.url) is not None, timeout, 0.25)
        if state == "ready":
            return daemon
        if state == "exited":
            raise StoreUnavailableError(
                f"the {impl.name} daemon exited with code {popen.returncode}"
                + (f"; see {log_file}" if log_file else "")
            )
        daemon.stop()
        raise StoreUnavailableError(f"the {impl.name} daemon did not answer on {daemon.url} within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL) and reap it; also drops a stale repo lock."""
        stop_process(self._popen, self.pid, timeout)
        for lock in ("repo.lock", "api"):
            (self.repo / lock).unlink(missing_ok=True)


def api_version(url: str, timeout: float = 1.0) -> str | None:
    """The daemon's version string if ``url`` serves the RPC API, else None."""
    try:
        reply = httpx.post(f"{url}/api/v0/version", timeout=timeout)
        if reply.status_code == 200:
            version = reply.json().get("Version")
            return str(version) if version else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return None


def _configure_loopback(config_file: Path, api_port: int, *, kubo: bool) -> None:
    """Bind API, gateway and swarm to 127.0.0.1 and cut every route to other machines."""
    config = json.loads(config_file.read_text())
    addresses = config.setdefault("Addresses", {})
    addresses["API"] = f"/ip4/127.0.0.1/tcp/{api_port}"
    addresses["Gateway"] = f"/ip4/127.0.0.1/tcp/{free_port()}"
    if "RPC" in addresses:  # js-ipfs's gRPC-over-websocket endpoint
        addresses["RPC"] = f"/ip4/127.0.0.1/tcp/{free_port()}"
    addresses["Swarm"] = [f"/ip4/127.0.0.1/tcp/{free_port()}"]
    addresses["Announce"] = []
    addresses["NoAnnounce"] = []
    config["Bootstrap"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    if kubo:  # no DHT: content comes only from this node (js-ipfs has no such key)
        config.setdefault("Routing", {})["Type"] = "none"
    write_json_atomic(config_file, config, mode=PRIVATE)  # the config holds the node's private key
