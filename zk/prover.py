"""Typed facade over ezkl: build the round circuit, set it up (cached per shape), prove, verify, emit Solidity.

Every ezkl call of the project goes through this module; ezkl's coroutines are awaited here, arguments are
passed by keyword (the 23.x stubs have wrong positional orders), and failures become :class:`ProverError`.

Trust: :meth:`RoundCircuitSetup.build` makes a *local* structured reference string with ``ezkl.gen_srs`` when none
is given. Whoever ran ``gen_srs`` could forge proofs, so a local SRS is for tests and demos only; production
points ``srs_dir`` at the public perpetual-powers-of-tau files (``kzg{logrows}.srs``) fetched on a networked machine.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pocfl.untrusted import loads_untrusted
from zk.cache import Lookup, check_entry, record_entry, secure_dir
from zk.circuit import RoundCircuit, WitnessLayout
from zk.commitment import (
    BN254_MODULUS,
    DEFAULT_SCALE,
    ProverError,
    feature_commitment,
    felt_to_int,
    int_to_felt,
    signed,
)
from zk.commitment import load_ezkl as _ezkl
from zk.decision import FeatureDecision, decide_features, pad_slots, update_features

__all__ = [
    "BN254_MODULUS",
    "DEFAULT_SCALE",
    "CircuitShape",
    "ProverError",
    "RoundCircuitSetup",
    "RoundProof",
    "feature_commitment",
    "felt_to_int",
    "int_to_felt",
    "signed",
]

CIRCUIT_VERSION = 1
Progress = Callable[[str], None]


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Ezkl's Rust code prints tables to file descriptor 1 (the CLI's ``--json`` output)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (embedded interpreter): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _call(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call an ezkl function that may be a coroutine; some need a running event loop even to be called."""

    async def inside_loop() -> Any:
        value = fn(**kwargs)
        return await value if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future) else value

    with _stdout_to_stderr():
        return asyncio.run(inside_loop())


