"""``pocfl audit`` end to end: honest rounds reconcile; tampered scores, flags and report bytes are caught.

A small digits project (MLP 64-8-10, validation recipe) runs real rounds: trainers train with
``pocfl.ml.training.local_train``, store their updates and submit through :class:`~pocfl.market.Market`, and the
:class:`~aggregator.node.AggregatorNode` posts. The audit then reads only the chain and the store.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner

from aggregator.node import AggregatorNode, RoundOutcome
from aggregator.round import RoundDecision, decide_round
from pocfl.audit import AuditMismatchError, AuditResult, audit_project
from pocfl.audit.report import write_audit_report
from pocfl.chain.backends import Chain
from pocfl.cli.main import app
from pocfl.manifest import ModelInfo, ProjectManifest, TrainingConfig, ValidationInfo
from pocfl.market import Market
from pocfl.ml.data import load_digits_split
from pocfl.ml.model import initial_vector
from pocfl.ml.training import local_train
from pocfl.rounds.inputs import global_model, round_hyperparams
from pocfl.store import EmbeddedStore
from pocfl.updates import EncryptionKeyPair, ModelSpec, encode_update, encrypt_update, update_commitment
from tests.helpers import Env, standard_params, warp_to

pytestmark = pytest.mark.integration

HIDDEN = 8
SHARD = 120
BUDGET = 3 * 10**18
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Project:
    """A digits project on the test chain with an embedded store, trainers and an aggregator node."""

    env: Env
    store: EmbeddedStore
    id: int
    manifest: ProjectManifest
    spec: ModelSpec
    key: EncryptionKeyPair
    data: tuple[np.ndarray, np.ndarray]
    node_dir: Path

    def market(self, account: LocalAccount | None = None) -> Market:
        client = self.env.client(account) if account is not None else self.env.market.as_account(None)
        return Market(client, self.store)

    def update(self, i: int, round_: int) -> bytes:
        """Trainer i's honest update file: local SGD on its own shard from the round's global model."""
        m = self.market()
        _, vector = global_model(m, self.manifest, self.id, round_)
        hyper = round_hyperparams(m, self.manifest, self.id, round_)
        x, y = self.data
        xs, ys = x[i * SHARD : (i + 1) * SHARD], y[i * SHARD : (i + 1) * SHARD]
        delta = local_train(
            vector, xs, ys, epochs=hyper.local_epochs, lr=hyper.learning_rate, batch_size=hyper.batch_size, seed=i
        )
        return encode_update(self.spec.unflatten(delta), self.spec, kind="delta")

    def submit(self, i: int, round_: int, plaintext: bytes, *, encrypt: bool = False) -> str:
        trainer = self.env.trainers[i]
        commitment = update_commitment(
            plaintext,
            chain_id=self.env.chain.chain_id,
            market=self.env.market.address,
            project_id=self.id,
            round=round_,
            trainer=trainer.address,
        )
        payload = encrypt_update(plaintext, self.key.public_key) if encrypt else plaintext
        cid, _ = self.market(trainer).submit_update(self.id, round_, payload, commitment)
        return cid

    def post(self, round_: int) -> RoundOutcome:
        """Close the submission window and let the aggregator node post the round."""
        warp_to(self.env.chain, self.env.market.project(self.id).submission_deadline)
        node = AggregatorNode(
            self.market(self.env.aggregator),
            self.id,
            keypair=self.key,
            state_dir=self.node_dir,
            clock=self.env.chain.now,
        )
        outcome = node.run_round(round_)
        assert outcome.status == "posted", outcome
        return outcome

    def audit(self, **kwargs: Any) -> AuditResult:
        return audit_project(self.market(), self.id, **kwargs)


def make_project(env: Env, tmp_path: Path, trainers: int, num_rounds: int) -> Project:
    store = EmbeddedStore(tmp_path / "store")
    key = EncryptionKeyPair.generate()
    owner = Market(env.client(env.owner), store)
    spec = ModelInfo(n_features=64, hidden=HIDDEN, n_classes=10, initial_weights_cid="").spec()
    weights = encode_update(spec.unflatten(initial_vector(0, hidden=HIDDEN)), spec, kind="weights")
    manifest = ProjectManifest(
        name="audited digits",
        model=ModelInfo(n_features=64, hidden=HIDDEN, n_classes=10, initial_weights_cid=owner.publish(weights)),
        training=TrainingConfig(learning_rate=0.1, local_epochs=2, batch_size=32),
        validation=ValidationInfo(recipe="sklearn-digits:seed=0:fraction=0.2"),
        aggregator_public_key=key.public_key_hex,
    )
    params = standard_params(env, num_rounds=num_rounds, max_trainers=8)
    project_id, _ = owner.create_project(params, BUDGET, initial_model=manifest.to_json())
    for t in env.trainers[:trainers]:
        env.client(t).register(project_id)
    warp_to(env.chain, params.start_time)
    x, y, _, _ = load_digits_split(0, 0.2)
    return Project(env, store, project_id, manifest, spec, key, (x, y), tmp_path / "node")


def differences(err: pytest.ExceptionInfo[AuditMismatchError]) -> list[str]:
    return [d.message for d in err.value.differences]


def test_an_honest_project_reconciles_and_every_tampering_with_stored_bytes_is_named(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project(env, tmp_path, trainers=4, num_rounds=2)
    # round 0: two plaintext updates, one sealed to the aggregator, one garbage file (rejected with its reason)
    p.submit(0, 0, p.update(0, 0))
    p.submit(1, 0, p.update(1, 0), encrypt=True)
    p.submit(2, 0, p.update(2, 0))
    p.submit(3, 0, b"not an update file")
    first = p.post(0)
    for i in range(4):
        p.submit(i, 1, p.update(i, 1))
    second = p.post(1)
    claimer = env.trainers[0]
    claimed, _ = env.client(claimer).claim()

    result = p.audit().check()
    assert result.ok and result.differences == [] and result.warnings == []
    assert [(r.round, r.state, r.verdict, r.proven) for r in result.rounds] == [
        (0, "posted", "verified", False),
        (1, "posted", "verified", False),
    ]
    assert result.proofs == "none" and "unproven" in result.rounds[0].notes[0]
    r0 = result.rounds[0]
    assert [s.source for s in r0.submissions] == ["plaintext", "revealed", "plaintext", "rejected"]
    assert r0.submissions[3].note is not None and r0.submissions[3].note.startswith("CorruptUpdateError")
    assert r0.report_cid == first.report_cid and result.rounds[1].model_cid == second.model_cid
    for r in result.rounds:
        assert [s.score for s in r.submissions] == [s.posted_score for s in r.submissions]
        assert [s.outlier for s in r.submissions] == [s.posted_outlier for s in r.submissions]
        assert [s.expected_wei for s in r.submissions] == [s.credited_wei for s in r.submissions]
        assert r.accuracy is not None and r.accuracy_before is not None
    assert result.rounds[1].accuracy_before == r0.accuracy
    by_trainer = {t.trainer: t for t in result.trainers}
    assert sum(t.credited_wei for t in result.trainers) == sum(r.credited_wei for r in result.rounds) > 0
    assert result.escrow == BUDGET - sum(r.credited_wei for r in result.rounds)
    assert by_trainer[claimer.address].claimed_wei == claimed == by_trainer[claimer.address].credited_wei
    assert by_trainer[claimer.address].pending_wei == 0
    sealed = by_trainer[env.trainers[1].address]
    assert sealed.pending_wei == sealed.credited_wei > 0 and sealed.claimed_wei == 0
    assert by_trainer[env.trainers[3].address].outliers == 1  # the garbage file: rejected, so flagged

    files = write_audit_report(result, tmp_path / "audit")
    assert sorted(f.name for f in files.figures) == ["accuracy.png", "contributions.png", "payouts.png"]
    assert all(f.read_bytes().startswith(PNG_MAGIC) for f in files.figures)
    page = files.html.read_text()
    assert page.count("data:image/png;base64,") == 3 and "<table>" in page and claimer.address in page
    assert json.loads(files.json.read_text())["ok"] is True

    # the CLI on the same chain and store: one JSON document, exit 0
    shared: Chain = dataclasses.replace(env.chain, anvil=None)  # the command must not stop the test's chain
    monkeypatch.setattr("pocfl.chain.backends.connect", lambda _rpc: shared)
    out = tmp_path / "cli-audit"
    args = ["audit", str(p.id), "--rpc", "embedded", "--market", env.market.address]
    args += ["--ipfs", str(p.store.root), "--out", str(out)]
    cli = CliRunner().invoke(app, [*args, "--json"])
    assert cli.exit_code == 0, cli.output
    document = json.loads(cli.stdout)
    assert document["ok"] is True and document["files"]["html"] == str(out / "audit.html")
    assert [t["credited_wei"] for t in document["trainers"]] == [t.credited_wei for t in result.trainers]
    human = CliRunner().invoke(app, args)
    assert human.exit_code == 0, human.output
    assert "No difference" in human.stdout and "Payouts per trainer" in human.stdout

    # the revealed plaintext of the sealed update disappears: round 0 is unverifiable, said so (fails --strict)
    revealed = r0.submissions[1].note
    assert revealed is not None and revealed.startswith("plaintext ")
    p.store.path_of(revealed.removeprefix("plaintext ")).unlink()
    partial = p.audit().check()
    assert partial.unverifiable_rounds == [0] and [r.verdict for r in partial.rounds] == ["unverifiable", "verified"]
    assert partial.rounds[0].submissions[1].source == "unverifiable"
    assert any("round 0: not recomputed" in w for w in partial.warnings)
    with pytest.raises(AuditMismatchError, match=r"round 0: cannot be recomputed: submission 1 \("):
        p.audit(strict=True).check()

    # round 1's report is swapped on disk for round 0's (a valid report): the CID check fails, the audit says where
    assert first.report_cid is not None and second.report_cid is not None
    p.store.path_of(second.report_cid).write_bytes(p.store.path_of(first.report_cid).read_bytes())
    with pytest.raises(AuditMismatchError) as err:
        p.audit().check()
    assert len(err.value.differences) == 1
    message = err.value.differences[0].message
    assert message.startswith("round 1: the report with reportHash 0x") and "CidMismatchError" in message
    assert second.report_cid in message
    assert err.value.result is not None and err.value.result.rounds[1].verdict == "mismatch"
    cli = CliRunner().invoke(app, [*args, "--json"])
    assert cli.exit_code == 1
    failed = json.loads(cli.stdout)
    assert failed["ok"] is False and failed["error"] == "AuditMismatchError"
    assert failed["differences"][0]["round"] == 1 and failed["differences"][0]["field"] == "report"


def tamper(monkeypatch: pytest.MonkeyPatch, change: Callable[[int, RoundDecision], RoundDecision]) -> None:
    """Make the aggregator node post ``change(round, honest_decision)`` (its report agrees with what it posts)."""
    honest = decide_round

    def dishonest(*args: Any, **kwargs: Any) -> RoundDecision:
        decision = honest(*args, **kwargs)
        return change(kwargs["hyperparams"].round, decision)

    monkeypatch.setattr("aggregator.preparing.decide_round", dishonest)


def test_posted_scores_and_a_flipped_outlier_flag_that_differ_from_the_recomputation_are_caught(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project(env, tmp_path, trainers=3, num_rounds=2)

    def change(round_: int, d: RoundDecision) -> RoundDecision:
        if round_ == 0:  # inflate trainer 2's score
            return dataclasses.replace(d, scores=(d.scores[0], d.scores[1], d.scores[2] + 12_345))
        flags = list(d.outliers)  # round 1: flag trainer 0 as an outlier
        flags[0] = not flags[0]
        return dataclasses.replace(d, outliers=tuple(flags))

    tamper(monkeypatch, change)
    for r in range(2):
        for i in range(3):
            p.submit(i, r, p.update(i, r))
        p.post(r)
    monkeypatch.undo()

    with pytest.raises(AuditMismatchError) as err:
        p.audit().check()
    result = err.value.result
    assert result is not None
    honest0 = result.rounds[0].submissions[2]
    assert honest0.posted_score is not None and honest0.score is not None
    assert honest0.posted_score == honest0.score + 12_345
    t0, t2 = env.trainers[0].address, env.trainers[2].address
    messages = differences(err)
    assert (
        f"round 0, submission 2 ({t2[:6]}…{t2[-4:]}): posted score {honest0.posted_score}, recomputed {honest0.score}"
        in messages
    )
    assert f"round 1, submission 0 ({t0[:6]}…{t0[-4:]}): posted outlier flag yes, recomputed no" in messages
    fields = {(d.round, d.field, d.index) for d in err.value.differences}
    assert {(0, "score", 2), (1, "outlier", 0)} <= fields
    # the money follows: every share of both rounds moved, and nothing else differs
    assert {(0, "credit", i) for i in range(3)} | {(1, "credit", i) for i in range(3)} <= fields
    assert {f for _, f, _ in fields} == {"score", "outlier", "credit"}
    assert [r.verdict for r in result.rounds] == ["mismatch", "mismatch"]
    flagged = result.rounds[1].submissions[0]
    assert (flagged.posted_outlier, flagged.credited_wei, flagged.outlier) == (True, 0, False)
    assert flagged.expected_wei is not None and flagged.expected_wei > 0
    assert "2 differences" not in str(err.value) and f"{len(messages)} differences" in str(err.value)


def test_a_failed_round_a_sealed_update_the_node_could_not_open_and_the_owners_withdrawal_reconcile(
    env: Env, tmp_path: Path
) -> None:
    p = make_project(env, tmp_path, trainers=3, num_rounds=2)
    p.submit(0, 0, p.update(0, 0))
    warp_to(env.chain, env.market.project(p.id).aggregation_deadline)  # the aggregator never shows up
    env.client(env.outsider).fail_round(p.id, 0)
    # round 1 starts from the initial model again; the node runs without its key, so the sealed update is rejected
    p.submit(0, 1, p.update(0, 1))
    p.submit(1, 1, p.update(1, 1), encrypt=True)
    p.submit(2, 1, p.update(2, 1))
    warp_to(env.chain, env.market.project(p.id).submission_deadline)
    node = AggregatorNode(p.market(env.aggregator), p.id, state_dir=p.node_dir, clock=env.chain.now)
    assert node.run_round(1).status == "posted"
    withdrawn, _ = env.client(env.owner).withdraw_remaining(p.id)

    # no difference, but the rejection of the sealed update can be neither confirmed nor disproved: said so
    result = p.audit().check()
    assert [(r.state, r.verdict) for r in result.rounds] == [("failed", "failed"), ("posted", "unchecked")]
    sealed = result.rounds[1].submissions[1]
    assert (sealed.source, sealed.report_status, sealed.credited_wei) == ("unchecked", "rejected", 0)
    assert sealed.note is not None and "EncryptionError" in sealed.note
    assert (
        len(result.unchecked) == 1
        and f"round 1, submission 1 (trainer {env.trainers[1].address})" in (result.unchecked[0])
    )
    assert result.rounds[1].model_in == p.manifest.model.initial_weights_cid
    assert result.status == "finished" and result.escrow == 0
    assert result.withdrawn_wei == withdrawn == BUDGET - result.rounds[1].credited_wei
    assert {t.trainer for t in result.trainers} == {t.address for t in env.trainers[:3]}
