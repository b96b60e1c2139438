"""The trainer client against real contracts: rounds trained, stored and submitted once, sealed when asked,
skipped when late, attacked on purpose, driven by Flower messages and by `pocfl train`."""

from __future__ import annotations

import functools
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from numpy.typing import NDArray

from pocfl.chain.client import MarketplaceClient
from pocfl.chain.types import ProjectState
from pocfl.manifest import ModelInfo, ProjectManifest, TrainingConfig, ValidationInfo
from pocfl.market import Market
from pocfl.ml.model import initial_vector
from pocfl.rounds.hyperparams import HyperParams
from pocfl.rounds.report import RoundReport, SubmissionEntry
from pocfl.store import ContentStore, MemoryStore, StoreUnavailableError, compute_cid
from pocfl.updates import EncryptionKeyPair, decode_update, encode_update, is_encrypted
from tests.helpers import Env, flower_message, standard_params, warp_to
from trainer_client import (
    NotATrainerError,
    RoundNotOpenError,
    RoundStatus,
    RoundSummary,
    TrainerClient,
    TrainerError,
    TrainerReporter,
    describe_outcome,
    load_private_data,
)
from trainer_client.local import derive_seed
from trainer_client.progress import epoch_metrics

pytestmark = pytest.mark.integration

HIDDEN = 8
TRAINING = TrainingConfig(learning_rate=0.1, local_epochs=1, batch_size=32)
BUDGET = 3 * 10**18
Vector = NDArray[np.float32]


@functools.cache
def share(part: int, of: int = 3) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    x, y = load_private_data(f"digits:part={part}:of={of}:alpha=0.5:seed=0")
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@dataclass
class World:
    """A project whose manifest lives in the store, with registered trainers, started."""

    env: Env
    store: ContentStore
    project_id: int
    manifest: ProjectManifest
    trainers: list[LocalAccount]
    state_dir: Path
    first_block: int
    sleeps: list[float] = field(default_factory=list)

    @property
    def spec(self) -> Any:
        return self.manifest.model.spec()

    def market(self, account: LocalAccount) -> Market:
        return Market(self.env.client(account), self.store)

    def client(self, i: int, *, part: int | None = None, data: Any = None, **kwargs: Any) -> TrainerClient:
        x, y = data if data is not None else share(i if part is None else part)
        kwargs.setdefault("sleep", self.sleeps.append)
        kwargs.setdefault("state_dir", self.state_dir)
        kwargs.setdefault("from_block", self.first_block)  # eth-tester scans logs slowly: start at the project
        return TrainerClient(self.market(self.trainers[i]), self.project_id, x, y, **kwargs)

    def state(self) -> ProjectState:
        return self.env.market.project(self.project_id)

    def submissions(self, round_: int) -> int:
        return len(self.env.market.submissions(self.project_id, round_))

    def delta(self, cid: str) -> Vector:
        return decode_update(self.store.get_bytes(cid), self.spec, kind="delta").vector()

    def post(self, round_: int, model: Vector, next_hyper: HyperParams, scores: list[int] | None = None) -> str:
        """Post ``round_`` as the aggregator by hand: the given model, a report fixing ``next_hyper``."""
        agg = self.market(self.env.aggregator)
        warp_to(self.env.chain, self.state().submission_deadline)
        updates = agg.submitted_updates(self.project_id, round_)
        model_bytes = encode_update(self.spec.unflatten(model), self.spec, kind="weights")
        scores = scores if scores is not None else [10 * (i + 1) for i in range(len(updates))]
        outliers = [s < 0 for s in scores]
        report = RoundReport(
            project_id=self.project_id,
            round=round_,
            chain_id=self.env.chain.chain_id,
            market=self.env.market.address,
            submissions_digest="0x" + self.state().submissions_digest.hex(),
            model_in="",
            model_out=compute_cid(model_bytes),
            shapley_seed="0x00",
            sketch_seed="0x00",
            hyperparams=replace(next_hyper, round=round_).to_json(),
            next_hyperparams=next_hyper.to_json(),
            next_hyperparams_hash="0x" + next_hyper.hash().hex(),
            accuracy_before=0.1,
            loss_before=2.3,
            accuracy=0.5,
            loss=1.5,
            shapley_method="exact",
            shapley_evaluations=0,
            submissions=tuple(
                SubmissionEntry(
                    index=u.index,
                    trainer=u.trainer,
                    cid=u.cid,
                    commitment="0x" + u.commitment.hex(),
                    status="outlier" if o else "scored",
                    reason=None,
                    outlier=o,
                    score=s,
                    value=float(s),
                    weight=1.0,
                    ratio=1.0,
                )
                for u, s, o in zip(updates, scores, outliers, strict=True)
            ),
        )
        agg.post_round(
            self.project_id,
            round_,
            model=model_bytes,
            report=report.to_json(),
            submissions=[u.submission for u in updates],
            scores=scores,
            outliers=outliers,
            hyperparams_hash=next_hyper.hash(),
        )
        return compute_cid(model_bytes)


