"""Trainer evidence files are untrusted input: round trip, and every malformed or oversized file is a named error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pocfl.rounds.evidence import MAX_EVIDENCE_JSON, Evidence, EvidenceError, bounded, load_evidence, write_evidence

pytestmark = pytest.mark.unit

TRAINER = "0x" + "ab" * 20
MARKET = "0x" + "cd" * 20


def sample(plaintext: bytes = b"update bytes") -> Evidence:
    commitment = b"\x11" * 32
    return Evidence(7, MARKET, 3, 2, TRAINER, "bafkqaaa", commitment, True, plaintext, "rejected", "CorruptUpdateError")


def saved(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    path = write_evidence(tmp_path / "evidence", sample())
    return path, json.loads(path.read_text())


def test_round_trip_and_atomic_files(tmp_path: Path) -> None:
    path, doc = saved(tmp_path)
    loaded = load_evidence(path)
    context = (loaded.chain_id, loaded.market, loaded.project_id, loaded.round, loaded.trainer)
    assert context == (7, MARKET, 3, 2, TRAINER)
    assert (loaded.cid, loaded.commitment, loaded.encrypted, loaded.plaintext) == (
        "bafkqaaa",
        b"\x11" * 32,
        True,
        b"update bytes",
    )
    assert doc["plaintext_file"] == path.with_suffix(".bin").name and loaded.path == path
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, path.with_suffix(".bin").name])
    assert {p.stat().st_mode & 0o777 for p in path.parent.iterdir()} == {0o600}  # the trainer's own until shared


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"format": "other/1"}, "not a pocfl-evidence/1"),
        ({"plaintext_file": "../x.bin"}, "plaintext_file"),
        ({"plaintext_file": "/etc/passwd"}, "plaintext_file"),
        ({"round": True}, "'round' must be an integer"),
        ({"round": -1}, "negative"),
        ({"trainer": "0x12"}, "'trainer' is malformed"),
        ({"commitment": "0x" + "zz" * 32}, "'commitment' is malformed"),
        ({"plaintext_sha256": "0x" + "00" * 32}, "sha256"),
        ({"cid": "b" * 500}, "too long"),
    ],
)
def test_malformed_fields_are_named(tmp_path: Path, change: dict[str, object], match: str) -> None:
    path, doc = saved(tmp_path)
    path.write_text(json.dumps(doc | change))
    with pytest.raises(EvidenceError, match=match):
        load_evidence(path)


def test_oversized_deep_or_missing_input_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path, _ = saved(tmp_path)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_EVIDENCE_JSON + 1))
    with pytest.raises(EvidenceError, match="larger than"):
        load_evidence(big)
    deep = tmp_path / "deep.json"
    deep.write_bytes(b"[" * 30_000 + b"]" * 30_000)
    with pytest.raises(EvidenceError, match="nests JSON 30000 levels deep, more than the 2 allowed"):
        load_evidence(deep)
    with pytest.raises(EvidenceError, match="not UTF-8"):
        (tmp_path / "bad.json").write_bytes(b"\xff{")
        load_evidence(tmp_path / "bad.json")
    with pytest.raises(EvidenceError, match="not JSON"):
        (tmp_path / "bad.json").write_bytes(b'{"format": ')
        load_evidence(tmp_path / "bad.json")
    with pytest.raises(EvidenceError, match="cannot read"):
        load_evidence(tmp_path / "missing.json")
    with pytest.raises(EvidenceError, match="larger than 4 bytes"):
        load_evidence(path, max_plaintext=4)


def test_bounded_text_is_one_short_printable_line() -> None:
    text = bounded("é\x1b[31m\n" + "x" * 1000)
    assert len(text) <= 300 and text.isprintable() and "\n" not in text and text.isascii() and text.endswith("...")
