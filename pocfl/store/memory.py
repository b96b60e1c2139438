"""An in-memory content store for unit tests: same interface and the same verification as the real ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from pocfl.store.base import ContentStore
from pocfl.store.cid import compute_cid, parse_cid
from pocfl.store.errors import ObjectNotFoundError


class MemoryStore(ContentStore):
    """Objects in a dict keyed by canonical CID.

    ``objects`` is public so tests can corrupt an entry and check that reads refuse it.
    """

    def __init__(self) -> None:
        self.location = "memory"
        self.objects: dict[str, bytes] = {}
        self.pinned: set[str] = set()

    def _put_bytes(self, data: bytes) -> str:
        cid = compute_cid(data)
        self.objects.setdefault(cid, data)
        return cid

    def _put_stream(self, stream: BinaryIO) -> str:
        return self._put_bytes(stream.read())

    def _read(self, cid: str, max_size: int) -> Iterator[bytes]:
        try:
            yield self.objects[cid]
        except KeyError:
            raise ObjectNotFoundError(cid, self.location) from None

    def has(self, cid: str) -> bool:
        """Whether the dict holds ``cid``."""
        return str(parse_cid(cid)) in self.objects

    def pin(self, cid: str) -> None:
        """Record the pin; raise ObjectNotFoundError when absent."""
        key = str(parse_cid(cid))
        if key not in self.objects:
            raise ObjectNotFoundError(key, self.location)
        self.pinned.add(key)
