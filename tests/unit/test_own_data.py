"""Own data (issue 14): the tabular loaders, the manifest's preprocessing, the scale warning, and the manifest
built from an owner's validation file (features and classes inferred, stored or kept private)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine

from pocfl.fl_project import make_manifest, manifest_from_data, validation_commitment
from pocfl.manifest import ManifestError, Preprocessing, ProjectManifest, TrainingConfig
from pocfl.ml.data import DatasetError
from pocfl.ml.tabular import (
    RAW_SCALE_LIMIT,
    SCALE_Z_LIMIT,
    PreprocessingError,
    TableError,
    TooFewClassesError,
    apply_preprocessing,
    fit_transform,
    load_table,
    scale_warning,
)
from pocfl.rounds.inputs import ValidationSetError, load_validation
from pocfl.store import MemoryStore
from trainer_client import load_private_data

pytestmark = pytest.mark.unit


def write_csv(path: Path, x: np.ndarray, y: np.ndarray, header: str | None = None) -> Path:
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt="%.10g", header=header or "", comments="")
    return path


@pytest.fixture
def wine_csv(tmp_path: Path) -> Path:
    data = load_wine()
    return write_csv(tmp_path / "wine.csv", data.data, data.target)


def test_csv_without_header_label_last(wine_csv: Path) -> None:
    x, y = load_table(wine_csv)
    data = load_wine()
    assert x.shape == (178, 13) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x, data.data, rtol=1e-6)
    assert np.array_equal(y, data.target)


def test_csv_with_header_and_label_column_by_name_or_index(tmp_path: Path) -> None:
    data = load_breast_cancer()
    names = ",".join(["target"] + [f"f{j}" for j in range(30)])
    path = tmp_path / "cancer.csv"
    np.savetxt(path, np.column_stack([data.target, data.data]), delimiter=",", fmt="%.10g", header=names, comments="")
    for column in ("target", 0, "0"):
        x, y = load_table(path, column)
        assert x.shape == (569, 30) and np.array_equal(y, data.target)
    np.testing.assert_allclose(load_table(path, "target")[0], data.data, rtol=1e-6)
    with pytest.raises(TableError, match="no column named 'nope'"):
        load_table(path, "nope")


def test_npz(tmp_path: Path) -> None:
    data = load_wine()
    path = tmp_path / "wine.npz"
    np.savez(path, X=data.data, y=data.target)
    x, y = load_table(path)
    assert x.shape == (178, 13) and np.array_equal(y, data.target)


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("1,2,0\n3,4\n", TableError, "line 2 has 2 fields, line 1 has 3"),
        ("1,2,0\n3,x,1\n", TableError, "line 2: non-numeric value"),
        ("a,b,label\n1,2,0\n3,oops,1\n", DatasetError, "line 3: non-numeric value"),
        ("1,2,0.5\n3,4,1\n", DatasetError, "labels must be integers"),
        ("1,2,-1\n3,4,1\n", DatasetError, "labels must be >= 0"),
        ("1\n2\n", TableError, "at least one feature column"),
        ("", TableError, "no data rows"),
    ],
)
def test_bad_csvs_are_named_errors(tmp_path: Path, text: str, error: type[Exception], match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(error, match=match):
        load_table(path)


def test_one_class_only_is_a_named_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "one.csv", np.arange(20.0).reshape(10, 2), np.full(10, 2))
    with pytest.raises(TooFewClassesError, match="1 class"):
        manifest_from_data("one", path, store=MemoryStore())


def test_unknown_file_types_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("1,2,0\n")
    with pytest.raises(DatasetError, match=r"cannot read \.txt"):
        load_table(tmp_path / "data.txt")
    with pytest.raises(DatasetError, match="no such file"):
        load_table(tmp_path / "absent.csv")


def test_trainer_reads_headerless_csv_with_the_same_rules(wine_csv: Path) -> None:
    x, y = load_private_data(wine_csv)
    assert x.shape == (178, 13) and np.array_equal(y, load_wine().target)


def test_standardize_and_none_transforms() -> None:
    x = load_wine().data
    pre = fit_transform("standardize", x)
    assert pre.transform == "standardize" and pre.mean is not None and pre.std is not None
    assert len(pre.mean) == len(pre.std) == 13
    z = apply_preprocessing(pre, x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-5)
    none = fit_transform("none", x)
    assert none == Preprocessing() and np.array_equal(apply_preprocessing(none, x), x.astype(np.float32))
    constant = fit_transform("standardize", np.column_stack([x[:, 0], np.full(178, 5.0)]))
    assert constant.std is not None and constant.std[1] == 1.0  # a constant feature is only shifted
    with pytest.raises(PreprocessingError, match="unknown transform 'log'"):
        fit_transform("log", x)
    with pytest.raises(PreprocessingError, match="do not fit 3 features"):
        apply_preprocessing(pre, x[:, :3])


def test_scale_warning_rule() -> None:
    x = load_wine().data
    pre = fit_transform("standardize", x)
    assert scale_warning(pre, x) is None  # the owner's own units
    rescaled = (x - x.mean(axis=0)) / x.std(axis=0)  # a trainer that standardised its data itself
    warning = scale_warning(pre, rescaled)
    assert warning is not None and f"limit {SCALE_Z_LIMIT:g}" in warning
    shifted = x + 2.0 * np.asarray(pre.std)  # two standard deviations off: under the limit
    assert scale_warning(pre, shifted) is None
    assert scale_warning(pre, x + 4.0 * np.asarray(pre.std)) is not None
    raw = Preprocessing()
    assert scale_warning(raw, rescaled) is None
    raw_wine = scale_warning(raw, x)  # proline's std is 314: the raw data the issue saw stall at 40 %
    assert raw_wine is not None and "std is 314" in raw_wine
    unscaled = scale_warning(raw, rescaled * 10 * RAW_SCALE_LIMIT)
    assert unscaled is not None and "publishes no standardisation" in unscaled


def test_manifest_from_wine_csv_infers_shape_and_stores_the_set(wine_csv: Path) -> None:
    store = MemoryStore()
    training = TrainingConfig(learning_rate=0.05, local_epochs=3, batch_size=8, momentum=0.5)
    made = manifest_from_data("wine", wine_csv, store=store, hidden=16, training=training)
    manifest = ProjectManifest.from_json(made.manifest_bytes)
    assert manifest == made.manifest
    assert (manifest.model.n_features, manifest.model.hidden, manifest.model.n_classes) == (13, 16, 3)
    assert manifest.training == training and manifest.preprocessing.transform == "standardize"
    assert made.n_samples == 178 and made.n_present == 3
    assert manifest.validation.cid is not None and store.get_bytes(manifest.validation.cid) == made.validation_npz
    assert validation_commitment(manifest, store) == made.commitment
    x, y = load_validation(manifest, store, commitment=made.commitment)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)  # scored after the published transform
    raw_x, _ = load_validation(manifest, store, raw=True)
    np.testing.assert_allclose(raw_x, load_wine().data, rtol=1e-6)
    assert np.array_equal(y, load_wine().target)


def test_private_validation_publishes_only_the_commitment(wine_csv: Path, tmp_path: Path) -> None:
    store = MemoryStore()
    made = manifest_from_data("wine", wine_csv, store=store, private=True, transform="none")
    manifest = ProjectManifest.from_json(made.manifest_bytes)
    assert manifest.validation.cid is None and manifest.validation.recipe is None
    assert manifest.validation.commitment == made.commitment.hex()
    assert manifest.preprocessing == Preprocessing()
    assert validation_commitment(manifest) == made.commitment
    with pytest.raises(ValidationSetError, match="it is private"):
        load_validation(manifest, store)
    kept = tmp_path / "validation.npz"
    kept.write_bytes(made.validation_npz)
    x, _ = load_validation(manifest, store, kept, commitment=made.commitment)
    assert x.shape == (178, 13)


def test_given_shape_is_checked_against_the_data(wine_csv: Path) -> None:
    with pytest.raises(ManifestError, match="--features 12: the validation set has 13"):
        manifest_from_data("wine", wine_csv, store=MemoryStore(), n_features=12)
    with pytest.raises(ManifestError, match="--classes 2: the validation set has labels up to 2"):
        manifest_from_data("wine", wine_csv, store=MemoryStore(), n_classes=2)
    wider = manifest_from_data("wine", wine_csv, store=MemoryStore(), n_classes=5)
    assert wider.manifest.model.n_classes == 5


def test_digits_manifests_keep_their_bytes_and_read_without_preprocessing() -> None:
    _, data = make_manifest("digits", seed=0, hidden=8, store=MemoryStore())
    for absent in (b"preprocessing", b"momentum", b"commitment"):
        assert absent not in data
    parsed = ProjectManifest.from_json(data)
    assert parsed.preprocessing == Preprocessing() and parsed.training.momentum == 0.0


def test_bad_preprocessing_in_a_manifest_is_a_named_error(wine_csv: Path) -> None:
    made = manifest_from_data("wine", wine_csv, store=MemoryStore())
    good = made.manifest_bytes.decode()
    assert '"transform":"standardize"' in good
    with pytest.raises(ManifestError, match="not one of"):
        ProjectManifest.from_json(good.replace('"transform":"standardize"', '"transform":"log"').encode())
    short = good.replace('"std":[', '"std":[1.0,')
    with pytest.raises(ManifestError, match=r"preprocessing.std needs 13 values"):
        ProjectManifest.from_json(short.encode())
    with pytest.raises(ManifestError, match="preprocessing"):
        ProjectManifest.from_json(good.replace('"std":[', '"std":"x","was":[').encode())


@pytest.mark.parametrize("momentum", ["1.0", "-0.1", '"x"', "true"])
def test_momentum_out_of_range_is_a_named_error(momentum: str) -> None:
    _, data = make_manifest("digits", seed=0, hidden=8, store=MemoryStore(), training=TrainingConfig(momentum=0.5))
    text = data.decode()
    assert '"momentum":0.5' in text
    with pytest.raises(ManifestError, match=r"training\.momentum must be a number in"):
        ProjectManifest.from_json(text.replace('"momentum":0.5', f'"momentum":{momentum}').encode())


def test_a_header_column_named_label_is_the_default_label(tmp_path: Path) -> None:
    path = tmp_path / "named.csv"
    path.write_text("label,a,b\n1,0.5,2\n0,1.5,3\n")
    x, y = load_table(path)
    assert y.tolist() == [1, 0] and x.tolist() == [[0.5, 2.0], [1.5, 3.0]]
    assert np.array_equal(load_private_data(path)[1], y)  # the trainer's rule is the same
