"""Errors of the content store and the update format.

::

    PocflError
    └── StoreError                  anything the content store refused or failed at
        ├── InvalidCidError         not a CID pocfl accepts (malformed, wrong codec or hash)
        ├── CidMismatchError        bytes whose CID differs from the one asked for (never returned)
        ├── ObjectNotFoundError     the store does not hold the CID
        ├── ObjectTooLargeError     larger than the caller's size limit
        ├── StoreUnavailableError   the IPFS node is down or timed out after bounded retries
        └── StoreProtocolError      the IPFS node answered something that is not a valid reply
"""

from __future__ import annotations

from pocfl.errors import PocflError


class StoreError(PocflError):
    """The content store refused an operation or failed at it."""


class InvalidCidError(StoreError):
    """A string is not a CID pocfl accepts: malformed, or not a sha2-256 raw or dag-pb CID."""


class CidMismatchError(StoreError):
    """Fetched bytes do not hash to the CID that was asked for; they are discarded, never returned.

    Parameters
    ----------
    expected
        The CID asked for.
    actual
        The CID of the bytes received.
    source
        Where the bytes came from (a store directory or a node URL).
    """

    def __init__(self, expected: str, actual: str, source: str) -> None:
        super().__init__(f"CID mismatch from {source}: asked for {expected}, the bytes hash to {actual}")
        self.expected = expected
        self.actual = actual
        self.source = source


class ObjectNotFoundError(StoreError):
    """The store does not hold the CID."""

    def __init__(self, cid: str, source: str) -> None:
        super().__init__(f"{cid} is not in {source}")
        self.cid = cid
        self.source = source


class ObjectTooLargeError(StoreError):
    """An object is larger than the limit the caller set."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class StoreUnavailableError(StoreError):
    """The IPFS node could not be reached, or kept timing out, after bounded retries."""


class StoreProtocolError(StoreError):
    """The IPFS node answered, but not with a valid reply (wrong status, malformed JSON, wrong CID)."""
