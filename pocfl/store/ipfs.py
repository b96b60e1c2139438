"""An IPFS node behind the Kubo RPC API (``/api/v0/*``), spoken over httpx.

Works with Kubo and with js-ipfs 0.66 (which serves the same RPC). ``ipfshttpclient`` is not used: it refuses
every daemon newer than 0.8 and is unmaintained.

- Adds always pin the importer explicitly (CIDv1, raw leaves, ``size-262144`` chunker, balanced layout,
  sha2-256), so CIDs do not depend on the node's defaults, and the CID the node returns is compared with the one
  computed locally: a node with other settings fails loudly instead of writing an unexpected CID on chain.
- Reads stream ``/api/v0/cat`` and the base class verifies the bytes against the CID (a node is not trusted).
- Connection failures, timeouts and 502/503/504 are retried a bounded number of times with exponential backoff,
  then raise :class:`StoreUnavailableError`; any other non-200 reply or malformed body raises
  :class:`StoreProtocolError` (or :class:`ObjectNotFoundError` when the node says the content is absent).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

import httpx

from pocfl.store.base import ContentStore
from pocfl.store.cid import CHUNK_SIZE, canonical_cid, compute_cid, compute_cid_stream
from pocfl.store.errors import (
    InvalidCidError,
    ObjectNotFoundError,
    StoreError,
    StoreProtocolError,
    StoreUnavailableError,
)
from pocfl.untrusted import loads_untrusted

DEFAULT_URL = "http://127.0.0.1:5001"
ADD_PARAMS: dict[str, str] = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": f"size-{CHUNK_SIZE}",
    "hash": "sha2-256",
    "trickle": "false",
    "pin": "true",
    "cid-base": "base32",
    "wrap-with-directory": "false",
    "progress": "false",
}
"""Importer settings sent with every add; together they fix the CID to :func:`pocfl.store.cid.compute_cid`."""

API_REPLY_MAX_SIZE = 1 << 20
"""Largest JSON reply of the node's API parsed (replies are small; a bigger one is refused, not parsed)."""

_RETRY_STATUS = frozenset({502, 503, 504})
_NOT_FOUND_HINTS = ("not found", "no link named", "context deadline exceeded", "timeout", "timed out", "aborted")
_T = TypeVar("_T")


