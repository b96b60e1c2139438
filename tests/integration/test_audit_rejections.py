"""``pocfl audit`` against a censoring aggregator, and against the wrong store.

The aggregator node is made to reject one valid update (as unavailable, or a sealed one as corrupt without
revealing its plaintext); everything else it does honestly, so its report and its posted scores agree. The audit
must name the false rejection (round and trainer), or, where it cannot tell, list the rejection as unchecked and
fail ``--strict``; the trainer's evidence turns a sealed censorship into a difference.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pocfl.audit import AuditMismatchError, WrongStoreError
from pocfl.chain.backends import Chain
from pocfl.cli.main import app
from pocfl.market import SubmittedUpdate
from pocfl.rounds.evidence import Evidence, EvidenceError, load_evidence, write_evidence
from pocfl.rounds.inputs import ValidatedUpdate, validate_submission
from pocfl.store import EmbeddedStore
from tests.helpers import Env
from tests.integration.test_audit import Project, differences, make_project
from trainer_client import RoundOutcome, RoundStatus, TrainerClient, TrainerReporter
from trainer_client.self_check import check_treatment

pytestmark = pytest.mark.integration


def censor(monkeypatch: pytest.MonkeyPatch, trainer: str, reason: str) -> None:
    """Make the node reject ``trainer``'s update for ``reason`` (never revealing a sealed plaintext)."""

    def censoring(market: Any, u: SubmittedUpdate, *args: Any, **kwargs: Any) -> ValidatedUpdate:
        v = validate_submission(market, u, *args, **kwargs)
        if u.trainer.lower() == trainer.lower():
            return ValidatedUpdate(u, None, reason, v.encrypted, None)
        return v

    monkeypatch.setattr("aggregator.preparing.validate_submission", censoring)


