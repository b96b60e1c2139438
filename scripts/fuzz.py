#!/usr/bin/env python
"""Fuzz every parser of untrusted bytes: updates, envelopes, manifests, reports, hyper-parameters, proofs, CIDs.

Usage::

    .venv/bin/python scripts/fuzz.py --minutes 2                  # the whole run shared by the targets
    .venv/bin/python scripts/fuzz.py --seconds-per-target 3 --targets update,cid --json out.json

Each target runs in its own child process, so a segmentation fault is a crash to report, not the end of the
run. Hypothesis draws the inputs: valid encodings (seeds) under structured mutations (deep nesting, huge
lengths and numbers, long non-ASCII and control-character runs, JSON tokens, byte flips, cuts, splices) and
plain random bytes. An input passes when it parses or raises one of the target's named errors; anything else
(a bare ValueError, KeyError, TypeError, RecursionError, MemoryError, a signal) is a crash, and its input is
saved under ``--crash-dir``.

Then each target's probes, worst cases built at its configured size limit (capped at ``--probe-cap``), measure
peak memory with tracemalloc: the goal is a peak bounded by the configured limits. Prints one table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import struct
import subprocess
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

MiB = 1 << 20
BATCH = 50
"""Inputs per hypothesis run; runs repeat (with the next seed) until the target's time is up."""

# --- targets --------------------------------------------------------------------------------------------------


@dataclass
class Target:
    """A parser of untrusted bytes, the errors it may raise, where its inputs start and its size limit."""

    name: str
    parse: Callable[[Any], object]
    allowed: tuple[type[BaseException], ...]
    seeds: list[bytes]
    limit: int
    limit_name: str
    wrap: Callable[[bytes], bytes] | None = None
    """Embeds a JSON value into a document of this target (for the probes); None: not a JSON target."""
    prepare: Callable[[bytes], Any] = bytes
    """Turns the fuzzed bytes into the parser's input (a ``str`` for text parsers), outside the measurement."""
    notes: list[str] = field(default_factory=list)


def _spec() -> Any:
    from pocfl.manifest import ModelInfo

    return ModelInfo(n_features=8, hidden=4, n_classes=3, initial_weights_cid="bafkqaaa").spec()


def _update_target() -> Target:
    import numpy as np
    import safetensors.numpy

    from pocfl.updates import UpdateFormatError, decode_update, encode_update
    from pocfl.updates.format import FINGERPRINT_KEY, FORMAT_KEY, FORMAT_NAME, KIND_KEY, MAX_EXTRA_HEADER

    spec = _spec()
    vector = np.linspace(-1, 1, spec.size, dtype=np.float32)
    meta = {FORMAT_KEY: FORMAT_NAME, KIND_KEY: "delta", FINGERPRINT_KEY: spec.fingerprint}
    library = safetensors.numpy.save(spec.unflatten(vector), metadata=meta)
    seeds = [encode_update(spec.unflatten(vector), spec, kind=k) for k in ("delta", "weights")] + [library]
    max_size = 64 * MiB  # the manifest's default max_update_size

    def wrap(value: bytes) -> bytes:
        header = b'{"__metadata__":' + json.dumps(meta).encode() + b',"a":' + value + b"}"
        header += b" " * (-len(header) % 8)
        return struct.pack("<Q", len(header)) + header

    return Target(
        "update",
        lambda b: decode_update(b, spec, max_size=max_size),
        (UpdateFormatError,),
        seeds,
        spec.header_size + MAX_EXTRA_HEADER,
        "header: model's + MAX_EXTRA_HEADER",
        wrap,
    )


