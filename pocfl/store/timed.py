"""A content store wrapper that measures the time spent in the store (:class:`TimedStore`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pocfl.store.base import DEFAULT_MAX_SIZE, ContentStore


class TimedStore(ContentStore):
    """A content store that times every call to the store it wraps (reads stay verified by that store).

    Parameters
    ----------
    inner
        The store every call goes to.
    record
        Called with the seconds of each call (after it returns or raises); ``None`` to keep only the total.
    """

    def __init__(self, inner: ContentStore, record: Callable[[float], None] | None = None) -> None:
        self.inner = inner
        self.record = record
        self.seconds = 0.0
        """Seconds spent in calls to ``inner`` so far."""
        self.location = inner.location

    def _timed(self, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            spent = time.perf_counter() - t0
            self.seconds += spent
            if self.record is not None:
                self.record(spent)

    def put_bytes(self, data: bytes | bytearray | memoryview) -> str:
        """Store bytes (timed)."""
        return str(self._timed(lambda: self.inner.put_bytes(data)))

    def put_file(self, path: str | Path) -> str:
        """Store a file (timed)."""
        return str(self._timed(lambda: self.inner.put_file(path)))

    def get_bytes(self, cid: str, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
        """Verified bytes of ``cid`` (timed)."""
        data: bytes = self._timed(lambda: self.inner.get_bytes(cid, max_size=max_size))
        return data

    def get_file(self, cid: str, dest: str | Path, *, max_size: int = DEFAULT_MAX_SIZE) -> Path:
        """Fetch into a file, verified (timed)."""
        path: Path = self._timed(lambda: self.inner.get_file(cid, dest, max_size=max_size))
        return path

    def _put_bytes(self, data: bytes) -> str:  # pragma: no cover - put_bytes is overridden
        return self.inner.put_bytes(data)

    def _put_stream(self, stream: BinaryIO) -> str:  # pragma: no cover - put_file is overridden
        return self.inner.put_bytes(stream.read())

    def _read(self, cid: str, max_size: int) -> Iterator[bytes]:  # pragma: no cover - get_* are overridden
        yield self.inner.get_bytes(cid, max_size=max_size)

    def has(self, cid: str) -> bool:
        """Whether the store holds ``cid`` (timed)."""
        return bool(self._timed(lambda: self.inner.has(cid)))

    def pin(self, cid: str) -> None:
        """Pin ``cid`` (timed)."""
        self._timed(lambda: self.inner.pin(cid))

    def quarantined(self, cid: str) -> bool:
        """Whether the wrapped store set aside a bad copy of ``cid``."""
        return self.inner.quarantined(cid)

    def close(self) -> None:
        """Close the wrapped store."""
        self.inner.close()


__all__ = ["TimedStore"]
