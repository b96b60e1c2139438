"""Replies of a hostile or broken chain RPC endpoint: deep JSON is refused by name, never parsed into a crash.

With py_ecc imported (it raises the recursion limit to 100,000, as every pocfl command that loads the prover
does), ``json.loads`` of deeply nested brackets overflows the C stack: a segmentation fault. The client runs
in a subprocess, so a crash fails the test instead of taking pytest down with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPTH = 300_000  # far past the C stack of an unscreened parse, 600 KB: under any size limit


class _Hostile(BaseHTTPRequestHandler):
    """``/deep``: every reply nests ``DEPTH`` arrays; ``/sane-chain-id``: ``eth_chainId`` answers, the rest nests."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/sane-chain-id" and request["method"] == "eth_chainId":
            result = '"0x7a69"'
        else:
            result = "[" * DEPTH + "]" * DEPTH
        body = f'{{"jsonrpc":"2.0","id":{json.dumps(request["id"])},"result":{result}}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_rpc() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


CLIENT = """
import sys
import py_ecc.bn128  # noqa: F401 - raises the recursion limit to 100,000, as in the commands
assert sys.getrecursionlimit() >= 100_000
from pocfl.chain.backends import rpc_chain
from pocfl.cli.state import node_chain_id
from pocfl.untrusted import JsonTooDeepError

url = sys.argv[1]
def refused(what, fn):
    try:
        fn()
    except JsonTooDeepError as exc:
        print(what, type(exc).__name__, exc, flush=True)
    else:
        raise SystemExit(what + ": the deep reply was accepted")

refused("probe", lambda: node_chain_id(url + "/deep"))
refused("connect", lambda: rpc_chain(url + "/deep"))
chain = rpc_chain(url + "/sane-chain-id")  # connected; every later reply nests
refused("web3", chain.now)
"""


def test_deep_rpc_replies_are_refused_by_name_without_crashing(hostile_rpc: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, hostile_rpc],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"exit {done.returncode} (a negative one is a signal)\n{done.stdout}{done.stderr}"
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [[what, "JsonTooDeepError"] for what in ("probe", "connect", "web3")]
    assert all(f"{DEPTH + 1} levels deep" in line and hostile_rpc in line for line in lines)  # + the envelope