def _envelope_target() -> Target:
    from pocfl.market import MAX_PAYLOAD_SIZE
    from pocfl.updates import EncryptionError, EncryptionKeyPair, decrypt_update, encrypt_update

    key = EncryptionKeyPair.from_secret_key(bytes(range(1, 33)))
    other = EncryptionKeyPair.from_secret_key(bytes(range(2, 34)))
    plain = b"pocfl update bytes " * 8
    seeds = [encrypt_update(plain, key.public_key), encrypt_update(b"", key.public_key)]
    seeds.append(encrypt_update(plain, other.public_key))
    return Target(
        "envelope",
        lambda b: decrypt_update(b, key),
        (EncryptionError,),
        seeds,
        MAX_PAYLOAD_SIZE,
        "MAX_PAYLOAD_SIZE",
    )


def _manifest_target() -> Target:
    from pocfl.manifest import MANIFEST_MAX_SIZE, ManifestError, ModelInfo, ProjectManifest, ProofConfig

    plain = ProjectManifest("p", ModelInfo(8, 4, 3, "bafkqaaa"), aggregator_public_key="ab" * 32)
    proven = ProjectManifest("p", ModelInfo(8, 4, 3, "bafkqaaa"), proof=ProofConfig(slots=4))
    return Target(
        "manifest",
        ProjectManifest.from_json,
        (ManifestError,),
        [plain.to_json(), proven.to_json()],
        MANIFEST_MAX_SIZE,
        "MANIFEST_MAX_SIZE",
        lambda v: b'{"format":"pocfl-project/1","name":' + v + b"}",
    )


def _report_target() -> Target:
    from pocfl.rounds.hyperparams import HyperParams
    from pocfl.rounds.report import REPORT_MAX_SIZE, ReportError, RoundReport, SubmissionEntry

    hyper = HyperParams(round=0, learning_rate=0.1, local_epochs=2, batch_size=32).to_json()
    entries = tuple(
        SubmissionEntry(i, "0x" + "12" * 20, "bafkqaaa", "0x" + "00" * 32, s, r, s != "scored", 5, 0.5, 0.2, 1.0)
        for i, (s, r) in enumerate([("scored", None), ("rejected", "CorruptUpdateError: header is not JSON")])
    )
    report = RoundReport(
        1, 0, 31337, "0x" + "ab" * 20, "0x" + "00" * 32, "bafkqaaa", "bafkqaab", "0x01", "0x02", hyper, hyper,
        "0x" + "11" * 32, 0.1, 2.3, 0.5, 1.2, "exact", 4, entries, {"sketch_dim": 64, "accuracy_history": [0.1]},
    )  # fmt: skip
    return Target(
        "report",
        RoundReport.from_json,
        (ReportError,),
        [report.to_json()],
        REPORT_MAX_SIZE,
        "REPORT_MAX_SIZE",
        lambda v: b'{"format":"pocfl-round-report/1","config":{"x":' + v + b"}}",
    )


def _hyperparams_target() -> Target:
    from pocfl.rounds.hyperparams import HYPERPARAMS_MAX_SIZE, HyperParams, HyperParamsError

    seed_text = HyperParams(round=3, learning_rate=0.05, local_epochs=2, batch_size=16).to_json()
    return Target(
        "hyperparams",
        HyperParams.from_json,
        (HyperParamsError,),
        [seed_text.encode()],
        HYPERPARAMS_MAX_SIZE,
        "HYPERPARAMS_MAX_SIZE",
        lambda v: v,
        _text,
    )


def _proof_target() -> Target:
    from zk.onchain import PROOF_MAX_SIZE, ProofFormatError, load_round_proof

    stored = {
        "proof": "0x" + "ab" * 64,
        "instances": ["0x01", "0x02"],
        "ok": True,
        "outliers": [False, True],
        "rejected": [False, False, True],
        "scores": [1, 0],
        "witness_hash": hex(2**200 + 7),
        "prove_seconds": 1.5,
        "ezkl_proof": {"instances": [["01", "02"]], "proof": "ab", "transcript_type": "EVM"},
    }
    return Target(
        "proof",
        load_round_proof,
        (ProofFormatError,),
        [json.dumps(stored, sort_keys=True).encode()],
        PROOF_MAX_SIZE,
        "PROOF_MAX_SIZE",
        lambda v: b'{"proof":"0x","witness_hash":"0x1","rejected":[],"ezkl_proof":' + v + b"}",
    )


