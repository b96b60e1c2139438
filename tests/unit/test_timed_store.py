"""The timing wrapper (:mod:`pocfl.store.timed`) around a real embedded store: every call reaches the wrapped
store and is timed (also when it raises), reads stay verified, and the wrapped store's state shows through."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pocfl.store import ContentStore, EmbeddedStore, compute_cid
from pocfl.store.errors import CidMismatchError, ObjectNotFoundError, ObjectTooLargeError
from pocfl.store.timed import TimedStore

pytestmark = pytest.mark.unit


class Slow(EmbeddedStore):
    """An embedded store whose ``has`` takes a measurable time."""

    def has(self, cid: str) -> bool:
        time.sleep(0.02)
        return super().has(cid)


def timed(root: Path, inner: EmbeddedStore | None = None) -> tuple[TimedStore, list[float]]:
    calls: list[float] = []
    return TimedStore(inner or EmbeddedStore(root), calls.append), calls


def test_every_call_goes_to_the_wrapped_store_and_is_timed(tmp_path: Path) -> None:
    inner = EmbeddedStore(tmp_path / "store")
    store, calls = timed(tmp_path, inner)
    assert isinstance(store, ContentStore) and store.location == inner.location
    cid = store.put_bytes(b"model bytes")
    assert cid == compute_cid(b"model bytes") and inner.has(cid)
    source = tmp_path / "report.json"
    source.write_bytes(b'{"round": 1}')
    file_cid = store.put_file(source)
    assert file_cid == compute_cid(source.read_bytes()) and inner.has(file_cid)
    assert store.get_bytes(cid) == b"model bytes"
    assert store.get_file(file_cid, tmp_path / "out.json").read_bytes() == b'{"round": 1}'
    assert store.has(cid) and not store.has(compute_cid(b"absent"))
    store.pin(cid)
    assert len(calls) == 7 and all(s >= 0 for s in calls)
    assert store.seconds == pytest.approx(sum(calls))


def test_the_time_of_a_slow_call_is_counted(tmp_path: Path) -> None:
    store, calls = timed(tmp_path, Slow(tmp_path / "store"))
    store.has(compute_cid(b"x"))
    assert calls[0] >= 0.02 and store.seconds >= 0.02


def test_a_call_that_raises_is_timed_and_the_error_passes_through(tmp_path: Path) -> None:
    store, calls = timed(tmp_path / "store")
    absent = compute_cid(b"never stored")
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes(absent)
    with pytest.raises(ObjectNotFoundError):
        store.pin(absent)
    big = store.put_bytes(b"x" * 100)
    with pytest.raises(ObjectTooLargeError):
        store.get_bytes(big, max_size=10)
    with pytest.raises(ObjectTooLargeError):
        store.get_file(big, tmp_path / "big", max_size=10)
    assert len(calls) == 5 and not (tmp_path / "big").exists()


def test_reads_stay_verified_and_a_quarantine_shows_through(tmp_path: Path) -> None:
    inner = EmbeddedStore(tmp_path / "store")
    store, _ = timed(tmp_path, inner)
    cid = store.put_bytes(b"true bytes")
    inner.path_of(cid).write_bytes(b"tampered bytes")
    assert not store.quarantined(cid)
    with pytest.raises(CidMismatchError):
        store.get_bytes(cid)
    assert store.quarantined(cid) and not store.has(cid)


def test_without_a_hook_only_the_total_is_kept_and_close_closes_the_wrapped_store(tmp_path: Path) -> None:
    closed: list[bool] = []

    class Closing(EmbeddedStore):
        def close(self) -> None:
            closed.append(True)

    store = TimedStore(Closing(tmp_path / "store"))
    store.get_bytes(store.put_bytes(b"abc"))
    assert store.seconds > 0 and store.record is None
    store.close()
    assert closed == [True]
