"""JSON-RPC replies of a chain node, screened like any untrusted JSON before they are parsed.

A node (or whatever answers at ``--rpc``) is not trusted to send sane JSON: CPython's decoder recurses once per
nesting level, and with py_ecc's recursion limit of 100,000 a reply of nested brackets overflows the C stack (a
segmentation fault, not an exception). Every reply is therefore screened for size and depth first
(:func:`pocfl.untrusted.loads_untrusted`), by the standard-library probes here (:func:`rpc_call`, used before
web3 is imported) and by web3's HTTP provider (``pocfl.chain.backends.ScreenedHTTPProvider``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from pocfl.untrusted import JsonTooDeepError, JsonTooLargeError, loads_untrusted

RPC_REPLY_MAX_SIZE = 256 * 1024 * 1024
"""Largest JSON-RPC reply parsed (long ``eth_getLogs`` scans are legitimately large)."""

PROBE_REPLY_MAX_SIZE = 1024 * 1024
"""Largest reply of the small probes of :func:`rpc_call` (a chain id, a block header)."""


def load_rpc_reply(raw: bytes | str, *, max_size: int = RPC_REPLY_MAX_SIZE, url: str = "the RPC endpoint") -> Any:
    """Parse one JSON-RPC reply after screening its size and nesting depth.

    Raises
    ------
    pocfl.untrusted.UntrustedJsonError
        Too large (:class:`~pocfl.untrusted.JsonTooLargeError`), too deep
        (:class:`~pocfl.untrusted.JsonTooDeepError`), not UTF-8 or not JSON.
    """
    return loads_untrusted(raw, max_size=max_size, what=f"the reply of {url}")


def rpc_call(url: str, method: str, params: list[Any] | None = None, timeout: float = 1.0) -> Any:
    """One JSON-RPC call with the standard library (no web3 import); None when the node does not answer.

    A reply that is not JSON (something else listens there) counts as no answer; one that is too large or too
    deep to parse safely is refused by name.

    Raises
    ------
    pocfl.untrusted.JsonTooLargeError, pocfl.untrusted.JsonTooDeepError
        The reply could not be parsed safely: whatever answers at ``url`` is no sane chain node.
    """
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read(PROBE_REPLY_MAX_SIZE + 1)  # one byte over is enough to refuse it, unread beyond
        reply = load_rpc_reply(raw, max_size=PROBE_REPLY_MAX_SIZE, url=url)
        return reply.get("result")
    except (JsonTooLargeError, JsonTooDeepError):
        raise
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return None


def node_chain_id(url: str, timeout: float = 1.0) -> int | None:
    """``eth_chainId`` of the node at ``url``, or None when nothing answers."""
    result = rpc_call(url, "eth_chainId", timeout=timeout)
    try:
        return int(result, 16)
    except (TypeError, ValueError):
        return None
