#!/usr/bin/env python3
"""Zero-knowledge round proofs: setup, proving and on-chain verification cost of the round circuit (ezkl).

For every circuit shape (``K`` slots x ``k`` sketch dimensions) of the grid, three fresh subprocesses run one
after the other, so that peak memory is per phase and a stuck or crashing phase cannot take the table down:

1. **setup**: export, calibrate and compile the circuit, generate a local SRS with ``ezkl.gen_srs`` (test-only
   trust) and the proving/verifying keys, in a fresh cache folder (so the full setup is measured; ``--cache DIR``
   reuses cached setups instead). Killed, and the shape skipped, after ``--max-seconds``.
2. **prove**: K realistic updates (a shared direction plus noise, one sign-flipped and one 10x scaled attacker),
   their committed features (``zk.decision.update_features`` with a fixed seed), then witness + proof and an
   off-chain verification.
3. **chain** (anvil): deploy the marketplace and the verifier pair (``zk.onchain.deploy_round_verifier``), send
   ``Halo2Verifier.verifyProof`` the proof and its instances as a transaction, then play two rounds of a project
   whose ``verifier`` is the ``EzklRoundVerifier`` adapter (K trainers submitting their feature commitments, the
   aggregator posting the proven flags and scores with the proof) and the same two rounds of a project without a
   verifier; the difference is what verification adds to ``postRound``. The anvil runs without the EIP-170
   code-size limit so that an oversized generated verifier is still measured (its row then says so).

::

    .venv/bin/python scripts/bench_zk.py --quick               # K=4, k=16 only (about a minute)
    .venv/bin/python scripts/bench_zk.py                       # K in {4, 10, 20} x k in {16, 64, 128}
    .venv/bin/python scripts/bench_zk.py --slots 10 --dims 64 --max-seconds 600
    .venv/bin/python scripts/bench_zk.py --json                # machine-readable

Progress goes to stderr, the Markdown tables to stdout. Goals from the issue: a K=10 round proof in <= 30 s
(witness + proof, 2 cores, hashed inputs) and verification <= 700k gas per round (the gas a proven ``postRound``
costs more than an unverified one). The exit status is 1 if a measured goal is missed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the checkout importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SLOTS = (4, 10, 20)
DIMS = (16, 64, 128)
QUICK_SLOTS = (4,)
QUICK_DIMS = (16,)
MAX_SECONDS = 300.0
MAX_PROVE_SECONDS = 600.0
MAX_CHAIN_SECONDS = 600.0
PROVE_GOAL_SLOTS = 10
PROVE_GOAL_SECONDS = 30.0
VERIFY_GAS_GOAL = 700_000

UPDATE_DIM = 10_000
DATA_SEED = 7
FEATURE_SEED = hashlib.sha256(b"pocfl bench_zk feature seed").digest()
NOISE = 1.0  # noise norm relative to the shared direction's (honest cosine similarity about 0.5)
SCALE_ATTACK = 10.0
FUNDING = 10**20
BUDGET = 10**18
WINDOW = 3_600
LEAD = 600
MODEL_CID = "bafybeihkoviema7g3gxyt6la7vd5ho32ictqbilu3wnlo3rs7ewhnp7lly"
INITIAL_CID = "bafybeie5gq4jxvzmsym6hjlwxej4rwdoxt7wadqvmmwbqi7r27fclha2va"
UPDATE_CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]
OVERSIZED_DEPLOY_GAS = 29_000_000  # anvil's block gas limit is 30M


# ---- the measured round ---------------------------------------------------------------------------------------


def round_inputs(slots: int, dim: int, scale: int, update_dim: int = UPDATE_DIM) -> dict[str, Any]:
    """The benchmarked round: ``slots`` updates from a shared direction plus noise, slot 0 sign-flipped and the last
    slot scaled ``SCALE_ATTACK`` times, their committed features, and the scores the aggregator posts.

    Returns
    -------
    dict
        ``features`` (one ``dim + 1`` vector per slot), ``rejected`` (all False), ``scores`` (fixed point at
        ``2**scale``) and ``attackers`` (their slot indices).
    """
    import numpy as np

    from zk.decision import update_features

    rng = np.random.default_rng(DATA_SEED)
    direction = rng.normal(size=update_dim)
    direction /= np.linalg.norm(direction)
    updates = []
    for _ in range(slots):
        noise = rng.normal(size=update_dim)
        updates.append(direction + NOISE * noise / np.linalg.norm(noise))
    updates[0] = -updates[0]
    updates[-1] = SCALE_ATTACK * updates[-1]
    features = [update_features(u, FEATURE_SEED, dim, scale) for u in updates]
    scores = [float(s) for s in rng.uniform(0.02, 0.2, size=slots)]
    # A sign flip's Shapley-style value is negative; the marketplace pays max(score, 0), so posting 0 changes no
    # payout (and the proven score is 0 anyway when the flip is flagged).
    scores[0] = 0.0
    unit = 1 << scale
    return {
        "features": features,
        "rejected": [False] * slots,
        "scores": [round(s * unit) for s in scores],
        "attackers": [0, slots - 1],
    }


# ---- workers (one subprocess per phase) -----------------------------------------------------------------------


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads): steadier than wall time on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Progress:
    """Collects the ``label: 1.2 s`` lines of ``zk.prover`` (and echoes every line to stderr)."""

    STEP = re.compile(r"^(?P<label>.*): (?P<seconds>[0-9.]+) s$")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        print(f"  [{self.tag}] {line}", file=sys.stderr, flush=True)

    def seconds(self, pattern: str) -> float | None:
        """Seconds of the first step whose label matches the regular expression ``pattern`` (from its start)."""
        for line in self.lines:
            m = self.STEP.match(line)
            if m and re.match(pattern, m["label"]):
                return float(m["seconds"])
        return None


def _setup(shape: Any, cache: Path, progress: Any) -> Any:
    from zk.prover import RoundCircuitSetup

    return RoundCircuitSetup.build(shape, cache, progress=progress)


def worker_setup(shape: Any, cache: Path, work: Path) -> dict[str, Any]:
    """Build (or load) the setup; time each step."""
    progress = _Progress(f"K={shape.slots} k={shape.sketch_dim} setup")
    t0, c0 = time.perf_counter(), _cpu_seconds()
    setup = _setup(shape, cache, progress)
    total, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    cached = any("cached setup" in line for line in progress.lines)
    return {
        "cached": cached,
        "logrows": setup.logrows,
        "setup_s": total,
        "setup_cpu_s": cpu,
        "compile_s": progress.seconds(r"circuit \S+: export and compile$"),
        "srs_s": progress.seconds("local SRS"),
        "keys_s": progress.seconds(r"setup \(logrows"),
        "pk_bytes": setup.pk_path.stat().st_size,
        "vk_bytes": setup.vk_path.stat().st_size,
        "srs_bytes": setup.srs_path.stat().st_size,
        "compiled_bytes": setup.compiled_path.stat().st_size,
        "rss_mib": _peak_rss_mib(),
    }


def _verify_bytes_proof(setup: Any, proof: Any, work: Path) -> bool:
    """Off-chain verification with the proof as a byte list, the form ezkl 23.0.5 reads (a fallback: earlier versions
    of ``RoundCircuitSetup.verify`` wrote it as a ``0x`` hex string, which ezkl rejects with "invalid type: string
    ..., expected a sequence", so verify always answered False)."""
    import ezkl

    instances = [v.to_bytes(32, "little").hex() for v in proof.instances]
    data = {"instances": [instances], "proof": list(proof.proof), "transcript_type": "EVM"}
    path = work / "proof.ezkl.json"
    path.write_text(json.dumps(data))
    try:
        return bool(
            ezkl.verify(
                proof_path=str(path),
                settings_path=str(setup.settings_path),
                vk_path=str(setup.vk_path),
                srs_path=str(setup.srs_path),
            )
        )
    except Exception as exc:
        print(f"direct ezkl.verify failed: {exc}"[:500], file=sys.stderr)
        return False


def worker_prove(shape: Any, cache: Path, work: Path, update_dim: int) -> dict[str, Any]:
    """Witness + proof + off-chain verification of the benchmarked round; the proof goes to ``work``."""
    progress = _Progress(f"K={shape.slots} k={shape.sketch_dim} prove")
    setup = _setup(shape, cache, progress)
    inputs = round_inputs(shape.slots, shape.sketch_dim, shape.scale, update_dim)
    reference = setup.decide(inputs["features"], inputs["rejected"], inputs["scores"])
    rss_before = _peak_rss_mib()
    t0, c0 = time.perf_counter(), _cpu_seconds()
    proof = setup.prove(inputs["features"], inputs["rejected"], inputs["scores"], progress=progress)
    total, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    rss_prove = _peak_rss_mib()
    t1 = time.perf_counter()
    verified = setup.verify(proof)
    verify_s = time.perf_counter() - t1
    workaround = False
    if not verified:  # see _verify_bytes_proof: RoundCircuitSetup.verify passes the proof in a form ezkl 23 refuses
        t1 = time.perf_counter()
        verified = _verify_bytes_proof(setup, proof, work)
        verify_s = time.perf_counter() - t1
        workaround = verified
    (work / "proof.json").write_text(
        json.dumps(
            {
                "features": [f.tolist() for f in inputs["features"]],
                "proof": proof.proof.hex(),
                "instances": [str(v) for v in proof.instances],
                "ok": proof.ok,
                "outliers": list(proof.outliers),
                "rejected": list(proof.rejected),
                "scores": list(proof.scores),
                "witness_hash": str(proof.witness_hash),
                "prove_seconds": proof.prove_seconds,
            }
        )
    )
    return {
        "witness_s": progress.seconds("witness"),
        "proof_s": proof.prove_seconds,
        "prove_s": total,
        "prove_cpu_s": cpu,
        "verify_s": verify_s,
        "verified": verified,
        "verify_workaround": workaround,
        "ok": proof.ok,
        "proof_bytes": len(proof.proof),
        "instances": len(proof.instances),
        "flagged": [i for i, o in enumerate(proof.outliers) if o],
        "reference_flagged": [i for i, o in enumerate(reference.outliers) if o],
        "attackers": inputs["attackers"],
        "rss_before_mib": rss_before,
        "rss_mib": rss_prove,
    }


def _start_anvil() -> tuple[subprocess.Popen[bytes], Any]:
    """A fresh anvil (Prague, like ``connect("anvil")``) without the EIP-170 code-size limit, and a chain on it."""
    from pocfl.chain.backends import ANVIL_HARDFORK, find_anvil, rpc_chain
    from pocfl.procs import free_port

    port = free_port()
    args = [str(find_anvil()), "--host", "127.0.0.1", "--port", str(port), "--hardfork", ANVIL_HARDFORK]
    args += ["--silent", "--disable-code-size-limit"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            return proc, rpc_chain(f"http://127.0.0.1:{port}", timeout=120)
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise
            time.sleep(0.1)


def _deploy_oversized(chain: Any, account: Any, setup: Any, work: Path) -> tuple[str, str, int, int]:
    """``zk.onchain.deploy_round_verifier`` minus its code-size check, reusing the verifier it compiled."""
    from pocfl.chain.client import ContractClient, deploy_contract
    from zk.decision import empty_features
    from zk.prover import feature_commitment

    compiled = json.loads((work / "verifier" / "Halo2Verifier.json").read_text())
    runtime = (len(compiled["deployedBytecode"]) - 2) // 2
    factory = chain.w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    deployer = ContractClient(chain, "0x" + "00" * 20, compiled["abi"], account)
    receipt = deployer.transact(factory.constructor(), gas=OVERSIZED_DEPLOY_GAS)
    if receipt.contract_address is None:
        raise RuntimeError("the Halo2 verifier deployment produced no contract address")
    shape = setup.shape
    empty = int.from_bytes(feature_commitment(empty_features(shape.sketch_dim), shape.scale), "big")
    args = (receipt.contract_address, shape.slots, 1 << setup.output_scale, empty)
    adapter, receipt2 = deploy_contract(chain, account, "EzklRoundVerifier", args, gas=2_000_000)
    return receipt.contract_address, adapter, runtime, receipt.gas_used + receipt2.gas_used


def worker_chain(shape: Any, cache: Path, work: Path) -> dict[str, Any]:
    """Deploy on anvil; gas of ``verifyProof`` and of proven and unverified ``postRound`` (two rounds each)."""
    from eth_account import Account
    from eth_utils.crypto import keccak

    from pocfl.chain.client import ContractClient, MarketplaceClient
    from pocfl.chain.types import ZERO_ADDRESS, ProjectParams, RegistrationMode, RoundPost, Submission
    from pocfl.errors import ChainError
    from zk.onchain import deploy_round_verifier, encode_round_proof
    from zk.prover import RoundProof, feature_commitment

    progress = _Progress(f"K={shape.slots} k={shape.sketch_dim} chain")
    setup = _setup(shape, cache, progress)
    saved = json.loads((work / "proof.json").read_text())
    instances = tuple(int(v) for v in saved["instances"])
    proof = RoundProof(
        proof=bytes.fromhex(saved["proof"]),
        instances=instances,
        ok=saved["ok"],
        outliers=tuple(saved["outliers"]),
        rejected=tuple(saved["rejected"]),
        scores=tuple(saved["scores"]),
        witness_hash=int(saved["witness_hash"]),
        prove_seconds=saved["prove_seconds"],
    )
    commitments = [feature_commitment(f, shape.scale) for f in saved["features"]]
    out: dict[str, Any] = {}

    anvil, chain = _start_anvil()
    try:
        made = 0

        def account() -> Any:
            nonlocal made
            made += 1
            acct = Account.from_key(keccak(text=f"pocfl zk bench account {made}"))
            chain.fund(acct.address, FUNDING)
            return acct

        deployer, aggregator = account(), account()
        trainers = [account() for _ in range(shape.slots)]
        market, _ = MarketplaceClient.deploy(chain, deployer)

        t0 = time.perf_counter()
        progress("solidity verifier: generate, compile, deploy ...")
        try:
            deployment = deploy_round_verifier(chain, deployer, setup, work / "verifier")
            halo2_address, adapter_address = deployment.halo2, deployment.adapter
            out["halo2_runtime_bytes"] = deployment.halo2_runtime_bytes
            out["verifier_deploy_gas"] = deployment.deploy_gas
            out["over_code_size_limit"] = False
        except ChainError as exc:
            if "code-size limit" not in str(exc):
                raise
            # Still measure the gas: deploy the same compiled verifier on this anvil, which runs without the limit.
            progress(f"{exc}: deploying anyway (anvil --disable-code-size-limit)")
            halo2_address, adapter_address, runtime, deploy_gas = _deploy_oversized(chain, deployer, setup, work)
            out["halo2_runtime_bytes"] = runtime
            out["verifier_deploy_gas"] = deploy_gas
            out["over_code_size_limit"] = True
        out["verifier_s"] = time.perf_counter() - t0
        progress(f"solidity verifier: generate, compile, deploy: {out['verifier_s']:.1f} s")

        abi = json.loads((work / "verifier" / "Halo2Verifier.json").read_text())["abi"]
        halo2 = ContractClient(chain, halo2_address, abi, deployer)
        fn = halo2.contract.functions.verifyProof(proof.proof, list(instances))
        out["verify_call_ok"] = bool(halo2.call(fn))
        out["verify_estimate_gas"] = int(fn.estimate_gas({"from": deployer.address}))
        out["verify_tx_gas"] = halo2.transact(fn).gas_used
        progress(f"verifyProof: {out['verify_tx_gas']:,} gas (tx), call -> {out['verify_call_ok']}")

        n = shape.slots
        scores = proof.scores[:n]
        if any(not -(2**127) <= v < 2**127 for v in scores):
            raise RuntimeError(f"a proven score is outside int128 (postRound cannot carry it): {scores}")
        outliers = proof.outliers[:n]
        encoded = encode_round_proof(proof)
        for label, verifier in (("proven", adapter_address), ("plain", ZERO_ADDRESS)):
            params = ProjectParams(
                aggregator=aggregator.address,
                start_time=chain.now() + LEAD,
                num_rounds=2,
                submission_window=WINDOW,
                aggregation_window=WINDOW,
                min_trainers=n,
                max_trainers=n,
                initial_model_cid=INITIAL_CID,
                registration_mode=RegistrationMode.OPEN,
                stake=0,
                validation_set_commitment=b"\x11" * 32,
                verifier=verifier,
            )
            pid, _ = market.create_project(params, BUDGET)
            for t in trainers:
                market.as_account(t).register(pid, 0)
            opens = market.project(pid).round_opened_at
            if chain.now() < opens:
                chain.increase_time(opens - chain.now() + 1)
            gas = []
            for round_ in (0, 1):  # the same features (and so the same proof) both rounds: round 1 has warm credits
                subs = []
                for i, t in enumerate(trainers):
                    commitment = keccak(text=f"update {pid} {round_} {i}")
                    market.as_account(t).submit(pid, round_, UPDATE_CID, commitment, commitments[i])
                    subs.append(Submission(t.address, commitment, commitments[i]))
                state = market.project(pid)
                chain.increase_time(state.submission_deadline - chain.now() + 1)
                post = RoundPost(MODEL_CID, tuple(subs), scores, outliers, b"\x22" * 32, b"\x33" * 32)
                proof_arg = encoded if verifier != ZERO_ADDRESS else b""
                receipt = market.as_account(aggregator).post_round(pid, round_, post, proof_arg)
                gas.append(receipt.gas_used)
            out[f"post_{label}_gas"] = gas
            progress(f"postRound {label}: first {gas[0]:,}, later {gas[1]:,} gas")
    finally:
        chain.close()
        anvil.terminate()
        try:
            anvil.wait(timeout=10)
        except subprocess.TimeoutExpired:
            anvil.kill()
            anvil.wait()
    out["rss_mib"] = _peak_rss_mib()
    return out


def worker_main(args: argparse.Namespace) -> int:
    """Run one phase for one shape; the result (or the error) goes to ``args.out`` as JSON."""
    if args.zk_root:  # the driver's snapshot of zk/: every phase runs the same circuit and prover
        sys.path.insert(0, args.zk_root)
    from zk.prover import CircuitShape

    out = Path(args.out)
    try:
        shape = CircuitShape(args.worker_slots, args.worker_dim)
        cache, work = Path(args.cache), Path(args.work)
        if args.worker == "setup":
            result = worker_setup(shape, cache, work)
        elif args.worker == "prove":
            result = worker_prove(shape, cache, work, args.update_dim)
        else:
            result = worker_chain(shape, cache, work)
    except BaseException as exc:
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}".strip().splitlines()
        out.write_text(json.dumps({"error": message[0] if message else type(exc).__name__}))
        return 1
    out.write_text(json.dumps(result))
    return 0


# ---- driver ---------------------------------------------------------------------------------------------------


@dataclass
class ConfigResult:
    """Everything measured for one shape (phases that did not run stay empty)."""

    slots: int
    dim: int
    setup: dict[str, Any] = field(default_factory=dict)
    prove: dict[str, Any] = field(default_factory=dict)
    chain: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    load: float = 0.0

    @property
    def prove_goal(self) -> bool | None:
        if self.slots != PROVE_GOAL_SLOTS or "prove_s" not in self.prove:
            return None
        return self.prove["prove_s"] <= PROVE_GOAL_SECONDS

    @property
    def verification_gas(self) -> int | None:
        """Gas a proven later-round ``postRound`` costs above the same unverified one."""
        if "post_proven_gas" not in self.chain or "post_plain_gas" not in self.chain:
            return None
        return int(self.chain["post_proven_gas"][1] - self.chain["post_plain_gas"][1])

    @property
    def gas_goal(self) -> bool | None:
        gas = self.verification_gas
        return None if gas is None else gas <= VERIFY_GAS_GOAL


def _run_phase(
    phase: str, slots: int, dim: int, cache: Path, work: Path, timeout: float, update_dim: int, zk_root: Path
) -> tuple[dict[str, Any] | None, str | None, float]:
    """Run one worker subprocess (its own process group, killed whole on timeout); returns (result, error, wall)."""
    out = work / f"{phase}.json"
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        phase,
        "--worker-slots",
        str(slots),
        "--worker-dim",
        str(dim),
        "--cache",
        str(cache),
        "--work",
        str(work),
        "--out",
        str(out),
        "--update-dim",
        str(update_dim),
        "--zk-root",
        str(zk_root),
    ]
    log = work / f"{phase}.log"
    t0 = time.perf_counter()
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker and whatever it started (anvil)
            proc.wait()
            return None, f"{phase} > {timeout:.0f} s, killed", time.perf_counter() - t0
        except BaseException:  # interrupted: do not leave the worker (in its own session) running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    wall = time.perf_counter() - t0
    if out.exists():
        data = json.loads(out.read_text())
        if "error" not in data:
            return data, None, wall
        return None, f"{phase} failed: {data['error']}", wall
    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return None, f"{phase} failed (exit {proc.returncode}): {tail[-1] if tail else 'no output'}", wall


