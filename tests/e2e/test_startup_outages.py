"""``pocfl train`` and ``pocfl aggregate --follow`` started while the chain and the store are down wait, then run.

The chain (a real anvil) and the store (the real IPFS daemon of the session) are reached through TCP forwarders
that start listening only seconds after the command started: until then every connection is refused, as with a
node that is still booting. The command must say what it waits for and then proceed, not exit.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from pocfl.chain.backends import AnvilProcess
from pocfl.cli.state import NodeRecord, write_node
from tests.e2e.conftest import Actors, Cli

CHAIN_DOWN_FOR = 1.5  # seconds the chain stays down after the command started
STORE_REFUSALS = 3  # connections the store drops first: one whole failed read of IpfsStore (3 attempts)


class FlakyForwarder:
    """Forwards 127.0.0.1:``port`` to ``target``, after dropping connections as a node still booting does.

    The first ``refuse`` connections, and any before ``down_for`` seconds have passed, are closed unanswered;
    counting them (not only timing) makes the outage certain to be met whatever the machine's load.
    """

    def __init__(self, target: str, *, down_for: float = 0.0, refuse: int = 1) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.down_until = time.monotonic() + down_for
        self.refuse = refuse
        self.refused = 0
        self._stop = threading.Event()
        self._open: list[socket.socket] = []  # closed on exit: clients may keep connections alive
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        with self._server:
            while not self._stop.is_set():
                try:
                    conn, _ = self._server.accept()
                except TimeoutError:
                    continue
                if self.refused < self.refuse or time.monotonic() < self.down_until:
                    self.refused += 1
                    conn.close()
                    continue
                upstream = socket.create_connection(self.target)
                self._open += [conn, upstream]
                for a, b in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def __enter__(self) -> FlakyForwarder:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self._open:
            _close(sock)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)  # the other direction's thread sees the end and closes it


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _cancelled_project(cli: Cli, actors: Actors, tmp_path: Path, ipfs: str) -> int:
    """A digits project (manifest in the real IPFS node) cancelled before its start: nothing left to train."""
    manifest = tmp_path / "manifest.json"
    cli("project", "manifest", str(manifest), "--ipfs", ipfs, rpc=False)
    cli("deploy", "--key", actors.owner.env)
    created = cli.json(
        "project", "create", "--key", actors.owner.env, "--aggregator", actors.aggregator.address,
        "--manifest", str(manifest), "--ipfs", ipfs, "--budget", "1", "--rounds", "1",
        "--submission-window", "60", "--aggregation-window", "60", "--start-in", "600",
        "--min-trainers", "1", "--max-trainers", "3",
    )  # fmt: skip
    project = int(created["project_id"])
    cli("project", "cancel", str(project), "--key", actors.owner.env)
    return project


def _both_down_at_start(anvil: AnvilProcess, ipfs: str) -> tuple[FlakyForwarder, FlakyForwarder]:
    # the store is first read once the chain is up: the command meets one outage after the other
    return FlakyForwarder(anvil.url, down_for=CHAIN_DOWN_FOR), FlakyForwarder(ipfs, refuse=STORE_REFUSALS)


def _assert_waited(stderr: str, took: float) -> None:
    assert "waiting out an outage (connect to the chain): ChainUnavailableError" in stderr, stderr
    assert "StoreUnavailableError" in stderr, stderr
    assert took >= CHAIN_DOWN_FOR


def test_aggregator_started_during_an_outage_waits_for_chain_and_store(
    cli: Cli, actors: Actors, anvil_node: AnvilProcess, ipfs_url: str, tmp_path: Path
) -> None:
    project = _cancelled_project(cli, actors, tmp_path, ipfs_url)
    chain, store = _both_down_at_start(anvil_node, ipfs_url)
    # no --rpc, as in the README: the node recorded by `pocfl chain up`, not answering yet
    write_node(NodeRecord(anvil_node.pid, chain.url, anvil_node.port, None, None, "now"))
    with chain, store:
        began = time.monotonic()
        result = cli(
            "aggregate", str(project), "--follow", "--key", actors.aggregator.env,
            "--ipfs", store.url, rpc=False,
        )  # fmt: skip
        took = time.monotonic() - began
    assert "the node started by `pocfl chain up`" in result.stderr
    _assert_waited(result.stderr, took)
    assert f"project {project} is cancelled: no round to post" in result.stderr


def test_trainer_started_during_an_outage_waits_for_chain_and_store(
    cli: Cli, actors: Actors, anvil_node: AnvilProcess, ipfs_url: str, tmp_path: Path
) -> None:
    project = _cancelled_project(cli, actors, tmp_path, ipfs_url)
    chain, store = _both_down_at_start(anvil_node, ipfs_url)
    with chain, store:
        began = time.monotonic()
        result = cli(
            "train", str(project), "--data", "digits:part=0:of=3", "--key", actors.t1.env,
            "--ipfs", store.url, "--rpc", chain.url, "--poll", "0.2", "--json", rpc=False,
        )  # fmt: skip
        took = time.monotonic() - began
    _assert_waited(result.stderr, took)
    document = json.loads(result.stdout)
    assert document["project_status"] == "cancelled" and document["rounds"] == []
