"""Node control: what tests, demos and ``pocfl chain time`` do to a local chain besides sending transactions.

:class:`ChainControl` is the interface; :class:`EmbeddedControl` drives eth-tester (py-evm) in this process,
:class:`RpcControl` an anvil or Hardhat node through its ``evm_*`` / ``anvil_*`` JSON-RPC methods (public chains
refuse them: :class:`~pocfl.errors.ChainRequestError`). A :class:`pocfl.chain.backends.Chain` holds one as
``chain.control``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from eth_utils.address import to_canonical_address
from web3 import Web3

from pocfl.chain.transport import node_errors
from pocfl.errors import ChainError, ChainRequestError

GasEstimator = Callable[[Any, Any], int]
"""A py-evm gas estimator: ``(state, transaction) -> gas``."""


@runtime_checkable
class ChainControl(Protocol):
    """The test-control part of a local chain: its clock, snapshots, mining, balances and raw node methods."""

    def latest_timestamp(self) -> int:
        """Timestamp of the latest block."""
        ...

    def increase_time(self, seconds: int) -> None:
        """Move the clock forward by ``seconds`` (>= 0) and mine a block."""
        ...

    def set_time(self, timestamp: int) -> None:
        """Mine a block stamped exactly ``timestamp`` (later than the latest block)."""
        ...

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks."""
        ...

    def snapshot(self) -> Any:
        """Take a state snapshot; returns its id."""
        ...

    def revert(self, snapshot_id: Any) -> None:
        """Return to a snapshot taken with :meth:`snapshot`."""
        ...

    def set_balance(self, address: str, wei: int) -> None:
        """Give ``address`` exactly ``wei`` (more than any dev account holds, if need be)."""
        ...

    def rpc(self, method: str, params: list[Any]) -> Any:
        """Call a raw JSON-RPC method of the node (``debug_traceTransaction``, ``evm_setNextBlockTimestamp``).

        Raises
        ------
        ChainRequestError
            The node refused the method, or this chain has no JSON-RPC (the embedded chain).
        """
        ...

    def use_fast_gas_estimate(self, estimator: GasEstimator) -> None:
        """Estimate gas with ``estimator`` (py-evm's signature) on the embedded chain; a no-op on nodes.

        Nodes estimate natively. Only the estimate changes, never execution.
        """
        ...


class EmbeddedControl:
    """Controls an in-process eth-tester chain (``tester``: the ``eth_tester.EthereumTester``, for direct calls)."""

    def __init__(self, tester: Any) -> None:
        self.tester = tester

    def latest_timestamp(self) -> int:
        """Timestamp of the latest block."""
        return int(self.tester.get_block_by_number("latest")["timestamp"])

    def increase_time(self, seconds: int) -> None:
        """Move the clock forward and mine a block."""
        # eth-tester's time_travel(T) sets the *pending* block's time: it mines a block at T - 1 and is a no-op when
        # T is already the pending time, so aim one second further. The pending block can already be later than
        # that (after a revert to a snapshot, or an idle chain): never travel back, just go one second past it.
        if seconds > 0:
            pending = int(self.tester.get_block_by_number("pending")["timestamp"])
            self.tester.time_travel(max(self.latest_timestamp() + seconds + 1, pending + 1))
        else:
            self.tester.mine_blocks()

    def set_time(self, timestamp: int) -> None:
        """Mine a block stamped exactly ``timestamp``."""
        self.tester.time_travel(timestamp + 1)  # mines a block at T - 1 (see increase_time)

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks."""
        self.tester.mine_blocks(blocks)

    def snapshot(self) -> Any:
        """Take a state snapshot."""
        return self.tester.take_snapshot()

    def revert(self, snapshot_id: Any) -> None:
        """Return to a snapshot."""
        self.tester.revert_to_snapshot(snapshot_id)

    def set_balance(self, address: str, wei: int) -> None:
        """Edit the py-evm state and mine an empty block on top (eth-tester has no method for it).

        A snapshot must never be taken at that very block (reverting re-executes the snapshot block), so mine at
        least one ordinary transaction afterwards.
        """
        backend = self.tester.backend
        state = backend.chain.get_vm().state
        state.set_balance(to_canonical_address(address), wei)
        state.persist()
        backend.chain.header = backend.chain.header.copy(state_root=state.state_root)
        backend.mine_blocks()

    def rpc(self, method: str, params: list[Any]) -> Any:
        """The embedded chain has no JSON-RPC: always raises :class:`ChainRequestError`."""
        raise ChainRequestError(f"the embedded chain has no JSON-RPC method {method}")

    def use_fast_gas_estimate(self, estimator: GasEstimator) -> None:
        """Make py-evm estimate gas with ``estimator``."""
        self.tester.backend.chain.gas_estimator = estimator


class RpcControl:
    """Controls an anvil or Hardhat node through JSON-RPC (``evm_increaseTime``, ``evm_snapshot``...)."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3

    def rpc(self, method: str, params: list[Any]) -> Any:
        """Call ``method``; a refusal is a :class:`ChainRequestError`, a lost node a typed transport error."""
        with node_errors():
            response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in response:
            raise ChainRequestError(f"{method} failed: {response['error']}")
        return response.get("result")

    def latest_timestamp(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def increase_time(self, seconds: int) -> None:
        """``evm_increaseTime`` then ``evm_mine``."""
        self.rpc("evm_increaseTime", [seconds])
        self.rpc("evm_mine", [])

    def set_time(self, timestamp: int) -> None:
        """``evm_setNextBlockTimestamp`` then ``evm_mine``."""
        self.rpc("evm_setNextBlockTimestamp", [timestamp])
        self.rpc("evm_mine", [])

    def mine(self, blocks: int = 1) -> None:
        """``evm_mine``, ``blocks`` times."""
        for _ in range(blocks):
            self.rpc("evm_mine", [])

    def snapshot(self) -> Any:
        """``evm_snapshot``."""
        return self.rpc("evm_snapshot", [])

    def revert(self, snapshot_id: Any) -> None:
        """``evm_revert``."""
        if not self.rpc("evm_revert", [snapshot_id]):
            raise ChainError(f"node refused to revert to snapshot {snapshot_id}")

    def set_balance(self, address: str, wei: int) -> None:
        """``anvil_setBalance`` (anvil; Hardhat names it ``hardhat_setBalance``)."""
        self.rpc("anvil_setBalance", [Web3.to_checksum_address(address), hex(wei)])

    def use_fast_gas_estimate(self, estimator: GasEstimator) -> None:
        """Nothing to do: the node estimates natively."""
