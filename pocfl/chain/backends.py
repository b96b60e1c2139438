"""Connections to the three kinds of chain pocfl runs on.

- ``embedded``: eth-tester (py-evm, Prague rules) in this process; the zero-setup default for the demo
  and fast tests. Its state lives as long as the process.
- ``anvil``: a real local node from npm ``@foundry-rs/anvil``, started by pocfl on 127.0.0.1 with
  ``--hardfork prague`` and stopped by PID (:class:`AnvilProcess`).
- any JSON-RPC URL (a running anvil, Hardhat node or a public test chain).

:func:`connect` opens any of them and returns a :class:`Chain`; its ``control`` (:mod:`pocfl.chain.control`) drives
the node's clock, snapshots and balances.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from web3 import HTTPProvider, Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import RPCResponse, Wei

from pocfl.chain.control import ChainControl, EmbeddedControl, RpcControl
from pocfl.chain.transport import node_errors
from pocfl.errors import ChainError, ChainUnavailableError, ConfigError
from pocfl.procs import free_port, spawn_logged, stop_process, wait_ready
from pocfl.rpc import load_rpc_reply, node_chain_id
from pocfl.untrusted import UntrustedJsonError
from pocfl.waiting import is_transient

EMBEDDED = "embedded"
ANVIL_HARDFORK = "prague"

ChainKind = Literal["embedded", "rpc"]


@dataclass
class Chain:
    """An open connection: the web3 handle, the common API, and the node's controls (``control``).

    ``control`` (:class:`pocfl.chain.control.ChainControl`) moves the clock, snapshots, mines and sets balances:
    :class:`~pocfl.chain.control.EmbeddedControl` on the embedded chain, :class:`~pocfl.chain.control.RpcControl`
    on anvil/Hardhat (public chains refuse its methods). The methods below delegate the common ones.
    """

    w3: Web3
    kind: ChainKind
    control: ChainControl = field(repr=False)
    url: str | None = None
    anvil: AnvilProcess | None = None

    @property
    def chain_id(self) -> int:
        """The chain id."""
        return int(self.w3.eth.chain_id)

    def now(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def increase_time(self, seconds: int) -> int:
        """Move the chain's clock forward and mine a block; returns the new block timestamp.

        Works on the embedded chain and on anvil/Hardhat nodes (``evm_increaseTime``); public chains
        refuse it (:class:`~pocfl.errors.ChainRequestError`).
        """
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.control.increase_time(seconds)
        return self.now()

    def set_time(self, timestamp: int) -> int:
        """Mine a block stamped exactly ``timestamp`` (later than the latest block); returns its timestamp.

        Exact where :meth:`increase_time` is relative (and overshoots by the seconds spent computing the delta).
        Works on the embedded chain and on anvil/Hardhat nodes; public chains refuse it.
        """
        if timestamp <= self.now():
            raise ValueError(f"time only moves forward: the latest block is at {self.now()}, not before {timestamp}")
        self.control.set_time(timestamp)
        return self.now()

    def snapshot(self) -> Any:
        """Take a state snapshot (embedded chain, anvil, Hardhat)."""
        return self.control.snapshot()

    def revert(self, snapshot_id: Any) -> None:
        """Return to a snapshot taken with :meth:`snapshot`."""
        self.control.revert(snapshot_id)

    def fund(self, address: str, wei: int) -> None:
        """Send ``wei`` from the node's first pre-funded (unlocked) account. Local chains only."""
        accounts = self.w3.eth.accounts
        if not accounts:
            raise ChainError("this node has no unlocked dev account to fund from")
        to = Web3.to_checksum_address(address)
        with node_errors():
            tx = self.w3.eth.send_transaction({"from": accounts[0], "to": to, "value": Wei(wei)})
            self.w3.eth.wait_for_transaction_receipt(tx)

    def close(self) -> None:
        """Stop the anvil process this connection started, if any."""
        if self.anvil is not None:
            self.anvil.stop()
            self.anvil = None

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def embedded_chain() -> Chain:
    """Start an in-process eth-tester chain (py-evm, Prague), with auto-mining and 10 funded accounts."""
    from eth_tester import EthereumTester, PyEVMBackend

    tester = EthereumTester(PyEVMBackend())
    w3 = Web3(EthereumTesterProvider(tester))
    return Chain(w3=w3, kind="embedded", control=EmbeddedControl(tester))


class ScreenedHTTPProvider(HTTPProvider):
    """web3's HTTP provider, parsing every reply as untrusted JSON (:func:`pocfl.rpc.load_rpc_reply`).

    web3 decodes replies with ``json.loads`` as they come: a deeply nested reply would crash the process (see
    :mod:`pocfl.rpc`). Screened, it raises a :class:`pocfl.untrusted.JsonTooDeepError` instead. The reply is
    still read whole before its size is checked (by requests): a trusted endpoint is assumed for memory.
    """

    def decode_rpc_response(self, raw_response: bytes) -> RPCResponse:  # type: ignore[override]
        """The reply parsed after screening (an instance method: the base's static one cannot name the URL)."""
        return cast(RPCResponse, load_rpc_reply(raw_response, url=str(self.endpoint_uri)))


