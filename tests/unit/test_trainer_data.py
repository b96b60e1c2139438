"""A trainer's private data: digits shares (validation excluded), CSV / NPZ / image-folder loading, spec errors;
and the pure parts of the trainer client (attack names, transient errors, the journal)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pocfl.errors import PocflError
from pocfl.ml import DatasetError, load_digits_split
from pocfl.store import StoreUnavailableError
from trainer_client import (
    DataSpecError,
    DigitsSpec,
    Journal,
    UnknownAttackError,
    digits_share,
    is_transient,
    load_private_data,
    parse_attack,
    parse_digits_spec,
)

pytestmark = pytest.mark.unit


def _rows(x: np.ndarray) -> np.ndarray:
    """Rows in a canonical order, to compare sets of samples."""
    return x[np.lexsort(x.T[::-1])]


def test_digits_spec_defaults_and_round_trip() -> None:
    spec = parse_digits_spec("digits:part=2:of=5")
    assert spec == DigitsSpec(part=2, of=5, alpha=0.5, seed=0, fraction=0.2)
    full = parse_digits_spec(" digits : part=1 : of=3 : alpha=0.1 : seed=7 : fraction=0.25 ")
    assert full == DigitsSpec(1, 3, 0.1, 7, 0.25)
    assert parse_digits_spec(str(full)) == full


def test_digits_shares_partition_the_training_split_and_never_touch_validation() -> None:
    n = 4
    shares = [load_private_data(f"digits:part={i}:of={n}:alpha=0.3:seed=3") for i in range(n)]
    x_train, y_train, x_val, _ = load_digits_split(3, 0.2)
    xs = np.concatenate([x for x, _ in shares])
    ys = np.concatenate([y for _, y in shares])
    assert xs.dtype == np.float32 and ys.dtype == np.int64
    assert xs.shape == x_train.shape and np.array_equal(np.sort(ys), np.sort(y_train))
    np.testing.assert_array_equal(_rows(xs), _rows(x_train))  # exactly the training split, nothing else
    assert xs.shape[0] + x_val.shape[0] == 1797
    assert all(x.shape[0] >= 10 for x, _ in shares)
    # label skew: small alpha gives the shares different label mixes
    histograms = [np.bincount(y, minlength=10) / y.size for _, y in shares]
    assert max(np.abs(histograms[0] - h).sum() for h in histograms[1:]) > 0.3


def test_digits_shares_are_deterministic_and_follow_the_seed() -> None:
    a1, b1 = digits_share("digits:part=0:of=3:seed=1")
    a2, b2 = digits_share(DigitsSpec(part=0, of=3, seed=1))
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    a3, _ = digits_share("digits:part=0:of=3:seed=2")
    assert a3.shape != a1.shape or not np.array_equal(a3, a1)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("digits", "missing of, part"),
        ("digits:part=0", "missing of"),
        ("digits:part=3:of=3", "0 <= part < of"),
        ("digits:part=-1:of=3", "0 <= part < of"),
        ("digits:part=0:of=0", "0 <= part < of"),
        ("digits:part=x:of=3", "not a number"),
        ("digits:part=0:of=3:alpha=0", "alpha must be > 0"),
        ("digits:part=0:of=3:alpha=nan", "alpha must be > 0"),
        ("digits:part=0:of=3:fraction=1", r"fraction must be in \(0, 1\)"),
        ("digits:part=0:of=3:seed=-2", "seed must be >= 0"),
        ("digits:part=0:of=3:colour=red", "unknown key"),
        ("digits:part=0:of=3:part=1", "given twice"),
        ("digits:part0:of=3", "is not key=value"),
        ("digits:part=:of=3", "is not key=value"),
        ("digits:part=0:of=100000", "cannot be split"),
    ],
)
def test_bad_digits_specs_are_named_errors(spec: str, match: str) -> None:
    with pytest.raises(DataSpecError, match=match) as info:
        load_private_data(spec)
    assert isinstance(info.value, DatasetError) and isinstance(info.value, PocflError)


def test_csv_label_column_by_default_name_last_column_or_option(tmp_path: Path) -> None:
    named = tmp_path / "named.csv"
    named.write_text("label,a,b\n1,0.5,0.25\n0,1,2\n")
    x, y = load_private_data(named)
    assert x.tolist() == [[0.5, 0.25], [1.0, 2.0]] and y.tolist() == [1, 0]

    last = tmp_path / "last.csv"
    last.write_text("a,b,target\n0.5,0.25,3\n1,2,4\n")
    x, y = load_private_data(str(last))
    assert x.tolist() == [[0.5, 0.25], [1.0, 2.0]] and y.tolist() == [3, 4]

    with pytest.raises(DatasetError):  # "a" holds 0.5: not an integer label
        load_private_data(last, label_column="a")
    x, y = load_private_data(last, label_column="2")
    assert y.tolist() == [3, 4]
    with pytest.raises(DatasetError, match="no column named"):
        load_private_data(last, label_column="nope")


def test_npz_and_image_folder(tmp_path: Path) -> None:
    npz = tmp_path / "data.npz"
    np.savez(npz, X=np.arange(12, dtype=np.float64).reshape(3, 2, 2), y=np.array([0, 1, 2]))
    x, y = load_private_data(npz)
    assert x.shape == (3, 4) and x.dtype == np.float32 and y.tolist() == [0, 1, 2]

    root = tmp_path / "images"
    for label, shade in (("cat", 10), ("dog", 200)):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (4, 3), color=shade + i).save(root / label / f"{i}.png")
    x, y = load_private_data(root)
    assert x.shape == (4, 12) and y.tolist() == [0, 0, 1, 1]
    assert float(x.max()) <= 1.0
    x, _ = load_private_data(str(root), image_size=(2, 2))
    assert x.shape == (4, 4)


@pytest.mark.parametrize("name", ["", "   ", "missing.csv", "data.parquet"])
def test_bad_paths_are_named_errors(tmp_path: Path, name: str) -> None:
    target = tmp_path / name if name.strip() else name
    if name == "data.parquet":
        (tmp_path / name).write_bytes(b"PAR1")
    with pytest.raises(DataSpecError):
        load_private_data(str(target) if name.strip() else name)


def test_attack_names() -> None:
    assert parse_attack(None) is None and parse_attack("none") is None and parse_attack(" ") is None
    assert parse_attack("gaussian").value == "gaussian_noise"  # type: ignore[union-attr]
    assert parse_attack("Sign-Flip").value == "sign_flip"  # type: ignore[union-attr]
    for name in ("scaling", "free_rider", "label_flip", "copycat", "gaussian_noise"):
        assert parse_attack(name) is not None
    for bad in ("alie", "ipm", "stale", "bogus"):
        with pytest.raises(UnknownAttackError, match="implements: sign_flip"):
            parse_attack(bad)


def test_transient_errors() -> None:
    class ReadTimeout(OSError):  # the shape of requests' exceptions: not builtin ConnectionError
        pass

    assert is_transient(StoreUnavailableError("node down"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(TimeoutError())
    assert is_transient(ReadTimeout())
    assert not is_transient(ValueError("bad"))
    assert not is_transient(PocflError("named"))


def test_journal_keeps_entries_per_deployment_and_round(tmp_path: Path) -> None:
    trainer = "0x" + "Ab" * 20
    a = Journal(tmp_path, trainer, 7, "1:0xMARKET")
    assert a.path == tmp_path / f"trainer-{trainer.lower()}-7.json"
    assert a.entry(0) is None
    a.record(0, {"status": "pending", "cid": "bafy"})
    a.record(0, {"status": "submitted", "cid": "bafy"})
    a.record(1, {"status": "pending", "cid": "bafz"})
    assert a.entry(0) == {"status": "submitted", "cid": "bafy"}
    other = Journal(tmp_path, trainer, 7, "2:0xMARKET")  # same file, another chain: no entries
    assert other.entry(0) is None
    assert not list(tmp_path.glob("*.tmp"))
    Journal(None, trainer, 7, "x").record(0, {"status": "submitted"})  # no state dir: no-op
    a.path.write_text("{not json")  # type: ignore[union-attr]
    with pytest.raises(PocflError, match="unreadable"):
        a.entry(0)