def make_world(
    env: Env,
    tmp_path: Path,
    *,
    n_trainers: int = 3,
    aggregator_key: str | None = None,
    store: ContentStore | None = None,
    start: bool = True,
) -> World:
    store = store if store is not None else MemoryStore()
    owner = Market(env.client(env.owner), store)
    info = ModelInfo(n_features=64, hidden=HIDDEN, n_classes=10, initial_weights_cid="")
    weights = encode_update(info.spec().unflatten(initial_vector(0, hidden=HIDDEN)), info.spec(), kind="weights")
    manifest = ProjectManifest(
        name="trainer-client-test",
        model=replace(info, initial_weights_cid=owner.publish(weights)),
        training=TRAINING,
        validation=ValidationInfo(recipe="sklearn-digits:seed=0:fraction=0.2"),
        aggregator_public_key=aggregator_key,
    )
    params = standard_params(env, min_trainers=2, max_trainers=12)
    project_id, receipt = owner.create_project(params, BUDGET, initial_model=manifest.to_json())
    trainers = list(env.trainers[:n_trainers])
    for t in trainers:
        env.client(t).register(project_id)
    if start:
        warp_to(env.chain, params.start_time)
    return World(env, store, project_id, manifest, trainers, tmp_path / "state", receipt.block_number)


# --- a project on the owner's own data (issue 14) -----------------------------------------------------------


class Warnings(TrainerReporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, text: str) -> None:
        self.lines.append(text)