@functools.cache
def _code_hash() -> str:
    """Hash of the circuit's source, its version and ezkl's version (read once per process)."""
    src = Path(__file__).with_name("circuit.py").read_bytes()
    return hashlib.sha256(src + f"|{CIRCUIT_VERSION}|{_ezkl().__version__}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class CircuitShape:
    """Which circuit.

    ``slots`` trainers (submissions beyond are refused), ``sketch_dim`` features, fixed-point ``scale`` (values are
    multiples of ``2**-scale``).
    """

    slots: int
    sketch_dim: int
    scale: int = DEFAULT_SCALE

    def __post_init__(self) -> None:
        if not 2 <= self.slots <= 64:
            raise ValueError(f"slots must be in [2, 64], got {self.slots}")
        if not 2 <= self.sketch_dim <= 512:
            raise ValueError(f"sketch_dim must be in [2, 512], got {self.sketch_dim}")
        if not 8 <= self.scale <= 16:
            raise ValueError(f"scale must be in [8, 16], got {self.scale}")

    @property
    def key(self) -> str:
        """Cache key: the shape, the circuit source and the ezkl version (any change means a new setup)."""
        return f"K{self.slots}-k{self.sketch_dim}-s{self.scale}-{_code_hash()}"

    @property
    def score_unit(self) -> int:
        """Posted scores of a proven round are fixed-point at this many units per utility unit."""
        return 1 << self.scale

    @property
    def num_instances(self) -> int:
        """Public instances: ``slots`` feature hashes, the witness hash, ``ok``, and 3 values per slot."""
        return 4 * self.slots + 2


@dataclass(frozen=True)
class RoundProof:
    """One proof and what it binds.

    Attributes
    ----------
    proof : bytes
        The Halo2 proof (what ``verifyProof`` takes).
    instances : tuple of int
        Public instances, in circuit order (field elements).
    ok : bool
        Whether every witness check of the circuit passed (a proof with ``ok`` false is useless on chain).
    outliers, rejected : tuple of bool
        Per slot, as proven.
    scores : tuple of int
        Per slot, fixed-point at ``2**scale`` (what ``postRound`` must carry).
    witness_hash : int
        Poseidon hash of the witness vector (a public instance the aggregator supplies with the proof).
    prove_seconds : float
    """

    proof: bytes
    instances: tuple[int, ...]
    ok: bool
    outliers: tuple[bool, ...]
    rejected: tuple[bool, ...]
    scores: tuple[int, ...]
    witness_hash: int
    prove_seconds: float
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON form stored next to the round report."""
        return {
            "proof": "0x" + self.proof.hex(),
            "instances": [hex(i) for i in self.instances],
            "ok": self.ok,
            "outliers": list(self.outliers),
            "rejected": list(self.rejected),
            "scores": list(self.scores),
            "witness_hash": hex(self.witness_hash),
            "prove_seconds": self.prove_seconds,
            "ezkl_proof": self.raw,
        }


def _quiet_progress(_: str) -> None:
    pass


def _publish_entry(tmp: Path, directory: Path, files: Sequence[str]) -> None:
    """Record ``tmp``'s hashes, then move it to ``directory`` (replacing an entry that failed its check)."""
    record_entry(tmp, files)
    if directory.is_symlink() or directory.is_file():
        directory.unlink()
    elif directory.exists():
        shutil.rmtree(directory)
    tmp.replace(directory)


@contextmanager
def _step(progress: Progress, label: str) -> Iterator[None]:
    progress(f"{label} ...")
    t0 = time.perf_counter()
    yield
    progress(f"{label}: {time.perf_counter() - t0:.1f} s")


SETTINGS_MAX_SIZE = 16 << 20
"""Largest circuit settings JSON read (ezkl writes a few KiB)."""


def _compile(ezkl: Any, shape: CircuitShape, tmp: Path) -> None:
    """Export the circuit of ``shape`` to ONNX in ``tmp``, generate and calibrate its settings, and compile it."""
    _export(shape, tmp / "net.onnx", tmp / "input.json")
    args = ezkl.PyRunArgs()
    args.input_visibility = "hashed"
    args.output_visibility = "public"
    args.param_visibility = "fixed"
    args.input_scale = shape.scale
    args.param_scale = shape.scale
    # One advice column: the generated verifier of two columns exceeds the 24,576-byte code-size limit.
    args.num_inner_cols = 1
    if not ezkl.gen_settings(model=str(tmp / "net.onnx"), output=str(tmp / "settings.json"), py_run_args=args):
        raise ProverError("ezkl.gen_settings failed")
    ok = _call(
        ezkl.calibrate_settings,
        data=str(tmp / "input.json"),
        model=str(tmp / "net.onnx"),
        settings=str(tmp / "settings.json"),
        target="resources",
        scales=[shape.scale],
        max_logrows=22,
    )
    if ok is False:
        raise ProverError("ezkl.calibrate_settings failed")
    calibrated = json.loads((tmp / "settings.json").read_text())
    if calibrated["run_args"]["num_inner_cols"] != 1:
        raise ProverError("calibration changed num_inner_cols; the verifier would not fit on chain")
    if not ezkl.compile_circuit(
        model=str(tmp / "net.onnx"),
        compiled_circuit=str(tmp / "net.compiled"),
        settings_path=str(tmp / "settings.json"),
    ):
        raise ProverError("ezkl.compile_circuit failed")


def _srs(ezkl: Any, srs_dir: Path, logrows: int, progress: Progress) -> Path:
    """``srs_dir/kzg{logrows}.srs``, generated locally when missing (test-only trust)."""
    srs = srs_dir / f"kzg{logrows}.srs"
    if not srs.exists():
        with _step(progress, f"local SRS 2^{logrows} (test-only trust)"):
            srs_dir.mkdir(parents=True, exist_ok=True)
            part = srs.with_suffix(f".{os.getpid()}.part")
            ezkl.gen_srs(srs_path=str(part), logrows=logrows)
            part.replace(srs)
    return srs


class RoundCircuitSetup:
    """The compiled round circuit of one shape with its keys, in ``directory`` (one folder per shape).

    Use :meth:`build` (cached: an existing complete folder is reused).
    """

    FILES = ("net.onnx", "settings.json", "net.compiled", "vk.key", "pk.key")
    COMPILED_FILES = ("net.onnx", "settings.json", "net.compiled")
    """The files of a keyless, evaluation-only entry (:meth:`compiled_only`)."""

    def __init__(self, shape: CircuitShape, directory: Path, srs_path: Path) -> None:
        self.shape = shape
        self.directory = directory
        self.srs_path = srs_path
        # the settings may be the ones a round report names (compiled_only): screened like any stored JSON
        self.settings: dict[str, Any] = loads_untrusted(
            (directory / "settings.json").read_bytes(), max_size=SETTINGS_MAX_SIZE, what="the circuit settings"
        )

    # -- paths --------------------------------------------------------------------------------------------------
    @property
    def onnx_path(self) -> Path:
        """The exported ONNX graph."""
        return self.directory / "net.onnx"

    @property
    def settings_path(self) -> Path:
        """The ezkl settings (scales, logrows, visibility)."""
        return self.directory / "settings.json"

    @property
    def compiled_path(self) -> Path:
        """The compiled circuit."""
        return self.directory / "net.compiled"

    @property
    def vk_path(self) -> Path:
        """Verifying key."""
        return self.directory / "vk.key"

    @property
    def pk_path(self) -> Path:
        """Proving key (hundreds of MB: never commit it)."""
        return self.directory / "pk.key"

    @property
    def logrows(self) -> int:
        """log2 of the circuit's rows (the SRS size it needs)."""
        return int(self.settings["run_args"]["logrows"])

    @property
    def output_scale(self) -> int:
        """Fixed-point scale of the outputs (flags are 0 or 2**output_scale)."""
        return int(self.settings["model_output_scales"][0])

    # -- build --------------------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        shape: CircuitShape,
        cache_dir: Path,
        *,
        srs_dir: Path | None = None,
        progress: Progress = _quiet_progress,
        cached_only: bool = False,
    ) -> RoundCircuitSetup:
        """Export, configure, compile and set up the circuit of ``shape`` (or reuse a cached setup).

        Parameters
        ----------
        shape
            Circuit shape.
        cache_dir
            Parent of the per-shape folders (never committed: proving keys are hundreds of MB).
        srs_dir
            Folder of ``kzg{logrows}.srs`` files. A missing file is generated locally with ``ezkl.gen_srs``
            (test-only trust: see the module docstring). Default ``cache_dir / "srs"``.
        progress
            Called with one line per step (setup takes seconds to minutes).
        cached_only
            Refuse to set up anew (an aggregator must prove with the keys its deployed verifier was made from).
        """
        ezkl = _ezkl()
        directory = cache_dir / shape.key
        srs_dir = srs_dir or cache_dir / "srs"
        cached = cls._cached(shape, secure_dir(cache_dir), srs_dir, progress, cached_only=cached_only)
        if cached is not None:
            return cached
        tmp = Path(tempfile.mkdtemp(prefix=f".{shape.key}.", dir=cache_dir))
        try:
            with _step(progress, f"circuit {shape.key}: export and compile"):
                _compile(ezkl, shape, tmp)
            settings = json.loads((tmp / "settings.json").read_text())
            logrows = int(settings["run_args"]["logrows"])
            srs = _srs(ezkl, srs_dir, logrows, progress)
            with _step(progress, f"setup (logrows {logrows})"):
                if not ezkl.setup(
                    model=str(tmp / "net.compiled"),
                    vk_path=str(tmp / "vk.key"),
                    pk_path=str(tmp / "pk.key"),
                    srs_path=str(srs),
                ):
                    raise ProverError("ezkl.setup failed")
            (tmp / "input.json").unlink()
            _publish_entry(tmp, directory, cls.FILES)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(shape, directory, srs)

    @classmethod
    def _cached(
        cls, shape: CircuitShape, cache_dir: Path, srs_dir: Path, progress: Progress, *, cached_only: bool
    ) -> RoundCircuitSetup | None:
        """The verified cached setup of ``shape``, or None to build one (a refusal when ``cached_only``)."""
        directory = cache_dir / shape.key
        found = check_entry(directory, cls.FILES)
        if found.status is Lookup.UNRECORDED and cached_only:
            # A setup from before manifests, in a folder only this user can write: adopt it (its keys are the ones
            # a deployed verifier was made from and cannot be rebuilt), and verify it from now on.
            record_entry(directory, cls.FILES)
            progress(f"circuit {shape.key}: recorded the hashes of the setup in {directory}")
            found = check_entry(directory, cls.FILES)
        if found.status is Lookup.HIT:
            settings = json.loads((directory / "settings.json").read_text())
            srs = srs_dir / f"kzg{settings['run_args']['logrows']}.srs"
            if srs.exists():
                progress(f"circuit {shape.key}: cached setup in {directory} (hashes verified)")
                return cls(shape, directory, srs)
        elif found.status is Lookup.MISMATCH:
            if cached_only:
                raise ProverError(f"the cached setup of circuit {shape.key} is not usable: {found.reason}")
            progress(f"circuit {shape.key}: {found.reason}; rebuilding")
        if cached_only:
            raise ProverError(
                f"no setup of circuit {shape.key} in {cache_dir}: prove with the setup the project's verifier was "
                "deployed from (`pocfl deploy --with-verifier` writes it; pass its folder with --zk-cache)"
            )
        return None

    @classmethod
    def compiled_only(cls, shape: CircuitShape, settings: bytes, cache_dir: Path) -> RoundCircuitSetup:
        """The circuit compiled with given (published) settings, without keys: :meth:`evaluate` works, proving not.

        An auditor rebuilds the exact circuit a round was proven with from the code and the settings the round
        report names, and recomputes the flags bit for bit.
        """
        ezkl = _ezkl()
        sha = hashlib.sha256(settings).hexdigest()
        directory = secure_dir(cache_dir) / f"{shape.key}-eval-{sha[:16]}"
        # Keyed by the settings' hash and verified by it: a planted or altered circuit is rebuilt, never used.
        if check_entry(directory, cls.COMPILED_FILES, expect={"settings.json": sha}).status is not Lookup.HIT:
            tmp = Path(tempfile.mkdtemp(prefix=f".{shape.key}.", dir=cache_dir))
            try:
                _export(shape, tmp / "net.onnx", tmp / "input.json")
                (tmp / "settings.json").write_bytes(settings)
                with _stdout_to_stderr():
                    ok = ezkl.compile_circuit(
                        model=str(tmp / "net.onnx"),
                        compiled_circuit=str(tmp / "net.compiled"),
                        settings_path=str(tmp / "settings.json"),
                    )
                if not ok:
                    raise ProverError("ezkl.compile_circuit failed on the published settings")
                (tmp / "input.json").unlink(missing_ok=True)
                _publish_entry(tmp, directory, cls.COMPILED_FILES)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return cls(shape, directory, directory / "no-srs")

    # -- prove / verify -----------------------------------------------------------------------------------------
    def decide(
        self, features: Sequence[npt.ArrayLike], rejected: Sequence[bool], scores: Sequence[int]
    ) -> FeatureDecision:
        """The float reference decision and witness, with unused slots padded (rejected, zero features)."""
        return self._decide_padded(features, rejected, scores)[1]

    def _decide_padded(
        self, features: Sequence[npt.ArrayLike], rejected: Sequence[bool], scores: Sequence[int]
    ) -> tuple[list[npt.NDArray[np.float64]], FeatureDecision]:
        if len(features) > self.shape.slots:
            raise ProverError(f"{len(features)} submissions exceed the circuit's {self.shape.slots} slots")
        unit = float(self.shape.score_unit)
        feats, rej, sc = pad_slots(
            features, rejected, [int(s) / unit for s in scores], slots=self.shape.slots, dim=self.shape.sketch_dim
        )
        return feats, decide_features(feats, rej, sc, dim=self.shape.sketch_dim)

    def evaluate(self, features: Sequence[npt.ArrayLike], rejected: Sequence[bool]) -> tuple[bool, ...]:
        """The circuit's outlier flags for ``features`` (ezkl's witness, no proof): the flags a round must post.

        The float reference agrees except within fixed-point rounding of a threshold; the circuit is authoritative.
        """
        n = len(features)
        outs = self._outputs(features, rejected, [0] * n)
        return outs.outliers[:n]

    def _outputs(
        self, features: Sequence[npt.ArrayLike], rejected: Sequence[bool], scores: Sequence[int]
    ) -> RoundProof:
        ezkl = _ezkl()
        data = self._input_data(features, rejected, scores)
        with tempfile.TemporaryDirectory(prefix="pocfl-witness-") as tmp_s:
            tmp = Path(tmp_s)
            (tmp / "input.json").write_text(json.dumps(data))
            self._witness(ezkl, tmp)
            witness = json.loads((tmp / "witness.json").read_text())
        fake = {"instances": [[*witness["processed_inputs"]["poseidon_hash"], *witness["outputs"][0]]], "proof": ""}
        return self._parse_proof(fake, 0.0)

    def _input_data(
        self, features: Sequence[npt.ArrayLike], rejected: Sequence[bool], scores: Sequence[int]
    ) -> dict[str, Any]:
        feats, decision = self._decide_padded(features, rejected, scores)
        if not np.all(np.abs(decision.witness) < 2.0 ** (27 - self.shape.scale)):
            raise ProverError("a witness value is outside the circuit's fixed-point range")
        return {"input_data": [f.tolist() for f in feats] + [decision.witness.tolist()]}

    def _witness(self, ezkl: Any, tmp: Path) -> None:
        try:
            _call(
                ezkl.gen_witness,
                data=str(tmp / "input.json"),
                model=str(self.compiled_path),
                output=str(tmp / "witness.json"),
            )
        except Exception as exc:
            raise ProverError(f"witness generation failed (feature values out of the circuit's range?): {exc}") from exc

    def prove(
        self,
        features: Sequence[npt.ArrayLike],
        rejected: Sequence[bool],
        scores: Sequence[int],
        *,
        progress: Progress = _quiet_progress,
    ) -> RoundProof:
        """Prove the round decision over ``features`` (one per submission, in submission order).

        ``scores`` are the fixed-point scores at ``2**scale`` the aggregator intends to post; the proof outputs them
        with every outlier's set to 0 (read the proven values from the result).
        """
        ezkl = _ezkl()
        data = self._input_data(features, rejected, scores)
        with tempfile.TemporaryDirectory(prefix="pocfl-prove-") as tmp_s:
            tmp = Path(tmp_s)
            (tmp / "input.json").write_text(json.dumps(data))
            with _step(progress, "witness"):
                self._witness(ezkl, tmp)
            t0 = time.perf_counter()
            with _step(progress, "prove"):
                try:
                    ezkl.prove(
                        witness=str(tmp / "witness.json"),
                        model=str(self.compiled_path),
                        pk_path=str(self.pk_path),
                        proof_path=str(tmp / "proof.json"),
                        srs_path=str(self.srs_path),
                    )
                except Exception as exc:
                    raise ProverError(f"proving failed: {exc}") from exc
            seconds = time.perf_counter() - t0
            proof_json = json.loads((tmp / "proof.json").read_text())
        return self._parse_proof(proof_json, seconds)

    def _parse_proof(self, proof_json: dict[str, Any], seconds: float) -> RoundProof:
        k = self.shape.slots
        instances = tuple(felt_to_int(h) for h in proof_json["instances"][0])
        if len(instances) != 4 * k + 2:
            raise ProverError(f"expected {4 * k + 2} public instances, got {len(instances)}")
        one = 1 << self.output_scale
        outs = [signed(v) for v in instances[k + 1 :]]

        def as_bool(v: int) -> bool:
            if v not in (0, one):
                raise ProverError(f"a flag output is {v}, not 0 or {one}")
            return v == one

        ok = as_bool(outs[0])
        outliers = tuple(as_bool(v) for v in outs[1 : 1 + k])
        scores = tuple(outs[1 + k : 1 + 2 * k])
        rejected = tuple(as_bool(v) for v in outs[1 + 2 * k : 1 + 3 * k])
        raw = proof_json["proof"]
        proof = bytes(raw) if isinstance(raw, list) else bytes.fromhex(str(raw).removeprefix("0x"))
        return RoundProof(
            proof=proof,
            instances=instances,
            ok=ok,
            outliers=outliers,
            rejected=rejected,
            scores=scores,
            witness_hash=instances[k],
            prove_seconds=seconds,
            raw=proof_json,
        )

    def verify(self, proof: RoundProof) -> bool:
        """Verify off chain with the verifying key (no chain needed)."""
        ezkl = _ezkl()
        with tempfile.TemporaryDirectory(prefix="pocfl-verify-") as tmp_s:
            path = Path(tmp_s) / "proof.json"
            data = dict(proof.raw)  # ezkl's own file, with the fields a caller may have changed put back in
            data["instances"] = [[v.to_bytes(32, "little").hex() for v in proof.instances]]
            data["proof"] = list(proof.proof) if isinstance(data.get("proof"), list) else "0x" + proof.proof.hex()
            data.pop("hex_proof", None)
            path.write_text(json.dumps(data))
            try:
                return bool(
                    ezkl.verify(
                        proof_path=str(path),
                        settings_path=str(self.settings_path),
                        vk_path=str(self.vk_path),
                        srs_path=str(self.srs_path),
                    )
                )
            except Exception:
                return False

    def solidity_verifier(self, out_dir: Path) -> Path:
        """Write the Halo2 Solidity verifier of this setup (``Halo2Verifier.sol``) into ``out_dir``."""
        ezkl = _ezkl()
        out_dir.mkdir(parents=True, exist_ok=True)
        sol = out_dir / "Halo2Verifier.sol"
        try:
            _call(
                ezkl.create_evm_verifier,
                vk_path=str(self.vk_path),
                settings_path=str(self.settings_path),
                sol_code_path=str(sol),
                abi_path=str(out_dir / "Halo2Verifier.abi.json"),
                srs_path=str(self.srs_path),
                reusable=False,
            )
        except Exception as exc:
            # 23.x writes the .sol first and then fails to download solc for the ABI step; the .sol is what we need.
            if not sol.exists():
                raise ProverError(f"create_evm_verifier failed: {exc}") from exc
        return sol


