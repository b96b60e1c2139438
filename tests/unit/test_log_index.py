"""The incremental log index (:mod:`pocfl.chain.logs`) on a real embedded chain: every ``eth_getLogs`` filter
answers exactly as the chain does, the chain is asked only for blocks not yet indexed, and errors pass through."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from web3.middleware.base import Web3Middleware

from pocfl.chain.accounts import new_account
from pocfl.chain.backends import Chain, connect
from pocfl.chain.client import MarketplaceClient
from pocfl.chain.logs import LogIndex, block_number
from pocfl.chain.types import ProjectParams
from pocfl.fl_project import create_fl_project, make_manifest
from pocfl.market import Market
from pocfl.store import MemoryStore

pytestmark = pytest.mark.unit

ETH = 10**18


@pytest.fixture
def embedded() -> Iterator[Chain]:
    chain = connect("embedded")
    try:
        yield chain
    finally:
        chain.close()


def raw_requests(chain: Chain) -> Callable[[str, Any], Any]:
    """The JSON-RPC request function below web3's middleware, as the demo's chain timer sees it."""
    captured: list[Callable[[str, Any], Any]] = []

    class Capture(Web3Middleware):
        def wrap_make_request(self, make_request: Any) -> Any:
            captured.append(make_request)
            return make_request

    chain.w3.middleware_onion.inject(Capture, name="capture", layer=0)
    chain.w3.eth.block_number  # noqa: B018 - builds the middleware onion
    return captured[-1]


def test_the_log_index_answers_like_the_chain(embedded: Chain) -> None:
    owner = new_account()
    embedded.fund(owner.address, 100 * ETH)
    client, _ = MarketplaceClient.deploy(embedded, owner)
    market = Market(client, MemoryStore())
    manifest, _ = make_manifest("t", seed=0, hidden=4, store=market)
    for project_id in (1, 2):
        params = ProjectParams(
            aggregator=owner.address,
            start_time=embedded.now() + 100,
            num_rounds=1,
            submission_window=10,
            aggregation_window=10,
            min_trainers=1,
            max_trainers=3,
            initial_model_cid="",
        )
        assert create_fl_project(market, params, ETH, manifest)[0] == project_id
        client.register(project_id)
    raw = raw_requests(embedded)
    index = LogIndex()
    everything = raw("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}])["result"]
    created, registered, *_ = dict.fromkeys(log["topics"][0] for log in everything)
    one = "0x" + (1).to_bytes(32, "big").hex()
    filters: list[dict[str, Any]] = [
        {"fromBlock": "0x0", "toBlock": "latest"},
        {"fromBlock": "0x0", "toBlock": "latest", "address": client.address},
        {"fromBlock": "0x0", "toBlock": "latest", "address": [client.address.lower()], "topics": [created]},
        {"fromBlock": "0x0", "toBlock": "latest", "topics": [[created, registered], one]},
        {"fromBlock": "0x0", "toBlock": "latest", "topics": [None, one]},
        {"fromBlock": hex(embedded.w3.eth.block_number), "toBlock": "latest"},
        {"fromBlock": "0x2", "toBlock": "0x3"},
        {"fromBlock": "0x0", "toBlock": "latest", "address": "0x" + "11" * 20},
    ]
    for criteria in filters:
        direct = raw("eth_getLogs", [criteria])["result"]
        indexed = index.query(criteria, raw)["result"]
        assert indexed == direct, criteria
    assert index.synced == embedded.w3.eth.block_number


def _project(chain: Chain) -> tuple[MarketplaceClient, Market]:
    owner = new_account()
    chain.fund(owner.address, 100 * ETH)
    client, _ = MarketplaceClient.deploy(chain, owner)
    return client, Market(client, MemoryStore())


def test_the_index_asks_the_chain_only_for_blocks_it_has_not_seen(embedded: Chain) -> None:
    _project(embedded)
    raw = raw_requests(embedded)
    asked: list[Any] = []

    def counting(method: str, params: Any) -> Any:
        if method == "eth_getLogs":
            asked.append(params[0])
        return raw(method, params)

    index = LogIndex()
    everything = {"fromBlock": "0x0", "toBlock": "latest"}
    first = index.query(everything, counting)["result"]
    head = embedded.w3.eth.block_number
    assert asked == [{"fromBlock": "0x0", "toBlock": hex(head)}] and index.synced == head
    assert index.query(everything, counting)["result"] == first and len(asked) == 1  # nothing new: no request
    embedded.control.mine(2)
    again = index.query(everything, counting)
    assert asked[-1] == {"fromBlock": hex(head + 1), "toBlock": hex(head + 2)} and index.synced == head + 2
    assert again["result"] == raw("eth_getLogs", [everything])["result"]
    assert again["jsonrpc"] == "2.0"


def test_an_error_from_the_chain_is_returned_unchanged_and_nothing_is_indexed() -> None:
    failure = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "down"}}
    index = LogIndex()
    assert index.query({}, lambda method, params: failure) is failure
    assert index.logs == [] and index.synced == -1

    def logs_fail(method: str, params: Any) -> Any:
        return {"jsonrpc": "2.0", "id": 2, "result": "0x5"} if method == "eth_blockNumber" else failure

    assert index.query({}, logs_fail) is failure
    assert index.logs == [] and index.synced == -1


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 9), ("latest", 9), ("pending", 9), ("safe", 9), ("finalized", 9), ("earliest", 0), ("0x10", 16), (3, 3)],
)
def test_block_parameters_are_read_as_the_json_rpc_spec_says(value: Any, expected: int) -> None:
    assert block_number(value, 9) == expected
