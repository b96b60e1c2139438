"""``scripts/bench_gas.py`` on the embedded chain: a row per external function, and the issue's gas goals.

Gas is deterministic (the script derives its accounts from fixed keys), so these are exact functional checks,
not timings.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pocfl.contracts import marketplace_abi

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_gas.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gas", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_gas", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load_script()


@pytest.fixture(scope="module")
def report(bench: ModuleType) -> dict[str, Any]:
    """The script's JSON output and exit status, from one run of ``main(["--json"])``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = bench.main(["--json"])
    data: dict[str, Any] = json.loads(out.getvalue())
    data["exit_status"] = status
    return data


def _state_changing_functions() -> set[str]:
    return {
        item["name"]
        for item in marketplace_abi()
        if item["type"] == "function" and item["stateMutability"] not in ("view", "pure")
    }


def test_a_row_per_external_function(report: dict[str, Any]) -> None:
    functions = {row["function"] for row in report["rows"]}
    expected = _state_changing_functions() | {"deployment"}
    assert expected <= functions, f"no row for {sorted(expected - functions)}"
    for row in report["rows"]:
        assert row["gas"] > 21_000, row


def test_post_round_sizes_and_rounds_are_measured(report: dict[str, Any]) -> None:
    scenarios = [row["scenario"] for row in report["rows"] if row["function"] == "postRound"]
    for n in ("1 trainer,", "3 trainers,", "10 trainers,", "50 trainers,"):
        assert any(s.startswith(n) and "first round" in s for s in scenarios), n
        assert any(s.startswith(n) and "later round" in s for s in scenarios), n


def test_issue_gas_goals_are_met(report: dict[str, Any]) -> None:
    rows = report["rows"]
    submits = [r["gas"] for r in rows if r["function"] == "submit"]
    claims = [r["gas"] for r in rows if r["function"] == "claim"]
    posts_10 = [
        r["gas"]
        for r in rows
        if r["function"] == "postRound" and r["scenario"].startswith("10 trainers,") and "verifier" not in r["scenario"]
    ]
    assert submits and max(submits) <= 80_000, submits
    assert claims and max(claims) <= 50_000, claims
    assert len(posts_10) == 2 and max(posts_10) <= 600_000, posts_10
    assert all(r["passed"] is not False for r in rows)
    assert report["bytecode"]["size"] <= 24_576
    assert report["ok"] is True
    assert report["exit_status"] == 0


def test_missed_goal_fails_and_formats(bench: ModuleType) -> None:
    rows = (
        bench.Row("submit", "first submitter", 90_000, bench.SUBMIT_GOAL),
        bench.Row("claim", "to the caller", 31_000, bench.CLAIM_GOAL),
        bench.Row("leave", "no stake", 32_000),
    )
    result = bench.BenchResult(rows, 14_000, "embedded")
    assert not result.ok
    table = bench.format_table(result)
    assert "FAIL" in table and "overall: FAIL" in table
    markdown = bench.format_markdown(result)
    assert markdown.splitlines()[0] == "| Function | Scenario | Gas used | Goal | Result |"
    assert "| `submit` | first submitter | 90,000 | <= 80,000 | FAIL |" in markdown
    assert "| `leave` | no stake | 32,000 | - | - |" in markdown
    assert bench.BenchResult(rows[1:], 30_000, "embedded").ok is False  # over the EIP-170 limit
