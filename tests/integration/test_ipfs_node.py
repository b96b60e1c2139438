"""The IPFS backend against a real daemon (Kubo, or js-ipfs where no Kubo installs): identical CIDs, verified
reads, pins, a node that lies, and a node that is down."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pocfl.store import (
    CidMismatchError,
    EmbeddedStore,
    IpfsStore,
    ObjectNotFoundError,
    StoreUnavailableError,
    canonical_cid,
    compute_cid,
)
from pocfl.store.cid import CHUNK_SIZE
from pocfl.store.ipfs import ADD_PARAMS

pytestmark = pytest.mark.integration

MiB = 1 << 20
SIZES = [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, MiB, 20 * MiB, 50 * MiB]


@pytest.fixture
def node(ipfs_url: str) -> Iterator[IpfsStore]:
    with IpfsStore(ipfs_url, fetch_timeout=2, retries=2, backoff=0.05) as store:
        yield store


def _node_add(url: str, data: bytes, **params: str) -> str:
    """Add through the raw RPC, so the node's own CID is compared, not the client's check of it."""
    reply = httpx.post(f"{url}/api/v0/add", params=params, files={"file": ("f", data)}, timeout=120)
    reply.raise_for_status()
    return canonical_cid(reply.text.strip().splitlines()[-1].split('"Hash":"')[1].split('"')[0])


@pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])
def test_local_cid_equals_node_cid(ipfs_url: str, node: IpfsStore, size: int) -> None:
    data = os.urandom(size)
    expected = compute_cid(data)
    assert _node_add(ipfs_url, data, **ADD_PARAMS) == expected
    assert node.get_bytes(expected) == data


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE + 1, 3 * MiB])
def test_cidv0_matches_the_node_default_layout(ipfs_url: str, size: int) -> None:
    data = os.urandom(size)
    assert _node_add(ipfs_url, data, **{"cid-version": "0"}) == compute_cid(data, version=0)


def test_put_file_and_get_file_stream(node: IpfsStore, tmp_path: Path) -> None:
    data = os.urandom(20 * MiB + 3)
    src = tmp_path / "update.bin"
    src.write_bytes(data)
    cid = node.put_file(src)
    assert cid == compute_cid(data)
    assert node.has(cid)
    node.pin(cid)
    out = node.get_file(cid, tmp_path / "copy.bin")
    assert out.read_bytes() == data


def test_objects_move_between_embedded_store_and_node_unchanged(node: IpfsStore, tmp_path: Path) -> None:
    embedded = EmbeddedStore(tmp_path / "store")
    data = os.urandom(5 * CHUNK_SIZE + 11)
    cid = embedded.put_bytes(data)
    assert node.put_bytes(embedded.get_bytes(cid)) == cid
    assert node.get_bytes(cid) == data


class _FlipOneByte(httpx.BaseTransport):
    """Forwards to the real node but flips one byte of every ``cat`` reply: a node that lies."""

    def __init__(self, offset: int) -> None:
        self._inner = httpx.HTTPTransport()
        self._offset = offset

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if not request.url.path.endswith("/cat"):
            return response
        body = bytearray(response.read())
        body[self._offset] ^= 0x01
        return httpx.Response(response.status_code, headers=response.headers, content=bytes(body))

    def close(self) -> None:
        self._inner.close()


@pytest.mark.parametrize("offset", [0, CHUNK_SIZE + 5])
def test_a_flipped_byte_from_the_node_is_refused(ipfs_url: str, node: IpfsStore, tmp_path: Path, offset: int) -> None:
    data = os.urandom(2 * CHUNK_SIZE)
    cid = node.put_bytes(data)
    with IpfsStore(ipfs_url, transport=_FlipOneByte(offset)) as liar:
        with pytest.raises(CidMismatchError) as info:
            liar.get_bytes(cid)
        assert info.value.expected == cid and info.value.actual != cid
        with pytest.raises(CidMismatchError):
            liar.get_file(cid, tmp_path / "dest.bin")
    assert not (tmp_path / "dest.bin").exists()
    assert not list(tmp_path.iterdir()), "no partial file is left behind"


def test_unknown_content_is_not_found_within_the_fetch_timeout(node: IpfsStore) -> None:
    missing = compute_cid(os.urandom(64))
    assert not node.has(missing)
    with pytest.raises(ObjectNotFoundError):
        node.get_bytes(missing)


def test_a_node_that_is_down_fails_after_bounded_retries() -> None:
    from pocfl.chain.backends import free_port

    with IpfsStore(f"http://127.0.0.1:{free_port()}", retries=3, backoff=0.01) as down:
        with pytest.raises(StoreUnavailableError, match="after 3 attempts"):
            down.put_bytes(b"update")
        assert down.attempts == 3
        with pytest.raises(StoreUnavailableError):
            down.get_bytes(compute_cid(b"update"))
        assert down.attempts == 6