def _export(shape: CircuitShape, onnx_path: Path, input_path: Path) -> None:
    """Export the circuit to ONNX with a representative input (calibration data)."""
    import torch

    k, dim = shape.slots, shape.sketch_dim
    rng = np.random.default_rng(0)
    base = rng.normal(size=4 * dim)
    ups = [base + 0.7 * rng.normal(size=4 * dim) for _ in range(k)]
    ups[0] = -ups[0]
    ups[-1] = ups[-1] * 50.0
    seed = bytes(32)
    feats = [update_features(u, seed, dim, shape.scale) for u in ups]
    scores = [0.5 - 0.1 * i for i in range(k)]
    decision = decide_features(feats, [False] * k, scores, dim=dim)
    ins = [torch.tensor(f, dtype=torch.float32).reshape(1, dim + 1) for f in feats]
    ins.append(torch.tensor(decision.witness, dtype=torch.float32).reshape(1, WitnessLayout(k).size))
    model = RoundCircuit(k, dim).eval()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated in favour of dynamo (needs onnxscript)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            tuple(ins),
            str(onnx_path),
            input_names=[f"q{i}" for i in range(k)] + ["w"],
            output_names=["out"],
            opset_version=17,
            dynamo=False,
        )
    input_path.write_text(json.dumps({"input_data": [t.reshape(-1).tolist() for t in ins]}))
