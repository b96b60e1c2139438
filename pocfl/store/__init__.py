"""Content store: model updates, global models and round reports as content-addressed files.

The chain holds only CIDs and commitments; this package holds the bytes. Two backends share one interface
(:class:`ContentStore`): an IPFS node over the Kubo RPC API (:class:`IpfsStore`), and an embedded on-disk store
(:class:`EmbeddedStore`, the zero-setup default) that computes exactly the CIDs Kubo's default importer gives, so
objects can move between them unchanged. Every read is verified against its CID.

Choose a backend with :func:`open_store`, the same way in every command (``--ipfs``, or ``$POCFL_IPFS``).
"""

from __future__ import annotations

import os
from pathlib import Path

from pocfl.deployment import state_dir
from pocfl.store.base import DEFAULT_MAX_SIZE, ContentStore
from pocfl.store.cid import Cid, CidBuilder, canonical_cid, compute_cid, compute_cid_file, parse_cid
from pocfl.store.embedded import EmbeddedStore
from pocfl.store.errors import (
    CidMismatchError,
    InvalidCidError,
    ObjectNotFoundError,
    ObjectTooLargeError,
    StoreError,
    StoreProtocolError,
    StoreUnavailableError,
)
from pocfl.store.ipfs import IpfsStore
from pocfl.store.memory import MemoryStore

STORE_ENV = "POCFL_IPFS"
"""Environment variable naming the store when ``--ipfs`` is not given."""


def default_store_dir() -> Path:
    """The embedded store's default directory: ``<state dir>/store``."""
    return state_dir() / "store"


def describe_spec(spec: str | None) -> str:
    """The store spec actually used: the argument, else ``$POCFL_IPFS``, the ``pocfl ipfs up`` daemon, ``embedded``.

    Raises
    ------
    ConfigError
        The daemon of ``pocfl ipfs up`` is recorded but its process is gone (see
        :func:`pocfl.local_ipfs.recorded_store`): the embedded store would not hold what was stored there.
    """
    from pocfl.local_ipfs import recorded_store

    return spec or os.environ.get(STORE_ENV) or recorded_store() or "embedded"


def open_store(spec: str | None = None, **ipfs_options: float) -> ContentStore:
    """Open the content store a user named.

    Parameters
    ----------
    spec
        ``http(s)://host:port`` or a multiaddr ``/ip4/127.0.0.1/tcp/5001`` for an IPFS node's RPC API;
        ``embedded`` (the default) for ``<state dir>/store``; ``embedded:PATH`` or a directory path for an
        embedded store elsewhere; ``memory`` for a throwaway in-memory store. ``None`` reads ``$POCFL_IPFS``.
    **ipfs_options
        Passed to :class:`IpfsStore` (``timeout``, ``fetch_timeout``, ``retries``, ``backoff``).
    """
    text = describe_spec(spec).strip()
    if text.startswith(("http://", "https://")):
        return IpfsStore(text, **ipfs_options)  # type: ignore[arg-type]
    if text.startswith(("/ip4/", "/ip6/", "/dns/", "/dns4/", "/dns6/")):
        return IpfsStore(_multiaddr_url(text), **ipfs_options)  # type: ignore[arg-type]
    if text == "memory":
        return MemoryStore()
    if text == "embedded":
        return EmbeddedStore(default_store_dir())
    if text.startswith("embedded:"):
        return EmbeddedStore(text.removeprefix("embedded:"))
    return EmbeddedStore(text)


def _multiaddr_url(addr: str) -> str:
    parts = addr.strip("/").split("/")
    if len(parts) < 4 or parts[2] != "tcp":
        raise StoreError(f"cannot use multiaddr {addr!r}: expected /ip4/<host>/tcp/<port>[/http]")
    host = f"[{parts[1]}]" if parts[0] == "ip6" else parts[1]
    scheme = "https" if "https" in parts[4:] else "http"
    return f"{scheme}://{host}:{parts[3]}"


__all__ = [
    "DEFAULT_MAX_SIZE",
    "STORE_ENV",
    "Cid",
    "CidBuilder",
    "CidMismatchError",
    "ContentStore",
    "EmbeddedStore",
    "InvalidCidError",
    "IpfsStore",
    "MemoryStore",
    "ObjectNotFoundError",
    "ObjectTooLargeError",
    "StoreError",
    "StoreProtocolError",
    "StoreUnavailableError",
    "canonical_cid",
    "compute_cid",
    "compute_cid_file",
    "default_store_dir",
    "describe_spec",
    "open_store",
    "parse_cid",
]
