"""``pocfl demo --scripted``: the scripted project reconciles to the wei on the embedded chain and on anvil, and
every file it stored (models, updates, reports) is in its content store and re-hashes to its CID."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pocfl.cli.main import app
from pocfl.demo import (
    MODEL_SPEC,
    REPORT_FORMAT,
    ROUND_BUDGET,
    STAKE,
    DemoResult,
    initial_model,
    run_demo,
    script,
    trainer_update,
)
from pocfl.payouts import allocate, round_budget
from pocfl.store import EmbeddedStore, compute_cid
from pocfl.updates import decode_update, is_encrypted

pytestmark = pytest.mark.e2e


def expected_credits(num_rounds: int) -> dict[str, int]:
    """Each trainer's total credit, from the script alone (independently of the contract)."""
    budget = ROUND_BUDGET * num_rounds
    totals = {f"trainer-{i + 1}": 0 for i in range(3)}
    for rs in script(num_rounds):
        if rs.scores is None:
            continue
        shares = allocate(round_budget(budget, num_rounds), rs.scores, rs.outliers).shares
        for i, share in enumerate(shares):
            totals[f"trainer-{i + 1}"] += share
    return totals


def check(result: DemoResult) -> None:
    assert result.reconciled, result.problems
    assert result.problems == ()
    assert result.contract_balance == 0
    assert result.final_status == "finished"
    assert result.stake == STAKE
    credits = expected_credits(result.num_rounds)
    by_party = {p.party: p for p in result.parties}
    assert set(by_party) == {"owner", "aggregator", "trainer-1", "trainer-2", "trainer-3"}
    for name, total in credits.items():
        assert by_party[name].net == total
    assert by_party["aggregator"].net == 0
    assert by_party["owner"].net == -sum(credits.values())
    # Money is conserved: what the owner put in and did not get back went to the trainers.
    assert sum(p.net for p in result.parties) == 0
    assert all(p.gas > 0 for p in result.parties)


@pytest.fixture(autouse=True)
def no_store_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's default store is a temporary directory, whatever ``$POCFL_IPFS`` the shell has."""
    monkeypatch.delenv("POCFL_IPFS", raising=False)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-store")


@pytest.fixture(scope="module")
def embedded_result(demo_store: Path) -> Iterator[DemoResult]:
    yield run_demo("embedded", 3, ipfs=str(demo_store))


def test_demo_on_the_embedded_chain_reconciles(embedded_result: DemoResult) -> None:
    result = embedded_result
    check(result)
    assert [r.outcome for r in result.rounds] == ["posted", "posted", "failed"]
    dust, outliers, failed = result.rounds
    assert dust.unallocated == 1  # 10**18 * (5, 3, 1) / 9 rounds down by one wei in total
    assert [c.credited for c in dust.rows] == [555555555555555555, 333333333333333333, 111111111111111111]
    assert [(c.score, c.outlier, c.credited) for c in outliers.rows] == [
        (4, False, ROUND_BUDGET),
        (-2, False, 0),
        (7, True, 0),
    ]
    assert failed.credited == 0 and failed.unallocated == ROUND_BUDGET
    assert result.elapsed_s > 0  # wall time is reported, not asserted (machine-dependent)


def test_the_demo_moves_real_files_through_its_store(embedded_result: DemoResult, demo_store: Path) -> None:
    result = embedded_result
    store = EmbeddedStore(demo_store)
    assert result.store_kept and result.store == str(demo_store.resolve())
    doc = result.to_json()
    cids = [doc["initial_model_cid"], doc["final_model_cid"]]
    for r in doc["rounds"]:
        cids += [s["cid"] for s in r["submissions"]] + [c["cid"] for c in r["credits"]]
        cids += [r["model_cid"], r["report_cid"]] if r["outcome"] == "posted" else []
    assert set(cids) == set(doc["objects"]) and len(doc["objects"]) == 1 + 3 * 3 + 2 * 2
    for cid in cids:  # every CID the demo printed is in the store, and its bytes hash to it
        assert store.has(cid)
        assert compute_cid(store.get_bytes(cid)) == cid

    # The files are what they claim: a weights file of the demo's model, delta updates, JSON reports.
    assert store.get_bytes(result.initial_model_cid) == initial_model()
    assert result.final_model_cid == result.rounds[1].model_cid
    for r in result.rounds:
        for i, u in enumerate(r.submissions):
            data = store.get_bytes(u.cid)
            assert is_encrypted(data) == u.encrypted == (r.round == 0 and u.trainer == "trainer-2")
            if not u.encrypted:
                assert data == trainer_update(r.round, i, poisoned=script(3)[r.round].outliers[i])
                assert decode_update(data, MODEL_SPEC, kind="delta").vector().shape == (MODEL_SPEC.size,)
        if r.outcome != "posted":
            continue
        decode_update(store.get_bytes(r.model_cid), MODEL_SPEC, kind="weights")
        report = json.loads(store.get_bytes(r.report_cid))
        assert report["format"] == REPORT_FORMAT and report["round"] == r.round
        assert [x["cid"] for x in report["inputs"]] == [u.cid for u in r.submissions]
        assert [(x["score"], x["outlier"]) for x in report["inputs"]] == [(c.score, c.outlier) for c in r.rows]
        assert all(x["accepted"] for x in report["inputs"])
        assert report["model_out"] == r.model_cid
    # The poisoned update is far larger than the honest ones; the flag is plausible.
    norms = {x["trainer"]: x["delta_norm"] for x in json.loads(store.get_bytes(result.rounds[1].report_cid))["inputs"]}
    flagged = result.rounds[1].rows[2].address
    assert norms[flagged] > 10 * max(v for k, v in norms.items() if k != flagged)


