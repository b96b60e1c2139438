"""Starting a trainer or an aggregator node (:mod:`trainer_client.setup`, :mod:`aggregator.setup`) on a real
embedded chain: the checks made before either runs, and what they read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aggregator.setup import NodeOptions, connect_aggregator, load_circuit, missing_key_warning, start_node
from pocfl.chain.accounts import new_account
from pocfl.chain.backends import connect
from pocfl.chain.client import MarketplaceClient
from pocfl.errors import ConfigError
from pocfl.fl_project import make_manifest
from pocfl.market import Market
from pocfl.projects import ProjectRequest, create_project
from pocfl.store import MemoryStore
from pocfl.updates import EncryptionKeyPair
from trainer_client.setup import prepare_trainer

pytestmark = pytest.mark.unit

ETH = 10**18


@pytest.fixture
def markets() -> Iterator[tuple[Market, Market]]:
    """The owner's market (also the project's aggregator) and a trainer's, on one store, with project 1."""
    chain = connect("embedded")
    try:
        owner, trainer = new_account(), new_account()
        for account in (owner, trainer):
            chain.fund(account.address, 10 * ETH)
        client, _ = MarketplaceClient.deploy(chain, owner)
        store = MemoryStore()
        market = Market(client, store)
        key = EncryptionKeyPair.generate()
        manifest, _ = make_manifest("t", seed=0, hidden=4, store=market, aggregator_public_key=key.public_key_hex)
        request = ProjectRequest(
            aggregator=owner.address,
            num_rounds=3,
            submission_window=60,
            aggregation_window=60,
            min_trainers=1,
            max_trainers=2,
            budget=ETH,
            start_in=100,
            manifest=manifest,
        )
        create_project(market, request)
        yield market, Market(client.as_account(trainer), store)
    finally:
        chain.close()


def test_only_the_aggregator_starts_a_node(markets: tuple[Market, Market], tmp_path: Path) -> None:
    owner, trainer = markets
    said: list[str] = []
    with pytest.raises(ConfigError, match="is not the aggregator of project 1"):
        connect_aggregator(lambda: trainer, 1, say=said.append)
    market = connect_aggregator(lambda: owner, 1, say=said.append)
    assert market is owner and said == []
    loading: list[str] = []

    @contextmanager
    def spinner(text: str) -> Iterator[Callable[[str], None]]:
        loading.append(text)
        yield said.append

    assert load_circuit(market, 1, tmp_path, loading=spinner, say=said.append) is None  # no verifier
    assert loading == []  # issue 14: nothing said about a circuit for an unproven project
    node = start_node(
        market,
        1,
        NodeOptions(None, tmp_path / "node"),
        from_block=0,
        clock=market.client.chain.now,
        progress=lambda *_: None,
        zk_setup=None,
        say=said.append,
    )
    assert missing_key_warning(node) == "no --decrypt-key: updates sealed to the aggregator's key will be rejected"


def test_a_trainer_reads_its_data_and_the_rounds_left(markets: tuple[Market, Market]) -> None:
    _, trainer = markets
    said: list[str] = []
    prepared = prepare_trainer(lambda: trainer, 1, "digits:part=0:of=2", attack="scaling", say=said.append)
    assert prepared.rounds == 3 and prepared.x.shape[0] == prepared.y.shape[0] > 0
    assert prepared.describe().startswith(f"trainer {trainer.client.sender}, project 1: {prepared.x.shape[0]} samples")
    assert prepared.describe().endswith(", attack scaling")
    assert prepare_trainer(lambda: trainer, 1, "digits:part=1:of=2", rounds=1, say=said.append).rounds == 1
    assert said == []  # nothing was down
