"""The circuit cache (zk.cache) and its use by zk.prover, on fake files and a stand-in ezkl (no circuit is built)."""

from __future__ import annotations

import gc
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from zk import prover
from zk.cache import (
    MANIFEST,
    Lookup,
    UnsafeCacheError,
    check_entry,
    default_cache_dir,
    record_entry,
    secure_dir,
    sha256_file,
)
from zk.prover import CircuitShape, ProverError, RoundCircuitSetup

pytestmark = pytest.mark.unit

FILES = ("settings.json", "net.compiled")
SETTINGS = json.dumps({"run_args": {"logrows": 12}, "model_output_scales": [13]}).encode()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _entry(root: Path, compiled: bytes = b"honest circuit") -> Path:
    entry = root / "entry"
    entry.mkdir(mode=0o700)
    (entry / "settings.json").write_bytes(SETTINGS)
    (entry / "net.compiled").write_bytes(compiled)
    return entry


# --- the cache folder ---------------------------------------------------------------------------------------


def test_the_default_cache_is_in_the_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POCFL_HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / "zk"
    assert "pocfl-zk-circuits" not in str(default_cache_dir())


def test_a_new_cache_folder_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = secure_dir(tmp_path / "state" / "zk")
    finally:
        os.umask(old)
    assert _mode(path) == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_cache_folder_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "pocfl-zk-circuits"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(UnsafeCacheError, match="writable by others"):
        secure_dir(shared)


def test_a_cache_folder_of_another_user_or_a_symlink_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = secure_dir(tmp_path / "zk")
    link = tmp_path / "link"
    link.symlink_to(mine)
    with pytest.raises(UnsafeCacheError, match="symbolic link"):
        secure_dir(link)
    monkeypatch.setattr(os, "getuid", lambda: os.stat(mine).st_uid + 1)
    with pytest.raises(UnsafeCacheError, match="not to you"):
        secure_dir(mine)


# --- entries --------------------------------------------------------------------------------------------------