def _cid_target() -> Target:
    from pocfl.store import InvalidCidError, compute_cid
    from pocfl.store.cid import canonical_cid, parse_cid

    def parse(text: str) -> object:
        parse_cid(text)
        return canonical_cid(text)

    cid1 = compute_cid(b"hello")
    v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"  # dag-pb CIDv0 of an empty UnixFS file
    seeds = [cid1.encode(), cid1.upper().encode(), v0.encode(), ("f" + parse_cid(cid1).to_bytes().hex()).encode()]
    return Target("cid", parse, (InvalidCidError,), seeds, 128, "128 bytes (the contract's)", prepare=_text)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")  # text from the chain or a report: any code points


TARGETS: dict[str, Callable[[], Target]] = {
    "update": _update_target,
    "envelope": _envelope_target,
    "manifest": _manifest_target,
    "report": _report_target,
    "hyperparams": _hyperparams_target,
    "proof": _proof_target,
    "cid": _cid_target,
}

# --- inputs -----------------------------------------------------------------------------------------------------

TOKENS = [b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"null", b"true", b"NaN", b"-Infinity", b"1e999",
          b'"\\ud800"', b"\\u0000", b"{}", b"[]", b"\x00", b"\xff", "é".encode(), "\u2028".encode(),
          "\U0001f600".encode(), b"18446744073709551616", b"-1", b"0.5", b'"__metadata__"']  # fmt: skip
RUNS = ["é", "\u2028", "\x00", "\U0001f600", "a", '"', "\\", "[", "{", "0", "\\u00e9"]

POSITION = st.integers(0, 1 << 30)
OPS = st.one_of(
    st.tuples(st.just("flip"), POSITION, st.integers(0, 255)),
    st.tuples(st.just("insert"), POSITION, st.sampled_from(TOKENS) | st.binary(max_size=16)),
    st.tuples(st.just("delete"), POSITION, st.integers(1, 64)),
    st.tuples(st.just("cut"), POSITION),
    st.tuples(st.just("nest"), POSITION, st.sampled_from([1, 2, 3, 4, 8, 33, 1000, 30_000, 200_000]), st.booleans()),
    st.tuples(st.just("run"), POSITION, st.sampled_from(RUNS), st.sampled_from([10, 100, 5000, 100_000, 2 * MiB])),
    st.tuples(st.just("number"), POSITION, st.sampled_from([20, 21, 400, 4301, 100_000])),
    st.tuples(st.just("length"), st.sampled_from([0, 1, 7, 8, 2**31, 2**63, 2**64 - 1]) | st.integers(0, 1 << 20)),
    st.tuples(st.just("splice"), POSITION, POSITION, st.integers(1, 4096)),
)


