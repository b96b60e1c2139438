"""The aggregator node end to end: real updates through the store and the chain, bad input, crashes and restarts."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount

from aggregator.node import AggregatorNode, RoundOutcome
from pocfl.chain.contract_errors import NotRegistered, SubmissionWindowClosed, WrongRound
from pocfl.errors import ConfigError
from pocfl.manifest import ModelInfo, ProjectManifest, TrainingConfig, ValidationInfo
from pocfl.market import Market, report_hash
from pocfl.ml.data import load_digits_split
from pocfl.ml.model import initial_vector
from pocfl.ml.training import local_train
from pocfl.payouts import allocate
from pocfl.rounds.hyperparams import HyperParams
from pocfl.rounds.inputs import NO_KEY_REASON, global_model, round_hyperparams
from pocfl.rounds.report import REASON_LIMIT, RoundReport
from pocfl.store import EmbeddedStore, compute_cid
from pocfl.updates import (
    EncryptionKeyPair,
    ModelSpec,
    decode_update,
    encode_update,
    encrypt_update,
    update_commitment,
    write_safetensors,
)
from pocfl.updates.format import FINGERPRINT_KEY, FORMAT_KEY, FORMAT_NAME, KIND_KEY
from tests.helpers import Env, standard_params, warp_to

pytestmark = pytest.mark.integration

HIDDEN = 8
BUDGET = 2 * 10**18
SHARD = 120


@dataclass
class Setup:
    env: Env
    store: EmbeddedStore
    project_id: int
    manifest: ProjectManifest
    spec: ModelSpec
    key: EncryptionKeyPair
    data: tuple[np.ndarray, np.ndarray]
    state_dir: Path

    def market(self, account: LocalAccount) -> Market:
        return Market(self.env.client(account), self.store)

    def node(self, **kwargs: Any) -> AggregatorNode:
        kwargs.setdefault("keypair", self.key)
        kwargs.setdefault("state_dir", self.state_dir)
        return AggregatorNode(self.market(self.env.aggregator), self.project_id, **kwargs)

    def shard(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.data
        return x[i * SHARD : (i + 1) * SHARD], y[i * SHARD : (i + 1) * SHARD]

    def commit(self, plaintext: bytes, trainer: str, round_: int) -> bytes:
        return update_commitment(
            plaintext,
            chain_id=self.env.chain.chain_id,
            market=self.env.market.address,
            project_id=self.project_id,
            round=round_,
            trainer=trainer,
        )

    def train(self, i: int, round_: int) -> bytes:
        """Trainer i's honest update for the round, as a plaintext update file."""
        m = self.market(self.env.trainers[i])
        _, vector = global_model(m, self.manifest, self.project_id, round_)
        hyper = round_hyperparams(m, self.manifest, self.project_id, round_)
        x, y = self.shard(i)
        delta = local_train(
            vector, x, y, epochs=hyper.local_epochs, lr=hyper.learning_rate, batch_size=hyper.batch_size, seed=i
        )
        return encode_update(self.spec.unflatten(delta), self.spec, kind="delta")

    def submit(self, i: int, round_: int, plaintext: bytes, *, encrypt: bool = False) -> str:
        trainer = self.env.trainers[i]
        payload = encrypt_update(plaintext, self.key.public_key) if encrypt else plaintext
        cid, _ = self.market(trainer).submit_update(
            self.project_id, round_, payload, self.commit(plaintext, trainer.address, round_)
        )
        return cid

    def close(self) -> None:
        warp_to(self.env.chain, self.env.market.project(self.project_id).submission_deadline)


def make_setup(env: Env, tmp_path: Path, trainers: int, num_rounds: int = 2) -> Setup:
    store = EmbeddedStore(tmp_path / "store")
    key = EncryptionKeyPair.generate()
    info = ModelInfo(n_features=64, hidden=HIDDEN, n_classes=10, initial_weights_cid="")
    spec = info.spec()
    weights = encode_update(spec.unflatten(initial_vector(0, hidden=HIDDEN)), spec, kind="weights")
    owner = Market(env.client(env.owner), store)
    manifest = ProjectManifest(
        name="digits",
        model=ModelInfo(n_features=64, hidden=HIDDEN, n_classes=10, initial_weights_cid=owner.publish(weights)),
        training=TrainingConfig(learning_rate=0.1, local_epochs=2, batch_size=32),
        validation=ValidationInfo(recipe="sklearn-digits:seed=0:fraction=0.2"),
        aggregator_public_key=key.public_key_hex,
    )
    params = standard_params(env, num_rounds=num_rounds, max_trainers=12)
    project_id, _ = owner.create_project(params, BUDGET, initial_model=manifest.to_json())
    for t in env.trainers[:trainers]:
        env.client(t).register(project_id)
    warp_to(env.chain, params.start_time)
    x, y, _, _ = load_digits_split(0, 0.2)
    return Setup(env, store, project_id, manifest, spec, key, (x, y), tmp_path / "node")


