"""Fast chain drivers and an exact pure-Python model of ``PocMarketplace`` for the money-invariant test.

Two pieces, both free of pytest and hypothesis so other tests (or a debugging session) can reuse them:

- :class:`AnvilDriver` / :class:`EmbeddedDriver`: raw access to one deployed marketplace (plus the test
  contracts ``CommitmentRoundVerifier`` and ``EtherRejecter``), much faster than the typed client because
  nothing is signed in Python on anvil (its dev accounts are unlocked), reads are batched into one
  JSON-RPC request, and every block's timestamp is deterministic (one second after the previous block)
  so the model can predict time-dependent reverts exactly.
- :class:`MarketModel`: the contract's state and every external function, with the same checks in the
  same order. A call the contract must refuse raises :class:`Expected` with the custom error's name and
  arguments *before* the model changes; otherwise the model applies the call's effects.
"""

from __future__ import annotations

import ast
import http.client
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types, get_abi_output_types
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from pocfl.chain.backends import Chain, connect, embedded_chain
from pocfl.chain.control import EmbeddedControl
from pocfl.chain.reverts import ContractRevert, decode_revert_data
from pocfl.chain.types import ZERO_ADDRESS, ProjectState, RoundPost, Submission
from pocfl.contracts import MARKETPLACE, load_artifact
from pocfl.errors import ChainError
from pocfl.payouts import allocate

UINT128_MAX = 2**128 - 1
MAX_TRAINERS = 512
MAX_CID_LENGTH = 128
MAX_CONSECUTIVE_FAILURES = 2
# Gas limit of every transaction the drivers send: well above any call the tests make, and explicit so
# nothing is estimated.
TX_GAS = 8_000_000
# How far ahead of the wall clock the embedded chain is moved, so py-evm's "max(parent + 1, now)" block
# timestamps are always "parent + 1".
EMBEDDED_CLOCK_LEAD = 10**8

ACTIVE, FINISHED, CANCELLED = 1, 2, 3
OPEN, ALLOWLIST = 0, 1


# ---------------------------------------------------------------------------------------------
# ABI helpers
# ---------------------------------------------------------------------------------------------


class MarketAbi:
    """Encodes calls and decodes results of the marketplace with precomputed selectors."""

    def __init__(self) -> None:
        artifact = load_artifact(MARKETPLACE)
        self.bytecode: str = "0x" + str(artifact["bytecode"]).removeprefix("0x")
        self._inputs: dict[str, tuple[bytes, list[str]]] = {}
        self._outputs: dict[str, list[str]] = {}
        for item in artifact["abi"]:
            if item["type"] == "function":
                self._inputs[item["name"]] = (function_abi_to_4byte_selector(item), get_abi_input_types(item))
                self._outputs[item["name"]] = get_abi_output_types(item)
        self._cache: dict[tuple[Any, ...], str] = {}

    def encode(self, name: str, *args: Any) -> str:
        """Calldata of ``name(args)`` as 0x-hex."""
        selector, types = self._inputs[name]
        return "0x" + (selector + abi_encode(types, list(args))).hex()

    def encode_cached(self, name: str, *args: Any) -> str:
        """Like :meth:`encode`, memoised (for the view calls repeated after every step)."""
        key = (name, *args)
        data = self._cache.get(key)
        if data is None:
            data = self._cache[key] = self.encode(name, *args)
        return data

    def decode(self, name: str, data: bytes) -> Any:
        """Decode the return data of ``name`` (a single value is unwrapped)."""
        values = abi_decode(self._outputs[name], data)
        return values[0] if len(values) == 1 else values


ABI = MarketAbi()


@dataclass(frozen=True)
class TxResult:
    """What the tests need from a mined transaction."""

    status: int
    gas_used: int
    fee: int
    block_number: int


def _bytecode(name: str) -> str:
    return "0x" + str(load_artifact(name)["bytecode"]).removeprefix("0x")


def _revert_from_data(data: bytes) -> ChainError:
    return decode_revert_data(data)


# ---------------------------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------------------------


