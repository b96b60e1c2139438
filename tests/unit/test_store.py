"""The content store's pure parts: Kubo-compatible CIDs, the embedded store and the in-memory fake."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocfl.store import (
    CidBuilder,
    CidMismatchError,
    EmbeddedStore,
    InvalidCidError,
    MemoryStore,
    ObjectNotFoundError,
    ObjectTooLargeError,
    canonical_cid,
    compute_cid,
    compute_cid_file,
    open_store,
    parse_cid,
)
from pocfl.store.cid import CHUNK_SIZE, DAG_PB, MAX_LINKS, RAW

pytestmark = pytest.mark.unit

# Reference CIDs printed by Kubo / js-ipfs for well-known inputs (`ipfs add --cid-version=1 --raw-leaves` and the
# CIDv0 default); they pin the encoding independently of the live-node tests.
KNOWN = {
    (b"", 1): "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    (b"", 0): "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
    (b"hello", 1): "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq",
    (b"hello world", 0): "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD",
}


@pytest.mark.parametrize(("data", "version"), list(KNOWN))
def test_known_cids(data: bytes, version: int) -> None:
    assert compute_cid(data, version) == KNOWN[(data, version)]


def test_single_chunk_is_a_raw_block() -> None:
    data = os.urandom(CHUNK_SIZE)
    cid = parse_cid(compute_cid(data))
    assert (cid.version, cid.codec, cid.digest) == (1, RAW, hashlib.sha256(data).digest())


@pytest.mark.parametrize("n", [CHUNK_SIZE + 1, 3 * CHUNK_SIZE, MAX_LINKS * CHUNK_SIZE + 1])
def test_multi_chunk_root_is_dag_pb(n: int) -> None:
    assert parse_cid(compute_cid(b"\x07" * n)).codec == DAG_PB


def test_aleph_cid_agrees_on_deep_trees() -> None:
    """An independent implementation (Rust, golden-tested against Kubo) agrees, including a 2-level DAG."""
    aleph = pytest.importorskip("aleph_cid")
    for n in [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, MAX_LINKS * CHUNK_SIZE, MAX_LINKS * CHUNK_SIZE + 1]:
        data = os.urandom(n)
        hasher = aleph.CidHasher.for_ipfs_v1_raw_leaves()
        hasher.update(data)
        assert compute_cid(data) == canonical_cid(str(hasher.finalize()))
        assert compute_cid(data, 0) == aleph.compute_cid(data)


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([0, 1, 100, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 5]),
    cuts=st.lists(st.integers(min_value=0, max_value=3 * CHUNK_SIZE), max_size=6),
)
def test_incremental_equals_one_shot(size: int, cuts: list[int]) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    builder = CidBuilder()
    points = sorted({0, size, *(c for c in cuts if c < size)})
    for a, b in itertools.pairwise(points):
        builder.update(data[a:b])
    assert builder.finalize() == compute_cid(data)
    assert builder.size == size


def test_cid_spellings_are_canonicalised() -> None:
    cid = compute_cid(b"pocfl")
    parsed = parse_cid(cid)
    base16 = "f" + parsed.to_bytes().hex()
    assert canonical_cid(base16) == cid
    assert canonical_cid(cid.upper().replace("B", "B", 1)) == cid
    assert str(parse_cid(KNOWN[(b"", 0)])) == KNOWN[(b"", 0)]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "bafy",
        "Qm" + "1" * 44,
        "zzzz",
        # identity-hash and sha3 CIDs: valid multiformats, but not content pocfl can verify
        "bafkqaaa",
        "f01551b20" + "00" * 32,
        # dag-cbor codec
        "f01711220" + "00" * 32,
    ],
)
def test_unverifiable_cids_are_refused(text: str) -> None:
    with pytest.raises(InvalidCidError):
        parse_cid(text)


def test_file_cid_streams(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert compute_cid_file(path) == (compute_cid(data), len(data))


# --- stores --------------------------------------------------------------------------------------------------


@pytest.fixture(params=["embedded", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EmbeddedStore | MemoryStore:
    return EmbeddedStore(tmp_path / "store") if request.param == "embedded" else MemoryStore()


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 1 << 20])
def test_put_get_round_trip(store: EmbeddedStore | MemoryStore, size: int, tmp_path: Path) -> None:
    data = os.urandom(size)
    cid = store.put_bytes(data)
    assert cid == compute_cid(data)
    assert store.has(cid)
    assert store.get_bytes(cid) == data
    out = store.get_file(cid, tmp_path / "out" / "x.bin")
    assert out.read_bytes() == data
    store.pin(cid)


def test_put_file_and_stream_match_bytes(store: EmbeddedStore | MemoryStore, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 3)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert store.put_file(path) == store.put_bytes(data) == compute_cid(data)


def test_missing_object(store: EmbeddedStore | MemoryStore) -> None:
    cid = compute_cid(b"never stored")
    assert not store.has(cid)
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes(cid)
    with pytest.raises(ObjectNotFoundError):
        store.pin(cid)


def test_size_limit(store: EmbeddedStore | MemoryStore, tmp_path: Path) -> None:
    cid = store.put_bytes(b"x" * 1000)
    with pytest.raises(ObjectTooLargeError):
        store.get_bytes(cid, max_size=999)
    with pytest.raises(ObjectTooLargeError):
        store.get_file(cid, tmp_path / "big", max_size=999)
    assert not (tmp_path / "big").exists()


def test_memory_store_refuses_corrupted_bytes(tmp_path: Path) -> None:
    store = MemoryStore()
    cid = store.put_bytes(b"original")
    store.objects[cid] = b"0riginal"
    with pytest.raises(CidMismatchError) as info:
        store.get_bytes(cid)
    assert info.value.expected == cid and info.value.actual == compute_cid(b"0riginal")
    with pytest.raises(CidMismatchError):
        store.get_file(cid, tmp_path / "dest")
    assert not (tmp_path / "dest").exists(), "unverified bytes must never land at the destination"


def test_embedded_flipped_byte_is_refused_and_quarantined(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    data = os.urandom(CHUNK_SIZE + 10)
    cid = store.put_bytes(data)
    path = store.path_of(cid)
    corrupted = bytearray(data)
    corrupted[CHUNK_SIZE + 3] ^= 0x01
    path.write_bytes(bytes(corrupted))
    with pytest.raises(CidMismatchError):
        store.get_bytes(cid)
    assert not store.has(cid)
    assert (tmp_path / "quarantine" / cid).read_bytes() == bytes(corrupted)
    assert store.put_bytes(data) == cid, "putting the right bytes again repairs the store"
    assert store.get_bytes(cid) == data


def test_a_quarantined_object_keeps_its_mismatch_reason(tmp_path: Path) -> None:
    """Regression: after the first read quarantined a tampered object, later reads said "not found"."""
    store = EmbeddedStore(tmp_path)
    cid = store.put_bytes(b"honest update")
    store.path_of(cid).write_bytes(b"planted update")
    reads: list[Callable[[], object]] = [
        lambda: store.get_bytes(cid),
        lambda: store.get_file(cid, tmp_path / "dest"),
        lambda: store.pin(cid),
    ]
    for read in [reads[0], *reads]:  # the first read quarantines; every later one gives the same reason
        with pytest.raises(CidMismatchError) as info:
            read()
        assert info.value.expected == cid and info.value.actual == compute_cid(b"planted update")
    assert not (tmp_path / "dest").exists()
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes(compute_cid(b"never stored"))
    assert store.put_bytes(b"honest update") == cid and store.get_bytes(cid) == b"honest update"


def test_embedded_interrupted_write_leaves_no_object(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)

    class Exploding(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            if self.sent >= 3 * CHUNK_SIZE:
                raise OSError("disk unplugged")
            self.sent += CHUNK_SIZE
            return b"\x01" * CHUNK_SIZE

    with pytest.raises(OSError, match="unplugged"):
        store.put_stream(Exploding())  # type: ignore[arg-type]
    assert not any((tmp_path / "objects").rglob("*")), "no object under a CID"
    assert not any((tmp_path / "tmp").iterdir()), "the partial file is removed"


def test_embedded_accepts_other_spellings(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    cid = store.put_bytes(b"spelling")
    base16 = "f" + parse_cid(cid).to_bytes().hex()
    assert store.has(base16)
    assert store.get_bytes(base16) == b"spelling"


def test_open_store_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pocfl.store import IpfsStore

    monkeypatch.setenv("POCFL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("POCFL_IPFS", raising=False)
    default = open_store()
    assert isinstance(default, EmbeddedStore) and default.root == (tmp_path / "home" / "store").resolve()
    assert isinstance(open_store(str(tmp_path / "d")), EmbeddedStore)
    assert isinstance(open_store(f"embedded:{tmp_path / 'e'}"), EmbeddedStore)
    assert isinstance(open_store("memory"), MemoryStore)
    with open_store("http://127.0.0.1:5001") as node:
        assert isinstance(node, IpfsStore) and node.url == "http://127.0.0.1:5001"
    with open_store("/ip4/127.0.0.1/tcp/5009") as node:
        assert isinstance(node, IpfsStore) and node.url == "http://127.0.0.1:5009"
    monkeypatch.setenv("POCFL_IPFS", "memory")
    assert isinstance(open_store(), MemoryStore)