def credited(env: Env, outcome: RoundOutcome) -> list[tuple[str, int, bool, int]]:
    """(trainer, score, outlier, amount) of the round's TrainerCredited events."""
    logs = env.market.events("TrainerCredited", from_block=outcome.block or 0, round=outcome.round)
    return [
        (str(e.args["trainer"]), int(e.args["score"]), bool(e.args["outlier"]), int(e.args["amount"])) for e in logs
    ]


def check_posted(s: Setup, outcome: RoundOutcome) -> RoundReport:
    """The report in the store matches what the chain recorded and paid."""
    env = s.env
    assert outcome.status == "posted" and outcome.report is not None and outcome.report_cid is not None
    event = next(
        e
        for e in env.market.events("RoundPosted", from_block=outcome.block or 0, projectId=s.project_id)
        if int(e.args["round"]) == outcome.round
    )
    report = RoundReport.from_json(s.store.get_bytes(outcome.report_cid))
    assert report == outcome.report
    assert bytes(event.args["reportHash"]) == report_hash(outcome.report_cid)
    assert event.args["modelCid"] == report.model_out == outcome.model_cid
    assert bytes(event.args["hyperparamsHash"]).hex() == report.next_hyperparams_hash.removeprefix("0x")
    assert HyperParams.from_json(report.next_hyperparams).hash() == bytes(event.args["hyperparamsHash"])
    scores = [e.score for e in report.submissions]
    outliers = [e.outlier for e in report.submissions]
    round_budget = env.market.project(s.project_id).round_budget
    expected = allocate(round_budget, scores, outliers)
    paid = credited(env, outcome)
    assert [(t, sc, o) for t, sc, o, _ in paid] == [(e.trainer, e.score, e.outlier) for e in report.submissions]
    assert [a for *_, a in paid] == list(expected.shares)
    assert int(event.args["credited"]) == expected.credited == outcome.credited
    assert s.store.has(report.model_out)
    return report


def test_two_rounds_with_real_updates_and_the_follow_loop(env: Env, tmp_path: Path) -> None:
    s = make_setup(env, tmp_path, trainers=4)
    encrypted = {1}
    for i in range(4):
        s.submit(i, 0, s.train(i, 0), encrypt=i in encrypted)
    s.close()
    outcome = s.node().run_round(0)
    report = check_posted(s, outcome)
    assert [e.status for e in report.submissions] == ["scored"] * 4
    assert sum(e.score for e in report.submissions) > 0 and report.accuracy > report.accuracy_before
    assert report.model_in == s.manifest.model.initial_weights_cid
    sealed = report.submissions[1]
    assert sealed.encrypted and sealed.plaintext_cid is not None and s.store.has(sealed.plaintext_cid)
    assert report.submissions[0].plaintext_cid is None
    assert report.config["sketch_dim"] == s.manifest.aggregation.sketch_dim
    assert json.loads(report.hyperparams)["round"] == 0

    # Round 1 through follow(): its "sleep" is the world moving on (trainers submit, time passes).
    def world(_seconds: float) -> None:
        if env.market.project(s.project_id).submission_count == 0:
            for i in range(4):
                s.submit(i, 1, s.train(i, 1))
        s.close()

    seen: list[RoundOutcome] = []
    outcomes = s.node(sleep=world, clock=env.chain.now).follow(on_round=seen.append)
    assert [o.status for o in outcomes] == ["posted"] and seen == outcomes
    second = check_posted(s, outcomes[0])
    assert second.model_in == report.model_out
    assert second.hyperparams == report.next_hyperparams
    assert second.config["accuracy_history"] == [report.accuracy]
    assert second.config["prior_update_rounds"] == [0]
    assert env.market.project(s.project_id).status.name == "FINISHED"