def rpc_chain(url: str, timeout: float = 30.0) -> Chain:
    """Connect to a JSON-RPC endpoint.

    Raises
    ------
    ChainError
        If nothing answers ``eth_chainId`` at ``url``.
    """
    w3 = Web3(ScreenedHTTPProvider(url, request_kwargs={"timeout": timeout}))
    try:
        w3.eth.chain_id  # noqa: B018 - probe the node
    except UntrustedJsonError:
        raise  # a reply too large or too deep to parse: said by name, not as "no chain answers"
    except Exception as exc:
        # an unreachable node is an outage the long-running commands wait out; a reply that is no chain's is not
        error = ChainUnavailableError if is_transient(exc) else ChainError
        raise error(f"no chain answers at {url} ({exc.__class__.__name__})", fix="chain-url") from exc
    return Chain(w3=w3, kind="rpc", control=RpcControl(w3), url=url)


def connect(rpc: str | None) -> Chain:
    """Open a chain connection.

    ``rpc`` is ``None`` or ``"embedded"`` for the in-process chain, ``"anvil"`` to start a fresh local
    anvil (stopped by :meth:`Chain.close`), otherwise an ``http(s)://`` JSON-RPC URL.
    """
    if rpc is None or rpc == EMBEDDED:
        return embedded_chain()
    if rpc == "anvil":
        proc = AnvilProcess.start()
        chain = rpc_chain(proc.url)
        chain.anvil = proc
        return chain
    if rpc.startswith(("http://", "https://")):
        return rpc_chain(rpc)
    raise ConfigError(f"the chain must be 'embedded', 'anvil' or an http(s):// URL, got {rpc!r}", fix="chain")


# ---------------------------------------------------------------------------------------------
# anvil
# ---------------------------------------------------------------------------------------------


def find_anvil() -> Path:
    """Locate the anvil binary: ``$POCFL_ANVIL``, ``node_modules`` (npm ``@foundry-rs/anvil``), or PATH.

    Raises
    ------
    ConfigError
        If none is installed, with the command that installs it.
    """
    env = os.environ.get("POCFL_ANVIL")
    if env:
        return Path(env)
    roots = [Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]]
    for root in roots:
        for candidate in sorted((root / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil")):
            if candidate.is_file():
                return candidate
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    raise ConfigError("anvil is not installed: run `scripts/install` in the pocfl checkout (or set POCFL_ANVIL)")


@dataclass
class AnvilProcess:
    """An anvil node this process started (and must stop)."""

    pid: int
    port: int
    host: str = "127.0.0.1"
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The node's HTTP JSON-RPC URL."""
        return f"http://{self.host}:{self.port}"

    @classmethod
    def start(
        cls,
        port: int | None = None,
        state_file: Path | None = None,
        log_file: Path | None = None,
        detach: bool = False,
        timeout: float = 30.0,
        block_time: int | None = None,
    ) -> AnvilProcess:
        """Start anvil on 127.0.0.1 with the Prague hardfork and wait until it answers.

        Parameters
        ----------
        port
            Port to listen on (a free one by default).
        state_file
            Load state from and dump it to this file, so the chain survives restarts.
        log_file
            Where anvil's output goes (discarded by default).
        detach
            Start it in its own session so it outlives this process (``pocfl chain up``).
        timeout
            Seconds to wait for the node to answer.
        block_time
            Mine a block every this many seconds (``--block-time``), so the chain's clock follows the wall clock
            even when nobody sends a transaction; None mines only on demand (tests that move the clock).
        """
        binary = find_anvil()
        port = port or free_port()
        args = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--hardfork", ANVIL_HARDFORK]
        if state_file is not None:
            args += ["--state", str(state_file)]
        if block_time:
            args += ["--block-time", str(block_time)]
        if log_file is None:
            args.append("--silent")
        popen = spawn_logged(args, log_file, detach=detach)
        proc = cls(pid=popen.pid, port=port, _popen=popen)
        state = wait_ready(popen, lambda: node_chain_id(proc.url) is not None, timeout, 0.05)
        if state == "ready":
            return proc
        if state == "exited":
            raise ChainError(f"anvil exited with code {popen.returncode} (is port {port} free?)")
        proc.stop()
        raise ChainError(f"anvil did not answer on {proc.url} within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the node (SIGTERM, then SIGKILL) and reap it."""
        stop_process(self._popen, self.pid, timeout)
