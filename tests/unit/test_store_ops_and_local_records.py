"""``pocfl.store_ops`` on an embedded store; the records of ``pocfl.local_node`` and ``pocfl.local_ipfs``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pocfl.errors import ConfigError
from pocfl.local_ipfs import IpfsRecord, stop_daemon, write_record
from pocfl.local_node import NodeRecord, read_node, stop_node, write_node
from pocfl.store import CidMismatchError, EmbeddedStore, MemoryStore, ObjectNotFoundError, compute_cid
from pocfl.store_ops import describe_store, pin_cids, put_files, verify_cids

pytestmark = pytest.mark.unit

NO_SUCH_PID = 2**31 - 1
"""Above any kernel's pid_max: never a live process."""


def test_files_are_put_pinned_verified_and_counted(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"first")
    b.write_bytes(b"second object")
    stored = put_files(store, [a, b])
    assert [(s.path, s.cid, s.size) for s in stored] == [
        (str(a), compute_cid(b"first"), 5),
        (str(b), compute_cid(b"second object"), 13),
    ]
    assert pin_cids(store, ["B" + stored[0].cid[1:].upper()]) == [stored[0].cid]  # canonical spelling
    info = describe_store(store, str(store.root))
    assert (info.backend, info.spec, info.location, info.objects, info.quarantined) == (
        "embedded",
        str(store.root),
        store.location,
        2,
        0,
    )

    absent = compute_cid(b"never stored")
    store.path_of(stored[1].cid).write_bytes(b"tampered")
    checks = verify_cids(store, [stored[0].cid, absent, stored[1].cid], max_size=1 << 20)
    assert [(c.cid, c.ok, c.size) for c in checks] == [
        (stored[0].cid, True, 5),
        (absent, False, None),
        (stored[1].cid, False, None),
    ]
    assert isinstance(checks[1].error, ObjectNotFoundError) and isinstance(checks[2].error, CidMismatchError)
    assert describe_store(store, None).quarantined == 1  # the tampered copy was moved aside on the way
    assert describe_store(MemoryStore(), None).backend == "memory"


def test_records_that_are_not_records_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POCFL_HOME", str(tmp_path))
    assert read_node() is None
    (tmp_path / "chain.json").write_text(json.dumps({"url": "http://127.0.0.1:1"}))
    with pytest.raises(ConfigError, match="is not a node record: delete it"):
        read_node()


def test_stopping_forgets_records_of_processes_that_are_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POCFL_HOME", str(tmp_path))
    assert stop_node().record is None and stop_daemon().reason == "no IPFS daemon recorded"
    gone = NO_SUCH_PID
    write_node(NodeRecord(gone, "http://127.0.0.1:1", 1, None, None, "2025-01-01T00:00:00Z"))
    stopped = stop_node()
    assert (stopped.stopped, stopped.reason) == (False, "the process had already exited")
    assert read_node() is None

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "repo.lock").write_text("")
    write_record(IpfsRecord(gone, "http://127.0.0.1:1", 1, "kubo", str(repo), "", ""))
    daemon = stop_daemon()
    assert (daemon.stopped, daemon.reason) == (False, "the process had already exited")
    assert not (repo / "repo.lock").exists() and not (tmp_path / "ipfs.json").exists()
