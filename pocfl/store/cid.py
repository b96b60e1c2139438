"""Kubo-compatible CIDs computed locally, so every fetched byte can be checked against the CID asked for.

This reproduces Kubo's default file importer (``ipfs add``) for the two layouts pocfl accepts:

- **CIDv1, raw leaves** (what pocfl always writes: ``--cid-version=1 --raw-leaves``): the file is cut into
  262,144-byte chunks; each chunk is a ``raw`` block. One chunk (or an empty file) is its own root. More chunks are
  linked by dag-pb UnixFS ``File`` nodes of at most 174 links, in Kubo's *balanced* layout: full subtrees left to
  right, built bottom-up. Parents are CIDv1 ``dag-pb``.
- **CIDv0** (Kubo's historical default, ``Qm...``): the same tree, but every leaf is a dag-pb UnixFS ``File`` node
  carrying its chunk, and every CID is version 0.

A dag-pb parent is encoded canonically: its links first (protobuf field 2; each ``PBLink{Hash, Name="", Tsize}``
with ``Tsize`` the child's cumulative size), then ``Data`` (field 1) = ``UnixFS{Type=File, filesize, blocksizes}``.
Any other importer setting (another chunker, trickle layout, identity hashes, a wrapping directory) gives CIDs this
module does not reproduce; :func:`parse_cid` accepts only sha2-256 ``raw``/``dag-pb`` CIDs so the mismatch is
reported instead of silently trusted.

The hashing is ``hashlib.sha256`` over memory views (no copies of full chunks), so throughput is that of OpenSSL's
SHA-256 on one core.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pocfl.store.errors import InvalidCidError
from pocfl.untrusted import quote

CHUNK_SIZE = 262_144
"""Kubo's default fixed-size chunker (``size-262144``)."""
MAX_LINKS = 174
"""Kubo's default maximum links per dag-pb node in the balanced layout."""

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
_DIGEST_LEN = 32
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_READ_SIZE = 4 * CHUNK_SIZE


@dataclass(frozen=True)
class Cid:
    """A parsed CID: version, codec and sha2-256 digest.

    Parameters
    ----------
    version
        0 or 1.
    codec
        ``RAW`` (0x55) or ``DAG_PB`` (0x70); always ``DAG_PB`` for version 0.
    digest
        The 32-byte sha2-256 digest of the root block.
    """

    version: int
    codec: int
    digest: bytes

    def to_bytes(self) -> bytes:
        """Binary form: the bare multihash for CIDv0, ``<version><codec><multihash>`` for CIDv1."""
        multihash = bytes((SHA2_256, _DIGEST_LEN)) + self.digest
        if self.version == 0:
            return multihash
        return bytes((1, self.codec)) + multihash

    def __str__(self) -> str:
        """Canonical text: base58btc ``Qm...`` for CIDv0, lower-case base32 ``b...`` for CIDv1 (Kubo's output)."""
        if self.version == 0:
            return _b58encode(self.to_bytes())
        return "b" + base64.b32encode(self.to_bytes()).decode("ascii").lower().rstrip("=")


def parse_cid(text: str) -> Cid:
    """Parse a CID string and check that pocfl can verify content against it.

    Parameters
    ----------
    text
        A CIDv0 (``Qm...``) or a multibase CIDv1 (base32 ``b...``, base58btc ``z...``, base16 ``f...``, ...).

    Returns
    -------
    Cid
        The parsed CID; ``str()`` of it is the canonical spelling.

    Raises
    ------
    InvalidCidError
        Malformed, or not a sha2-256 ``raw``/``dag-pb`` CID.
    """
    if not isinstance(text, str) or not text or len(text) > 128:
        raise InvalidCidError(f"not a CID: {quote(text)}")
    if len(text) == 46 and text.startswith("Qm"):
        raw = _b58decode(text)
        if raw is None or len(raw) != 34 or raw[:2] != bytes((SHA2_256, _DIGEST_LEN)):
            raise InvalidCidError(f"malformed CIDv0: {quote(text)}")
        return Cid(0, DAG_PB, raw[2:])
    raw = _multibase_decode(text)
    if len(raw) != 36 or raw[0] != 1:
        raise InvalidCidError(f"not a CIDv1 with a 32-byte digest: {quote(text)}")
    codec = raw[1]
    if codec not in (RAW, DAG_PB):
        raise InvalidCidError(
            f"{quote(text)} has codec 0x{codec:02x}; pocfl verifies only raw (0x55) and dag-pb (0x70)"
        )
    if raw[2:4] != bytes((SHA2_256, _DIGEST_LEN)):
        raise InvalidCidError(f"{quote(text)} is not a sha2-256 CID")
    return Cid(1, codec, raw[4:])