def mutate(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    """Apply structured mutations; positions wrap around the current length."""
    buf = bytearray(data)
    for op in ops:
        at = op[1] % (len(buf) + 1) if len(op) > 1 and op[0] != "length" else 0
        kind = op[0]
        if kind == "flip" and buf:
            buf[at % len(buf)] ^= op[2] or 1
        elif kind == "insert":
            buf[at:at] = op[2]
        elif kind == "delete":
            del buf[at : at + op[2]]
        elif kind == "cut":
            del buf[at:]
        elif kind == "nest":
            buf[at:at] = b"[" * op[2] + (b"]" * op[2] if op[3] else b"")
        elif kind == "run":
            buf[at:at] = (op[2] * op[3]).encode("utf-8", "surrogatepass")
        elif kind == "number":
            buf[at:at] = b"9" * op[2]
        elif kind == "length" and len(buf) >= 8:
            buf[:8] = struct.pack("<Q", op[1])
        elif kind == "splice" and buf:
            start = op[2] % len(buf)
            buf[at:at] = buf[start : start + op[3]]
    return bytes(buf)


def inputs(target: Target) -> st.SearchStrategy[bytes]:
    mutated = st.builds(mutate, st.sampled_from(target.seeds), st.lists(OPS, min_size=1, max_size=4))
    return st.one_of(mutated, mutated, mutated, st.binary(max_size=256), st.sampled_from(target.seeds))


def probes(target: Target, cap: int) -> list[tuple[str, bytes]]:
    """Worst cases at the target's size limit (capped): memory-hungry JSON shapes, deep nesting, long text."""
    size = min(target.limit, cap)
    if target.wrap is None:
        return [("random bytes at the limit", os.urandom(size)), ("seed padded to the limit", _pad(target, size))]
    room = max(size - len(target.wrap(b"")) - 16, 8)
    shapes = {
        "empty lists [[],[],...]": b"[" + b"[]," * (room // 3 - 1) + b"[]]",
        "zeros [0,0,...]": b"[" + b"0," * (room // 2 - 1) + b"0]",
        "non-ASCII string": b'"' + "é".encode() * (room // 2 - 1) + b'"',
        "escaped string": b'"' + b"\\u00e9" * (room // 6 - 1) + b'"',
        "deep nesting": b"[" * (room // 2) + b"]" * (room // 2),
    }
    return [(name, target.wrap(value)) for name, value in shapes.items()]


def _pad(target: Target, size: int) -> bytes:
    seed_bytes = target.seeds[0]
    return seed_bytes + bytes(max(0, size - len(seed_bytes)))


# --- one target, in a child process -----------------------------------------------------------------------------


@dataclass
class Stats:
    tried: int = 0
    parsed: int = 0
    refused: int = 0
    largest_input: int = 0
    peak: int = 0
    peak_input: int = 0
    crashes: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_one(target: Target, data: bytes, stats: Stats, crash_dir: Path, last: int) -> int:
    """Parse one input; count it; record a crash. Returns its tracemalloc peak in bytes."""
    os.pwrite(last, data, 0)  # the input being parsed, in case the process dies (a signal leaves no traceback)
    os.ftruncate(last, len(data))
    stats.tried += 1
    stats.largest_input = max(stats.largest_input, len(data))
    value = target.prepare(data)
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        target.parse(value)
        stats.parsed += 1
    except target.allowed:
        stats.refused += 1
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        key = f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
        if key not in stats.crashes:
            crash_dir.mkdir(parents=True, exist_ok=True)
            path = crash_dir / f"{target.name}-{hashlib.sha256(data).hexdigest()[:12]}.bin"
            path.write_bytes(data)
            stats.crashes[key] = {"message": str(exc)[:300], "input": str(path), "count": 0}
        stats.crashes[key]["count"] += 1
    peak = tracemalloc.get_traced_memory()[1] - base
    if peak > stats.peak:
        stats.peak, stats.peak_input = peak, len(data)
    return peak


def worker(name: str, seconds: float, base_seed: int, crash_dir: Path, probe_cap: int) -> dict[str, Any]:
    target = TARGETS[name]()
    stats = Stats()
    tracemalloc.start()
    last = os.open(crash_dir / f".last-{name}.bin", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    stop = time.monotonic() + seconds
    strategy = inputs(target)
    run = 0
    while time.monotonic() < stop:

        @seed(base_seed + run)
        @settings(
            max_examples=BATCH,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def batch(data: bytes) -> None:
            if time.monotonic() < stop:
                run_one(target, data, stats, crash_dir, last)

        batch()
        run += 1
    fuzz_peak, fuzz_peak_input = stats.peak, stats.peak_input
    probe_rows = []
    for probe_name, data in probes(target, probe_cap):
        before = stats.crashes.keys() | set()
        start = time.perf_counter()
        peak = run_one(target, data, stats, crash_dir, last)
        crashed = sorted(stats.crashes.keys() - before)
        probe_rows.append(
            {"probe": probe_name, "size": len(data), "peak": peak, "seconds": time.perf_counter() - start,
             "crash": crashed[0] if crashed else None}
        )  # fmt: skip
    os.close(last)
    (crash_dir / f".last-{name}.bin").unlink()
    return {
        "target": name,
        "seconds": seconds,
        "tried": stats.tried,
        "parsed": stats.parsed,
        "refused": stats.refused,
        "crashes": stats.crashes,
        "largest_input": stats.largest_input,
        "fuzz_peak": fuzz_peak,
        "fuzz_peak_input": fuzz_peak_input,
        "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "limit": target.limit,
        "limit_name": target.limit_name,
        "probes": probe_rows,
    }


# --- the parent: one child per target, one table ------------------------------------------------------------------


def run_target(name: str, seconds: float, base_seed: int, crash_dir: Path, probe_cap: int) -> dict[str, Any]:
    """Run a target's worker as a child; a child killed by a signal is a crash (its last input is kept)."""
    args = [sys.executable, __file__, "--worker", name, "--seconds-per-target", str(seconds)]
    args += ["--seed", str(base_seed), "--crash-dir", str(crash_dir), "--probe-cap", str(probe_cap)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 600)
    if done.returncode == 0:
        result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return result
    last = crash_dir / f".last-{name}.bin"
    kept = crash_dir / f"{name}-killed.bin"
    if last.exists():
        last.replace(kept)
    how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
    return {
        "target": name, "seconds": seconds, "tried": 0, "parsed": 0, "refused": 0, "largest_input": 0,
        "crashes": {f"process died ({how})": {"message": done.stderr[-300:], "input": str(kept), "count": 1}},
        "fuzz_peak": 0, "fuzz_peak_input": 0, "rss_kib": 0, "limit": 0, "limit_name": "", "probes": [],
    }  # fmt: skip


def _mib(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n / 1024:.0f} KiB"


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"{'target':<12} {'inputs':>8} {'parsed':>7} {'named':>8} {'crashes':>7} {'largest':>10} "
          f"{'peak (fuzz)':>12} {'RSS':>10}  limit")  # fmt: skip
    for r in results:
        crashes = sum(c["count"] for c in r["crashes"].values())
        print(
            f"{r['target']:<12} {r['tried']:>8} {r['parsed']:>7} {r['refused']:>8} {crashes:>7} "
            f"{_mib(r['largest_input']):>10} {_mib(r['fuzz_peak']):>12} {_mib(r['rss_kib'] * 1024):>10}  "
            f"{_mib(r['limit'])} ({r['limit_name']})"
        )
    print()
    print(f"{'target':<12} {'probe':<26} {'size':>10} {'peak':>10} {'peak/size':>9} {'seconds':>8}  result")
    for r in results:
        for p in r["probes"]:
            print(
                f"{r['target']:<12} {p['probe']:<26} {_mib(p['size']):>10} {_mib(p['peak']):>10} "
                f"{p['peak'] / max(p['size'], 1):>9.1f} {p['seconds']:>8.2f}  {p['crash'] or 'ok'}"
            )
    for r in results:
        for key, crash in r["crashes"].items():
            print(f"CRASH {r['target']}: {key} x{crash['count']}: {crash['message'][:200]!r} -> {crash['input']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="total time, shared equally by the targets")
    budget.add_argument("--seconds-per-target", type=float, help="time per target (default 5)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma list of {', '.join(TARGETS)}")
    parser.add_argument("--seed", type=int, default=0, help="first hypothesis seed (runs use seed, seed+1, ...)")
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"), help="where crashing inputs go")
    parser.add_argument("--probe-cap", type=int, default=64 * MiB, help="largest probe input in bytes")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    args.crash_dir.mkdir(parents=True, exist_ok=True)
    if args.worker:
        seconds = args.seconds_per_target or 5.0
        print(json.dumps(worker(args.worker, seconds, args.seed, args.crash_dir, args.probe_cap)))
        return 0
    seconds = args.minutes * 60 / len(names) if args.minutes else (args.seconds_per_target or 5.0)
    results = [run_target(n, seconds, args.seed, args.crash_dir, args.probe_cap) for n in names]
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