def test_a_recorded_entry_is_a_hit_and_private(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    (entry / "net.compiled").chmod(0o664)  # as ezkl leaves it under a 002 umask
    hashes = record_entry(entry, FILES)
    assert hashes["net.compiled"] == sha256_file(entry / "net.compiled")
    assert check_entry(entry, FILES).status is Lookup.HIT
    assert _mode(entry) == 0o700 and _mode(entry / MANIFEST) == 0o600
    assert not _mode(entry / "net.compiled") & 0o022


def test_a_tampered_circuit_is_detected(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    record_entry(entry, FILES)
    (entry / "net.compiled").write_bytes(b"planted circuit")
    found = check_entry(entry, FILES)
    assert found.status is Lookup.MISMATCH and "net.compiled" in found.reason


def test_a_planted_entry_without_manifest_is_not_a_hit(tmp_path: Path) -> None:
    assert check_entry(_entry(tmp_path, b"planted circuit"), FILES).status is Lookup.UNRECORDED


@pytest.mark.parametrize("manifest", ["not json", json.dumps({"format": "other", "sha256": {}}), json.dumps([])])
def test_a_malformed_manifest_is_a_mismatch(tmp_path: Path, manifest: str) -> None:
    entry = _entry(tmp_path)
    (entry / MANIFEST).write_text(manifest)
    assert check_entry(entry, FILES).status is Lookup.MISMATCH


def test_the_key_hash_is_checked_whatever_the_manifest_says(tmp_path: Path) -> None:
    """An entry whose manifest was rewritten to match planted settings is still refused: the key is the hash."""
    entry = _entry(tmp_path)
    (entry / "settings.json").write_bytes(b'{"other": "settings"}')
    record_entry(entry, FILES)
    found = check_entry(entry, FILES, expect={"settings.json": prover.hashlib.sha256(SETTINGS).hexdigest()})
    assert found.status is Lookup.MISMATCH


def test_a_symlinked_or_group_writable_file_is_refused(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    record_entry(entry, FILES)
    (entry / "net.compiled").chmod(0o666)
    with pytest.raises(UnsafeCacheError, match="writable by others"):
        check_entry(entry, FILES)
    (entry / "net.compiled").unlink()
    (tmp_path / "elsewhere").write_bytes(b"honest circuit")
    (entry / "net.compiled").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeCacheError, match="symbolic link"):
        check_entry(entry, FILES)


def test_missing_pieces(tmp_path: Path) -> None:
    assert check_entry(tmp_path / "nothing", FILES).status is Lookup.MISSING
    entry = _entry(tmp_path)
    record_entry(entry, FILES)
    (entry / "net.compiled").unlink()
    assert check_entry(entry, FILES).status is Lookup.MISSING


# --- the prover's use of the cache, with a stand-in ezkl ----------------------------------------------------------


class FakeEzkl:
    """Compiles by writing a recognisable file; counts compilations."""

    __version__ = "fake"

    def __init__(self) -> None:
        self.compiled = 0

    def compile_circuit(self, *, model: str, compiled_circuit: str, settings_path: str) -> bool:
        self.compiled += 1
        Path(compiled_circuit).write_bytes(b"compiled from " + Path(settings_path).read_bytes())
        return True


@pytest.fixture
def fake_ezkl(monkeypatch: pytest.MonkeyPatch) -> FakeEzkl:
    fake = FakeEzkl()
    monkeypatch.setattr(prover, "_ezkl", lambda: fake)
    monkeypatch.setattr(prover, "_code_hash", lambda: "testcode")

    def export(shape: CircuitShape, onnx: Path, data: Path) -> None:
        onnx.write_bytes(b"onnx")
        data.write_text("{}")

    monkeypatch.setattr(prover, "_export", export)
    return fake


SHAPE = CircuitShape(2, 4)


def test_compiled_only_reuses_a_verified_entry_and_rebuilds_a_planted_one(tmp_path: Path, fake_ezkl: FakeEzkl) -> None:
    """Regression: any ``net.compiled`` found in the (shared) cache was used as the circuit to audit with."""
    cache = tmp_path / "zk"
    setup = RoundCircuitSetup.compiled_only(SHAPE, SETTINGS, cache)
    honest = setup.compiled_path.read_bytes()
    assert honest == b"compiled from " + SETTINGS and fake_ezkl.compiled == 1
    assert _mode(cache) == 0o700 and (setup.directory / MANIFEST).is_file()
    assert not list(setup.directory.glob("input.json")) and not list(cache.glob(".*"))

    assert RoundCircuitSetup.compiled_only(SHAPE, SETTINGS, cache).compiled_path.read_bytes() == honest
    assert fake_ezkl.compiled == 1, "a verified entry is reused"

    setup.compiled_path.write_bytes(b"planted circuit")  # tampered in place: its hash no longer matches
    again = RoundCircuitSetup.compiled_only(SHAPE, SETTINGS, cache)
    assert again.compiled_path.read_bytes() == honest and fake_ezkl.compiled == 2

    (again.directory / MANIFEST).unlink()  # a planted entry has no manifest of ours
    (again.directory / "net.compiled").write_bytes(b"planted circuit")
    assert RoundCircuitSetup.compiled_only(SHAPE, SETTINGS, cache).compiled_path.read_bytes() == honest
    assert fake_ezkl.compiled == 3


def test_compiled_only_refuses_a_shared_cache_folder(tmp_path: Path, fake_ezkl: FakeEzkl) -> None:
    shared = tmp_path / "pocfl-zk-circuits"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafeCacheError):
        RoundCircuitSetup.compiled_only(SHAPE, SETTINGS, shared)
    assert fake_ezkl.compiled == 0 and list(shared.iterdir()) == []


def _setup_entry(cache: Path, *, manifest: bool) -> Path:
    entry = secure_dir(cache) / SHAPE.key
    entry.mkdir(mode=0o700)
    for name in RoundCircuitSetup.FILES:
        (entry / name).write_bytes(SETTINGS if name == "settings.json" else name.encode())
    (cache / "srs").mkdir()
    (cache / "srs" / "kzg12.srs").write_bytes(b"srs")
    if manifest:
        record_entry(entry, RoundCircuitSetup.FILES)
    return entry


def test_the_aggregator_proves_only_with_a_verified_setup(tmp_path: Path, fake_ezkl: FakeEzkl) -> None:
    entry = _setup_entry(tmp_path / "zk", manifest=True)
    assert RoundCircuitSetup.build(SHAPE, tmp_path / "zk", cached_only=True).directory == entry
    (entry / "pk.key").write_bytes(b"planted proving key")
    with pytest.raises(ProverError, match=r"pk.key does not hash as recorded"):
        RoundCircuitSetup.build(SHAPE, tmp_path / "zk", cached_only=True)


def test_a_setup_from_before_manifests_is_adopted_by_its_owner(tmp_path: Path, fake_ezkl: FakeEzkl) -> None:
    entry = _setup_entry(tmp_path / "zk", manifest=False)
    notes: list[str] = []
    assert RoundCircuitSetup.build(SHAPE, tmp_path / "zk", cached_only=True, progress=notes.append).directory == entry
    assert (entry / MANIFEST).is_file() and any("recorded the hashes" in n for n in notes)
    assert check_entry(entry, RoundCircuitSetup.FILES).status is Lookup.HIT


def test_the_audit_falls_back_to_a_private_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An unsafe cache folder never stops the audit from recomputing with the exact circuit."""
    from pocfl.audit.proofs import CircuitCache

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    used: list[Path] = []

    def compiled_only(shape: Any, settings: bytes, cache_dir: Path) -> Any:
        secure_dir(cache_dir)
        used.append(cache_dir)
        return SimpleNamespace(directory=cache_dir)

    monkeypatch.setattr(RoundCircuitSetup, "compiled_only", staticmethod(compiled_only))
    warnings: list[str] = []
    circuits = CircuitCache(shared)
    assert circuits.compiled(0, SHAPE, SETTINGS, warnings.append) is not None
    assert used and used[-1] != shared and _mode(used[-1]) == 0o700
    assert any("writable by others" in w for w in warnings)
    private = used[-1]
    del circuits
    gc.collect()
    assert not private.exists(), "the private folder goes with the audit"
