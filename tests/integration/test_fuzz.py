"""Parsers of untrusted bytes in child processes: the deep-nesting crash of issue 11, and a bounded fuzz run.

Child processes, because the failure being tested is a segmentation fault, which would kill pytest itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz.py"
TARGETS = {"update", "envelope", "manifest", "report", "hyperparams", "proof", "cid"}
PROBE_CAP = 256 << 10


def test_deep_nesting_never_reaches_the_parser_whatever_the_recursion_limit() -> None:
    """Each parser of stored JSON refuses 100,000 levels with its named error, with py_ecc's recursion limit.

    Run in a subprocess: before the screen this was a segmentation fault, which would kill pytest itself.
    """
    script = textwrap.dedent(
        """
        import struct, sys
        import pocfl.market  # imports py_ecc, which sets the recursion limit to 100,000
        assert sys.getrecursionlimit() >= 100_000, sys.getrecursionlimit()
        from pocfl.rounds.hyperparams import HyperParams
        from pocfl.rounds.report import RoundReport
        from pocfl.manifest import ProjectManifest
        from pocfl.updates import ModelSpec, decode_update, read_safetensors
        from zk.onchain import load_round_proof

        def update(depth):
            h = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
            h += b" " * (-(8 + len(h)) % 8)
            return struct.pack("<Q", len(h)) + h

        deep = b"[" * 100000 + b"]" * 100000
        spec = ModelSpec([("w", (2,), "F32")])
        for name, parse in [
            ("update", lambda: decode_update(update(100000), spec, kind="delta")),  # the issue's reproduction
            ("update-under-the-header-limit", lambda: decode_update(update(30000), spec, kind="delta")),
            ("safetensors", lambda: read_safetensors(update(100000))),
            ("manifest", lambda: ProjectManifest.from_json(deep)),
            ("report", lambda: RoundReport.from_json(deep)),
            ("hyperparams", lambda: HyperParams.from_json(deep.decode()[:4000])),
            ("proof", lambda: load_round_proof(deep)),
        ]:
            try:
                parse()
            except Exception as exc:
                print(name, type(exc).__name__, str(exc)[:200])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["update"].startswith("CorruptUpdateError header length 200008 is over the")
    assert lines["update-under-the-header-limit"].startswith("CorruptUpdateError header nests JSON 30001 levels deep")
    assert lines["safetensors"].startswith("CorruptUpdateError header nests JSON 100001 levels deep")
    assert lines["manifest"].startswith("ManifestError the project manifest nests JSON 100000 levels deep")
    assert lines["report"].startswith("ReportError the round report nests JSON 100000 levels deep")
    assert lines["hyperparams"].startswith("HyperParamsError hyper-parameters nests JSON 4000 levels deep")
    assert lines["proof"].startswith("ProofFormatError the stored proof nests JSON 100000 levels deep")


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
