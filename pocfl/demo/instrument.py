"""What the demos measure: seconds in content-store calls and in chain requests, and the chain's read cache."""

from __future__ import annotations

import copy
import json
import time
from typing import TYPE_CHECKING, Any

from web3.middleware.base import Web3Middleware

from pocfl.chain.gas import fast_gas_estimate
from pocfl.chain.logs import LogIndex

if TYPE_CHECKING:
    from pocfl.chain.backends import Chain


class Stopwatch:
    """Seconds spent in content-store calls and in chain requests so far, and the chain's read cache.

    The read cache (used when the demo is the chain's only user: embedded chain or a throwaway anvil) answers
    a repeated read-only JSON-RPC request (``eth_getLogs``, ``eth_call``, ...) with the same parameters from
    memory until the next request that may change the chain (a transaction, mining, a time jump), which
    clears it. The trainer client and the aggregator node re-read the same events several times per round;
    eth-tester answers ``eth_getLogs`` by walking every block, so this keeps rounds from slowing down as the
    chain grows. ``chain_requests`` and ``chain_cached`` count the requests and the cache hits.
    """

    def __init__(self, cache: bool = False) -> None:
        self.store = 0.0
        self.chain = 0.0
        self.cache_enabled = cache
        self.cache: dict[str, Any] = {}
        self.chain_requests = 0
        self.chain_cached = 0
        self.methods: dict[str, list[float]] = {}
        """Per JSON-RPC method sent to the chain (cache misses): ``[count, seconds]``."""
        self.logs = LogIndex()

    def add_store(self, seconds: float) -> None:
        """Count ``seconds`` spent in one content-store call (the :class:`~pocfl.store.timed.TimedStore` hook)."""
        self.store += seconds

    def snapshot(self) -> tuple[float, float]:
        """``(store, chain)`` seconds so far."""
        return self.store, self.chain

    def invalidate(self) -> None:
        """Forget every cached read (the chain changed)."""
        self.cache.clear()


READ_ONLY_METHODS = frozenset(
    {
        "eth_getLogs",
        "eth_call",
        "eth_estimateGas",
        "eth_getBlockByNumber",
        "eth_getBalance",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_getCode",
        "eth_chainId",
        "eth_accounts",
        "eth_blockNumber",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
    }
)
"""JSON-RPC methods whose answers the demo's read cache may reuse until the chain changes."""


def _plain_filter(params: Any) -> bool:
    """Whether ``eth_getLogs`` params are one block-range filter (not a ``blockHash`` query)."""
    return (
        isinstance(params, list | tuple)
        and len(params) == 1
        and isinstance(params[0], dict)
        and "blockHash" not in params[0]
    )


def chain_timer(watch: Stopwatch) -> type[Web3Middleware]:
    """A web3 middleware class that times every JSON-RPC request into ``watch.chain`` and serves cached reads."""

    class ChainTimer(Web3Middleware):
        def wrap_make_request(self, make_request: Any) -> Any:
            def timed(method: Any, params: Any) -> Any:
                t0 = time.perf_counter()
                watch.chain_requests += 1
                try:
                    name = str(method)
                    key = json.dumps([name, params], sort_keys=True, default=repr) if watch.cache_enabled else ""
                    if name not in READ_ONLY_METHODS:
                        watch.invalidate()
                        key = ""
                    elif key in watch.cache:
                        watch.chain_cached += 1
                        return copy.deepcopy(watch.cache[key])
                    elif key and name == "eth_getLogs" and _plain_filter(params):
                        stat = watch.methods.setdefault("eth_getLogs (indexed)", [0, 0.0])
                        t1 = time.perf_counter()
                        response = watch.logs.query(params[0], make_request)
                        stat[0] += 1
                        stat[1] += time.perf_counter() - t1
                        return response
                    t1 = time.perf_counter()
                    response = make_request(method, params)
                    stat = watch.methods.setdefault(name, [0, 0.0])
                    stat[0] += 1
                    stat[1] += time.perf_counter() - t1
                    if not key:
                        return response
                    if isinstance(response, dict) and "error" not in response and response.get("result") is not None:
                        watch.cache[key] = copy.deepcopy(response)
                    return response
                finally:
                    watch.chain += time.perf_counter() - t0

            return timed

    return ChainTimer


def fast_gas_estimates(chain: Chain) -> None:
    """Use :func:`pocfl.chain.gas.fast_gas_estimate` on the demo's own embedded chain; others estimate natively."""
    chain.control.use_fast_gas_estimate(fast_gas_estimate)