def run_config(
    slots: int, dim: int, root: Path, shared_cache: Path | None, zk_root: Path, args: argparse.Namespace
) -> ConfigResult:
    """All three phases for one shape; never raises for a failing phase."""
    result = ConfigResult(slots, dim, load=os.getloadavg()[0])
    work = root / f"K{slots}-k{dim}"
    work.mkdir(parents=True, exist_ok=True)
    cache = shared_cache or work / "cache"
    tag = f"K={slots} k={dim}"

    def phase(name: str, timeout: float) -> dict[str, Any] | None:
        """Run and log one phase; a failure is noted in ``result`` and gives None."""
        data, error, wall = _run_phase(name, slots, dim, cache, work, timeout, args.update_dim, zk_root)
        _log(f"{tag}: {name} {'done' if data else 'FAILED'} in {wall:.1f} s" + (f" ({error})" if error else ""))
        if data is None:
            timed_out = name == "setup" and "killed" in str(error)
            result.notes.append(f"setup > {timeout:.0f} s: skipped" if timed_out else str(error))
        return data

    try:
        data = phase("setup", args.max_seconds)
        if data is None:
            return result
        result.setup = data
        if data["cached"]:
            result.notes.append("setup cached (--cache)")
        data = phase("prove", args.max_prove_seconds)
        if data is None:
            return result
        result.prove = data
        if not data["ok"]:
            result.notes.append("circuit checks failed (ok = 0)")
        if not data["verified"]:
            result.notes.append("off-chain verification failed")
        elif data.get("verify_workaround"):
            result.notes.append("verified with the proof as a byte list (RoundCircuitSetup.verify returns False)")
        if args.no_chain:
            return result
        data = phase("chain", MAX_CHAIN_SECONDS)
        if data is None:
            return result
        result.chain = data
        if not data["verify_call_ok"]:
            result.notes.append("verifyProof returned false")
        if data.get("over_code_size_limit"):
            result.notes.append(
                f"verifier {data['halo2_runtime_bytes']:,} B > 24,576 B (EIP-170): not deployable on a public chain, "
                "measured on anvil --disable-code-size-limit"
            )
        return result
    except Exception as exc:  # the driver itself: record and go on with the next shape
        result.notes.append(f"{type(exc).__name__}: {exc}")
        return result
    finally:
        if shared_cache is None and not args.keep:
            shutil.rmtree(work / "cache", ignore_errors=True)  # proving keys are large: one shape on disk at a time


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _covers(small: tuple[int, int], big: tuple[int, int]) -> bool:
    return small[0] <= big[0] and small[1] <= big[1]


