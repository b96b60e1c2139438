"""The embedded store (the zero-setup default): a directory of whole files named by their Kubo-identical CID.

Layout under the root directory::

    objects/<last 2 chars of CID>/<CID>   one file per object, its exact bytes
    tmp/                                  writes in progress (a crash leaves garbage here, never under a CID)
    quarantine/                           objects that failed verification on read, kept for inspection

A put streams the input into ``tmp/`` while computing its CID, fsyncs, then renames the file to its CID path, so
``objects/`` only ever holds complete files. Every read recomputes the CID; a file that no longer matches (disk
corruption, tampering) is moved to ``quarantine/`` and the read fails with :class:`CidMismatchError`; later
reads fail with the same error (not "not found": the first, true reason is kept), until a put of the right bytes
repairs the store. Nothing is ever deleted: every object is pinned.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pocfl.fsutil import publish_file
from pocfl.store.base import ContentStore
from pocfl.store.cid import CidBuilder, compute_cid, compute_cid_file, parse_cid, verifying_version
from pocfl.store.errors import CidMismatchError, ObjectNotFoundError, ObjectTooLargeError, StoreError

_READ = 1 << 20


class EmbeddedStore(ContentStore):
    """A content-addressed directory with Kubo-identical CIDs.

    Parameters
    ----------
    root
        The store directory; created if missing.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.location = str(self.root)
        try:
            for sub in ("objects", "tmp", "quarantine"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the content store at {self.root}: {exc}") from exc

    def path_of(self, cid: str) -> Path:
        """Where the object with this CID lives (whether or not it exists)."""
        text = str(parse_cid(cid))
        return self.root / "objects" / text[-2:] / text

    def _put_bytes(self, data: bytes) -> str:
        cid = compute_cid(data)
        if not self.path_of(cid).exists():
            self._commit(cid, lambda f: f.write(data))
        return cid

    def _put_stream(self, stream: BinaryIO) -> str:
        builder = CidBuilder()

        def copy(f: BinaryIO) -> None:
            while piece := stream.read(_READ):
                builder.update(piece)
                f.write(piece)

        return self._stage(copy, builder.finalize)

    def _commit(self, cid: str, write: Callable[[BinaryIO], object]) -> None:
        self._stage(write, lambda: cid)

    def _stage(self, write: Callable[[BinaryIO], object], cid_of: Callable[[], str]) -> str:
        """Write into ``tmp/`` (the CID may be known only at the end), fsync, then publish under the CID."""
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            cid = cid_of()
            dest = self.path_of(cid)
            if not dest.exists():  # same CID, same bytes: keep the existing file
                dest.parent.mkdir(exist_ok=True)
                publish_file(tmp, dest)
            return cid
        finally:
            Path(tmp).unlink(missing_ok=True)

    def get_bytes(self, cid: str, *, max_size: int = 1 << 30) -> bytes:
        """Read the whole object in one go (no second copy) and verify it; see :meth:`ContentStore.get_bytes`."""
        parsed = parse_cid(cid)
        path = self.path_of(str(parsed))
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > max_size:
                    raise ObjectTooLargeError(f"object {parsed}", size, max_size)
                data = f.read()
        except FileNotFoundError:
            raise self._missing(str(parsed)) from None
        actual = compute_cid(data, verifying_version(parsed))
        if actual != str(parsed):
            self._on_mismatch(str(parsed))
            raise CidMismatchError(str(parsed), actual, self.location)
        return data

    def _read(self, cid: str, max_size: int) -> Iterator[bytes]:
        path = self.path_of(cid)
        if not path.is_file():
            raise self._missing(cid)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_size:
                raise ObjectTooLargeError(f"object {cid}", size, max_size)
            while piece := f.read(_READ):
                yield piece

    def has(self, cid: str) -> bool:
        """Whether the object file exists (verified only when read)."""
        return self.path_of(cid).is_file()

    def pin(self, cid: str) -> None:
        """Every embedded object is kept; this only checks that ``cid`` is present."""
        if not self.has(cid):
            raise self._missing(str(parse_cid(cid)))

    def quarantined(self, cid: str) -> bool:
        """Whether a copy of ``cid`` that failed verification sits in ``quarantine/`` (and no good copy was put)."""
        return (self.root / "quarantine" / str(parse_cid(cid))).is_file() and not self.has(cid)

    def _missing(self, cid: str) -> StoreError:
        """Why ``cid`` cannot be read: a quarantined object keeps its first, true reason (a CID mismatch)."""
        held = self.root / "quarantine" / cid
        if not held.is_file():
            return ObjectNotFoundError(cid, self.location)
        try:
            actual = compute_cid_file(held, verifying_version(parse_cid(cid)))[0]
        except OSError:
            actual = "unreadable bytes"
        return CidMismatchError(cid, actual, f"{self.location} (quarantined: put the right bytes to repair)")

    def _on_mismatch(self, cid: str) -> None:
        path = self.path_of(cid)
        if path.exists():
            os.replace(path, self.root / "quarantine" / path.name)
