"""``pocfl demo --prove``: every round's outlier flags and scores are proven with ezkl and verified by the contract,
the payouts reconcile to the wei, and ``pocfl audit`` recomputes the proven rounds (small circuit: 5 slots, 8
features, so the run stays short)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pocfl.cli.main import app
from pocfl.manifest import ProjectManifest, ProofConfig
from tests.e2e.conftest import Actors, Cli

pytestmark = pytest.mark.e2e

ARGS = ["--trainers", "5", "--rounds", "2", "--attack", "sign_flip", "--free-riders", "1", "--sketch-dim", "8"]


@pytest.fixture(scope="module")
def proven_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    cache = tmp_path_factory.mktemp("zk-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("POCFL_IPFS", raising=False)
        result = CliRunner().invoke(app, ["demo", "--prove", "--json", "--zk-cache", str(cache), *ARGS])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    doc["_cache"] = str(cache)
    yield doc


def test_every_round_is_proven_and_verified_on_chain(proven_run: dict[str, Any]) -> None:
    doc = proven_run
    assert doc["reconciled"] is True and doc["problems"] == []
    assert doc["config"]["prove"] is True
    assert [r["proven"] for r in doc["rounds"]] == [True, True]
    assert all(r["prove_seconds"] > 0 for r in doc["rounds"])
    verifier = doc["verifier"]
    assert verifier["adapter"].startswith("0x") and verifier["slots"] == 5 and verifier["sketch_dim"] == 8
    assert 0 < verifier["halo2_runtime_bytes"] <= 24_576, "the generated verifier fits the EIP-170 code-size limit"


def test_the_audit_recomputes_the_proven_rounds(proven_run: dict[str, Any]) -> None:
    assert proven_run["audit_ok"] is True
    # no fallback to the float reference: the audit rebuilt the circuit from the settings each report names
    assert proven_run["audit_warnings"] == []


def test_the_attacker_and_the_free_rider_are_flagged_and_earn_nothing(proven_run: dict[str, Any]) -> None:
    earned = {t["role"]: t["earned_wei"] for t in proven_run["trainers"] if t["role"] != "honest"}
    assert earned == {"sign_flip": 0, "free_rider": 0}
    flagged = {t["role"]: t["rounds_flagged"] for t in proven_run["trainers"]}
    assert flagged["free_rider"] == 2, "a zero update has no unit sketch: excluded by the circuit every round"
    honest = [t["earned_wei"] for t in proven_run["trainers"] if t["role"] == "honest"]
    assert all(e > 0 for e in honest)


def test_setups_are_cached_per_circuit_shape(proven_run: dict[str, Any]) -> None:
    folders = [p for p in Path(proven_run["_cache"]).iterdir() if p.is_dir() and p.name.startswith("K5-k8-")]
    assert len(folders) == 1
    assert {"vk.key", "pk.key", "settings.json", "net.compiled"} <= {f.name for f in folders[0].iterdir()}


def test_project_create_refuses_an_inconsistent_proof_setup(cli: Cli, actors: Actors, pocfl_home: Path) -> None:
    """A manifest with a proof section needs --verifier, an EzklRoundVerifier of the same slot count, and at most
    that many trainers; a verifier without a proof section is refused too (trainers would commit nothing)."""
    own = ("--key", actors.owner.env)
    market = cli.json("deploy", *own)["address"]
    proven = pocfl_home.parent / "proven.json"
    plain = pocfl_home.parent / "plain.json"
    cli.json("project", "manifest", str(proven), "--hidden", "8", "--prove-slots", "4", "--sketch-dim", "8", rpc=False)
    cli.json("project", "manifest", str(plain), "--hidden", "8", rpc=False)
    assert ProjectManifest.from_json(proven.read_bytes()).proof == ProofConfig(slots=4, sketch_dim=8, scale=13)
    base = ["project", "create", *own, "--aggregator", actors.aggregator.address, "--rounds", "1", "--budget", "1"]
    base += ["--submission-window", "60", "--aggregation-window", "60", "--start-in", "60", "--min-trainers", "1"]
    cases = [
        ([*base, "--max-trainers", "4", "--manifest", str(proven)], "pass --verifier"),
        ([*base, "--max-trainers", "5", "--manifest", str(proven), "--verifier", market], "exceeds the circuit"),
        ([*base, "--max-trainers", "4", "--manifest", str(proven), "--verifier", market], "not an EzklRoundVerifier"),
        ([*base, "--max-trainers", "4", "--manifest", str(plain), "--verifier", market], "no proof section"),
    ]
    for args, message in cases:
        doc = cli.json(*args, code=1)
        assert doc["error"] == "ConfigError" and message in doc["message"], doc