class Driver:
    """One chain with one deployed marketplace, driven without the typed client's per-call overhead.

    Every transaction is mined in its own block exactly one second after the previous block, so the
    model knows the ``block.timestamp`` of each call.
    """

    name = "driver"
    chain: Chain
    accounts: list[str]
    chain_id: int
    market: str
    verifier: str
    rejecter: str

    # ---- to implement -----------------------------------------------------------------------

    def latest(self) -> tuple[int, int]:
        """``(number, timestamp)`` of the latest block."""
        raise NotImplementedError

    def send(self, sender: str, to: str | None, data: str, value: int = 0, gas: int = TX_GAS) -> TxResult:
        """Send a transaction from an unlocked account and wait for it to be mined."""
        raise NotImplementedError

    def deploy(self, sender: str, bytecode: str) -> tuple[str, TxResult]:
        """Deploy ``bytecode``; returns the contract address and the receipt."""
        raise NotImplementedError

    def call(
        self, sender: str, to: str, data: str, value: int = 0, block: str = "pending", timestamp: int | None = None
    ) -> bytes | ChainError:
        """Run a call without mining, in the next block's context (``pending``, whose timestamp is
        ``timestamp``: the latest block's + 1 by default) or the latest block's; a revert is returned."""
        raise NotImplementedError

    def read(self, queries: Sequence[tuple[str, str]]) -> list[Any]:
        """Batch of reads at the latest block.

        Each query is ``("balance", address)``, ``("block", "latest")`` (its timestamp) or
        ``(contract, calldata)`` (the raw return data).
        """
        raise NotImplementedError

    def mine_at(self, timestamp: int) -> None:
        """Mine an empty block with exactly this timestamp."""
        raise NotImplementedError

    def snapshot(self) -> Any:
        """Take a snapshot to :meth:`revert` to (anvil: each snapshot can be used once)."""
        raise NotImplementedError

    def revert(self, snapshot: Any) -> None:
        """Return to a snapshot."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the chain."""
        self.chain.close()

    # ---- shared -----------------------------------------------------------------------------

    def now(self) -> int:
        """Timestamp of the latest block."""
        return self.latest()[1]

    def setup_market(self) -> None:
        """Deploy the marketplace, the test verifier and an ether-rejecting contract from the first account."""
        deployer = self.accounts[0]
        self.market, _ = self.deploy(deployer, ABI.bytecode)
        self.verifier, _ = self.deploy(deployer, _bytecode("CommitmentRoundVerifier"))
        self.rejecter, _ = self.deploy(
            deployer, _bytecode("EtherRejecter") + abi_encode(["address"], [self.market]).hex()
        )

    def transact(self, sender: str, data: str, value: int = 0, gas: int = TX_GAS) -> TxResult:
        """Send a call to the marketplace."""
        return self.send(sender, self.market, data, value, gas)

    def call_market(
        self, sender: str, data: str, value: int = 0, block: str = "pending", timestamp: int | None = None
    ) -> bytes | ChainError:
        """Run a call to the marketplace without mining; a revert is returned as the named error."""
        return self.call(sender, self.market, data, value, block, timestamp)

    def balance(self, address: str) -> int:
        """Ether balance at the latest block."""
        return int(self.read([("balance", address)])[0])

    def view(self, name: str, *args: Any) -> Any:
        """Call a view of the marketplace at the latest block and decode it."""
        return ABI.decode(name, self.read([(self.market, ABI.encode_cached(name, *args))])[0])