def test_a_private_standardised_validation_set_scores_the_round(env: Env, tmp_path: Path) -> None:
    """Issue 14: an own-data project (wine, private validation set, standardize) is scored on the owner's file
    after the manifest's transform; without the file the node cannot score it."""
    from sklearn.datasets import load_wine

    from pocfl.fl_project import manifest_from_data
    from pocfl.ml.tabular import apply_preprocessing
    from pocfl.ml.training import evaluate
    from pocfl.rounds.inputs import ValidationSetError

    wine = load_wine()
    x, y = np.asarray(wine.data), np.asarray(wine.target, dtype=np.int64)
    own = tmp_path / "validation.csv"
    np.savetxt(own, np.column_stack([x[::4], y[::4]]), delimiter=",", fmt="%.10g")
    store = EmbeddedStore(tmp_path / "store")
    key = EncryptionKeyPair.generate()
    training = TrainingConfig(learning_rate=0.1, local_epochs=3, batch_size=8)
    made = manifest_from_data(
        "wine",
        own,
        store=store,
        hidden=HIDDEN,
        training=training,
        private=True,
        aggregator_public_key=key.public_key_hex,
    )
    npz = tmp_path / "validation.npz"
    npz.write_bytes(made.validation_npz)
    owner = Market(env.client(env.owner), store)
    params = replace(standard_params(env, num_rounds=1, max_trainers=12), validation_set_commitment=made.commitment)
    project_id, _ = owner.create_project(params, BUDGET, initial_model=made.manifest.to_json())
    for t in env.trainers[:3]:
        env.client(t).register(project_id)
    warp_to(env.chain, params.start_time)
    pre = made.manifest.preprocessing
    rest = np.setdiff1d(np.arange(y.shape[0]), np.arange(0, y.shape[0], 4))
    data = (apply_preprocessing(pre, x[rest]), y[rest])
    s = Setup(env, store, project_id, made.manifest, made.manifest.model.spec(), key, data, tmp_path / "node")
    for i in range(3):
        xs, ys = data[0][i::3], data[1][i::3]
        _, start = global_model(s.market(env.trainers[i]), s.manifest, project_id, 0)
        delta = local_train(start, xs, ys, epochs=3, lr=0.1, batch_size=8, seed=i, n_classes=3)
        s.submit(i, 0, encode_update(s.spec.unflatten(delta), s.spec, kind="delta"))
    s.close()
    with pytest.raises(ValidationSetError, match="it is private"):
        s.node().validation()
    outcome = s.node(validation_file=npz).run_round(0)
    report = check_posted(s, outcome)
    model = decode_update(store.get_bytes(report.model_out), s.spec, kind="weights").vector()
    x_val = apply_preprocessing(pre, x[::4])
    assert report.accuracy == pytest.approx(evaluate(model, x_val, y[::4], n_classes=3)[0])
    assert report.accuracy > 0.8 and report.accuracy > report.accuracy_before


def nan_update(spec: ModelSpec) -> bytes:
    tensors = {t.name: np.zeros(t.shape, dtype=np.float32) for t in spec.tensors}
    tensors["fc2.bias"][3] = np.nan
    return write_safetensors(tensors, {FORMAT_KEY: FORMAT_NAME, KIND_KEY: "delta", FINGERPRINT_KEY: spec.fingerprint})


