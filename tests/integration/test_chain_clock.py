"""Waiting by the chain's clock, through outages, and never sending a transaction that would revert for the clock.

The first tests run on a fresh anvil that mines on demand (no block time), where the chain's latest block lags the
wall clock until a transaction arrives: the situation in which ``pocfl train`` exited with ``RoundNotOpen`` and
``pocfl aggregate --follow`` with ``SubmissionWindowOpen`` (or ``RoundNotOpen`` when nobody submitted). Their
``sleep`` mines a block only after several waits, longer than the old bounded retries lasted. The others run on
the session's chains (embedded and anvil): store outages longer than any bounded retry, a window-bound transaction
near its deadline, and a round the project moved past while a trainer waited.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aggregator.node import AggregatorNode
from pocfl.chain.backends import AnvilProcess, Chain, rpc_chain
from pocfl.chain.client import MarketplaceClient
from pocfl.manifest import ModelInfo, ProjectManifest, ValidationInfo
from pocfl.market import Market
from pocfl.ml.model import initial_vector
from pocfl.procs import free_port
from pocfl.rounds.hyperparams import HyperParams
from pocfl.store import MemoryStore, StoreUnavailableError
from pocfl.updates import encode_update
from pocfl.waiting import DeadlineTooCloseError
from tests.helpers import Env, deploy_env, standard_params, warp_to
from tests.integration.test_trainer_client import BUDGET, HIDDEN, TRAINING, World, make_world
from trainer_client import RoundStatus, TrainerReporter

pytestmark = pytest.mark.integration

LAG_SLEEPS = 8
"""Waits before the fake clock mines a block: more than the old bounded retries (4 for trainers, 6 for posts)."""


class FlakyStore(MemoryStore):
    """A store that is unreachable for its next ``failures`` reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailableError("IPFS node at 127.0.0.1:5001 unreachable (stopped)")

    def put_bytes(self, data: bytes | bytearray | memoryview) -> str:
        self._maybe_fail()
        return super().put_bytes(data)

    def get_bytes(self, cid: str, *, max_size: int = 1 << 30) -> bytes:
        self._maybe_fail()
        return super().get_bytes(cid, max_size=max_size)


