"""What ``pocfl store`` does with a content store: put and pin files, check and verify CIDs, describe the store.

Every function works on an open :class:`~pocfl.store.ContentStore` and returns frozen results for the caller to
render. Every read is checked against its CID (see :meth:`~pocfl.store.ContentStore.get_file`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pocfl.store import ContentStore, StoreError


@dataclass(frozen=True)
class StoredFile:
    """A file and its CID (stored and pinned by :func:`put_files`, only computed by ``store cid``)."""

    path: str
    cid: str
    size: int


def put_files(store: ContentStore, files: Sequence[Path]) -> list[StoredFile]:
    """Store files (streamed from disk) and pin them, in order."""
    stored: list[StoredFile] = []
    for path in files:
        size = path.stat().st_size
        cid = store.put_file(path)
        store.pin(cid)
        stored.append(StoredFile(str(path), cid, size))
    return stored


def compute_cids(files: Sequence[Path], cid_version: int = 1) -> list[StoredFile]:
    """Files' CIDs computed locally, exactly as ``ipfs add`` gives them (``cid_version`` 0: Kubo's ``Qm...``)."""
    from pocfl.store import compute_cid_file

    return [StoredFile(str(path), *compute_cid_file(path, cid_version)) for path in files]


def pin_cids(store: ContentStore, cids: Sequence[str]) -> list[str]:
    """Pin each CID in order (stops at the first that cannot be pinned); their canonical spellings."""
    from pocfl.store import canonical_cid

    pinned: list[str] = []
    for cid in cids:
        store.pin(cid)
        pinned.append(canonical_cid(cid))
    return pinned


@contextmanager
def fetched(store: ContentStore, cid: str, max_size: int) -> Iterator[Path]:
    """Fetch ``cid`` into a private temporary file, verified, and delete it afterwards (bounded memory)."""
    with tempfile.TemporaryDirectory(prefix="pocfl-get-") as tmp:
        yield store.get_file(cid, Path(tmp) / "object", max_size=max_size)


@dataclass(frozen=True)
class CidCheck:
    """One CID fetched and checked: its size when its bytes match, else the error."""

    cid: str
    size: int | None
    error: StoreError | None

    @property
    def ok(self) -> bool:
        """Whether the object was fetched and matched its CID."""
        return self.error is None


def verify_cids(store: ContentStore, cids: Sequence[str], max_size: int) -> list[CidCheck]:
    """Fetch each object and check its CID, reporting every CID (not only the first failure).

    Raises
    ------
    StoreUnavailableError
        The store does not answer: every other CID would fail the same way.
    """
    from pocfl.store import StoreError, StoreUnavailableError

    checks: list[CidCheck] = []
    for cid in cids:
        try:
            with fetched(store, cid, max_size) as tmp:
                checks.append(CidCheck(cid, tmp.stat().st_size, None))
        except StoreUnavailableError:
            raise
        except StoreError as err:
            checks.append(CidCheck(cid, None, err))
    return checks


@dataclass(frozen=True)
class StoreInfo:
    """Which store a spec names and its state.

    Attributes
    ----------
    spec, location
        The spec as described and where the store is.
    backend
        ``ipfs``, ``embedded`` or another backend's name.
    version, error
        An IPFS node's version when it answers, else why not.
    objects, quarantined
        An embedded store's object count and quarantined objects.
    """

    spec: str
    location: str
    backend: str
    version: str | None = None
    error: StoreError | None = None
    objects: int | None = None
    quarantined: int | None = None


def describe_store(store: ContentStore, spec: str | None) -> StoreInfo:
    """What ``store`` (opened from ``spec``) is: its backend, and whether an IPFS node answers."""
    from pocfl.store import EmbeddedStore, IpfsStore, StoreError, describe_spec

    described, location = describe_spec(spec), store.location
    if isinstance(store, IpfsStore):
        try:
            return StoreInfo(described, location, "ipfs", version=str(store.version().get("Version")))
        except StoreError as err:
            return StoreInfo(described, location, "ipfs", error=err)
    if isinstance(store, EmbeddedStore):
        objects = sum(1 for _ in (store.root / "objects").glob("*/*"))
        quarantined = sum(1 for _ in (store.root / "quarantine").iterdir())
        return StoreInfo(described, location, "embedded", objects=objects, quarantined=quarantined)
    return StoreInfo(described, location, type(store).__name__.removesuffix("Store").lower())
