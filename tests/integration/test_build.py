"""The committed contract artifacts are exactly what the pinned compiler produces, via Python and via Hardhat."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pocfl.contracts import load_artifact
from pocfl.contracts.build import REPO_ROOT, compiler_config

pytestmark = pytest.mark.integration

NODE_MODULES = REPO_ROOT / "node_modules"


def _require_node_toolchain() -> None:
    # CI installs these (scripts/install); a missing toolchain is a setup error, not a reason to skip.
    assert shutil.which("node"), "node is not on PATH"
    assert (NODE_MODULES / "solc").is_dir(), "npm packages missing: run `npm ci`"


def test_committed_artifacts_match_a_fresh_build() -> None:
    _require_node_toolchain()
    proc = subprocess.run(
        [sys.executable, "-m", "pocfl.contracts.build", "--check"], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout


def test_artifacts_record_pinned_compiler_and_prague() -> None:
    config = compiler_config()
    art = load_artifact("PocMarketplace")
    assert art["compiler"]["version"].startswith(config["version"] + "+")
    assert art["compiler"]["settings"]["evmVersion"] == "prague"
    # EIP-170: the marketplace must deploy on chains that enforce the 24,576-byte limit.
    assert len(bytes.fromhex(art["deployedBytecode"][2:])) < 24_576


def test_hardhat_build_is_byte_identical(tmp_path: Path) -> None:
    _require_node_toolchain()
    proc = subprocess.run(
        ["npx", "--no-install", "hardhat", "compile", "--force", "--quiet"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = REPO_ROOT / "build" / "hardhat" / "artifacts" / "contracts"
    for name in ("PocMarketplace", "ReentrantClaimer", "CommitmentRoundVerifier"):
        committed = load_artifact(name)
        source = Path(committed["sourceName"]).relative_to("contracts")
        hardhat = json.loads((built / source / f"{name}.json").read_text())
        assert hardhat["abi"] == committed["abi"], name
        assert hardhat["bytecode"] == committed["bytecode"], name
        assert hardhat["deployedBytecode"] == committed["deployedBytecode"], name