def test_demo_script_repeats_and_never_fails_twice_in_a_row() -> None:
    rounds = script(7)
    assert [r.round for r in rounds] == list(range(7))
    missed = [r.round for r in rounds if r.scores is None]
    assert missed == [2, 5]
    assert all(b - a > 1 for a, b in itertools.pairwise(missed))
    with pytest.raises(ValueError):
        script(0)
    assert [r.round for r in rounds if any(r.encrypted)] == [0, 3, 6]
    # The plaintext files are deterministic: the same bytes, hence the same CIDs, on every run.
    assert trainer_update(1, 2) == trainer_update(1, 2) != trainer_update(1, 2, poisoned=True)


def test_demo_command_json_on_embedded() -> None:
    result = CliRunner().invoke(app, ["demo", "--scripted", "--json", "--rounds", "2"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout holds the JSON document only; progress went to stderr
    assert doc["reconciled"] is True and doc["problems"] == []
    assert doc["contract_balance_wei"] == 0
    assert [r["outcome"] for r in doc["rounds"]] == ["posted", "posted"]
    credits = expected_credits(2)
    for party in doc["parties"]:
        assert party["net_wei"] == party["end_wei"] - party["start_wei"] + party["gas_wei"]
        assert party["net_wei"] == party["expected_wei"]
        if party["party"] in credits:
            assert party["expected_wei"] == credits[party["party"]]
    assert "round 1" in result.stderr
    assert doc["store_kept"] is False and "deleted" in doc["store"]
    assert [len(r["submissions"]) for r in doc["rounds"]] == [3, 3]
    assert all(c["cid"].startswith("bafkrei") for r in doc["rounds"] for c in r["credits"])


def test_demo_command_exits_nonzero_when_something_does_not_reconcile(
    embedded_result: DemoResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = replace(embedded_result, problems=("trainer-1: net 1 wei, expected 2",))
    monkeypatch.setattr("pocfl.demo.run_demo", lambda *args, **kwargs: broken)
    result = CliRunner().invoke(app, ["demo", "--scripted"])
    assert result.exit_code == 1
    assert "mismatch" in result.stdout and "trainer-1: net 1 wei" in result.stdout


@pytest.mark.parametrize(
    "option",
    [
        ("--trainers", "5"),
        ("--attack", "scaling"),
        ("--free-riders", "0"),
        ("--hidden", "8"),
        ("--epochs", "1"),
        ("--prove",),
        ("--sketch-dim", "8"),
        ("--zk-cache", "zk"),
    ],
)
def test_scripted_refuses_the_options_of_the_fl_demo(option: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, ["demo", "--scripted", *option])
    assert result.exit_code == 2, result.output
    assert f"{option[0]} runs with the federated-learning demo" in " ".join(result.output.split())


def test_scripted_honours_seed_and_no_encrypt() -> None:
    result = CliRunner().invoke(app, ["demo", "--scripted", "--json", "--rounds", "1", "--seed", "7", "--no-encrypt"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reconciled"] is True and doc["problems"] == []
    (round0,) = doc["rounds"]
    assert not any(s["encrypted"] for s in round0["submissions"])
    assert "encrypted" not in round0["note"]
    # The files are the seed's: the plaintext updates of seed 7, not of the default seed.
    assert [s["cid"] for s in round0["submissions"]] == [compute_cid(trainer_update(0, i, seed=7)) for i in range(3)]
    assert doc["initial_model_cid"] == compute_cid(initial_model(7)) != compute_cid(initial_model())


def test_demo_on_anvil_reconciles() -> None:
    result = CliRunner().invoke(app, ["demo", "--scripted", "--rpc", "anvil"])
    assert result.exit_code == 0, result.output
    assert "Every balance reconciles to the wei." in result.stdout
    assert "Contract balance at the end: 0 wei" in result.stdout
    assert "trainer-3" in result.stdout
    assert "(encrypted)" in result.stdout and "new model bafkrei" in result.stdout
