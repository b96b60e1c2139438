"""The content-store interface: put bytes or a file and get its CID; get verified bytes by CID; pin; has.

Every backend returns only bytes whose CID it has recomputed and found equal to the CID asked for. Reads that
write to a file write to a temporary file next to the destination and rename it into place only after the check,
so a destination path never holds unverified or partial bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from pocfl.fsutil import PRIVATE, atomic_writer
from pocfl.store.cid import CidBuilder, parse_cid, verifying_version
from pocfl.store.errors import CidMismatchError, ObjectTooLargeError

DEFAULT_MAX_SIZE = 1 << 30
"""Default cap on one fetched object (1 GiB); callers that know their format pass a tighter one."""


class ContentStore(ABC):
    """A content-addressed store with verified reads.

    Subclasses implement the raw transport (:meth:`_put_stream`, :meth:`_read`, :meth:`has`, :meth:`pin`);
    this class does the CID checks so no backend can skip them.
    """

    location: str
    """Human-readable location (a directory or a node URL), used in messages."""

    # --- writes ---------------------------------------------------------------------------------------------

    def put_bytes(self, data: bytes | bytearray | memoryview) -> str:
        """Store bytes; return their CIDv1 (raw leaves) as Kubo would print it."""
        return self._put_bytes(bytes(data))

    def put_file(self, path: str | Path) -> str:
        """Store a file, streamed from disk; return its CID."""
        with open(path, "rb") as f:
            return self._put_stream(f)

    def put_stream(self, stream: BinaryIO) -> str:
        """Store what a binary stream yields, read in chunks (nothing is left under a CID if reading fails)."""
        return self._put_stream(stream)

    @abstractmethod
    def _put_bytes(self, data: bytes) -> str: ...

    @abstractmethod
    def _put_stream(self, stream: BinaryIO) -> str: ...

    # --- verified reads -------------------------------------------------------------------------------------

    def get_bytes(self, cid: str, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
        """Fetch an object and return it only if it hashes to ``cid``.

        Raises
        ------
        InvalidCidError
            ``cid`` is not a CID pocfl can verify.
        ObjectNotFoundError
            The store does not hold it.
        ObjectTooLargeError
            It is larger than ``max_size`` bytes (checked while reading, before it is all in memory).
        CidMismatchError
            The bytes hash to another CID (corruption or a lying node); nothing is returned.
        """
        parsed = parse_cid(cid)
        chunks: list[bytes] = []
        builder = CidBuilder(verifying_version(parsed))
        for piece in self._read(str(parsed), max_size):
            builder.update(piece)
            chunks.append(piece)
            if builder.size > max_size:
                raise ObjectTooLargeError(f"object {parsed}", builder.size, max_size)
        data = b"".join(chunks)
        self._check(str(parsed), builder.finalize())
        return data

    def get_file(self, cid: str, dest: str | Path, *, max_size: int = DEFAULT_MAX_SIZE) -> Path:
        """Fetch an object into ``dest`` (streamed), renaming it into place only once its CID checks out."""
        parsed = parse_cid(cid)
        dest = Path(dest)
        builder = CidBuilder(verifying_version(parsed))
        with atomic_file(dest) as f:
            for piece in self._read(str(parsed), max_size):
                builder.update(piece)
                if builder.size > max_size:
                    raise ObjectTooLargeError(f"object {parsed}", builder.size, max_size)
                f.write(piece)
            self._check(str(parsed), builder.finalize())
        return dest

    @abstractmethod
    def _read(self, cid: str, max_size: int) -> Iterator[bytes]:
        """Yield the object's bytes in pieces; raise ObjectNotFoundError when absent."""

    @abstractmethod
    def has(self, cid: str) -> bool:
        """Whether the store holds ``cid`` locally (no network search, no verification)."""

    @abstractmethod
    def pin(self, cid: str) -> None:
        """Keep ``cid`` from garbage collection; raise ObjectNotFoundError when absent."""

    def close(self) -> None:
        """Release connections; the default holds none."""
        return None

    def __enter__(self) -> ContentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, expected: str, actual: str) -> None:
        if actual != expected:
            self._on_mismatch(expected)
            raise CidMismatchError(expected, actual, self.location)

    def _on_mismatch(self, cid: str) -> None:
        """Hook: what to do with a stored object that failed verification (e.g. quarantine it)."""
        return None

    def quarantined(self, cid: str) -> bool:
        """Whether the store set aside a copy of ``cid`` that failed verification (reading it raises the mismatch)."""
        return False


@contextmanager
def atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """Write to a temporary file beside ``dest`` (mode 0600), fsync, and rename it over ``dest`` only on success."""
    with atomic_writer(dest, mode=PRIVATE) as f:
        yield f