class AnvilDriver(Driver):
    """anvil via raw JSON-RPC over one keep-alive HTTP connection; dev accounts are signed by anvil."""

    name = "anvil"

    def __init__(self, chain: Chain | None = None) -> None:
        self.chain = chain or connect("anvil")
        if self.chain.url is None:
            raise ChainError("the anvil driver needs an RPC chain")
        url = urlparse(self.chain.url)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or 8545
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
        self._id = 0
        self.accounts = [to_checksum_address(a) for a in self.rpc("eth_accounts", [])]
        self.chain_id = int(self.rpc("eth_chainId", []), 16)
        # Every new block: previous timestamp + 1 s, whatever the wall clock says.
        self.rpc("anvil_setBlockTimestampInterval", [1])
        self.setup_market()

    def _post(self, payload: Any) -> Any:
        body = json.dumps(payload)
        for attempt in range(2):
            try:
                self._conn.request("POST", "/", body, {"Content-Type": "application/json"})
                return json.loads(self._conn.getresponse().read())
            except (http.client.HTTPException, ConnectionError):
                if attempt:
                    raise
                self._conn.close()
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
        raise AssertionError("unreachable")

    def rpc(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC request; an error response raises :class:`ChainError` (with ``.rpc_error``)."""
        self._id += 1
        response = self._post({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        if "error" in response:
            err = ChainError(f"{method} failed: {response['error']}")
            err.rpc_error = response["error"]  # type: ignore[attr-defined]
            raise err
        return response.get("result")

    def latest(self) -> tuple[int, int]:
        block = self.rpc("eth_getBlockByNumber", ["latest", False])
        return int(block["number"], 16), int(block["timestamp"], 16)

    def _receipt(self, tx_hash: str) -> dict[str, Any]:
        # anvil answers eth_sendTransaction before the automined block is visible: poll briefly.
        deadline = time.monotonic() + 30
        delay = 0.0
        while True:
            receipt = self.rpc("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                return dict(receipt)
            if time.monotonic() > deadline:
                raise ChainError(f"no receipt for {tx_hash}")
            time.sleep(delay)
            delay = min(0.01, delay + 0.0005)

    def send(self, sender: str, to: str | None, data: str, value: int = 0, gas: int = TX_GAS) -> TxResult:
        tx: dict[str, Any] = {"from": sender, "data": data, "value": hex(value), "gas": hex(gas)}
        if to is not None:
            tx["to"] = to
        tx_hash = self.rpc("eth_sendTransaction", [tx])
        receipt = self._receipt(tx_hash)
        gas_used = int(receipt["gasUsed"], 16)
        self._last_receipt = receipt
        return TxResult(
            status=int(receipt["status"], 16),
            gas_used=gas_used,
            fee=gas_used * int(receipt["effectiveGasPrice"], 16),
            block_number=int(receipt["blockNumber"], 16),
        )

    def deploy(self, sender: str, bytecode: str) -> tuple[str, TxResult]:
        result = self.send(sender, None, bytecode, 0, 15_000_000)
        if result.status != 1:
            raise ChainError("deployment failed")
        return to_checksum_address(self._last_receipt["contractAddress"]), result

    def call(
        self, sender: str, to: str, data: str, value: int = 0, block: str = "pending", timestamp: int | None = None
    ) -> bytes | ChainError:
        if block == "pending":
            # The pending block's timestamp follows the wall clock unless set: pin it to latest + 1.
            self.rpc("evm_setNextBlockTimestamp", [timestamp if timestamp is not None else self.now() + 1])
        tx = {"from": sender, "to": to, "data": data, "value": hex(value), "gas": hex(TX_GAS)}
        try:
            result = self.rpc("eth_call", [tx, block])
        except ChainError as exc:
            error = getattr(exc, "rpc_error", {})
            raw = error.get("data") if isinstance(error, dict) else None
            if isinstance(raw, str) and raw.startswith("0x"):
                return _revert_from_data(bytes.fromhex(raw[2:]))
            raise
        return bytes.fromhex(str(result)[2:])

    def read(self, queries: Sequence[tuple[str, str]]) -> list[Any]:
        batch = []
        for i, (target, data) in enumerate(queries):
            if target == "balance":
                batch.append({"jsonrpc": "2.0", "id": i, "method": "eth_getBalance", "params": [data, "latest"]})
            elif target == "block":
                batch.append({"jsonrpc": "2.0", "id": i, "method": "eth_getBlockByNumber", "params": [data, False]})
            else:
                call = {"to": target, "data": data}
                batch.append({"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": [call, "latest"]})
        if not batch:
            return []
        responses = self._post(batch)
        by_id = {r["id"]: r for r in responses}
        out: list[Any] = []
        for i, (target, _) in enumerate(queries):
            response = by_id[i]
            if "error" in response:
                raise ChainError(f"read {i} failed: {response['error']}")
            result = response["result"]
            if target == "block":
                out.append(int(result["timestamp"], 16))
            elif target == "balance":
                out.append(int(result, 16))
            else:
                out.append(bytes.fromhex(str(result)[2:]))
        return out

    def mine_at(self, timestamp: int) -> None:
        self.rpc("evm_setNextBlockTimestamp", [timestamp])
        self.rpc("evm_mine", [])

    def snapshot(self) -> Any:
        return self.rpc("evm_snapshot", [])

    def revert(self, snapshot: Any) -> None:
        if not self.rpc("evm_revert", [snapshot]):
            raise ChainError(f"anvil refused to revert to snapshot {snapshot}")
        # Drop any next-block timestamp pinned after the snapshot was taken.
        self.rpc("evm_setNextBlockTimestamp", [self.now() + 1])

    def close(self) -> None:
        self._conn.close()
        super().close()


class EmbeddedDriver(Driver):
    """eth-tester (py-evm) called directly, below web3, with its ten pre-funded accounts."""

    name = "embedded"

    def __init__(self, chain: Chain | None = None) -> None:
        self.chain = chain or embedded_chain()
        control = self.chain.control
        assert isinstance(control, EmbeddedControl), "the embedded driver needs the embedded chain"
        self.tester = control.tester
        self.accounts = [to_checksum_address(a) for a in self.tester.get_accounts()]
        self.chain_id = self.chain.chain_id
        # Run far ahead of the wall clock so each block is exactly one second after its parent.
        self.tester.time_travel(self.now() + EMBEDDED_CLOCK_LEAD)
        self.setup_market()

    def latest(self) -> tuple[int, int]:
        block = self.tester.get_block_by_number("latest")
        return int(block["number"]), int(block["timestamp"])

    def send(self, sender: str, to: str | None, data: str, value: int = 0, gas: int = TX_GAS) -> TxResult:
        tx: dict[str, Any] = {"from": sender, "data": data, "value": value, "gas": gas}
        if to is not None:
            tx["to"] = to
        tx_hash = self.tester.send_transaction(tx)
        receipt = self.tester.get_transaction_receipt(tx_hash)
        self._last_receipt = receipt
        gas_used = int(receipt["gas_used"])
        return TxResult(
            status=int(receipt["status"]),
            gas_used=gas_used,
            fee=gas_used * int(receipt["effective_gas_price"]),
            block_number=int(receipt["block_number"]),
        )

    def deploy(self, sender: str, bytecode: str) -> tuple[str, TxResult]:
        result = self.send(sender, None, bytecode, 0, 15_000_000)
        if result.status != 1:
            raise ChainError("deployment failed")
        return to_checksum_address(self._last_receipt["contract_address"]), result

    def call(
        self, sender: str, to: str, data: str, value: int = 0, block: str = "pending", timestamp: int | None = None
    ) -> bytes | ChainError:
        # eth-tester's pending block is always latest + 1 s here (see EMBEDDED_CLOCK_LEAD).
        from eth_tester.exceptions import TransactionFailed

        tx = {"from": sender, "to": to, "data": data, "value": value, "gas": TX_GAS}
        try:
            result = self.tester.call(tx, block)
        except TransactionFailed as exc:
            # py-evm puts the revert data in the message as a bytes literal: "b'\\x38\\xf8...'".
            raw: Any = exc.args[0] if exc.args else b""
            if isinstance(raw, str) and raw.startswith(("b'", 'b"')):
                raw = ast.literal_eval(raw)
            if isinstance(raw, bytes):
                return _revert_from_data(raw)
            raise
        return bytes.fromhex(str(result)[2:])

    def read(self, queries: Sequence[tuple[str, str]]) -> list[Any]:
        out: list[Any] = []
        for target, data in queries:
            if target == "balance":
                out.append(int(self.tester.get_balance(data)))
            elif target == "block":
                out.append(int(self.tester.get_block_by_number(data)["timestamp"]))
            else:
                result = self.tester.call({"from": self.accounts[0], "to": target, "data": data}, "latest")
                out.append(bytes.fromhex(str(result)[2:]))
        return out

    def mine_at(self, timestamp: int) -> None:
        # Not tester.time_travel(t): it mines its block at t - 1 (and nothing when t is the pending block's).
        chain = self.tester.backend.chain
        chain.header = chain.header.copy(timestamp=timestamp)
        self.tester.mine_blocks(1)

    def snapshot(self) -> Any:
        return self.tester.take_snapshot()

    def revert(self, snapshot: Any) -> None:
        self.tester.revert_to_snapshot(snapshot)


def open_driver(backend: str) -> Driver:
    """A driver for ``"anvil"`` or ``"embedded"``."""
    if backend == "anvil":
        return AnvilDriver()
    if backend == "embedded":
        return EmbeddedDriver()
    raise ValueError(f"unknown backend {backend!r}: use 'anvil' or 'embedded'")


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class Expected(Exception):
    """The contract must revert with custom error ``name(*values)``."""

    def __init__(self, name: str, *values: Any) -> None:
        super().__init__(f"{name}{values}")
        self.name = name
        self.values = values


def round_seed(chain_id: int, market: str, project_id: int, round_: int) -> bytes:
    """``_roundSeed``: the submissions digest of a round before any submission."""
    return keccak(abi_encode(["uint256", "address", "uint256", "uint32"], [chain_id, market, project_id, round_]))


def commitment_proof(
    project_id: int, round_: int, digest: bytes, scores: Sequence[int], outliers: Sequence[bool]
) -> bytes:
    """The proof ``CommitmentRoundVerifier`` accepts: keccak of the public inputs it binds."""
    types = ["uint256", "uint32", "bytes32", "int128[]", "bool[]"]
    return keccak(abi_encode(types, [project_id, round_, digest, list(scores), list(outliers)]))


def chain_digest(digest: bytes, trainer: str, commitment: bytes, feature_commitment: bytes) -> bytes:
    """``_chain``: the digest after one more submission."""
    return keccak(
        abi_encode(["bytes32", "address", "bytes32", "bytes32"], [digest, trainer, commitment, feature_commitment])
    )


@dataclass
class MTrainer:
    """A trainer's state in one project."""

    allowed: bool = False
    registered: bool = False
    stake_held: bool = False
    last_submitted_round_plus_one: int = 0


@dataclass
class MProject:
    """A project's state, mirroring ``PocMarketplace.Project``."""

    project_id: int
    owner: str
    aggregator: str
    start_time: int
    num_rounds: int
    submission_window: int
    aggregation_window: int
    min_trainers: int
    max_trainers: int
    mode: int
    stake: int
    verifier: str
    budget: int
    escrow: int
    model_cid: str
    digest: bytes
    status: int = ACTIVE
    stakes_held: int = 0
    trainer_count: int = 0
    current_round: int = 0
    round_opened_at: int = 0
    failed_rounds: int = 0
    consecutive_failures: int = 0
    submissions: list[Submission] = field(default_factory=list)
    trainers: dict[str, MTrainer] = field(default_factory=dict)

    @property
    def round_budget(self) -> int:
        """``budget / numRounds``."""
        return self.budget // self.num_rounds

    @property
    def submission_deadline(self) -> int:
        """End (exclusive) of the current round's submission window."""
        return self.round_opened_at + self.submission_window

    @property
    def aggregation_deadline(self) -> int:
        """End (exclusive) of the current round's aggregation window."""
        return self.submission_deadline + self.aggregation_window

    def trainer(self, address: str) -> MTrainer:
        """The trainer's record (created empty, like a Solidity mapping)."""
        t = self.trainers.get(address)
        if t is None:
            t = self.trainers[address] = MTrainer()
        return t


@dataclass
class MarketModel:
    """Expected state of the whole marketplace, plus the ether that moved in and out of it."""

    chain_id: int
    market: str
    now: int
    rejecters: frozenset[str] = frozenset()
    projects: dict[int, MProject] = field(default_factory=dict)
    credits: dict[str, int] = field(default_factory=dict)
    balance: int = 0
    total_in: int = 0
    total_out: int = 0
    paid: dict[str, int] = field(default_factory=dict)

    # ---- helpers ----------------------------------------------------------------------------

    def _existing(self, pid: int) -> MProject:
        p = self.projects.get(pid)
        if p is None:
            raise Expected("ProjectNotFound", pid)
        return p

    def _active(self, pid: int) -> MProject:
        p = self._existing(pid)
        if p.status != ACTIVE:
            raise Expected("ProjectNotActive", pid, p.status)
        return p

    @staticmethod
    def _require_current_round(p: MProject, ts: int, round_: int) -> None:
        if ts < p.start_time:
            raise Expected("RoundNotOpen", p.project_id, round_, p.start_time)
        if p.trainer_count < p.min_trainers:
            raise Expected("NotEnoughTrainers", p.project_id, p.trainer_count, p.min_trainers)
        if round_ != p.current_round:
            raise Expected("WrongRound", p.project_id, round_, p.current_round)

    def _advance(self, p: MProject, ts: int) -> None:
        nxt = p.current_round + 1
        if nxt >= p.num_rounds:
            p.status = FINISHED
            return
        p.current_round = nxt
        p.round_opened_at = ts
        p.submissions = []
        p.digest = round_seed(self.chain_id, self.market, p.project_id, nxt)

    def _credit(self, account: str, amount: int) -> None:
        self.credits[account] = self.credits.get(account, 0) + amount

    def _release(self, p: MProject, t: MTrainer, account: str) -> int:
        if not t.stake_held:
            return 0
        t.stake_held = False
        p.stakes_held -= p.stake
        self._credit(account, p.stake)
        return p.stake

    def _pay_out(self, to: str, amount: int) -> None:
        self.balance -= amount
        self.total_out += amount
        self.paid[to] = self.paid.get(to, 0) + amount

    @property
    def next_project_id(self) -> int:
        """Id the next ``createProject`` gets."""
        return len(self.projects) + 1

    # ---- owner ------------------------------------------------------------------------------

    def create_project(
        self,
        ts: int,
        sender: str,
        value: int,
        *,
        aggregator: str,
        start_time: int,
        num_rounds: int,
        submission_window: int,
        aggregation_window: int,
        min_trainers: int,
        max_trainers: int,
        mode: int,
        stake: int,
        cid: str,
        verifier: str = ZERO_ADDRESS,
    ) -> int:
        """``createProject``; returns the new id."""
        if value == 0:
            raise Expected("ZeroBudget")
        if value > UINT128_MAX:
            raise Expected("BudgetTooLarge", value)
        if aggregator == ZERO_ADDRESS:
            raise Expected("ZeroAggregator")
        if start_time <= ts:
            raise Expected("StartTimeInPast", start_time, ts)
        if num_rounds == 0:
            raise Expected("InvalidRounds", num_rounds)
        if submission_window == 0 or aggregation_window == 0:
            raise Expected("InvalidWindows", submission_window, aggregation_window)
        if start_time + submission_window + aggregation_window > 2**64 - 1:
            raise Expected("ScheduleOverflow", start_time, submission_window, aggregation_window)
        if min_trainers == 0 or min_trainers > max_trainers or max_trainers > MAX_TRAINERS:
            raise Expected("InvalidTrainerBounds", min_trainers, max_trainers)
        cid_length = len(cid.encode())
        if cid_length == 0 or cid_length > MAX_CID_LENGTH:
            raise Expected("InvalidCid", cid_length)
        pid = self.next_project_id
        self.projects[pid] = MProject(
            project_id=pid,
            owner=sender,
            aggregator=aggregator,
            start_time=start_time,
            num_rounds=num_rounds,
            submission_window=submission_window,
            aggregation_window=aggregation_window,
            min_trainers=min_trainers,
            max_trainers=max_trainers,
            mode=mode,
            stake=stake,
            verifier=verifier,
            budget=value,
            escrow=value,
            model_cid=cid,
            digest=round_seed(self.chain_id, self.market, pid, 0),
            round_opened_at=start_time,
        )
        self.balance += value
        self.total_in += value
        return pid

    def allow_trainers(self, ts: int, sender: str, pid: int, trainers: Sequence[str]) -> None:
        """``allowTrainers``."""
        p = self._active(pid)
        if sender != p.owner:
            raise Expected("NotOwner", pid, sender, p.owner)
        if p.mode != ALLOWLIST:
            raise Expected("NotAllowlistMode", pid)
        if ts >= p.start_time:
            raise Expected("RegistrationClosed", pid, p.start_time)
        for t in trainers:
            p.trainer(t).allowed = True

    def cancel(self, ts: int, sender: str, pid: int) -> None:
        """``cancel``."""
        p = self._active(pid)
        if ts < p.start_time:
            if sender != p.owner:
                raise Expected("CannotCancel", pid, sender)
        elif not (p.trainer_count < p.min_trainers and p.current_round == 0):
            raise Expected("CannotCancel", pid, sender)
        p.status = CANCELLED

    def withdraw_remaining(self, ts: int, sender: str, pid: int, to: str) -> int:
        """``withdrawRemaining``; returns the wei sent to ``to``."""
        p = self._existing(pid)
        if sender != p.owner:
            raise Expected("NotOwner", pid, sender, p.owner)
        if p.status == ACTIVE:
            raise Expected("ProjectNotEnded", pid, p.status)
        if to == ZERO_ADDRESS:
            raise Expected("ZeroRecipient")
        amount = p.escrow
        if amount == 0:
            raise Expected("NothingToWithdraw", sender)
        if to in self.rejecters:
            raise Expected("TransferFailed", to, amount)
        p.escrow = 0
        self._pay_out(to, amount)
        return amount

    # ---- trainers ---------------------------------------------------------------------------

    def register(self, ts: int, sender: str, pid: int, value: int) -> None:
        """``register``."""
        p = self._active(pid)
        if ts >= p.start_time:
            raise Expected("RegistrationClosed", pid, p.start_time)
        t = p.trainer(sender)
        if p.mode == ALLOWLIST and not t.allowed:
            raise Expected("NotAllowlisted", pid, sender)
        if t.registered:
            raise Expected("AlreadyRegistered", pid, sender)
        if p.trainer_count >= p.max_trainers:
            raise Expected("ProjectFull", pid, p.max_trainers)
        if value != p.stake:
            raise Expected("WrongStake", pid, p.stake, value)
        t.registered = True
        p.trainer_count += 1
        if value > 0:
            t.stake_held = True
            p.stakes_held += value
        self.balance += value
        self.total_in += value

    def leave(self, ts: int, sender: str, pid: int) -> int:
        """``leave``; returns the stake credited back."""
        p = self._active(pid)
        if ts >= p.start_time:
            raise Expected("RegistrationClosed", pid, p.start_time)
        t = p.trainer(sender)
        if not t.registered:
            raise Expected("NotRegistered", pid, sender)
        t.registered = False
        p.trainer_count -= 1
        return self._release(p, t, sender)

    def submit(
        self, ts: int, sender: str, pid: int, round_: int, cid: str, commitment: bytes, feature_commitment: bytes
    ) -> None:
        """``submit``."""
        p = self._active(pid)
        t = p.trainer(sender)
        if not t.registered:
            raise Expected("NotRegistered", pid, sender)
        self._require_current_round(p, ts, round_)
        if ts >= p.submission_deadline:
            raise Expected("SubmissionWindowClosed", pid, round_, p.submission_deadline, ts)
        if t.last_submitted_round_plus_one == round_ + 1:
            raise Expected("AlreadySubmitted", pid, round_, sender)
        cid_length = len(cid.encode())
        if cid_length == 0 or cid_length > MAX_CID_LENGTH:
            raise Expected("InvalidCid", cid_length)
        t.last_submitted_round_plus_one = round_ + 1
        p.submissions.append(Submission(sender, commitment, feature_commitment))
        p.digest = chain_digest(p.digest, sender, commitment, feature_commitment)

    def release_stake(self, ts: int, sender: str, pid: int) -> int:
        """``releaseStake``; returns the stake credited back."""
        p = self._existing(pid)
        if p.status == ACTIVE:
            raise Expected("ProjectNotEnded", pid, p.status)
        t = p.trainer(sender)
        if not t.stake_held:
            raise Expected("NoStakeHeld", pid, sender)
        return self._release(p, t, sender)

    def claim(self, ts: int, sender: str, to: str | None) -> int:
        """``claim`` (``to=None``) or ``claimTo(to)``; returns the wei sent."""
        if to is not None and to == ZERO_ADDRESS:
            raise Expected("ZeroRecipient")
        amount = self.credits.get(sender, 0)
        if amount == 0:
            raise Expected("NothingToWithdraw", sender)
        if (to or sender) in self.rejecters:
            raise Expected("TransferFailed", to or sender, amount)
        self.credits[sender] = 0
        self._pay_out(to or sender, amount)
        return amount

    # ---- aggregator and anyone ----------------------------------------------------------------

    def post_round(
        self, ts: int, sender: str, pid: int, round_: int, post: RoundPost, proof: bytes = b""
    ) -> tuple[int, ...]:
        """``postRound``; returns the shares credited, in submission order.

        A project's verifier is taken to be ``CommitmentRoundVerifier`` (see :func:`commitment_proof`).
        """
        p = self._active(pid)
        if sender != p.aggregator:
            raise Expected("NotAggregator", pid, sender, p.aggregator)
        self._require_current_round(p, ts, round_)
        if ts < p.submission_deadline:
            raise Expected("SubmissionWindowOpen", pid, round_, p.submission_deadline)
        if ts >= p.aggregation_deadline:
            raise Expected("AggregationWindowClosed", pid, round_, p.aggregation_deadline)
        n = len(post.submissions)
        if n != len(p.submissions):
            raise Expected("SubmissionCountMismatch", pid, round_, len(p.submissions), n)
        if len(post.scores) != n or len(post.outliers) != n:
            raise Expected("LengthMismatch", n, len(post.scores), len(post.outliers))
        cid_length = len(post.model_cid.encode())
        if cid_length == 0 or cid_length > MAX_CID_LENGTH:
            raise Expected("InvalidCid", cid_length)
        digest = round_seed(self.chain_id, self.market, pid, round_)
        for s in post.submissions:
            digest = chain_digest(digest, s.trainer, s.commitment, s.feature_commitment)
        if digest != p.digest:
            raise Expected("SubmissionsMismatch", pid, round_, p.digest, digest)
        if p.verifier != ZERO_ADDRESS and proof != commitment_proof(pid, round_, p.digest, post.scores, post.outliers):
            raise Expected("ProofRejected", pid, round_, p.verifier)
        allocation = allocate(p.round_budget, post.scores, post.outliers)
        for s, share in zip(post.submissions, allocation.shares, strict=True):
            if share > 0:
                self._credit(to_checksum_address(s.trainer), share)
        p.escrow -= allocation.credited
        p.consecutive_failures = 0
        p.model_cid = post.model_cid
        self._advance(p, ts)
        return allocation.shares

    def fail_round(self, ts: int, sender: str, pid: int, round_: int) -> None:
        """``failRound``."""
        p = self._active(pid)
        self._require_current_round(p, ts, round_)
        if ts < p.aggregation_deadline:
            raise Expected("AggregationWindowOpen", pid, round_, p.aggregation_deadline)
        p.failed_rounds += 1
        p.consecutive_failures += 1
        if p.consecutive_failures >= MAX_CONSECUTIVE_FAILURES and round_ + 1 < p.num_rounds:
            p.status = CANCELLED
        else:
            self._advance(p, ts)

    # ---- invariants -----------------------------------------------------------------------------

    def liabilities(self) -> int:
        """``sum(escrow) + sum(stakesHeld) + sum(credits)``: what the contract must hold."""
        return (
            sum(p.escrow for p in self.projects.values())
            + sum(p.stakes_held for p in self.projects.values())
            + sum(self.credits.values())
        )


def expected_view(model: MarketModel, p: MProject) -> dict[str, Any]:
    """The fields of ``getProject`` the model predicts, keyed like :class:`ProjectState`."""
    return {
        "owner": p.owner,
        "params": (
            p.aggregator,
            p.verifier,
            p.start_time,
            p.num_rounds,
            p.min_trainers,
            p.max_trainers,
            p.mode,
            p.stake,
        ),
        "status": p.status,
        "budget": p.budget,
        "round_budget": p.round_budget,
        "escrow": p.escrow,
        "stakes_held": p.stakes_held,
        "trainer_count": p.trainer_count,
        "current_round": p.current_round,
        "round_opened_at": p.round_opened_at,
        "submission_deadline": p.submission_deadline,
        "aggregation_deadline": p.aggregation_deadline,
        "submission_count": len(p.submissions),
        "failed_rounds": p.failed_rounds,
        "consecutive_failures": p.consecutive_failures,
        "submissions_digest": p.digest,
        "model_cid": p.model_cid,
    }


def actual_view(state: ProjectState) -> dict[str, Any]:
    """The same fields read from chain."""
    q = state.params
    return {
        "owner": to_checksum_address(state.owner),
        "params": (
            to_checksum_address(q.aggregator),
            to_checksum_address(q.verifier),
            q.start_time,
            q.num_rounds,
            q.min_trainers,
            q.max_trainers,
            int(q.registration_mode),
            q.stake,
        ),
        "status": int(state.status),
        "budget": state.budget,
        "round_budget": state.round_budget,
        "escrow": state.escrow,
        "stakes_held": state.stakes_held,
        "trainer_count": state.trainer_count,
        "current_round": state.current_round,
        "round_opened_at": state.round_opened_at,
        "submission_deadline": state.submission_deadline,
        "aggregation_deadline": state.aggregation_deadline,
        "submission_count": state.submission_count,
        "failed_rounds": state.failed_rounds,
        "consecutive_failures": state.consecutive_failures,
        "submissions_digest": state.submissions_digest,
        "model_cid": state.model_cid,
    }


def revert_matches(err: ContractRevert, expected: Expected) -> bool:
    """Whether a decoded revert is exactly the expected custom error with the expected arguments."""
    if err.name != expected.name:
        return False
    got = tuple(to_checksum_address(v) if isinstance(v, str) else v for v in err.values)
    want = tuple(to_checksum_address(v) if isinstance(v, str) else v for v in expected.values)
    return got == want
