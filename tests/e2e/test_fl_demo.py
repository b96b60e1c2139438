"""``pocfl demo``: a real federated-learning project (8 trainers, 2 attackers, 1 free rider) reconciles to the wei,
pays honest trainers only, learns, and leaves every file it stored verifiable; plus ``pocfl project manifest`` and
``pocfl project create --manifest``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pocfl.cli.main import app
from pocfl.demo import FlDemoConfig, FlDemoResult
from pocfl.fl_project import validation_commitment
from pocfl.manifest import ProjectManifest
from pocfl.payouts import allocate
from pocfl.rounds.report import RoundReport
from pocfl.store import EmbeddedStore, compute_cid
from pocfl.updates import decode_update, is_encrypted
from tests.e2e.conftest import Actors, Cli

pytestmark = pytest.mark.e2e

ETH = 10**18
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fl_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fl-demo-store")


@pytest.fixture(scope="module")
def fl_run(fl_store: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """``pocfl demo --json`` with the default settings (4 rounds), its files kept in ``fl_store``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("POCFL_IPFS", raising=False)
        result = CliRunner().invoke(app, ["demo", "--json", "--ipfs", str(fl_store)])
    assert result.exit_code == 0, result.output
    yield json.loads(result.stdout), result.stderr


def trainers_by_group(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in doc["trainers"]:
        groups.setdefault(t["group"], []).append(t)
    return groups


def test_the_fl_demo_reconciles_to_the_wei(fl_run: tuple[dict[str, Any], str]) -> None:
    doc, stderr = fl_run
    assert doc["demo"] == "fl" and doc["reconciled"] is True and doc["problems"] == []
    assert doc["audit_ok"] is True, "pocfl audit recomputes the finished demo project and finds no difference"
    assert doc["contract_balance_wei"] == 0 and doc["final_status"] == "finished"
    assert doc["num_rounds"] == 4 and doc["budget_wei"] == 4 * ETH and doc["stake_wei"] == ETH // 10
    assert [r["outcome"] for r in doc["rounds"]] == ["posted"] * 4
    earned = {t["name"]: t["earned_wei"] for t in doc["trainers"]}
    parties = {p["party"]: p for p in doc["parties"]}
    assert set(parties) == {"owner", "aggregator", *earned}
    for p in doc["parties"]:
        assert p["net_wei"] == p["end_wei"] - p["start_wei"] + p["gas_wei"] == p["expected_wei"]
        assert p["gas_wei"] > 0
    for name, wei in earned.items():
        assert parties[name]["net_wei"] == wei  # the stake came back in full
    assert parties["aggregator"]["net_wei"] == 0
    assert parties["owner"]["net_wei"] == -sum(earned.values())
    assert sum(p["net_wei"] for p in doc["parties"]) == 0
    for r in doc["rounds"]:
        # Independently of the contract: the scores and flags in the report, split by pocfl.payouts.
        shares = allocate(ETH, [e["score"] for e in r["entries"]], [e["outlier"] for e in r["entries"]]).shares
        assert [e["credited_wei"] for e in r["entries"]] == list(shares)
        assert r["credited_wei"] == sum(shares) and r["credited_wei"] + r["unallocated_wei"] == ETH
    assert "round 3 posted" in stderr  # progress went to stderr, stdout holds the JSON only


def test_attackers_and_the_free_rider_earn_less_than_every_honest_trainer(fl_run: tuple[dict[str, Any], str]) -> None:
    doc, _ = fl_run
    groups = trainers_by_group(doc)
    assert [len(groups[g]) for g in ("honest", "attacker", "free rider")] == [5, 2, 1]
    assert sorted(t["role"] for t in groups["attacker"]) == ["scaling", "sign_flip"]
    honest_min = min(t["earned_wei"] for t in groups["honest"])
    assert honest_min > ETH // 10  # every honest trainer earned something real
    for t in groups["attacker"] + groups["free rider"]:
        assert t["earned_wei"] < honest_min
        assert t["rounds_flagged"] > doc["num_rounds"] / 2, t  # flagged in most rounds
    assert all(t["earned_wei"] == 0 for t in groups["free rider"])
    assert sum(t["earned_wei"] for t in groups["honest"]) >= 4 * ETH - 100  # all but rounding dust
    assert doc["incentives_hold"] is True
    for r in doc["rounds"]:
        flagged = {e["trainer"] for e in r["entries"] if e["outlier"]}
        assert r["outliers"] == sorted(flagged, key=lambda n: int(n.split("-")[1]))
        assert all(e["credited_wei"] == 0 for e in r["entries"] if e["outlier"] or e["score"] <= 0)


def test_the_global_model_learns(fl_run: tuple[dict[str, Any], str]) -> None:
    doc, _ = fl_run
    accuracy = [r["accuracy"] for r in doc["rounds"]]
    assert accuracy[-1] > accuracy[0] > doc["rounds"][0]["accuracy_before"]
    assert accuracy[-1] > 0.6
    for before, after in zip(doc["rounds"], doc["rounds"][1:], strict=False):
        assert after["accuracy_before"] == pytest.approx(before["accuracy"])


def test_every_stored_object_verifies_and_matches_the_chain(fl_run: tuple[dict[str, Any], str], fl_store: Path) -> None:
    doc, _ = fl_run
    store = EmbeddedStore(fl_store)
    assert doc["store_kept"] is True
    for cid in doc["objects"]:  # every CID the demo stored reads back and hashes to itself
        assert compute_cid(store.get_bytes(cid)) == cid
    manifest = ProjectManifest.from_json(store.get_bytes(doc["manifest_cid"]))
    assert manifest.model.initial_weights_cid == doc["initial_weights_cid"]
    assert manifest.model.hidden == 32 and manifest.aggregator_public_key is not None
    assert "0x" + validation_commitment(manifest).hex() == doc["validation_set_commitment"]
    spec = manifest.model.spec()
    decode_update(store.get_bytes(doc["initial_weights_cid"]), spec, kind="weights")
    objects = set(doc["objects"])
    model_in = doc["initial_weights_cid"]
    for r in doc["rounds"]:
        report = RoundReport.from_json(store.get_bytes(r["report_cid"]))
        assert report.round == r["round"] and report.model_in == model_in and report.model_out == r["model_cid"]
        assert report.accuracy == r["accuracy"]
        assert [(s.trainer, s.cid, s.score, s.outlier, s.status) for s in report.submissions] == [
            (e["address"], e["cid"], e["score"], e["outlier"], e["status"]) for e in r["entries"]
        ]
        for e in r["entries"]:
            assert e["encrypted"] is True and is_encrypted(store.get_bytes(e["cid"]))
            assert e["plaintext_cid"] is not None and {e["cid"], e["plaintext_cid"]} <= objects
            decode_update(store.get_bytes(e["plaintext_cid"]), spec, kind="delta")
        assert {r["model_cid"], r["report_cid"]} <= objects
        model_in = r["model_cid"]
    assert doc["final_model_cid"] == model_in


def test_rounds_are_timed_by_phase(fl_run: tuple[dict[str, Any], str]) -> None:
    doc, _ = fl_run
    for r in doc["rounds"]:
        t = r["timings_s"]
        assert set(t) == {"train", "store", "aggregate", "chain", "total"}
        assert all(t[k] >= 0 for k in t)
        assert t["train"] + t["store"] + t["aggregate"] + t["chain"] == pytest.approx(t["total"], abs=0.01)
    assert doc["timings_s"]["chain_requests"] > doc["timings_s"]["chain_cached"] > 0
    # Wall time is a benchmark figure (docs/benchmarks.md), never a test assertion: it depends on the machine.
    assert doc["elapsed_s"] > 0


def test_the_console_script_runs_a_three_round_demo(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("pocfl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCFL_")}
    # The repository root on the path: an editable install made before trainer_client existed does not map it.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["POCFL_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [str(script), "demo", "--rounds", "3"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Rounds" in out and "Payouts" in out and "Time per round" in out
    assert "Every credit and balance reconciles to the wei." in out
    assert "Contract balance at the end: 0 wei; project finished" in out
    assert "flag" in out and "free_rider" in out and "sign_flip" in out
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists()  # the default store is a temporary directory


def test_a_bad_mix_of_roles_fails_before_anything_starts() -> None:
    runner = CliRunner()
    too_many = runner.invoke(app, ["demo", "--json", "--trainers", "3", "--free-riders", "1"])
    assert too_many.exit_code == 1
    assert json.loads(too_many.stdout)["error"] == "ConfigError"
    unknown = runner.invoke(app, ["demo", "--json", "--attack", "bribery"])
    assert unknown.exit_code == 1
    assert json.loads(unknown.stdout)["error"] == "UnknownAttackError"
    assert FlDemoConfig(attacks=(), free_riders=0).roles() == ("honest",) * 8
    assert FlDemoConfig().roles().count("honest") == 5


def test_the_demo_exits_nonzero_when_something_does_not_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = FlDemoResult(
        chain="embedded",
        chain_id=1,
        market="0x" + "00" * 20,
        project_id=1,
        config=FlDemoConfig(),
        budget=4 * ETH,
        stake=ETH // 10,
        trainers=(),
        rounds=(),
        parties=(),
        contract_balance=1,
        final_status="finished",
        transactions=0,
        elapsed_s=1.0,
        timings={},
        problems=("the contract still holds 1 wei",),
    )
    monkeypatch.setattr("pocfl.demo.run_fl_demo", lambda *args, **kwargs: broken)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 1
    assert "mismatch" in result.stdout and "the contract still holds 1 wei" in result.stdout
    as_json = CliRunner().invoke(app, ["demo", "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["reconciled"] is False


def test_project_manifest_then_create_with_it(cli: Cli, actors: Actors, pocfl_home: Path) -> None:
    own = ("--key", actors.owner.env)
    cli("deploy", *own)
    path = pocfl_home.parent / "manifest.json"
    made = cli.json("project", "manifest", str(path), "--hidden", "8", "--seed", "3", "--lr", "0.2", rpc=False)
    manifest = ProjectManifest.from_json(path.read_bytes())
    assert made["manifest_cid"] == compute_cid(path.read_bytes())
    assert manifest.model.hidden == 8 and manifest.training.learning_rate == 0.2
    assert manifest.validation.recipe == "sklearn-digits:seed=3:fraction=0.2"
    assert EmbeddedStore(pocfl_home / "store").has(manifest.model.initial_weights_cid)
    base = ["project", "create", *own, "--aggregator", actors.aggregator.address, "--rounds", "1", "--budget", "1"]
    base += ["--submission-window", "60", "--aggregation-window", "60", "--start-in", "60"]
    base += ["--min-trainers", "1", "--max-trainers", "2"]
    created = cli.json(*base, "--manifest", str(path))
    assert created["initial_model_cid"] == made["manifest_cid"]
    assert created["params"]["validation_set_commitment"] == made["validation_set_commitment"]
    both = cli.json(*base, "--manifest", str(path), "--initial-model", str(path), code=1)
    assert both["error"] == "ConfigError" and "--manifest" in both["message"]
    wrong = cli.json(*base, "--manifest", str(path), "--validation-commitment", "0x" + "ab" * 32, code=1)
    assert wrong["error"] == "ConfigError" and "validation" in wrong["message"]


def test_project_manifest_from_a_wine_csv_then_create(cli: Cli, actors: Actors, pocfl_home: Path) -> None:
    """Issue 14: a CSV with 13 features and 3 classes becomes a project from the CLI alone."""
    import numpy as np
    from sklearn.datasets import load_wine

    wine = load_wine()
    csv = pocfl_home.parent / "wine.csv"
    np.savetxt(csv, np.column_stack([wine.data, wine.target]), delimiter=",", fmt="%.10g")
    own = ("--key", actors.owner.env)
    cli("deploy", *own)
    path = pocfl_home.parent / "wine.json"
    argv = ["project", "manifest", str(path), "--validation", str(csv), "--name", "wine", "--hidden", "16"]
    made = cli.json(*argv, "--epochs", "3", "--batch-size", "8", "--lr", "0.05", "--momentum", "0.5", rpc=False)
    manifest = ProjectManifest.from_json(path.read_bytes())
    assert (made["features"], made["classes"], made["transform"]) == (13, 3, "standardize")
    assert (manifest.model.n_features, manifest.model.n_classes, manifest.model.hidden) == (13, 3, 16)
    assert manifest.preprocessing.transform == "standardize" and manifest.preprocessing.mean is not None
    assert len(manifest.preprocessing.mean) == 13
    assert (manifest.training.local_epochs, manifest.training.batch_size, manifest.training.momentum) == (3, 8, 0.5)
    store = EmbeddedStore(pocfl_home / "store")
    assert manifest.validation.cid is not None and store.has(manifest.validation.cid)
    npz = Path(made["validation_file"])
    assert store.get_bytes(manifest.validation.cid) == npz.read_bytes()
    base = ["project", "create", *own, "--aggregator", actors.aggregator.address, "--rounds", "1", "--budget", "1"]
    base += ["--submission-window", "60", "--aggregation-window", "60", "--start-in", "60"]
    base += ["--min-trainers", "1", "--max-trainers", "2"]
    created = cli.json(*base, "--manifest", str(path))
    assert created["initial_model_cid"] == made["manifest_cid"]
    assert created["params"]["validation_set_commitment"] == made["validation_set_commitment"]
    human = cli("project", "manifest", str(path), "--validation", str(csv), "--private-validation", rpc=False)
    assert "13 features" in human.stdout and "3 classes" in human.stdout and "kept private" in human.stdout
    private = ProjectManifest.from_json(path.read_bytes())
    assert private.validation.cid is None and private.validation.commitment is not None
    bad = pocfl_home.parent / "one.csv"
    bad.write_text("1,2,0\n3,4,0\n")
    one = cli.json("project", "manifest", str(path), "--validation", str(bad), code=1, rpc=False)
    assert one["error"] == "TooFewClassesError" and "at least 2" in one["message"]
