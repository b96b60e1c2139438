"""The Kubo RPC client against simulated nodes: garbage replies, wrong CIDs, retries and their bound."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from pocfl.store import (
    CidMismatchError,
    IpfsStore,
    ObjectNotFoundError,
    StoreProtocolError,
    StoreUnavailableError,
    compute_cid,
)
from pocfl.store.ipfs import ADD_PARAMS

pytestmark = pytest.mark.unit

Handler = Callable[[httpx.Request], httpx.Response]


def _store(handler: Handler, retries: int = 3) -> IpfsStore:
    return IpfsStore("http://node.invalid:5001", transport=httpx.MockTransport(handler), retries=retries, backoff=0)


def test_add_sends_the_pinned_importer_settings_and_checks_the_cid() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = request.read()
        data = body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
        return httpx.Response(200, text=json.dumps({"Name": "update", "Hash": compute_cid(data), "Size": "9"}))

    with _store(handler) as store:
        assert store.put_bytes(b"the bytes") == compute_cid(b"the bytes")
    params = dict(seen[0].url.params)
    assert params == ADD_PARAMS
    assert params["cid-version"] == "1" and params["raw-leaves"] == "true" and params["chunker"] == "size-262144"


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, text="<html>proxy login</html>"),
        httpx.Response(200, text=json.dumps({"Name": "x"})),
        httpx.Response(200, text=json.dumps({"Hash": "not-a-cid"})),
        httpx.Response(200, text=json.dumps({"Hash": compute_cid(b"other bytes")})),
        httpx.Response(500, json={"Message": "invalid chunker", "Code": 0, "Type": "error"}),
        httpx.Response(403, text="forbidden"),
    ],
    ids=["html", "no-hash", "bad-cid", "other-cid", "500", "403"],
)
def test_add_refuses_garbage(reply: httpx.Response) -> None:
    with _store(lambda _: reply) as store, pytest.raises(StoreProtocolError):
        store.put_bytes(b"payload")


def test_cat_of_wrong_bytes_is_a_mismatch() -> None:
    with _store(lambda _: httpx.Response(200, content=b"evil")) as store, pytest.raises(CidMismatchError):
        store.get_bytes(compute_cid(b"good"))


def test_not_found_messages_map_to_object_not_found() -> None:
    reply = httpx.Response(500, json={"Message": "Failed to cat file: request timed out", "Type": "error"})
    with _store(lambda _: reply) as store:
        with pytest.raises(ObjectNotFoundError):
            store.get_bytes(compute_cid(b"x"))
        assert not store.has(compute_cid(b"x"))


def test_transient_failures_are_retried_then_succeed() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused", request=request)
        if calls["n"] == 2:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, content=b"good")

    with _store(handler) as store:
        assert store.get_bytes(compute_cid(b"good")) == b"good"
        assert store.attempts == 3


def test_retries_are_bounded() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with _store(handler, retries=4) as store:
        with pytest.raises(StoreUnavailableError, match="after 4 attempts"):
            store.pin(compute_cid(b"x"))
        assert store.attempts == 4


def test_version_must_be_a_version_object() -> None:
    with _store(lambda _: httpx.Response(200, json={"Version": "0.30.0"})) as store:
        assert store.version()["Version"] == "0.30.0"
    with _store(lambda _: httpx.Response(200, json=[1, 2])) as store, pytest.raises(StoreProtocolError):
        store.version()


def test_a_node_serving_wrong_bytes_is_a_mismatch_on_every_read() -> None:
    """An IPFS store quarantines nothing, so a second read gives the same, true reason."""
    with _store(lambda _: httpx.Response(200, content=b"evil")) as store:
        for _ in range(2):
            with pytest.raises(CidMismatchError):
                store.get_bytes(compute_cid(b"good"))