def test_bad_input_is_rejected_with_its_reason_and_the_round_completes(env: Env, tmp_path: Path) -> None:
    s = make_setup(env, tmp_path, trainers=9, num_rounds=1)
    honest = [s.train(i, 0) for i in range(2)]
    s.submit(0, 0, honest[0])
    s.submit(1, 0, honest[1])
    s.submit(2, 0, b"\x00garbage, not an update")
    other = ModelInfo(n_features=64, hidden=HIDDEN + 1, n_classes=10, initial_weights_cid="").spec()
    s.submit(3, 0, encode_update(other.unflatten(np.zeros(other.size, dtype=np.float32)), other))
    s.submit(4, 0, nan_update(s.spec))
    corrupt = s.submit(5, 0, s.train(5, 0))
    s.store.path_of(corrupt).write_bytes(b"swapped bytes on disk")
    stranger = EncryptionKeyPair.generate()
    t6 = env.trainers[6]
    plain6 = s.train(6, 0)
    s.market(t6).submit_update(
        s.project_id, 0, encrypt_update(plain6, stranger.public_key), s.commit(plain6, t6.address, 0)
    )
    first = s.market(env.trainers[0]).submitted_updates(s.project_id, 0)[0]
    env.client(env.trainers[7]).submit(s.project_id, 0, first.cid, first.commitment)  # a replay of trainer 0

    with pytest.raises(NotRegistered):
        Market(env.client(env.outsider), s.store).submit_update(s.project_id, 0, honest[0], b"\x01" * 32)
    s.close()
    with pytest.raises(SubmissionWindowClosed):  # trainer 8 is registered, but late
        s.market(env.trainers[8]).submit_update(s.project_id, 0, honest[1], b"\x02" * 32)

    report = check_posted(s, s.node().run_round(0))
    reasons = [e.reason for e in report.submissions]
    assert reasons[:2] == [None, None]
    expected = [
        "CorruptUpdateError: ",
        "ArchitectureMismatchError: ",
        "NonFiniteUpdateError: ",
        "CidMismatchError: ",
        "WrongRecipientError: ",
        "CommitmentMismatchError: ",
    ]
    for entry, prefix in zip(report.submissions[2:], expected, strict=True):
        assert entry.reason is not None and entry.reason.startswith(prefix), entry.reason
        assert (entry.status, entry.outlier, entry.score, entry.weight) == ("rejected", True, 0, 0.0)
    assert [e.status for e in report.submissions[:2]] == ["scored", "scored"]
    assert all(e.score > 0 for e in report.submissions[:2])
    assert len(report.submissions) == 8  # late and unregistered senders never made it on chain


