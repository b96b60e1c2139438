"""The shared ML core: digits split, Dirichlet partition, user-data loaders, flat vectors, local training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pocfl.errors import PocflError
from pocfl.ml import (
    DatasetError,
    ModelShapeError,
    architecture_spec,
    dirichlet_partition,
    evaluate,
    flatten,
    initial_vector,
    load_csv,
    load_digits_split,
    load_image_folder,
    load_npz,
    load_vector,
    local_train,
    make_model,
    mlp_spec,
    unflatten,
)

pytestmark = pytest.mark.unit
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return load_digits_split(seed=0)


# ---------------------------------------------------------------- digits and partition


def test_digits_split_shapes_and_scale(digits: tuple[np.ndarray, ...]) -> None:
    x_tr, y_tr, x_va, y_va = digits
    assert x_tr.shape == (1437, 64) and x_va.shape == (360, 64)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int64
    assert x_tr.min() >= 0.0 and x_tr.max() == 1.0
    assert set(np.unique(y_va)) == set(range(10))  # stratified: every class in validation


def test_digits_split_is_deterministic_by_seed(digits: tuple[np.ndarray, ...]) -> None:
    again = load_digits_split(seed=0)
    other = load_digits_split(seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(digits, again, strict=True))
    assert not np.array_equal(digits[1], other[1])
    with pytest.raises(ValueError, match="val_fraction"):
        load_digits_split(0, val_fraction=1.0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(60, 300),
    n_classes=st.integers(1, 10),
    n_clients=st.integers(1, 20),
    alpha=st.floats(0.05, 100.0),
    seed=st.integers(0, 2**32 - 1),
    min_size=st.integers(1, 3),
)
def test_partition_is_disjoint_cover_and_deterministic(
    n: int, n_classes: int, n_clients: int, alpha: float, seed: int, min_size: int
) -> None:
    y = np.random.default_rng(seed).integers(0, n_classes, size=n)
    parts = dirichlet_partition(y, n_clients, alpha, seed, min_size=min_size)
    assert len(parts) == n_clients
    assert all(len(p) >= min_size for p in parts)
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(n))  # disjoint and covering
    again = dirichlet_partition(y, n_clients, alpha, seed, min_size=min_size)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_partition_small_alpha_is_skewed(digits: tuple[np.ndarray, ...]) -> None:
    y = digits[1]
    skewed = dirichlet_partition(y, 10, 0.1, seed=3)
    iid = dirichlet_partition(y, 10, 1000.0, seed=3)

    def mean_classes(parts: list[np.ndarray]) -> float:
        return float(np.mean([len(np.unique(y[p])) for p in parts]))

    assert mean_classes(skewed) < 6 < mean_classes(iid)


def test_partition_rejects_impossible_requests() -> None:
    with pytest.raises(ValueError, match="cannot give"):
        dirichlet_partition(np.zeros(5, dtype=np.int64), 3, 1.0, 0, min_size=2)
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_partition(np.zeros(5, dtype=np.int64), 2, 0.0, 0)


# ---------------------------------------------------------------- loaders


def test_npz_round_trip(tmp_path: Path, digits: tuple[np.ndarray, ...]) -> None:
    x, y = digits[0][:50], digits[1][:50]
    np.savez(tmp_path / "d.npz", X=x.reshape(50, 8, 8), y=y)
    got_x, got_y = load_npz(tmp_path / "d.npz")
    assert np.array_equal(got_x, x) and np.array_equal(got_y, y)


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "no such file"), (b"not a zip", "not a readable"), ("missing_y", "missing array")],
)
def test_npz_named_errors(tmp_path: Path, content: bytes | str | None, match: str) -> None:
    path = tmp_path / "bad.npz"
    if content == "missing_y":
        np.savez(path, X=np.zeros((2, 2)))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=match) as info:
        load_npz(path)
    assert isinstance(info.value, PocflError) and info.value.path == str(path)


def test_npz_mismatched_lengths(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", X=np.zeros((3, 2)), y=np.zeros(2, dtype=np.int64))
    with pytest.raises(DatasetError, match="do not match"):
        load_npz(tmp_path / "m.npz")


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    header = ",".join([f"p{i}" for i in range(x.shape[1])] + ["label"])
    lines = [header] + [",".join([*map(repr, map(float, row)), str(int(lab))]) for row, lab in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_csv_round_trip_by_name_and_index(tmp_path: Path, digits: tuple[np.ndarray, ...]) -> None:
    x, y = digits[0][:40], digits[1][:40]
    _write_csv(tmp_path / "d.csv", x, y)
    for column in ("label", 64):
        got_x, got_y = load_csv(tmp_path / "d.csv", column)
        assert np.array_equal(got_x, x) and np.array_equal(got_y, y)


@pytest.mark.parametrize(
    ("text", "column", "match"),
    [
        ("a,label\n1,2\n", "nope", "no column named"),
        ("a,label\n1,2\n", 5, "out of range"),
        ("a,label\n1,2,3\n", "label", "has 3 fields"),
        ("a,label\nx,2\n", "label", "non-numeric"),
        ("a,label\n1,0.5\n", "label", "must be integers"),
        ("a,label\n", "label", "at least one data row"),
    ],
)
def test_csv_named_errors(tmp_path: Path, text: str, column: str | int, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=match):
        load_csv(path, column)
    with pytest.raises(DatasetError, match="no such file"):
        load_csv(tmp_path / "absent.csv", "label")


def _write_images(root: Path, x: np.ndarray, y: np.ndarray) -> None:
    for i, (row, lab) in enumerate(zip(x, y, strict=True)):
        folder = root / f"class_{lab}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(row.reshape(8, 8) * 255).astype(np.uint8), mode="L").save(folder / f"{i}.png")


def test_image_folder_round_trip(tmp_path: Path, digits: tuple[np.ndarray, ...]) -> None:
    x, y = digits[0][:30], digits[1][:30]
    _write_images(tmp_path, x, y)
    got_x, got_y, classes = load_image_folder(tmp_path)
    assert classes == sorted(f"class_{c}" for c in np.unique(y))
    # files are read class by class; compare as sorted (label, pixels) multisets
    want = sorted((int(lab), tuple(np.round(r * 255).astype(int))) for r, lab in zip(x, y, strict=True))
    have = sorted(
        (int(classes[lab].removeprefix("class_")), tuple(np.round(r * 255).astype(int)))
        for r, lab in zip(got_x, got_y, strict=True)
    )
    assert want == have
    assert np.abs(got_x.max() - 1.0) < 1e-6 and got_x.dtype == np.float32
    resized, _, _ = load_image_folder(tmp_path, size=(4, 4), grayscale=False)
    assert resized.shape == (30, 4 * 4 * 3)


def test_image_folder_named_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        load_image_folder(tmp_path / "absent")
    with pytest.raises(DatasetError, match="no class subfolders"):
        load_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_image_folder(tmp_path)
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="not a readable image"):
        load_image_folder(tmp_path)
    (tmp_path / "a" / "broken.png").unlink()
    Image.new("L", (8, 8)).save(tmp_path / "a" / "one.png")
    Image.new("L", (4, 4)).save(tmp_path / "a" / "two.png")
    with pytest.raises(DatasetError, match="differs"):
        load_image_folder(tmp_path)


# ---------------------------------------------------------------- model vectors


def test_flatten_unflatten_round_trip() -> None:
    model = make_model(seed=7, hidden=5)
    spec = architecture_spec(model)
    assert spec == [
        ("fc1.weight", (5, 64), "float32"),
        ("fc1.bias", (5,), "float32"),
        ("fc2.weight", (10, 5), "float32"),
        ("fc2.bias", (10,), "float32"),
    ]
    vec = flatten(model)
    assert vec.dtype == np.float32 and vec.shape == (5 * 64 + 5 + 50 + 10,)
    state = unflatten(vec, spec)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    other = make_model(seed=8, hidden=5)
    load_vector(other, vec)
    assert np.array_equal(flatten(other), vec)
    assert np.array_equal(flatten(model.state_dict()), vec)


def test_init_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = initial_vector(1)
    assert torch.equal(torch.rand(1), expected_next)
    assert np.array_equal(a, initial_vector(1)) and not np.array_equal(a, initial_vector(2))


def test_unflatten_rejects_bad_vectors() -> None:
    spec = architecture_spec(make_model(0, hidden=3))
    with pytest.raises(ModelShapeError, match="does not fit"):
        unflatten(np.zeros(5, dtype=np.float32), spec)
    bad = np.zeros(3 * 64 + 3 + 30 + 10, dtype=np.float32)
    bad[0] = np.nan
    with pytest.raises(ModelShapeError, match="NaN"):
        unflatten(bad, spec)
    with pytest.raises(ModelShapeError, match="not an MLP"):
        local_train(np.zeros(7, dtype=np.float32), np.zeros((2, 64), np.float32), np.zeros(2, np.int64))


# ---------------------------------------------------------------- training


def test_training_reduces_loss_and_is_deterministic(digits: tuple[np.ndarray, ...]) -> None:
    x_tr, y_tr, x_va, y_va = digits
    w0 = initial_vector(0)
    acc0, loss0 = evaluate(w0, x_va, y_va)
    delta = local_train(w0, x_tr[:400], y_tr[:400], epochs=3, lr=0.2, batch_size=16, seed=5)
    assert delta.dtype == np.float32 and delta.shape == w0.shape
    acc1, loss1 = evaluate(w0 + delta, x_va, y_va)
    assert loss1 < loss0 - 0.5 and acc1 > acc0 + 0.3
    again = local_train(w0, x_tr[:400], y_tr[:400], epochs=3, lr=0.2, batch_size=16, seed=5)
    assert np.array_equal(delta, again)  # bit-identical for the same seed
    other = local_train(w0, x_tr[:400], y_tr[:400], epochs=3, lr=0.2, batch_size=16, seed=6)
    assert not np.array_equal(delta, other)


def test_training_validates_inputs(digits: tuple[np.ndarray, ...]) -> None:
    x, y = digits[0][:10], digits[1][:10]
    w0 = initial_vector(0)
    with pytest.raises(ValueError, match="labels must lie"):
        local_train(w0, x, y + 10)
    with pytest.raises(ValueError, match="epochs"):
        local_train(w0, x, y, epochs=0)
    with pytest.raises(ValueError, match="need X"):
        evaluate(w0, x, y[:5])


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_training_equals_torch_sgd_reference(digits: tuple[np.ndarray, ...], momentum: float) -> None:
    # the hand-written SGD loop must match nn.Module + torch.optim.SGD on the same batches
    x, y = digits[0][:100], digits[1][:100]
    w0 = initial_vector(4, hidden=6)
    delta = local_train(w0, x, y, epochs=2, lr=0.05, batch_size=16, seed=9, momentum=momentum)
    model = make_model(0, hidden=6)
    load_vector(model, w0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum)
    rng = np.random.default_rng(9)
    for _ in range(2):
        order = rng.permutation(100)
        for b in range(0, 100, 16):
            idx = torch.from_numpy(order[b : b + 16])
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(torch.from_numpy(x)[idx]), torch.from_numpy(y)[idx]).backward()
            opt.step()
    assert np.allclose(flatten(model) - w0, delta, atol=1e-6)
    assert architecture_spec(model) == mlp_spec(64, 6, 10)
