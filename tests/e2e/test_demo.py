"""``pocfl demo``: the scripted project reconciles to the wei on the embedded chain and on anvil."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from pocfl.cli.main import app
from pocfl.demo import ROUND_BUDGET, STAKE, DemoResult, raw_cid, run_demo, script
from pocfl.payouts import allocate, round_budget

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


@pytest.fixture(scope="module")
def embedded_result() -> DemoResult:
    return run_demo("embedded", 3)


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
    assert result.elapsed_s < 30


def test_demo_script_repeats_and_never_fails_twice_in_a_row() -> None:
    rounds = script(7)
    assert [r.round for r in rounds] == list(range(7))
    missed = [r.round for r in rounds if r.scores is None]
    assert missed == [2, 5]
    assert all(b - a > 1 for a, b in itertools.pairwise(missed))
    with pytest.raises(ValueError):
        script(0)
    assert raw_cid(b"x").startswith("bafkrei") and len(raw_cid(b"x")) == 59


def test_demo_command_json_on_embedded() -> None:
    result = CliRunner().invoke(app, ["demo", "--json", "--rounds", "2"])
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


def test_demo_command_exits_nonzero_when_something_does_not_reconcile(
    embedded_result: DemoResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = replace(embedded_result, problems=("trainer-1: net 1 wei, expected 2",))
    monkeypatch.setattr("pocfl.demo.run_demo", lambda *args, **kwargs: broken)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 1
    assert "mismatch" in result.stdout and "trainer-1: net 1 wei" in result.stdout


def test_demo_on_anvil_reconciles() -> None:
    result = CliRunner().invoke(app, ["demo", "--rpc", "anvil"])
    assert result.exit_code == 0, result.output
    assert "Every balance reconciles to the wei." in result.stdout
    assert "Contract balance at the end: 0 wei" in result.stdout
    assert "trainer-3" in result.stdout