def canonical_cid(text: str) -> str:
    """The canonical spelling of a CID (base32 for v1), so equal CIDs compare equal as strings."""
    return str(parse_cid(text))


class CidBuilder:
    """Incremental Kubo importer: feed bytes in any pieces, then :meth:`finalize` for the root CID.

    Parameters
    ----------
    version
        1 (raw leaves, the pocfl default) or 0.

    Examples
    --------
    >>> b = CidBuilder()
    >>> b.update(b"hello")
    >>> b.finalize()
    'bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq'
    """

    def __init__(self, version: int = 1) -> None:
        if version not in (0, 1):
            raise ValueError(f"CID version must be 0 or 1, not {version}")
        self._version = version
        self._pending = bytearray()
        # (cid bytes, cumulative size, payload bytes) of each finished leaf
        self._leaves: list[tuple[bytes, int, int]] = []
        self._single: bytes | None = None  # the first chunk, kept until a second one shows the file is multi-block
        self._size = 0
        self._done = False

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._size

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes of the file."""
        if self._done:
            raise RuntimeError("CidBuilder already finalized")
        view = memoryview(data).cast("B")
        self._size += len(view)
        if self._pending:
            need = CHUNK_SIZE - len(self._pending)
            self._pending += view[:need]
            view = view[need:]
            if len(self._pending) < CHUNK_SIZE:
                return
            self._chunk(bytes(self._pending))
            self._pending.clear()
        full = len(view) - len(view) % CHUNK_SIZE
        for start in range(0, full, CHUNK_SIZE):
            self._chunk(view[start : start + CHUNK_SIZE])
        self._pending += view[full:]

    def finalize(self) -> str:
        """The root CID of everything fed, as Kubo prints it."""
        self._done = True
        if self._pending or (not self._leaves and self._single is None):
            self._chunk(bytes(self._pending))  # the last partial chunk; an empty file is one empty chunk
            self._pending.clear()
        if self._single is not None and not self._leaves:
            return str(self._leaf_cid(self._single)[0])
        level = self._leaves
        while len(level) > 1:
            level = [_parent(level[i : i + MAX_LINKS], self._version) for i in range(0, len(level), MAX_LINKS)]
        return str(_cid_from_bytes(level[0][0]))

    def _chunk(self, chunk: bytes | memoryview) -> None:
        # A file of one chunk is stored as that chunk alone, so leaf encoding waits for the second chunk.
        if self._single is None and not self._leaves:
            self._single = bytes(chunk)
            return
        if self._single is not None:
            self._leaves.append(self._leaf(self._single))
            self._single = None
        self._leaves.append(self._leaf(chunk))

    def _leaf(self, chunk: bytes | memoryview) -> tuple[bytes, int, int]:
        cid, block_len = self._leaf_cid(chunk)
        return cid.to_bytes(), block_len, len(chunk)

    def _leaf_cid(self, chunk: bytes | memoryview) -> tuple[Cid, int]:
        if self._version == 1:
            return Cid(1, RAW, hashlib.sha256(chunk).digest()), len(chunk)
        node = _pb_node([], _unixfs_file(len(chunk), [], bytes(chunk)))
        return Cid(0, DAG_PB, hashlib.sha256(node).digest()), len(node)


def compute_cid(data: bytes | bytearray | memoryview, version: int = 1) -> str:
    """CID of a byte string as ``ipfs add --cid-version=1 --raw-leaves`` (or ``--cid-version=0``) gives it."""
    builder = CidBuilder(version)
    builder.update(data)
    return builder.finalize()


def compute_cid_stream(stream: BinaryIO | Iterable[bytes], version: int = 1) -> tuple[str, int]:
    """CID and size of a stream (a binary file object or an iterable of byte chunks), read once."""
    builder = CidBuilder(version)
    if hasattr(stream, "readinto"):
        buffer = bytearray(_READ_SIZE)
        view = memoryview(buffer)
        while n := stream.readinto(view):
            builder.update(view[:n])
    else:
        for piece in stream:
            builder.update(piece)
    return builder.finalize(), builder.size


def compute_cid_file(path: str | Path, version: int = 1) -> tuple[str, int]:
    """CID and size of a file, streamed."""
    with open(path, "rb", buffering=0) as f:
        return compute_cid_stream(f, version)


def verifying_version(cid: Cid) -> int:
    """The importer version that reproduces ``cid``: 0 for CIDv0, 1 (raw leaves) for CIDv1."""
    return 0 if cid.version == 0 else 1


# --- dag-pb / UnixFS encoding -------------------------------------------------------------------------------


def _parent(children: list[tuple[bytes, int, int]], version: int) -> tuple[bytes, int, int]:
    links = [(cid, tsize) for cid, tsize, _ in children]
    sizes = [payload for _, _, payload in children]
    total = sum(sizes)
    node = _pb_node(links, _unixfs_file(total, sizes, None))
    digest = hashlib.sha256(node).digest()
    cid = Cid(version, DAG_PB, digest) if version == 1 else Cid(0, DAG_PB, digest)
    return cid.to_bytes(), len(node) + sum(t for _, t in links), total


def _unixfs_file(filesize: int, blocksizes: list[int], data: bytes | None) -> bytes:
    out = bytearray(b"\x08\x02")  # Type = File
    if data:  # go-unixfs leaves the Data field out for an empty chunk
        out += b"\x12" + _varint(len(data)) + data
    out += b"\x18" + _varint(filesize)
    for size in blocksizes:
        out += b"\x20" + _varint(size)
    return bytes(out)


def _pb_node(links: list[tuple[bytes, int]], data: bytes) -> bytes:
    out = bytearray()
    for cid, tsize in links:
        link = b"\x0a" + _varint(len(cid)) + cid + b"\x12\x00" + b"\x18" + _varint(tsize)
        out += b"\x12" + _varint(len(link)) + link
    out += b"\x0a" + _varint(len(data)) + data
    return bytes(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# --- multibase ----------------------------------------------------------------------------------------------


def _cid_from_bytes(raw: bytes) -> Cid:
    if len(raw) == 34:
        return Cid(0, DAG_PB, raw[2:])
    return Cid(raw[0], raw[1], raw[4:])


def _multibase_decode(text: str) -> bytes:
    prefix, body = text[0], text[1:]
    try:
        if prefix in "bB":
            body = body.upper()
            return base64.b32decode(body + "=" * (-len(body) % 8))
        if prefix == "z":
            raw = _b58decode(body)
            if raw is not None:
                return raw
        elif prefix in "fF":
            return bytes.fromhex(body)
        elif prefix == "u":
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        elif prefix == "m":
            return base64.b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        pass
    raise InvalidCidError(f"not a CID (unknown or malformed multibase): {quote(text)}")


def _b58encode(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    pad = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def _b58decode(text: str) -> bytes | None:
    n = 0
    for ch in text:
        i = _B58_ALPHABET.find(ch)
        if i < 0:
            return None
        n = n * 58 + i
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body
