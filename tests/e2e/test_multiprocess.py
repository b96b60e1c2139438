"""The multi-process run on real services: ``scripts/run_multiprocess.py`` in a subprocess.

anvil, an IPFS daemon, the owner, the aggregator and every trainer run as separate OS processes; the script starts
and stops them all. The tests check its exit code, that every round was posted, that every payout reconciles to the
wei (claims equal credits, the owner's withdrawal takes the rest, the contract ends empty), that ``pocfl audit``
passed where the audit ran, and that no process the script recorded outlives it.

Cost on 2 cores: the plain engine (3 trainers x 2 rounds, with the audit) 67-72 s; Flower's deployment engine
(3 trainers x 1 round: SuperLink, 3 SuperNodes, ``flwr run``) 117-136 s, hence also marked ``slow``
(``-m "e2e and not slow"`` keeps only the plain run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "run_multiprocess.py"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def run_script(
    tmp_path: Path, *args: str, timeout: float, script: Path = SCRIPT
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Run the script; on timeout send SIGTERM (its ``finally`` stops the children) before failing."""
    work = tmp_path / "work"
    summary = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCFL_")}
    cmd = [sys.executable, str(script), *args, "--work", str(work), "--summary", str(summary)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        pytest.fail(f"{' '.join(cmd)} ran over {timeout:.0f} s\n{output[-4000:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{output[-6000:]}"
    pids = json.loads((work / "pids.json").read_text())
    return json.loads(summary.read_text()), pids, output


def check_reconciled(doc: dict[str, Any], *, trainers: int, rounds: int) -> None:
    assert doc["status"] == "finished"
    assert [r["round"] for r in doc["rounds"]] == list(range(rounds)), "every round posted"
    for r in doc["rounds"]:
        assert r["submissions"] == trainers and r["rejected"] == 0
        assert 0.0 <= r["accuracy"] <= 1.0
    assert len(doc["payouts"]) == trainers
    for p in doc["payouts"]:
        assert p["claimed_wei"] == p["credited_wei"] and p["left_wei"] == 0, p
    credited = sum(r["credited_wei"] for r in doc["rounds"])
    assert sum(p["claimed_wei"] for p in doc["payouts"]) == credited
    assert credited + doc["withdrawn_wei"] == doc["budget_wei"]
    assert doc["contract_balance_wei"] == 0
    assert doc["ok"] and all(doc["checks"].values()), doc["checks"]


def check_no_survivors(pids: dict[str, Any], *names: str) -> None:
    started = {p["name"]: p["pid"] for p in pids["processes"]}
    for name in names:
        assert name in started, f"{name} was not started as its own process: {sorted(started)}"
    assert len({started[n] for n in names}) == len(names), "each actor runs in its own process"
    recorded = [p["pid"] for p in pids["processes"]] + [p["pid"] for p in pids["descendants"]]
    assert os.getpid() not in recorded
    survivors = [pid for pid in recorded if _alive(pid)]
    assert not survivors, f"processes outlived the script: {survivors}"


def test_plain_engine_three_trainers_two_rounds(tmp_path: Path) -> None:
    doc, pids, output = run_script(
        tmp_path, "--engine", "plain", "--trainers", "3", "--rounds", "2", "--epochs", "1", timeout=300
    )
    check_reconciled(doc, trainers=3, rounds=2)
    audit = doc["audit"]
    assert audit is not None, "pocfl audit exists and must have run"
    assert audit["ok"] and audit["exit_code"] == 0
    assert Path(audit["files"]["html"]).is_file()
    names = ("anvil", "ipfs", "deploy", "owner-create", "aggregator", "trainer0", "trainer1", "trainer2")
    check_no_survivors(pids, *names)
    assert "checks: every_round_posted ok" in output


def test_plain_engine_with_proven_rounds(tmp_path: Path) -> None:
    """The CLI's proven path, each actor its own process: ``pocfl deploy --with-verifier``, ``pocfl project manifest
    --prove-slots``, ``pocfl project create --verifier``, ``pocfl train`` (feature commitments), ``pocfl aggregate
    --zk-cache`` (proofs), and the contract verifying every round."""
    doc, pids, output = run_script(
        tmp_path, "--engine", "plain", "--trainers", "3", "--rounds", "2", "--epochs", "1", "--prove", timeout=600
    )
    check_reconciled(doc, trainers=3, rounds=2)
    assert doc["checks"]["every_round_proven"] is True
    assert all(r["proven"] for r in doc["rounds"])
    assert doc["audit"] is not None and doc["audit"]["ok"]
    assert "pocfl deploy --with-verifier: EzklRoundVerifier at 0x" in output
    check_no_survivors(pids, "anvil", "ipfs", "deploy", "owner-create", "aggregator", "trainer0", "trainer1")


@pytest.mark.slow
def test_flower_deployment_engine(tmp_path: Path) -> None:
    doc, pids, output = run_script(
        tmp_path,
        "--engine",
        "flower",
        *("--trainers", "3", "--rounds", "1", "--epochs", "1", "--no-audit"),
        timeout=420,
    )
    check_reconciled(doc, trainers=3, rounds=1)
    names = ("anvil", "ipfs", "superlink", "supernode-trainer0", "supernode-trainer1", "supernode-trainer2")
    check_no_survivors(pids, *names, "flwr-run")
    assert pids["descendants"], "Flower's SuperExec / ServerApp / ClientApp processes were seen and recorded"
    assert "flower-superlink --insecure" in output


@pytest.mark.slow
def test_flower_simulation_engine() -> None:
    """The same Flower app on the simulation runtime (Ray): SuperNodes simulated inside one process tree."""
    pytest.importorskip("ray", reason="Flower's simulation runtime needs flwr[simulation] (Ray)")
    # Ray puts AF_UNIX sockets under the work folder; pytest's tmp paths exceed their 107-byte limit.
    short = Path(tempfile.mkdtemp(prefix="pfsim-", dir="/tmp"))
    try:
        doc, pids, _ = run_script(short, *_SIM_ARGS, timeout=420, script=REPO / "scripts" / "run_simulation.py")
    finally:
        shutil.rmtree(short, ignore_errors=True)
    check_reconciled(doc, trainers=2, rounds=1)
    check_no_survivors(pids, "anvil", "ipfs")


_SIM_ARGS = ("--trainers", "2", "--rounds", "1", "--epochs", "1", "--no-audit")


@pytest.mark.slow
def test_flower_simulation_engine_on_a_wine_csv() -> None:
    """A non-digits task through Flower's simulation runtime: ``--data wine.csv`` (13 features, 3 classes) makes
    the manifest from a held-out share of the file and feeds the simulated ClientApps disjoint shares of the rest;
    the model both apps use is the manifest's."""
    pytest.importorskip("ray", reason="Flower's simulation runtime needs flwr[simulation] (Ray)")
    from sklearn.datasets import load_wine

    short = Path(tempfile.mkdtemp(prefix="pfwine-", dir="/tmp"))
    try:
        wine = load_wine()
        csv = short / "wine.csv"
        header = ",".join([*(f"f{i}" for i in range(13)), "label"])
        rows = [",".join([*(f"{v:g}" for v in x), str(int(y))]) for x, y in zip(wine.data, wine.target, strict=True)]
        csv.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        doc, pids, output = run_script(
            short, *_SIM_ARGS, "--data", str(csv), timeout=420, script=REPO / "scripts" / "run_simulation.py"
        )
        manifest = json.loads((short / "work" / "actors" / "owner" / "manifest.json").read_text())
    finally:
        shutil.rmtree(short, ignore_errors=True)
    check_reconciled(doc, trainers=2, rounds=1)
    check_no_survivors(pids, "anvil", "ipfs")
    assert (manifest["model"]["n_features"], manifest["model"]["n_classes"]) == (13, 3)
    assert "--data " in output and "35 validation rows, 143 training rows" in output