class Log(TrainerReporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def waiting(self, text: str) -> None:
        self.lines.append(text)


# --- a chain whose clock lags the wall clock (anvil mining on demand) ------------------------------------------


@pytest.fixture
def lagging() -> Iterator[Env]:
    """A fresh anvil without a block time (its clock moves only with blocks) and the marketplace on it.

    One per test: a test that moves the clock forward leaves the node's next blocks ahead of the wall clock.
    """
    node = AnvilProcess.start()
    chain = rpc_chain(node.url)
    try:
        yield deploy_env(chain)
    finally:
        chain.close()
        node.stop()


def lagging_world(env: Env, tmp_path: Path, *, start_in: int, window: int, n_trainers: int = 2) -> World:
    """A project starting ``start_in`` s after the latest block, with ``window``-second submission windows."""
    store = MemoryStore()
    owner = Market(env.client(env.owner), store)
    info = ModelInfo(n_features=64, hidden=HIDDEN, n_classes=10, initial_weights_cid="")
    weights = encode_update(info.spec().unflatten(initial_vector(0, hidden=HIDDEN)), info.spec(), kind="weights")
    manifest = ProjectManifest(
        name="chain-clock-test",
        model=replace(info, initial_weights_cid=owner.publish(weights)),
        training=TRAINING,
        validation=ValidationInfo(recipe="sklearn-digits:seed=0:fraction=0.2"),
    )
    trainers = list(env.trainers[:n_trainers])
    params = standard_params(
        env,
        start_time=max(env.chain.now(), int(time.time())) + start_in + 2 * len(trainers),
        submission_window=window,
        aggregation_window=600,
        num_rounds=2,
        min_trainers=n_trainers,
    )
    project_id, receipt = owner.create_project(params, BUDGET, initial_model=manifest.to_json())
    for t in trainers:
        env.client(t).register(project_id)
    return World(env, store, project_id, manifest, trainers, tmp_path / "state", receipt.block_number)


def wall_past(chain: Chain, timestamp: int) -> None:
    """Let the wall clock pass ``timestamp`` without mining: the chain's latest block stays before it."""
    time.sleep(max(0.0, timestamp + 1.5 - time.time()))
    assert chain.now() < timestamp, "nothing may mine a block meanwhile"


class LateBlocks:
    """A fake ``sleep``: waits a little, and mines a block (stamped at the wall clock) only every LAG_SLEEPS calls."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.calls = 0
        self.before_block: list[int] = []

    def __call__(self, _seconds: float) -> None:
        self.calls += 1
        self.before_block.append(self.chain.now())
        if self.calls % LAG_SLEEPS == 0:
            self.chain.increase_time(0)


def test_trainer_waits_for_the_chain_to_open_the_round(lagging: Env, tmp_path: Path) -> None:
    world = lagging_world(lagging, tmp_path, start_in=2, window=600)
    start = world.state().params.start_time
    wall_past(lagging.chain, start)
    blocks = LateBlocks(lagging.chain)
    log = Log()
    client = world.client(0, sleep=blocks, reporter=log)
    result = _run_until_submitted(client, world)
    assert result.status is RoundStatus.SUBMITTED
    assert blocks.calls >= LAG_SLEEPS and min(blocks.before_block) < start  # it waited for the chain, then went on
    assert any("starts at" in line and "chain's clock" in line for line in log.lines)
    assert not any("RoundNotOpen" in line for line in log.lines)


def _run_until_submitted(client: Any, world: World) -> Any:
    """``client.run(rounds=1)``; the round is posted by hand once submitted, so the loop ends."""
    inner = client.sleep

    def sleep(seconds: float) -> None:
        if world.submissions(0) == 0:
            inner(seconds)
        elif world.state().current_round == 0:
            world.post(0, initial_vector(0, hidden=HIDDEN), HyperParams(1, 0.1, 1, 32), scores=[5])

    client.sleep = sleep
    (summary,) = client.run(rounds=1, poll=0.05, max_wait=120)
    return summary.result


@pytest.mark.parametrize("submitted", [2, 0], ids=["with-submissions", "nobody-submits"])
def test_aggregator_waits_until_the_chain_closes_the_window(lagging: Env, tmp_path: Path, submitted: int) -> None:
    world = lagging_world(lagging, tmp_path, start_in=2, window=4)
    state = world.state()
    if submitted:
        wall_past(lagging.chain, state.params.start_time)
        lagging.chain.increase_time(0)  # one block opens round 0 for the trainers' transactions
        for i in range(submitted):
            assert world.client(i).train_round(0).status is RoundStatus.SUBMITTED
    deadline = world.state().submission_deadline
    wall_past(lagging.chain, deadline)
    blocks = LateBlocks(lagging.chain)
    node = AggregatorNode(
        world.market(lagging.aggregator), world.project_id, state_dir=tmp_path / "node", sleep=blocks, poll=0.05
    )
    (outcome,) = node.follow(rounds=1)
    assert outcome.status == "posted" and outcome.report is not None
    assert len(outcome.report.submissions) == submitted
    assert min(blocks.before_block) < deadline <= lagging.chain.now()


# --- outages longer than any bounded retry ----------------------------------------------------------------------


def test_trainer_outlasts_a_store_outage(env: Env, tmp_path: Path) -> None:
    store = FlakyStore()
    world = make_world(env, tmp_path, n_trainers=2, store=store)
    log = Log()
    client = world.client(0, reporter=log)
    store.failures = 12  # the trainer's own retries give up after 4
    result = _run_until_submitted(client, world)
    assert result.status is RoundStatus.SUBMITTED and world.submissions(0) == 1
    assert store.failures == 0
    outages = [line for line in log.lines if line.startswith("waiting out an outage")]
    assert len(outages) == 1, log.lines  # one line for the whole outage, not one per retry
    assert any("outage is over" in line for line in log.lines)
    assert 0 < max(world.sleeps) <= 15


def test_aggregator_outlasts_a_store_outage(env: Env, tmp_path: Path) -> None:
    store = FlakyStore()
    world = make_world(env, tmp_path, n_trainers=2, store=store)
    for i in range(2):
        assert world.client(i).train_round(0).status is RoundStatus.SUBMITTED
    warp_to(env.chain, world.state().submission_deadline)
    waits: list[float] = []
    lines: list[str] = []
    node = AggregatorNode(
        world.market(env.aggregator),
        world.project_id,
        state_dir=tmp_path / "node",
        sleep=waits.append,
        progress=lambda text, _d, _t: lines.append(text),
    )
    store.failures = 15
    (outcome,) = node.follow(rounds=1)
    assert outcome.status == "posted" and outcome.report is not None
    assert all(s.status != "rejected" for s in outcome.report.submissions)  # an outage is no rejection
    assert store.failures == 0 and waits, "the node waited the outage out"
    assert waits == sorted(waits) and max(waits) <= 15  # capped exponential backoff
    assert sum(1 for line in lines if line.startswith("waiting out an outage")) == 1


# --- window-bound transactions near their deadline ----------------------------------------------------------


def test_a_submit_near_the_deadline_is_not_sent(env: Env, tmp_path: Path) -> None:
    world = make_world(env, tmp_path, n_trainers=2)
    trainer = world.trainers[0]
    guarded = MarketplaceClient(env.chain, env.market.address, trainer, deadline_margin=5)
    warp_to(env.chain, world.state().submission_deadline - 3)
    nonce = env.chain.w3.eth.get_transaction_count(trainer.address)
    balance = env.chain.w3.eth.get_balance(trainer.address)
    with pytest.raises(DeadlineTooCloseError, match="not sent: submit of round 0"):
        guarded.submit(world.project_id, 0, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", b"\x01" * 32)
    # the trainer client skips the round cleanly instead
    client = world.client(0)
    client.market = Market(guarded, world.store)
    late = client.train_round(0)
    assert late.status is RoundStatus.LATE and "about to close" in late.message
    assert env.chain.w3.eth.get_transaction_count(trainer.address) == nonce  # nothing was sent, no gas paid
    assert env.chain.w3.eth.get_balance(trainer.address) == balance
    assert world.submissions(0) == 0


def test_a_post_near_the_aggregation_deadline_is_not_sent_and_the_round_is_failed(env: Env, tmp_path: Path) -> None:
    world = make_world(env, tmp_path, n_trainers=2)
    for i in range(2):
        world.client(i).train_round(0)
    agg = env.aggregator
    guarded = MarketplaceClient(env.chain, env.market.address, agg, deadline_margin=5)
    warp_to(env.chain, world.state().aggregation_deadline - 3)
    nonce = env.chain.w3.eth.get_transaction_count(agg.address)

    def tick(_seconds: float) -> None:
        env.chain.increase_time(1)

    node = AggregatorNode(Market(guarded, world.store), world.project_id, state_dir=tmp_path / "node", sleep=tick)
    (outcome,) = node.follow(rounds=1)
    assert outcome.status == "failed"
    assert env.chain.w3.eth.get_transaction_count(agg.address) == nonce + 1  # failRound only, no reverted post
    assert world.state().current_round == 1


# --- loud skipped rounds ----------------------------------------------------------------------------------------


def test_a_round_the_project_moved_past_is_a_warning(env: Env, tmp_path: Path) -> None:
    world = make_world(env, tmp_path, n_trainers=2, start=False)
    warnings: list[str] = []

    class Warn(Log):
        def warning(self, text: str) -> None:
            warnings.append(text)

    def sleep(_seconds: float) -> None:
        state = world.state()
        if state.current_round == 0:  # while the trainer waits for the start, round 0 opens and is posted
            warp_to(env.chain, state.params.start_time)
            world.client(1).train_round(0)
            world.post(0, initial_vector(0, hidden=HIDDEN), HyperParams(1, 0.1, 1, 32), scores=[5])
        elif world.submissions(1) == 1:
            world.post(1, initial_vector(0, hidden=HIDDEN), HyperParams(2, 0.1, 1, 32), scores=[5])

    client = world.client(0, reporter=Warn(), sleep=sleep)
    (summary,) = client.run(rounds=1, poll=0.05, max_wait=60)
    assert summary.result.round == 1 and summary.result.status is RoundStatus.SUBMITTED
    assert warnings == [
        f"WARNING: project {world.project_id} is at round 1: round 0 passed without this trainer "
        "(nothing was submitted for it)"
    ]
    assert np.isfinite(summary.result.update_norm or 0.0)


def test_trainer_outlasts_a_chain_restart(tmp_path: Path) -> None:
    """anvil stopped while the trainer waits for the start, restarted from its saved state: the trainer carries on."""
    state_file, port = tmp_path / "anvil-state.json", free_port()
    node = AnvilProcess.start(port=port, state_file=state_file)
    chain = rpc_chain(node.url)
    try:
        env = deploy_env(chain)
        world = lagging_world(env, tmp_path, start_in=600, window=600)
        log = Log()
        moves: list[str] = []

        def sleep(_seconds: float) -> None:
            nonlocal node
            if not moves:
                node.stop()  # the chain goes away while the trainer waits for the start
                moves.append("stopped")
            elif len(moves) < 3:
                moves.append("still down")
            elif moves[-1] != "restarted":
                node = AnvilProcess.start(port=port, state_file=state_file)
                warp_to(chain, world.state().params.start_time)
                moves.append("restarted")
            elif world.submissions(0) and world.state().current_round == 0:
                world.post(0, initial_vector(0, hidden=HIDDEN), HyperParams(1, 0.1, 1, 32), scores=[5])

        client = world.client(0, sleep=sleep, reporter=log)
        (summary,) = client.run(rounds=1, poll=0.05, max_wait=120)
        assert summary.result.status is RoundStatus.SUBMITTED and moves[:4] == [
            "stopped",
            "still down",
            "still down",
            "restarted",
        ]
        assert sum(1 for line in log.lines if line.startswith("waiting out an outage")) == 1, log.lines
    finally:
        chain.close()
        node.stop()
