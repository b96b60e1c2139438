"""``scripts/fuzz.py`` in CI: a bounded run over every parser of untrusted bytes finds no crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz.py"
TARGETS = {"update", "envelope", "manifest", "report", "hyperparams", "proof", "cid"}
PROBE_CAP = 256 << 10


def test_a_short_fuzz_run_finds_no_crash_and_memory_follows_the_input_size(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    args = ["--seconds-per-target", "2", "--probe-cap", str(PROBE_CAP), "--crash-dir", str(tmp_path / "crashes")]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(out)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = {r["target"]: r for r in json.loads(out.read_text())}
    assert set(results) == TARGETS
    for name, r in results.items():
        assert r["crashes"] == {}, (name, r["crashes"])
        assert r["tried"] >= 20 and r["parsed"] + r["refused"] == r["tried"], (name, r)
        for probe in r["probes"]:
            assert probe["crash"] is None and probe["size"] <= max(r["limit"], PROBE_CAP) + 64, (name, probe)
            # parsing costs at most ~22 bytes per input byte (a JSON list of empty lists), plus a constant
            assert probe["peak"] <= 32 * probe["size"] + (1 << 20), (name, probe)
    assert "crashes" in done.stdout and "peak/size" in done.stdout