def run_grid(args: argparse.Namespace) -> list[ConfigResult]:
    """Every (K, k) of the grid, smallest first; a shape at least as large as one whose setup ran out of time is
    skipped without trying (setup cost grows with both K and k)."""
    root = Path(tempfile.mkdtemp(prefix="pocfl-bench-zk-"))
    shared = Path(args.cache).resolve() if args.cache else None
    # Snapshot zk/ so that every phase of every shape runs the same circuit even if the checkout changes meanwhile.
    zk_root = root / "src"
    shutil.copytree(REPO / "zk", zk_root / "zk", ignore=shutil.ignore_patterns("__pycache__"))
    args.circuit_sha = hashlib.sha256((zk_root / "zk" / "circuit.py").read_bytes()).hexdigest()[:12]
    _log(f"work folder: {root}; zk/ snapshot, circuit.py sha256 {args.circuit_sha}")
    if shared:
        _log(f"setup cache: {shared}")
    results: list[ConfigResult] = []
    too_slow: list[tuple[int, int]] = []
    try:
        for slots in args.slots:
            for dim in args.dims:
                shape = (slots, dim)
                prior = next((s for s in too_slow if _covers(s, shape)), None)
                if prior is not None:
                    r = ConfigResult(slots, dim, load=os.getloadavg()[0])
                    r.notes.append(f"skipped: setup of K={prior[0]} k={prior[1]} already > {args.max_seconds:.0f} s")
                    results.append(r)
                    _log(f"K={slots} k={dim}: {r.notes[-1]}")
                    continue
                r = run_config(slots, dim, root, shared, zk_root, args)
                if not r.setup and any("skipped" in n for n in r.notes):
                    too_slow.append(shape)
                results.append(r)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            _log(f"kept {root}")
    return results


