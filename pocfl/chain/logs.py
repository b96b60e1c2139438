"""An incremental log index that answers ``eth_getLogs`` filters locally (:class:`LogIndex`)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any


def block_number(value: Any, latest: int) -> int:
    """A JSON-RPC block parameter (int, hex string or tag) as a number."""
    if value is None or value in ("latest", "pending", "safe", "finalized"):
        return latest
    if value == "earliest":
        return 0
    return int(value, 16) if isinstance(value, str) else int(value)


def _topic_matches(wanted: Any, topic: str | None) -> bool:
    if wanted is None:
        return True
    if topic is None:
        return False
    options = wanted if isinstance(wanted, list | tuple) else [wanted]
    return any(str(o).lower() == topic.lower() for o in options)


class LogIndex:
    """Every log of the chain, fetched once per block range, answering ``eth_getLogs`` filters locally.

    eth-tester answers ``eth_getLogs`` by walking every block in the range and rebuilding each receipt (with a
    pure-Python signature recovery), so the same query gets slower as the chain grows; a node with a log index
    (anvil, geth) does not. The index asks the chain only for the blocks it has not seen (``fromBlock`` = one
    past the last indexed block) and filters by block range, address and topics as the JSON-RPC spec says.
    """

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []
        self.synced = -1

    def query(self, criteria: dict[str, Any], make_request: Callable[[Any, Any], Any]) -> Any:
        """Answer one ``eth_getLogs`` request (the same response shape the chain gives)."""
        head = make_request("eth_blockNumber", [])
        if not isinstance(head, dict) or "error" in head:
            return head
        latest = block_number(head["result"], 0)
        if latest > self.synced:
            fresh = make_request("eth_getLogs", [{"fromBlock": hex(self.synced + 1), "toBlock": hex(latest)}])
            if not isinstance(fresh, dict) or "error" in fresh:
                return fresh
            self.logs += list(fresh["result"])
            self.synced = latest
        low = block_number(criteria.get("fromBlock"), latest)
        high = block_number(criteria.get("toBlock"), latest)
        address = criteria.get("address")
        addresses = {a.lower() for a in ([address] if isinstance(address, str) else address or [])}
        topics = list(criteria.get("topics") or [])
        found = []
        for log in self.logs:
            number = block_number(log["blockNumber"], latest)
            if not low <= number <= high or (addresses and str(log["address"]).lower() not in addresses):
                continue
            have = list(log.get("topics") or [])
            if len(topics) > len(have) and any(t is not None for t in topics[len(have) :]):
                continue
            if all(_topic_matches(t, have[i] if i < len(have) else None) for i, t in enumerate(topics)):
                found.append(copy.deepcopy(log))
        return {"jsonrpc": "2.0", "id": head.get("id"), "result": found}


__all__ = ["LogIndex", "block_number"]
