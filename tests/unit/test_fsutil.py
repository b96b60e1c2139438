"""The one atomic-write helper (pocfl.fsutil) and the records written through it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from aggregator.node import Journal
from pocfl import fsutil
from pocfl.fsutil import PRIVATE, PUBLIC, atomic_writer, write_bytes_atomic, write_json_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.parametrize("mode", [PRIVATE, PUBLIC, 0o640])
def test_the_mode_is_the_one_asked_whatever_the_umask(tmp_path: Path, mode: int) -> None:
    old = os.umask(0o077)
    try:
        path = write_bytes_atomic(tmp_path / "f.bin", b"x", mode=mode)
    finally:
        os.umask(old)
    assert _mode(path) == mode
    assert path.read_bytes() == b"x"


def test_the_file_has_its_final_mode_before_the_data_is_written(tmp_path: Path) -> None:
    with atomic_writer(tmp_path / "key", mode=PRIVATE) as f:
        assert stat.S_IMODE(os.fstat(f.fileno()).st_mode) == PRIVATE  # never readable by others, not even briefly
        f.write(b"secret")


def test_a_failed_serialisation_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "r.json", {"v": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert _leftovers(tmp_path, {"r.json"}) == []


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_json_atomic(tmp_path / "r.json", {"v": 1})

    def broken(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="No space"):
        write_json_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert _leftovers(tmp_path, {"r.json"}) == []


def test_a_failure_inside_the_writer_block_publishes_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_writer(tmp_path / "obj") as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_exclusive_never_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_bytes_atomic(path, b"new", exclusive=True)
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path, {"k"}) == []
    assert write_bytes_atomic(tmp_path / "fresh", b"new", exclusive=True).read_bytes() == b"new"


def test_exclusive_without_hard_links_still_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: Any, dst: Any) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(fsutil.os, "link", no_links)
    assert write_bytes_atomic(tmp_path / "a", b"1", exclusive=True).read_bytes() == b"1"
    with pytest.raises(FileExistsError):
        write_bytes_atomic(tmp_path / "a", b"2", exclusive=True)
    assert (tmp_path / "a").read_bytes() == b"1"
    assert _leftovers(tmp_path, {"a"}) == []


def test_the_aggregator_journal_leaves_no_temporary_file_on_failure(tmp_path: Path) -> None:
    """Regression: the journal was written through a fixed-name temporary file left behind on failure."""
    path = tmp_path / "journal.json"
    journal = Journal(path, 31337, "0x" + "11" * 20, 1)
    journal.record(0, "decided", model_cid="bafy")
    before = path.read_text()
    with pytest.raises(TypeError):
        journal.record(1, "decided", unserialisable=object())
    assert path.read_text() == before
    assert _leftovers(tmp_path, {"journal.json"}) == []
    assert _mode(path) == PRIVATE


def test_a_keystore_replacing_a_wider_file_is_private(tmp_path: Path) -> None:
    """Regression: ``O_TRUNC`` over an existing 0644 file kept its mode, leaving the new keystore readable by all."""
    from pocfl.chain.accounts import account_from_keystore, create_keystore

    path = tmp_path / "owner.json"
    path.write_text("{}")
    path.chmod(0o644)
    account = create_keystore(path, "pw", overwrite=True)
    assert _mode(path) == PRIVATE
    assert account_from_keystore(path, "pw").address == account.address
    assert _leftovers(tmp_path, {"owner.json"}) == []


def test_the_ipfs_config_keeps_its_private_key_private(tmp_path: Path) -> None:
    """The node's config holds its identity key: rewritten atomically and 0600, whatever mode it had."""
    from pocfl.store.daemon import _configure_loopback

    config = tmp_path / "config"
    config.write_text(json.dumps({"Identity": {"PrivKey": "secret"}, "Addresses": {}}))
    config.chmod(0o644)
    _configure_loopback(config, 5001, kubo=True)
    written = json.loads(config.read_text())
    assert written["Identity"]["PrivKey"] == "secret" and written["Addresses"]["API"] == "/ip4/127.0.0.1/tcp/5001"
    assert _mode(config) == PRIVATE and _leftovers(tmp_path, {"config"}) == []