# ---- tables ---------------------------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _s2(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _mark(goal: bool | None) -> str:
    return {None: "", True: " (pass)", False: " (FAIL)"}[goal]


def format_markdown(results: Sequence[ConfigResult]) -> str:
    """The proving table and the on-chain table."""
    lines = [
        "| K | k | logrows | setup s (compile + SRS + keys) [CPU] | prove s (witness + proof) [CPU] | verify s | "
        "peak RSS MiB (setup / prove) | proof bytes | instances | pk MiB | flagged (attackers) | note |",
        "|---:|---:|---:|---|---|---:|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        s, p = r.setup, r.prove
        setup = "-"
        if s:
            setup = f"{_s(s['setup_s'])} ({_s(s['compile_s'])} + {_s(s['srs_s'])} + {_s(s['keys_s'])})"
            if "setup_cpu_s" in s:
                setup += f" [{s['setup_cpu_s']:.0f} CPU s]"
        prove = "-"
        if p:
            prove = f"{_s(p['prove_s'])}{_mark(r.prove_goal)} ({_s(p['witness_s'])} + {_s(p['proof_s'])})"
            if "prove_cpu_s" in p:
                prove += f" [{p['prove_cpu_s']:.0f} CPU s]"
        rss = f"{_mib(s.get('rss_mib'))} / {_mib(p.get('rss_mib'))}" if s else "-"
        flagged = f"{p['flagged']} ({p['attackers']})" if p else "-"
        pk = f"{s['pk_bytes'] / MIB:,.0f}" if s else "-"
        lines.append(
            f"| {r.slots} | {r.dim} | {s.get('logrows', '-')} | {setup} | {prove} | {_s2(p.get('verify_s'))} | {rss} | "
            f"{_int(p.get('proof_bytes'))} | {p.get('instances', '-')} | {pk} | {flagged} | {'; '.join(r.notes)} |"
        )
    lines += [
        "",
        "| K | k | verifier runtime bytes | verifier pair deploy gas | verifyProof gas (tx) | "
        "postRound proven (first / later) | postRound unverified (first / later) | verification gas per round | note |",
        "|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in results:
        c = r.chain
        if not c:
            note = "; ".join(r.notes) if r.notes else "not run"
            lines.append(f"| {r.slots} | {r.dim} | - | - | - | - | - | - | {note} |")
            continue
        proven = " / ".join(f"{g:,}" for g in c["post_proven_gas"])
        plain = " / ".join(f"{g:,}" for g in c["post_plain_gas"])
        over = f"{_int(r.verification_gas)}{_mark(r.gas_goal)}"
        lines.append(
            f"| {r.slots} | {r.dim} | {c['halo2_runtime_bytes']:,} | {c['verifier_deploy_gas']:,} | "
            f"{c['verify_tx_gas']:,} | {proven} | {plain} | {over} | {'; '.join(r.notes)} |"
        )
    return "\n".join(lines)


def _machine_line() -> str:
    import platform

    try:
        import ezkl

        version = ezkl.__version__
    except ImportError:  # pragma: no cover - ezkl is a dependency
        version = "not installed"
    return f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, ezkl {version}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Returns
    -------
    int
        0 if every measured goal is met, 1 if one is missed, 2 on a usage error.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--slots", type=int, nargs="+", default=list(SLOTS), help="circuit slot counts K")
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMS), help="sketch dimensions k")
    parser.add_argument("--quick", action="store_true", help="K=4, k=16 only (overrides --slots/--dims)")
    parser.add_argument(
        "--max-seconds", type=float, default=MAX_SECONDS, help="setup budget per shape (the shape is skipped past it)"
    )
    parser.add_argument("--max-prove-seconds", type=float, default=MAX_PROVE_SECONDS, help="proving budget per shape")
    parser.add_argument("--cache", help="reuse setups cached in this folder (setup time is then not measured)")
    parser.add_argument("--update-dim", type=int, default=UPDATE_DIM, help="parameters per simulated update")
    parser.add_argument("--no-chain", action="store_true", help="skip the on-chain phase (no anvil, no node)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (keys, proofs, logs)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown tables")
    # Internal: one phase of one shape, run by the driver in a subprocess.
    parser.add_argument("--worker", choices=("setup", "prove", "chain"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-slots", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-dim", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--zk-root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.quick:
        args.slots, args.dims = list(QUICK_SLOTS), list(QUICK_DIMS)
    if any(not 2 <= k <= 64 for k in args.slots) or any(not 2 <= d <= 512 for d in args.dims):
        parser.error("--slots must be in [2, 64] and --dims in [2, 512]")

    t0 = time.perf_counter()
    results = run_grid(args)
    wall = time.perf_counter() - t0
    if args.json:
        payload = {
            "machine": _machine_line(),
            "circuit_sha256": args.circuit_sha,
            "wall_s": wall,
            "results": [asdict(r) for r in results],
        }
        print(json.dumps(payload, indent=2))
    else:
        loads = ", ".join(f"{r.load:.1f}" for r in results)
        print(f"Round circuit benchmark: {_machine_line()}; circuit.py sha256 {args.circuit_sha}; {wall / 60:.1f} min")
        print(f"1-min load average when each shape started: {loads}")
        print()
        print(format_markdown(results))
    goals = [g for r in results for g in (r.prove_goal, r.gas_goal) if g is not None]
    return 0 if all(goals) else 1


if __name__ == "__main__":
    sys.exit(main())