class IpfsStore(ContentStore):
    """A content store on an IPFS node's RPC API.

    Parameters
    ----------
    url
        Base URL of the RPC API, e.g. ``http://127.0.0.1:5001``.
    timeout
        Seconds for each HTTP read/write (connections get at most 5 s).
    fetch_timeout
        Seconds the node may spend finding content it does not hold before a read reports it as not found.
    retries
        Attempts per request on connection errors, timeouts and 502/503/504 (at least 1).
    backoff
        Seconds before the first retry; doubled after each attempt.
    transport
        An httpx transport, for tests that simulate a misbehaving node.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 60.0,
        fetch_timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.location = self.url
        self.fetch_timeout = fetch_timeout
        self.retries = max(1, retries)
        self.backoff = backoff
        self.attempts = 0  # HTTP attempts made, for diagnostics and tests of the retry bound
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    # --- node information -----------------------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        """The node's ``/api/v0/version`` reply (e.g. ``{"Version": "0.18.1", ...}``)."""
        reply = self._json(self._request("version", {}))
        if not isinstance(reply, dict) or "Version" not in reply:
            raise StoreProtocolError(f"{self.url}/api/v0/version answered {reply!r}, not a version object")
        return reply

    # --- writes ---------------------------------------------------------------------------------------------

    def _put_bytes(self, data: bytes) -> str:
        expected = compute_cid(data)
        return self._add(lambda: data, expected)

    def _put_stream(self, stream: BinaryIO) -> str:
        start = stream.tell()
        expected, _ = compute_cid_stream(stream)

        def rewind() -> BinaryIO:
            stream.seek(start)
            return stream

        return self._add(rewind, expected)

    def _add(self, body: Callable[[], bytes | BinaryIO], expected: str) -> str:
        def attempt() -> httpx.Response:
            return self._client.post("/api/v0/add", params=ADD_PARAMS, files={"file": ("update", body())})

        response = self._retrying("add", attempt)
        self._raise_for_status("add", response, expected)
        lines = [line for line in response.text.splitlines() if line.strip()]
        try:
            entries = [loads_untrusted(line, max_size=API_REPLY_MAX_SIZE, what="the add reply") for line in lines]
            hashes = [entry["Hash"] for entry in entries if isinstance(entry, dict) and "Hash" in entry]
            returned = canonical_cid(hashes[-1])
        except (ValueError, KeyError, IndexError, TypeError, InvalidCidError) as exc:
            raise StoreProtocolError(f"{self.url}/api/v0/add answered {response.text[:200]!r}: no valid CID") from exc
        if returned != expected:
            raise StoreProtocolError(
                f"{self.url} stored the bytes as {returned} but pocfl computes {expected}: the node ignored the "
                "importer settings (CIDv1, raw leaves, 256 KiB chunks, balanced layout); use a Kubo-compatible node"
            )
        return returned

    # --- reads ----------------------------------------------------------------------------------------------

    def _read(self, cid: str, max_size: int) -> Iterator[bytes]:
        params = {"arg": cid, "timeout": f"{self.fetch_timeout:g}s"}

        def attempt() -> httpx.Response:
            request = self._client.build_request("POST", "/api/v0/cat", params=params)
            return self._client.send(request, stream=True)

        response = self._retrying("cat", attempt)
        try:
            if response.status_code != 200:
                response.read()
                self._raise_for_status("cat", response, cid)
            try:
                yield from response.iter_bytes(CHUNK_SIZE)
            except httpx.TransportError as exc:
                raise StoreUnavailableError(f"{self.url} dropped the connection while sending {cid}: {exc}") from exc
        finally:
            response.close()

    def has(self, cid: str) -> bool:
        """Whether the node holds ``cid``'s root block locally (asked with ``offline``, so it does not search)."""
        canonical = canonical_cid(cid)
        response = self._retrying(
            "block/stat",
            lambda: self._client.post(
                "/api/v0/block/stat", params={"arg": canonical, "offline": "true", "timeout": "2s"}
            ),
        )
        if response.status_code == 200:
            return True
        try:
            self._raise_for_status("block/stat", response, canonical)
        except ObjectNotFoundError:
            return False
        return False  # pragma: no cover - _raise_for_status always raises on non-200

    def pin(self, cid: str) -> None:
        """Pin ``cid`` recursively on the node."""
        canonical = canonical_cid(cid)
        params = {"arg": canonical, "recursive": "true", "timeout": f"{self.fetch_timeout:g}s"}
        response = self._retrying("pin/add", lambda: self._client.post("/api/v0/pin/add", params=params))
        self._raise_for_status("pin/add", response, canonical)

    # --- transport ------------------------------------------------------------------------------------------

    def _request(self, command: str, params: dict[str, str]) -> httpx.Response:
        response = self._retrying(command, lambda: self._client.post(f"/api/v0/{command}", params=params))
        self._raise_for_status(command, response, "")
        return response

    def _retrying(self, command: str, attempt: Callable[[], _T]) -> _T:
        last: Exception | str = "no attempt made"
        for i in range(self.retries):
            if i:
                time.sleep(self.backoff * 2 ** (i - 1))
            self.attempts += 1
            try:
                result = attempt()
            except httpx.TransportError as exc:
                last = exc
                continue
            if isinstance(result, httpx.Response) and result.status_code in _RETRY_STATUS:
                last = f"HTTP {result.status_code}"
                result.close()
                continue
            return result
        raise StoreUnavailableError(
            f"the IPFS node at {self.url} did not answer /api/v0/{command} after {self.retries} attempts "
            f"({type(last).__name__ if isinstance(last, Exception) else 'status'}: {last}); is the daemon running? "
            "(`pocfl ipfs up` starts a local one)"
        )

    def _raise_for_status(self, command: str, response: httpx.Response, cid: str) -> None:
        if response.status_code == 200:
            return
        message = _error_message(response)
        if cid and any(hint in message.lower() for hint in _NOT_FOUND_HINTS):
            raise ObjectNotFoundError(cid, f"{self.url} ({message})")
        raise StoreProtocolError(f"{self.url}/api/v0/{command} answered HTTP {response.status_code}: {message}")

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return loads_untrusted(response.content, max_size=API_REPLY_MAX_SIZE, what=f"{response.url}'s reply")
        except ValueError as exc:
            raise StoreProtocolError(f"{response.url} answered {response.text[:200]!r}, not JSON") from exc


def _error_message(response: httpx.Response) -> str:
    try:
        body = loads_untrusted(response.content, max_size=API_REPLY_MAX_SIZE, what="the error reply")
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("Message"), str):
        return str(body["Message"])
    return str(body)[:200]


__all__ = ["ADD_PARAMS", "DEFAULT_URL", "IpfsStore", "StoreError"]