def cli(env: Env, p: Project, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Any:
    shared: Chain = dataclasses.replace(env.chain, anvil=None)  # the command must not stop the test's chain
    monkeypatch.setattr("pocfl.chain.backends.connect", lambda _rpc: shared)
    args = ["audit", str(p.id), "--rpc", "embedded", "--market", env.market.address, *extra]
    return CliRunner().invoke(app, args)


def evidence_of(env: Env, p: Project, i: int, cid: str, plaintext: bytes, encrypted: bool) -> Evidence:
    return Evidence(
        chain_id=env.chain.chain_id,
        market=env.market.address,
        project_id=p.id,
        round=0,
        trainer=env.trainers[i].address,
        cid=cid,
        commitment=b"\0" * 32,  # the audit checks the plaintext against the on-chain commitment, not this copy
        encrypted=encrypted,
        plaintext=plaintext,
        report_status="rejected",
        report_reason="CorruptUpdateError: \x1b[31m" + "x" * 10_000,
    )


def test_a_valid_update_rejected_as_unavailable_is_a_difference_naming_round_and_trainer(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project(env, tmp_path, trainers=3, num_rounds=1)
    cids = [p.submit(i, 0, p.update(i, 0)) for i in range(3)]
    victim = env.trainers[1].address
    censor(monkeypatch, victim, f"ObjectNotFoundError: {cids[1]} is not in the store")
    p.post(0)
    monkeypatch.undo()

    with pytest.raises(AuditMismatchError) as err:
        p.audit().check()
    false = [m for m in differences(err) if "false rejection" in m]
    assert len(false) == 1 and false[0].startswith("round 0, submission 1 (") and victim in false[0]
    result = err.value.result
    assert result is not None and result.rounds[0].verdict == "mismatch"
    s = result.rounds[0].submissions[1]
    assert s.credited_wei == 0 and s.expected_wei is not None and s.expected_wei > 0  # what it should have got
    assert {(d.round, d.field, d.index) for d in err.value.differences} >= {(0, "status", 1), (0, "credit", 1)}

    out = tmp_path / "cli-audit"
    run = cli(env, p, monkeypatch, "--ipfs", str(p.store.root), "--out", str(out))
    assert run.exit_code == 1
    assert "false rejection" in run.output and "round 0, submission 1" in run.output

    # the object vanishes from every store: the audit cannot tell who is right; unchecked, not a pass under --strict
    data = p.store.path_of(cids[1]).read_bytes()
    p.store.path_of(cids[1]).unlink()
    lost = p.audit().check()
    assert lost.rounds[0].verdict == "unchecked" and lost.rounds[0].submissions[1].source == "unchecked"
    assert len(lost.unchecked) == 1 and "round 0, submission 1" in lost.unchecked[0] and victim in lost.unchecked[0]
    with pytest.raises(AuditMismatchError, match=r"round 0, submission 1 .*rejection cannot be checked"):
        p.audit(strict=True).check()

    # another store (an IPFS node the auditor also asks) holds it: the false rejection is proven again
    extra = EmbeddedStore(tmp_path / "extra")
    assert extra.put_bytes(data) == cids[1]
    with pytest.raises(AuditMismatchError) as again:
        p.audit(extra_stores=[extra]).check()
    assert any("false rejection" in m and "extra" in m and victim in m for m in differences(again))


def test_a_sealed_update_rejected_as_corrupt_is_unchecked_until_the_trainers_evidence_disproves_it(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project(env, tmp_path, trainers=3, num_rounds=1)
    plaintexts = [p.update(i, 0) for i in range(3)]
    cids = [p.submit(i, 0, plaintexts[i], encrypt=i == 1) for i in range(3)]
    victim = env.trainers[1].address
    censor(monkeypatch, victim, "CorruptUpdateError: the update file is not a safetensors file")
    p.post(0)
    monkeypatch.undo()

    # no evidence: no difference, but never a silent pass
    result = p.audit().check()
    assert result.rounds[0].verdict == "unchecked" and result.rounds[0].submissions[1].source == "unchecked"
    assert len(result.unchecked) == 1
    assert result.unchecked[0].startswith(f"round 0, submission 1 (trainer {victim}): sealed and never revealed")
    with pytest.raises(AuditMismatchError) as strict:
        p.audit(strict=True).check()
    assert [(d.round, d.field, d.trainer) for d in strict.value.differences] == [(0, "unchecked", victim)]
    out = tmp_path / "cli-audit"
    store_args = ["--ipfs", str(p.store.root), "--out", str(out)]
    run = cli(env, p, monkeypatch, *store_args)
    assert run.exit_code == 0, run.output
    assert "1 rejection unchecked" in run.output and f"trainer {victim}" in run.output
    assert "1 rejection(s) unchecked" in (out / "audit.html").read_text() and victim in (out / "audit.html").read_text()
    document = json.loads(cli(env, p, monkeypatch, *store_args, "--json").stdout)
    assert document["ok"] is True and document["unchecked"] == result.unchecked
    assert document["rounds"][0]["verdict"] == "unchecked"
    assert cli(env, p, monkeypatch, *store_args, "--strict").exit_code == 1

    # the trainer's evidence: its plaintext opens the on-chain commitment and decodes, so "corrupt" is false
    path = write_evidence(tmp_path / "evidence", evidence_of(env, p, 1, cids[1], plaintexts[1], encrypted=True))
    loaded = load_evidence(path)
    assert loaded.plaintext == plaintexts[1] and loaded.report_reason is not None
    assert len(loaded.report_reason) <= 300 and "\x1b" not in loaded.report_reason  # trainer text is bounded
    with pytest.raises(AuditMismatchError) as err:
        p.audit(evidence=[loaded]).check()
    false = [d for d in err.value.differences if "false rejection" in d.message]
    assert [(d.round, d.index, d.trainer) for d in false] == [(0, 1, victim)]
    assert err.value.result is not None and err.value.result.rounds[0].submissions[1].source == "evidence"
    run = cli(env, p, monkeypatch, *store_args, "--evidence", str(path))
    assert run.exit_code == 1 and "false rejection" in run.output and "round 0, submission 1" in run.output

    # evidence that does not open the commitment (another trainer's plaintext) is invalid evidence, not a difference
    forged = write_evidence(tmp_path / "forged", evidence_of(env, p, 1, cids[1], plaintexts[0], encrypted=True))
    checked = p.audit(evidence=[load_evidence(forged)]).check()
    assert checked.unchecked and any("invalid evidence" in line for line in checked.evidence)

    # a tampered evidence plaintext is refused with a named error
    forged.with_suffix(".bin").write_bytes(plaintexts[2])
    with pytest.raises(EvidenceError, match="sha256"):
        load_evidence(forged)
    doc = json.loads(path.read_text())
    doc["plaintext_file"] = "../../etc/passwd"
    path.write_text(json.dumps(doc))
    with pytest.raises(EvidenceError, match="plaintext_file"):
        load_evidence(path)


def test_an_audit_against_a_store_without_the_project_fails_and_keeps_the_earlier_report(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project(env, tmp_path, trainers=2, num_rounds=1)
    for i in range(2):
        p.submit(i, 0, p.update(i, 0))
    p.post(0)
    out = tmp_path / "audit"
    good = cli(env, p, monkeypatch, "--ipfs", str(p.store.root), "--out", str(out))
    assert good.exit_code == 0, good.output
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    assert {"audit.html", "audit.json", "accuracy.png", "contributions.png", "payouts.png"} == set(before)

    empty = tmp_path / "empty-store"
    with pytest.raises(WrongStoreError, match=f"has none of project {p.id}'s objects"):
        dataclasses.replace(p, store=EmbeddedStore(empty)).audit()
    wrong = cli(env, p, monkeypatch, "--ipfs", str(empty), "--out", str(out))
    assert wrong.exit_code == 1
    assert f"has none of project {p.id}'s objects" in wrong.output and "wrong --ipfs?" in wrong.output
    assert "difference" not in wrong.output
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".audit.")] == []  # no leftover temp folder

    # a second good audit replaces the report in one rename and keeps the first as audit.previous
    assert cli(env, p, monkeypatch, "--ipfs", str(p.store.root), "--out", str(out)).exit_code == 0
    previous = tmp_path / "audit.previous"
    assert {f.name: f.read_bytes() for f in previous.iterdir()} == before


def test_the_censored_trainer_says_so_and_its_saved_evidence_convicts_the_aggregator(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project(env, tmp_path, trainers=3, num_rounds=1)
    victim = env.trainers[1].address
    x, y = p.data
    posted: list[str] = []

    def others_submit_and_the_node_posts(_seconds: float) -> None:
        if not posted:  # the victim has submitted (sealed: the manifest names the aggregator's key)
            p.submit(0, 0, p.update(0, 0))
            p.submit(2, 0, p.update(2, 0))
            censor(monkeypatch, victim, "CorruptUpdateError: the update file is not a safetensors file")
            posted.append(str(p.post(0).report_cid))
            monkeypatch.undo()

    lines: list[str] = []

    class Lines(TrainerReporter):
        def settled(self, outcome: RoundOutcome) -> None:
            lines.append(str(outcome.complaint))

    state = tmp_path / "trainer-state"
    client = TrainerClient(
        p.market(env.trainers[1]),
        p.id,
        x[120:240],
        y[120:240],
        state_dir=state,
        reporter=Lines(),
        sleep=others_submit_and_the_node_posts,
    )
    [summary] = client.run(rounds=1, poll=1.0, max_wait=30)
    assert summary.result.encrypted is True and summary.outcome is not None
    complaint, evidence = summary.outcome.complaint, summary.outcome.evidence
    assert complaint is not None and evidence is not None and lines == [complaint]
    assert complaint.startswith("round 0: the aggregator REJECTED this trainer's update: CorruptUpdateError")
    assert f"--evidence {evidence}" in complaint and Path(evidence).parent == state / "evidence"
    saved = load_evidence(Path(evidence))
    assert (saved.round, saved.trainer, saved.cid, saved.encrypted) == (0, victim, summary.result.cid, True)
    assert saved.commitment == summary.result.commitment and saved.report_status == "rejected"
    assert "plaintext" not in summary.result.to_json()  # kept in memory for evidence, never echoed

    with pytest.raises(AuditMismatchError) as err:
        p.audit(evidence=[saved]).check()
    assert [(d.round, d.trainer) for d in err.value.differences if "false rejection" in d.message] == [(0, victim)]


def test_a_sealed_update_kept_but_never_revealed_is_recomputed_through_the_trainers_evidence(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project(env, tmp_path, trainers=3, num_rounds=1)
    plaintexts = [p.update(i, 0) for i in range(3)]
    cids = [p.submit(i, 0, plaintexts[i], encrypt=i == 1) for i in range(3)]

    def hiding(market: Any, u: SubmittedUpdate, *args: Any, **kwargs: Any) -> ValidatedUpdate:
        v = validate_submission(market, u, *args, **kwargs)
        return dataclasses.replace(v, plaintext=None)  # accepted and scored, never revealed

    monkeypatch.setattr("aggregator.preparing.validate_submission", hiding)
    p.post(0)
    monkeypatch.undo()
    hidden = p.audit().check()
    assert hidden.unverifiable_rounds == [0] and hidden.rounds[0].submissions[1].source == "unverifiable"

    # the trainer notices (its update was kept but nobody can check the round) and saves its evidence
    [posted] = env.market.events("RoundPosted", projectId=p.id)
    found = check_treatment(
        p.market(env.trainers[1]),
        p.id,
        0,
        posted,
        cid=cids[1],
        commitment=env.market.submissions(p.id, 0)[1].commitment,
        encrypted=True,
        plaintext=plaintexts[1],
        evidence_dir=tmp_path / "evidence",
    )
    assert found.complaint is not None and "never revealed it" in found.complaint and found.evidence is not None
    result = p.audit(evidence=[load_evidence(found.evidence)]).check()
    assert [r.verdict for r in result.rounds] == ["verified"] and result.rounds[0].submissions[1].source == "evidence"
    assert [s.score for s in result.rounds[0].submissions] == [s.posted_score for s in result.rounds[0].submissions]


def test_a_restarted_trainer_still_has_its_plaintext_and_its_evidence_disproves_a_sealed_not_found(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project(env, tmp_path, trainers=3, num_rounds=2)
    victim = env.trainers[1].address
    x, y = p.data
    state = tmp_path / "trainer-state"

    def process() -> TrainerClient:  # each call: a fresh trainer process with the same state folder
        return TrainerClient(p.market(env.trainers[1]), p.id, x[120:240], y[120:240], state_dir=state)

    submitted = process().train_round(0)
    assert submitted.status is RoundStatus.SUBMITTED and submitted.encrypted is True
    assert [f.suffix for f in (state / "evidence" / "pending").iterdir()] == [".bin"]
    p.submit(0, 0, p.update(0, 0))
    p.submit(2, 0, p.update(2, 0))
    censor(monkeypatch, victim, "ObjectNotFoundError: not found")
    p.post(0)
    monkeypatch.undo()

    restarted = process()
    again = restarted.train_round(0)
    assert again.status is RoundStatus.ALREADY_SUBMITTED and again.plaintext is None
    outcome = restarted.outcome(0)
    assert outcome is not None
    checked = restarted.check_treatment(again, outcome)
    assert checked.complaint is not None and "REJECTED" in checked.complaint and checked.evidence is not None
    assert list((state / "evidence" / "pending").iterdir()) == []  # checked: the kept plaintext is dropped
    with pytest.raises(AuditMismatchError) as err:
        p.audit(evidence=[load_evidence(Path(checked.evidence))]).check()
    assert [(d.round, d.trainer) for d in err.value.differences if "false rejection" in d.message] == [(0, victim)]