def hostile_update(header: bytes) -> bytes:
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def test_hostile_headers_become_bounded_rejections_and_the_report_stays_small(env: Env, tmp_path: Path) -> None:
    """Issue 11 parts 1 and 2 through the node: headers nested 30,000 and 100,000 deep (a segfault before) and
    24 MiB headers of non-ASCII text (a 75.5 MB report before) are rejected by name; the report grows by a
    bounded amount per submission, not with what was sent."""
    s = make_setup(env, tmp_path, trainers=5, num_rounds=1)
    s.submit(0, 0, s.train(0, 0))
    s.submit(1, 0, hostile_update(b'{"a":' + b"[" * 30_000 + b"]" * 30_000 + b"}"))
    meta = {FORMAT_KEY: FORMAT_NAME, KIND_KEY: "delta", FINGERPRINT_KEY: s.spec.fingerprint}
    huge = "é" * (12 << 20)  # 24 MiB of UTF-8, 72 MiB as JSON escapes
    empty = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    s.submit(2, 0, hostile_update(json.dumps({"__metadata__": meta, huge: empty}, ensure_ascii=False).encode()))
    s.submit(
        3, 0, hostile_update(json.dumps({"__metadata__": {**meta, FORMAT_KEY: huge}}, ensure_ascii=False).encode())
    )
    s.submit(4, 0, hostile_update(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    s.close()
    report = check_posted(s, s.node().run_round(0))
    reasons = [e.reason for e in report.submissions]
    assert reasons[0] is None and report.submissions[0].status == "scored"
    assert (reasons[1] or "").startswith("CorruptUpdateError: header nests JSON 30001 levels deep")
    for r in reasons[2:]:  # refused by length before parsing: the header may exceed the model's by 64 KiB
        assert (r or "").startswith("CorruptUpdateError: header length "), r
    assert all(r is None or (len(r) <= REASON_LIMIT and r.isascii() and r.isprintable()) for r in reasons)
    # bound: the same report with no reasons, plus at most 2 * REASON_LIMIT + 2 bytes of JSON per reason
    quiet = replace(report, submissions=tuple(replace(e, reason=None) for e in report.submissions))
    assert len(report.to_json()) <= len(quiet.to_json()) + len(reasons) * (2 * REASON_LIMIT + 2)
    assert len(report.to_json()) < 64 << 10


def test_a_node_without_the_key_rejects_sealed_updates(env: Env, tmp_path: Path) -> None:
    s = make_setup(env, tmp_path, trainers=2, num_rounds=1)
    s.submit(0, 0, s.train(0, 0), encrypt=True)
    s.submit(1, 0, s.train(1, 0))
    s.close()
    report = check_posted(s, s.node(keypair=None).run_round(0))
    assert report.submissions[0].reason == NO_KEY_REASON
    assert report.submissions[1].status == "scored"


class Killed(Exception):
    """The process died here."""


def test_killed_at_any_stage_a_restarted_node_finishes_the_round_once(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_setup(env, tmp_path, trainers=3)
    for i in range(3):
        s.submit(i, 0, s.train(i, 0), encrypt=i == 2)
    s.close()
    journal_file = s.state_dir / f"project-{s.project_id}.json"

    def journal(round_: int = 0) -> dict[str, Any]:
        entry: dict[str, Any] = json.loads(journal_file.read_text())["rounds"][str(round_)]
        return entry

    # 1. killed while storing: the round was decided, nothing posted.
    first = s.node()
    monkeypatch.setattr(first.market, "publish", _die)
    with pytest.raises(Killed):
        first.run_round(0)
    decided = journal()
    assert decided["stage"] == "decided"

    # 2. killed after storing, before the transaction: a fresh node recomputes the very same bytes.
    second = s.node()
    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(second.client, "post_round", _die)  # the client is shared: undo the patch afterwards
        second.run_round(0)
    stored = journal()
    assert stored["stage"] == "stored"
    assert (stored["report_cid"], stored["model_cid"]) == (decided["report_cid"], decided["model_cid"])
    assert s.store.has(stored["report_cid"]) and env.market.project(s.project_id).current_round == 0

    # 3. a fresh node posts what was stored, without recomputing it.
    third = s.node()
    monkeypatch.setattr(third.preparer, "prepare", _die)
    outcome = third.run_round(0)
    assert outcome.status == "posted" and outcome.resumed and outcome.report_cid == stored["report_cid"]
    check_posted(s, outcome)
    assert journal()["stage"] == "posted" and journal()["tx_hash"] == outcome.tx_hash

    # 4. restarted after posting: nothing is posted again, the posted round is reported (also with no journal).
    for node in (s.node(), s.node(state_dir=tmp_path / "elsewhere")):
        again = node.run_round(0)
        assert again.status == "already_posted"
        assert (again.tx_hash, again.report_cid, again.report) == (outcome.tx_hash, outcome.report_cid, outcome.report)
        assert again.credited == outcome.credited
    with pytest.raises(WrongRound):  # and the contract would refuse a second post anyway
        s.market(env.aggregator).post_round(
            s.project_id,
            0,
            model=b"m",
            report=b"r",
            submissions=[],
            scores=[],
            outliers=[],
        )
    assert len(env.market.events("RoundPosted", projectId=s.project_id)) == 1


def _die(*_args: Any, **_kwargs: Any) -> Any:
    raise Killed


def test_a_missed_round_is_failed_and_the_next_one_reuses_the_hyperparameters(env: Env, tmp_path: Path) -> None:
    s = make_setup(env, tmp_path, trainers=2)
    s.submit(0, 0, s.train(0, 0))
    warp_to(env.chain, env.market.project(s.project_id).aggregation_deadline)
    node = s.node(clock=env.chain.now)
    assert node.run_round(0).status == "missed"
    outcomes = node.follow(rounds=1)
    assert [o.status for o in outcomes] == ["failed"]
    assert node.run_round(0).status == "failed"
    hyper = round_hyperparams(s.market(env.aggregator), s.manifest, s.project_id, 1)
    assert hyper == HyperParams(round=1, learning_rate=0.1, local_epochs=2, batch_size=32)
    assert (
        global_model(s.market(env.aggregator), s.manifest, s.project_id, 1)[0] == s.manifest.model.initial_weights_cid
    )
    assert compute_cid(s.manifest.to_json()) == env.market.project(s.project_id).model_cid


def test_the_aggregate_command_posts_rounds_and_prints_them(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pocfl.cli.main import app
    from pocfl.cli.session import Session

    s = make_setup(env, tmp_path, trainers=2)
    key_file = s.key.save(tmp_path / "aggregator.key")
    monkeypatch.setattr(Session, "chain", lambda _self: env.chain)  # the test's chain, on either backend
    monkeypatch.setenv("POCFL_HOME", str(tmp_path / "home"))
    base = ["aggregate", str(s.project_id), "--market", env.market.address, "--key", "AGG_KEY"]
    base += ["--ipfs", f"embedded:{s.store.root}", "--state-dir", str(s.state_dir), "--decrypt-key", str(key_file)]
    runner = CliRunner()
    keys = {"AGG_KEY": "0x" + bytes(env.aggregator.key).hex()}

    s.submit(0, 0, s.train(0, 0), encrypt=True)
    s.submit(1, 0, b"garbage")
    s.close()
    result = runner.invoke(app, [*base, "--json"], env=keys)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (posted,) = doc["rounds"]
    assert (posted["round"], posted["status"]) == (0, "posted")
    assert [e["status"] for e in posted["report"]["submissions"]] == ["scored", "rejected"]

    for i in range(2):
        s.submit(i, 1, s.train(i, 1))
    s.close()
    result = runner.invoke(app, [*base, "--rounds", "1"], env=keys)
    assert result.exit_code == 0, result.output
    assert "Round 1 posted" in result.stdout and "scored" in result.stdout

    result = runner.invoke(app, [*base, "--follow", "--json"], env=keys)  # finished: nothing left to do
    assert result.exit_code == 0 and json.loads(result.stdout)["rounds"] == []
    result = runner.invoke(
        app, [*base[:4], "--key", "OWNER_KEY", "--json"], env={"OWNER_KEY": "0x" + bytes(env.owner.key).hex()}
    )
    assert result.exit_code == 1 and json.loads(result.stdout)["error"] == "ConfigError"


# --- the Flower ServerApp wrapper, driven by an in-process grid ---------------------------------------------------


@pytest.fixture
def flower_task() -> Any:
    """Flower stamps messages with the running task's identity; set one for an in-process grid."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def test_the_flower_server_app_trains_only_registered_nodes_and_posts_each_round(
    env: Env, tmp_path: Path, flower_task: Any
) -> None:
    from contextlib import nullcontext

    from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
    from flwr.serverapp import Grid

    from aggregator import flower_server
    from pocfl import flower_keys
    from pocfl.updates import decode_update

    s = make_setup(env, tmp_path, trainers=3)
    outsider = env.outsider.address
    nodes = {10: env.trainers[0].address, 11: env.trainers[1].address, 12: env.trainers[2].address, 13: outsider}
    trained: list[tuple[int, dict[str, Any]]] = []

    def answer(msg: Message) -> Message | None:
        node = msg.metadata.dst_node_id
        config = dict(msg.content.config_records[flower_keys.RECORD])
        if msg.metadata.message_type == MessageType.QUERY:
            return Message(RecordDict({"pocfl": ConfigRecord({"trainer": nodes[node]})}), reply_to=msg)
        trained.append((node, config))
        i = list(nodes).index(node)
        m = s.market(env.trainers[i])
        model = decode_update(m.fetch(str(config["model-cid"])), s.spec, kind="weights").vector()
        hyper = HyperParams.from_json(str(config["hyperparams"]))
        x, y = s.shard(i)
        delta = local_train(model, x, y, epochs=hyper.local_epochs, lr=hyper.learning_rate, seed=i)
        cid = s.submit(i, int(config["round"]), encode_update(s.spec.unflatten(delta), s.spec))
        return Message(RecordDict({"pocfl": ConfigRecord({"trainer": nodes[node], "cid": cid})}), reply_to=msg)

    class InProcessGrid(Grid):
        def set_run(self, run: Any) -> None: ...

        @property
        def run(self) -> Any:
            raise NotImplementedError

        def create_message(
            self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
        ) -> Message:
            return Message(content=content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id)

        def get_node_ids(self) -> list[int]:
            return [*nodes, 14]  # node 14 never answers

        def push_messages(self, messages: Any) -> Any:
            raise NotImplementedError

        def pull_messages(self, message_ids: Any) -> Any:
            raise NotImplementedError

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
            replies = [answer(m) for m in messages if m.metadata.dst_node_id in nodes]
            return [r for r in replies if r is not None]

    node = s.node(sleep=lambda _s: s.close(), clock=env.chain.now)
    context = Context(
        run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={"pocfl-project": s.project_id}
    )
    outcomes = flower_server.run(InProcessGrid(), context, factory=lambda _rc: (node, nullcontext()))

    assert [o.status for o in outcomes] == ["posted", "posted"]
    assert sorted({n for n, _ in trained}) == [10, 11, 12]  # the unregistered node got no train message
    assert [c["round"] for _, c in trained] == [0, 0, 0, 1, 1, 1]
    assert trained[0][1]["model-cid"] == s.manifest.model.initial_weights_cid
    assert trained[-1][1]["model-cid"] == outcomes[0].model_cid
    for outcome in outcomes:
        check_posted(s, outcome)
    assert env.market.project(s.project_id).status.name == "FINISHED"
    with pytest.raises(ConfigError, match="pocfl-project"):
        flower_server.node_from_run_config({})