def test_trainers_apply_the_manifests_standardisation_and_warn_on_rescaled_data(env: Env, tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    from pocfl.fl_project import manifest_from_data
    from pocfl.ml.tabular import apply_preprocessing
    from pocfl.ml.training import local_train

    wine = load_wine()
    x, y = np.asarray(wine.data), np.asarray(wine.target, dtype=np.int64)
    own = tmp_path / "validation.csv"
    np.savetxt(own, np.column_stack([x[::3], y[::3]]), delimiter=",", fmt="%.10g")
    store = MemoryStore()
    training = TrainingConfig(learning_rate=0.05, local_epochs=2, batch_size=8, momentum=0.5)
    made = manifest_from_data("wine", own, store=store, hidden=HIDDEN, training=training)
    manifest = made.manifest
    owner = Market(env.client(env.owner), store)
    params = replace(standard_params(env, min_trainers=1, max_trainers=12), validation_set_commitment=made.commitment)
    project_id, receipt = owner.create_project(params, BUDGET, initial_model=manifest.to_json())
    for t in env.trainers[:2]:
        env.client(t).register(project_id)
    warp_to(env.chain, params.start_time)
    world = World(env, store, project_id, manifest, list(env.trainers[:2]), tmp_path / "state", receipt.block_number)

    raw = (x[1::3], y[1::3])
    heard = Warnings()
    result = world.client(0, data=raw, seed=4, reporter=heard).train_round(0)
    assert result.status is RoundStatus.SUBMITTED and heard.lines == []  # raw data in the owner's units
    start = decode_update(store.get_bytes(manifest.model.initial_weights_cid), world.spec, kind="weights").vector()
    current, standardised = start.copy(), apply_preprocessing(manifest.preprocessing, raw[0])
    for epoch in range(training.local_epochs):
        seed = derive_seed(4, 0, 1000 + epoch)
        step = local_train(
            current, standardised, raw[1], epochs=1, lr=0.05, batch_size=8, seed=seed, momentum=0.5, n_classes=3
        )
        current = (current + step).astype(np.float32)
    assert result.cid is not None
    assert np.array_equal(world.delta(result.cid), current - start)  # the standardised data, with momentum

    rescaled = ((x[2::3] - x.mean(axis=0)) / x.std(axis=0), y[2::3])  # a trainer that rescaled on its own
    warned = Warnings()
    assert world.client(1, data=rescaled, reporter=warned).train_round(0).status is RoundStatus.SUBMITTED
    assert len(warned.lines) == 1 and "standard deviations from the project's" in warned.lines[0]


# --- round 0: three trainers, once each ---------------------------------------------------------------------


def test_three_trainers_submit_round_0_once(env: Env, tmp_path: Path) -> None:
    world = make_world(env, tmp_path)
    clients = [world.client(i, seed=i) for i in range(3)]
    results = [c.train_round(0) for c in clients]
    assert [r.status for r in results] == [RoundStatus.SUBMITTED] * 3
    assert all(r.source == "this run" and r.tx_hash and r.encrypted is False for r in results)
    assert results[0].hyperparams == HyperParams(0, TRAINING.learning_rate, TRAINING.local_epochs, TRAINING.batch_size)
    assert results[0].model_cid == world.manifest.model.initial_weights_cid
    assert {"fetch", "train", "submit"} <= set(results[0].timings)

    agg = world.market(env.aggregator)
    updates = agg.submitted_updates(world.project_id, 0)
    assert [u.trainer for u in updates] == [t.address for t in world.trainers]
    for update, result in zip(updates, results, strict=True):
        assert (update.cid, update.commitment) == (result.cid, result.commitment)
        opened = agg.open_update(update, world.project_id, 0)  # fetch verified + commitment verified
        assert opened.plaintext is not None and not opened.encrypted
        decoded = decode_update(opened.plaintext, world.spec, kind="delta")
        assert decoded.fingerprint == world.spec.fingerprint
        vector = decoded.vector()
        assert np.linalg.norm(vector) == pytest.approx(result.update_norm, rel=1e-6)
        assert np.linalg.norm(vector) > 0
    assert results[0].local_accuracy is not None and results[0].local_accuracy > 0.2

    # a second call, and a fresh process without the journal, find the submission and send nothing
    again = clients[0].train_round(0)
    assert again.status is RoundStatus.ALREADY_SUBMITTED and again.source == "chain"
    assert (again.cid, again.commitment) == (results[0].cid, results[0].commitment)
    fresh = world.client(0, seed=0, state_dir=None).train_round(0)
    assert fresh.status is RoundStatus.ALREADY_SUBMITTED
    assert world.submissions(0) == 3

    journal = json.loads(clients[1].journal.path.read_text())  # type: ignore[union-attr]
    entry = journal["deployments"][f"{env.chain.chain_id}:{env.market.address}"]["0"]
    assert entry["status"] == "submitted" and entry["cid"] == results[1].cid


def test_local_training_reports_each_epochs_loss_and_accuracy(env: Env, tmp_path: Path) -> None:
    """Issue 14: the progress output shows per-epoch figures on the local data (the last ones are the result's)."""
    world = make_world(env, tmp_path, n_trainers=2)
    figures: list[tuple[int, int, float, float]] = []

    class Log(TrainerReporter):
        def epoch(self, round_: int, epoch: int, epochs: int, *, loss: float, accuracy: float) -> None:
            figures.append((epoch, epochs, loss, accuracy))

    result = world.client(0, reporter=Log()).train_round(0)
    n = TRAINING.local_epochs
    assert [(e, total) for e, total, _, _ in figures] == [(i, n) for i in range(1, n + 1)]
    assert figures[-1][2:] == (result.local_loss, result.local_accuracy)
    assert all(0 <= acc <= 1 and loss > 0 for _, _, loss, acc in figures)
    assert epoch_metrics(0.41234, 0.8823) == "loss 0.4123, accuracy 88.2%"


def test_journal_alone_prevents_a_second_submission(env: Env, tmp_path: Path) -> None:
    world = make_world(env, tmp_path, n_trainers=2)
    client = world.client(0)
    client.journal.record(0, {"status": "submitted", "cid": "bafy-elsewhere", "commitment": "0x" + "11" * 32})
    result = client.train_round(0)
    assert result.status is RoundStatus.ALREADY_SUBMITTED and result.source == "journal"
    assert "does not show" in result.message
    assert world.submissions(0) == 0


def test_transient_failures_are_retried_without_double_submits(env: Env, tmp_path: Path) -> None:
    class FlakyStore(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.failures = 0

        def put_bytes(self, data: bytes) -> str:
            if self.failures > 0:
                self.failures -= 1
                raise StoreUnavailableError("IPFS node at 127.0.0.1:5001 unreachable")
            return super().put_bytes(data)

    store = FlakyStore()
    world = make_world(env, tmp_path, n_trainers=2, store=store)
    store.failures = 2
    result = world.client(0).train_round(0)
    assert result.status is RoundStatus.SUBMITTED
    assert world.sleeps == [0.5, 1.0]  # bounded exponential backoff

    # the transaction goes through but the connection drops before the receipt: the retry finds it on chain
    client = world.client(1)
    real_submit = client.market.client.submit
    calls: list[int] = []

    def submit_then_drop(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        receipt = real_submit(*args, **kwargs)
        if len(calls) == 1:
            raise ConnectionError("connection reset by peer")
        return receipt

    client.market.client = _patched(client.market.client, submit=submit_then_drop)
    dropped = client.train_round(0)
    assert dropped.status is RoundStatus.SUBMITTED and dropped.source == "this run"
    assert len(calls) == 1 and world.submissions(0) == 2


def _patched(client: MarketplaceClient, **methods: Callable[..., Any]) -> MarketplaceClient:
    clone = client.as_account(client.account)
    for name, fn in methods.items():
        setattr(clone, name, fn)
    return clone


# --- encryption ---------------------------------------------------------------------------------------------


def test_updates_are_sealed_to_the_aggregator_key(env: Env, tmp_path: Path) -> None:
    keypair = EncryptionKeyPair.generate()
    world = make_world(env, tmp_path, aggregator_key=keypair.public_key_hex)
    honest = world.client(0).train_round(0)
    assert honest.status is RoundStatus.SUBMITTED and honest.encrypted is True
    stored = world.store.get_bytes(honest.cid)  # type: ignore[arg-type]
    assert is_encrypted(stored)

    agg = world.market(env.aggregator)
    (update,) = agg.submitted_updates(world.project_id, 0)
    assert agg.open_update(update, world.project_id, 0).plaintext is None  # nobody else can read it
    opened = agg.open_update(update, world.project_id, 0, keypair)  # decrypted, commitment verified
    assert opened.plaintext is not None
    assert decode_update(opened.plaintext, world.spec, kind="delta").vector().shape == (world.spec.size,)

    # a copycat cannot read a sealed update: it falls back to a zero update
    copy = world.client(1, attack="copycat").train_round(0)
    assert copy.status is RoundStatus.SUBMITTED and copy.update_norm == 0.0


# --- late and not-yet-open rounds -----------------------------------------------------------------------------


def test_an_unregistered_trainer_is_told_at_once_while_registration_is_open(env: Env, tmp_path: Path) -> None:
    """Issue 14: said on the first look, before any wait, with the command to run (not once registration closed)."""
    world = make_world(env, tmp_path, start=False)
    warned: list[tuple[str, int]] = []
    sleeps: list[float] = []

    class Log(TrainerReporter):
        def warning(self, text: str) -> None:
            warned.append((text, len(sleeps)))

    outsider = TrainerClient(
        world.market(env.outsider), world.project_id, *share(0), reporter=Log(), sleep=sleeps.append
    )
    with pytest.raises(TrainerError, match="nothing happened"):
        outsider.run(1, poll=1.0, max_wait=3.0)
    start = world.state().params.start_time
    assert len(warned) == 1 and warned[0][1] == 0  # once, before the first wait
    assert f"is not registered in project {world.project_id}: run `pocfl register {world.project_id}`" in warned[0][0]
    assert "before its start" in warned[0][0] and world.state().params.start_time == start
    registered = TrainerClient(
        world.market(world.trainers[0]), world.project_id, *share(0), reporter=Log(), sleep=sleeps.append
    )
    with pytest.raises(TrainerError, match="nothing happened"):
        registered.run(1, poll=1.0, max_wait=1.0)
    assert len(warned) == 1  # a registered trainer hears nothing of it
    warp_to(env.chain, start)  # registration closed: an unregistered trainer stops at once, not after a wait
    sleeps.clear()
    with pytest.raises(NotATrainerError, match="registration closed at its start"):
        outsider.run(1, poll=1.0, max_wait=3.0)
    assert sleeps == []


def test_the_wait_for_the_start_is_one_line_and_a_countdown(env: Env, tmp_path: Path) -> None:
    """Issue 14: one waiting line however many polls (the clock-lag hint's number changes each one); the time
    left goes to :meth:`TrainerReporter.ticking`, which a terminal rewrites in place."""
    world = make_world(env, tmp_path, start=False)
    lines: list[str] = []
    ticks: list[str] = []

    class Log(TrainerReporter):
        def waiting(self, text: str) -> None:
            lines.append(text)

        def ticking(self, text: str) -> None:
            ticks.append(text)

    start = world.state().params.start_time
    client = world.client(0, reporter=Log(), sleep=lambda _: warp_to(env.chain, env.chain.now() + 10))
    with pytest.raises(TrainerError, match="nothing happened"):
        client.run(1, poll=1.0, max_wait=3.0)
    starting = [t for t in lines if "starts at" in t]
    assert len(starting) == 1 and starting[0].startswith(f"project {world.project_id} starts at ")
    assert len(ticks) == 4 and all(t.startswith(starting[0][:40]) for t in ticks)
    left = [int(t.rsplit("(in ", 1)[1].removesuffix(" s)")) for t in ticks]
    # each poll warps 10 s; anvil's clock also runs in real time, so a gap may be a second or two longer
    assert 0 < left[0] < start and all(10 <= a - b <= 12 for a, b in itertools.pairwise(left))


def test_rounds_not_open_and_late_rounds(env: Env, tmp_path: Path) -> None:
    world = make_world(env, tmp_path, start=False)
    client = world.client(0)
    with pytest.raises(RoundNotOpenError, match="starts at"):
        client.train_round(0)
    warp_to(env.chain, world.state().params.start_time)
    with pytest.raises(RoundNotOpenError, match="has not opened"):
        client.train_round(1)
    outsider = TrainerClient(world.market(env.outsider), world.project_id, *share(0))
    with pytest.raises(NotATrainerError, match="pocfl register"):
        outsider.train_round(0)

    warp_to(env.chain, world.state().submission_deadline)
    late = client.train_round(0)
    assert late.status is RoundStatus.LATE and not late.submitted and late.cid is None
    assert "submission window closed" in late.message
    assert world.submissions(0) == 0

    # closing the window while training: checked again before submitting, skipped cleanly
    world2 = make_world(env, tmp_path / "2")

    class CloseWindowOnTraining(TrainerReporter):
        def training(self, round_: int, epochs: int) -> None:
            warp_to(env.chain, world2.state().submission_deadline)

    slow = world2.client(0, reporter=CloseWindowOnTraining()).train_round(0)
    assert slow.status is RoundStatus.LATE and "while training" in slow.message
    assert slow.update_norm is not None and world2.submissions(0) == 0


# --- attacks ------------------------------------------------------------------------------------------------


def test_attacks_transform_the_honest_update(env: Env, tmp_path: Path) -> None:
    world = make_world(env, tmp_path, n_trainers=8)
    x, y = share(0)
    same = {"part": 0, "seed": 5}
    honest = world.client(0, **same).train_round(0)
    h = world.delta(honest.cid)  # type: ignore[arg-type]
    deltas = {}
    for i, attack in enumerate(("sign_flip", "scaling", "free_rider", "gaussian", "label_flip", "copycat"), start=1):
        result = world.client(i, attack=attack, **same).train_round(0)
        assert result.status is RoundStatus.SUBMITTED and result.attack is not None
        deltas[attack] = world.delta(result.cid)  # type: ignore[arg-type]
    np.testing.assert_array_equal(deltas["sign_flip"], -h)
    np.testing.assert_allclose(deltas["scaling"], 10 * h, rtol=1e-6)
    assert not deltas["free_rider"].any()
    noise = deltas["gaussian"]
    assert abs(float(noise.mean())) < 0.1 and 0.9 < float(noise.std()) < 1.1
    flipped = world.client(7, data=(x, (9 - y).astype(np.int64)), seed=5).train_round(0)
    np.testing.assert_array_equal(deltas["label_flip"], world.delta(flipped.cid))  # type: ignore[arg-type]
    assert not np.allclose(deltas["label_flip"], h)
    # the copycat copies the first readable update (the honest one) plus 1 % noise
    copy = deltas["copycat"]
    assert 0.002 < np.linalg.norm(copy - h) / np.linalg.norm(h) < 0.05
    assert world.submissions(0) == 8
    assert derive_seed(5, 0, 1) != derive_seed(5, 1, 1)


# --- later rounds, outcomes and the loop ----------------------------------------------------------------------


def test_round_1_trains_from_the_posted_model_with_the_reported_hyperparams(env: Env, tmp_path: Path) -> None:
    world = make_world(env, tmp_path, n_trainers=2)
    clients = [world.client(i) for i in range(2)]
    first = [c.train_round(0) for c in clients]
    assert clients[0].outcome(0) is None  # still aggregating
    start = initial_vector(0, hidden=HIDDEN)
    model = start + np.mean([world.delta(r.cid) for r in first], axis=0)  # type: ignore[arg-type]
    hyper1 = HyperParams(round=1, learning_rate=0.05, local_epochs=2, batch_size=16)
    model_cid = world.post(0, model.astype(np.float32), hyper1, scores=[30, -1])

    outcome = clients[0].outcome(0)
    assert outcome is not None and outcome.state == "posted" and outcome.submitted
    assert (outcome.score, outcome.outlier, outcome.verdict, outcome.accuracy) == (30, False, "scored", 0.5)
    assert outcome.credited_wei == BUDGET // 3 == outcome.earned_wei
    assert outcome.claimable_wei == env.market.credits(world.trainers[0].address)
    bad = clients[1].outcome(0)
    assert bad is not None and bad.outlier is True and bad.credited_wei == 0 and bad.verdict == "outlier"
    # issue 14: the flagged trainer reads why (this hand-made report has no config: thresholds read "?")
    assert outcome.why is None and bad.why is not None and bad.why.startswith("outlier by the direction rule")
    assert describe_outcome(bad).splitlines()[1] == f"  why: {bad.why}"

    second = clients[0].train_round(1)
    assert second.status is RoundStatus.SUBMITTED
    assert second.hyperparams == hyper1 and second.model_cid == model_cid
    assert clients[0].train_round(0).status is RoundStatus.ALREADY_SUBMITTED  # past and submitted


def test_run_follows_the_project_to_its_end(env: Env, tmp_path: Path) -> None:
    world = make_world(env, tmp_path, n_trainers=2)
    other = world.client(1)
    hyper = HyperParams(round=1, learning_rate=0.05, local_epochs=1, batch_size=32)
    seen: list[str] = []

    class Log(TrainerReporter):
        def waiting(self, text: str) -> None:
            seen.append(text)

    def aggregator_step(_: float) -> None:
        """Each wait of the trainer: the other trainer submits, the window closes, the round is posted."""
        state = world.state()
        r = state.current_round
        if r == 1:  # round 1 fails: nobody posts, the window passes
            warp_to(env.chain, state.aggregation_deadline)
            env.client(env.outsider).fail_round(world.project_id, 1)
            return
        if other.submission(r) is None and r == 0:
            other.train_round(r)
        world.post(r, initial_vector(0, hidden=HIDDEN), replace(hyper, round=r + 1), scores=[5] * world.submissions(r))

    client = world.client(0, reporter=Log(), sleep=aggregator_step)
    summaries = client.run(poll=1.0, max_wait=60)
    assert [s.result.round for s in summaries] == [0, 1, 2]
    assert [s.outcome.state for s in summaries if s.outcome] == ["posted", "failed", "posted"]
    assert summaries[0].outcome is not None and summaries[0].outcome.credited_wei == BUDGET // 3 // 2
    assert summaries[2].outcome is not None and summaries[2].outcome.earned_wei == BUDGET // 3 // 2 + BUDGET // 3
    assert world.state().status.name == "FINISHED"
    assert any("waiting for the aggregator" in text for text in seen)
    # issue 14 (changed on purpose: was an empty list): a finished project shows this trainer's history
    again = client.run()
    assert [(s.result.round, s.result.status) for s in again] == [(r, RoundStatus.ALREADY_SUBMITTED) for r in (0, 1, 2)]
    assert [s.result.cid for s in again] == [s.result.cid for s in summaries]

    def settled(runs: list[RoundSummary]) -> list[tuple[Any, ...]]:  # earned_wei is the total when it was read
        return [(o.state, o.score, o.outlier, o.credited_wei, o.verdict) for o in (s.outcome for s in runs) if o]

    assert len([s for s in again if s.outcome]) == 3 and settled(again) == settled(summaries)
    assert seen[-1] == f"project {world.project_id} is finished; this trainer submitted 3 round(s) in it"


# --- Flower ---------------------------------------------------------------------------------------------------


def _message(config: dict[str, Any], message_type: str = "train") -> Any:
    return flower_message(config, message_type)


def test_flower_client_app_runs_the_same_round(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr.app import Context, RecordDict

    from pocfl.store import EmbeddedStore
    from trainer_client import flower_client

    world = make_world(env, tmp_path, store=EmbeddedStore(tmp_path / "store"))
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={"pocfl-wait-s": 0})
    client = world.client(0)
    pid, market, chain_id = world.project_id, env.market.address, env.chain.chain_id
    flower_client.set_client_factory(lambda _: client)
    try:
        who = flower_client.app(_message({"request": "trainer-address", "project-id": pid}, "query"), context)
        assert who.content.config_records["pocfl"]["trainer"] == world.trainers[0].address

        # what aggregator.flower_server sends: the chain round, the deployment, the model and hyper-parameters
        train = {"project-id": pid, "round": 0, "market": market, "chain-id": chain_id, "model-cid": "ignored"}
        reply = flower_client.app(_message(train), context)
        record = reply.content.config_records["pocfl"]
        assert record["status"] == "submitted" and record["round"] == 0 and record["trainer"] == client.address
        (update,) = world.market(env.aggregator).submitted_updates(pid, 0)
        assert (record["cid"], record["commitment"]) == (update.cid, "0x" + update.commitment.hex())
        assert reply.content.metric_records["metrics"]["num-examples"] == share(0)[0].shape[0]

        again = flower_client.app(_message({}), context)  # no round given: the current one
        assert again.content.config_records["pocfl"]["status"] == "already_submitted"
        future = flower_client.app(_message({"round": 2}), context)
        assert future.has_error() and "RoundNotOpenError" in str(future.error.reason)
        for wrong in ({"project-id": pid + 1}, {"chain-id": chain_id + 1}, {"market": "0x" + "00" * 20}):
            refused = flower_client.app(_message({"round": 0, **wrong}), context)
            assert refused.has_error() and "ConfigError" in str(refused.error.reason)
    finally:
        flower_client.reset()
    assert world.submissions(0) == 1

    if env.chain.url is None:
        return  # settings name a chain by URL: the embedded chain has none
    # from the node and run config alone, as a SuperNode runs it (key by env var name, data share by partition)
    monkeypatch.setenv("POCFL_TEST_TRAINER_1", world.trainers[1].key.hex())
    node = {"partition-id": 1, "num-partitions": 3, "pocfl-trainer-key-env": "POCFL_TEST_TRAINER_{partition-id}"}
    run = {
        "pocfl-project": pid,
        "pocfl-rpc": env.chain.url,
        "pocfl-market": market,
        "pocfl-ipfs": str(tmp_path / "store"),
        "pocfl-deployment": "",
        "pocfl-trainer-state-dir": str(tmp_path / "flower-state"),
        "pocfl-data": "digits:part={partition-id}:of={num-partitions}",  # flower_app/pyproject.toml's default
    }
    try:
        reply = flower_client.app(_message({"round": 0, "project-id": pid}), Context(1, 2, node, RecordDict(), run))
    finally:
        flower_client.reset()
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    record = reply.content.config_records["pocfl"]
    assert record["status"] == "submitted" and record["trainer"] == world.trainers[1].address
    assert reply.content.metric_records["metrics"]["num-examples"] == share(1)[0].shape[0]
    assert (tmp_path / "flower-state" / f"trainer-{world.trainers[1].address.lower()}-{pid}.json").exists()
    assert world.submissions(0) == 2


# --- the command line -------------------------------------------------------------------------------------------


def test_pocfl_train_command(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if env.chain.url is None:
        pytest.skip("the CLI reaches a chain by URL (covered on anvil)")
    from typer.testing import CliRunner

    from pocfl.chain.backends import connect
    from pocfl.cli.main import app
    from pocfl.store import EmbeddedStore

    world = make_world(env, tmp_path, store=EmbeddedStore(tmp_path / "store"))
    for name in ("POCFL_RPC", "POCFL_IPFS", "POCFL_KEYSTORE", "POCFL_DEPLOYMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POCFL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POCFL_TEST_TRAINER", world.trainers[0].key.hex())
    url = env.chain.url

    def aggregator() -> None:
        """Another process's aggregator: once the trainer submitted, close the window and post round 0."""
        chain = connect(url)
        agg_client = MarketplaceClient(chain, env.market.address, env.aggregator)
        agg = Market(agg_client, EmbeddedStore(tmp_path / "store"))
        deadline = time.monotonic() + 60
        while not agg.submitted_updates(world.project_id, 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        thread_world = replace(world, env=replace(env, chain=chain, market=agg_client, clients={}))
        thread_world.env.clients[env.aggregator.address] = agg_client
        thread_world.post(0, initial_vector(0, hidden=HIDDEN), HyperParams(1, 0.1, 1, 32), scores=[7])

    thread = threading.Thread(target=aggregator, daemon=True)
    thread.start()
    args = ["train", str(world.project_id), "--data", "digits:part=0:of=3", "--rounds", "1"]
    args += ["--rpc", url, "--market", env.market.address, "--ipfs", str(tmp_path / "store")]
    args += ["--key", "POCFL_TEST_TRAINER", "--poll", "0.1", "--max-wait", "60", "--json"]
    result = CliRunner().invoke(app, args)
    thread.join(timeout=60)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    (summary,) = document["rounds"]
    assert summary["result"]["status"] == "submitted" and summary["outcome"]["score"] == 7
    assert summary["outcome"]["why"] is None  # scored above 0: nothing to explain
    assert "round 0: epoch 1/1: loss " in result.stderr  # issue 14: per-epoch figures, one note each off a terminal
    assert document["earned_wei"] == BUDGET // 3 and document["claimable_wei"] >= BUDGET // 3
    assert (tmp_path / "home" / f"trainer-{world.trainers[0].address.lower()}-{world.project_id}.json").exists()

    bad = CliRunner().invoke(app, ["train", "1", "--data", "digits:part=5:of=3", "--json"])
    assert bad.exit_code == 1 and json.loads(bad.stdout)["error"] == "DataSpecError"
