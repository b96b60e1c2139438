"""A project owner's (or trainer's) own tabular data, and the preprocessing a manifest publishes for it.

Files :func:`load_table` reads:

- ``PATH.csv``: comma separated, one sample per row, every column numeric; the label is the column named
  ``label`` when the header has one, else the last column, unless ``label_column`` names another (a header name,
  or a zero-based position). The header row is optional: a first row with any non-numeric field is a header.
  Labels are integers ``0..k-1``.
- ``PATH.npz``: arrays ``X`` (one row per sample) and ``y`` (integer labels), e.g. ``numpy.savez(p, X=X, y=y)``;
- a folder: images as ``root/<class>/<image>`` (:func:`pocfl.ml.data.load_image_folder`).

Preprocessing (the manifest's ``preprocessing``, :class:`~pocfl.manifest.Preprocessing`): ``none`` leaves
features as they are; ``standardize`` maps each feature ``x_j -> (x_j - mean_j) / std_j`` with the owner's
per-feature mean and std, computed on its validation set and published in the manifest, so every trainer and the
aggregator apply the same map. A constant feature (std 0) gets std 1.

Scale warning (:func:`scale_warning`): a trainer whose data is on another scale than the owner's trains a model
that fits neither. With ``standardize`` it is warned when the median over features of
``|mean_j(trainer) - mean_j(owner)| / std_j(owner)`` exceeds :data:`SCALE_Z_LIMIT` (3): the typical feature is
more than three owner standard deviations off. With ``none`` there are no owner statistics; it is warned when
the largest per-feature std of its data exceeds :data:`RAW_SCALE_LIMIT` (100): one such feature dominates the
gradients, and SGD at the usual learning rates then stalls at the majority class (measured: raw wine, whose
proline column has std 314, stays at its 40 % majority class after 40 epochs at lr 0.1; standardised, it fits
all 178 samples).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pocfl.manifest import TRANSFORMS, Preprocessing
from pocfl.ml.data import DatasetError, _check_pair, load_csv, load_image_folder, load_npz

FloatMatrix = NDArray[np.float32]
Labels = NDArray[np.int64]

SCALE_Z_LIMIT = 3.0
"""Median |z| of a trainer's feature means (in owner standard deviations) above which it is warned."""

LABEL_NAME = "label"
"""The label column's default header name (as for trainers' CSVs, :mod:`trainer_client.data`)."""

RAW_SCALE_LIMIT = 100.0
"""Largest per-feature std above which unscaled (``none``) data is warned about."""


class TableError(DatasetError):
    """A data table is malformed: ragged rows, a non-numeric value, bad labels; the message names the line."""


class TooFewClassesError(DatasetError):
    """A validation set holds fewer than two classes: no classifier can be scored on it."""


class PreprocessingError(DatasetError):
    """A transform name or its statistics are invalid, or do not fit the data."""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [[c.strip() for c in r] for r in csv.reader(handle)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TableError(path, f"not a readable CSV file ({exc})") from exc
    return [r for r in rows if any(r)]


def _label_index(path: Path, label_column: str | int | None, header: list[str] | None, width: int) -> int:
    if label_column is None:
        return header.index(LABEL_NAME) if header is not None and LABEL_NAME in header else width - 1
    if isinstance(label_column, str) and label_column.strip().lstrip("-").isdigit():
        label_column = int(label_column)
    if isinstance(label_column, int):
        index = label_column if label_column >= 0 else width + label_column
        if not 0 <= index < width:
            raise TableError(path, f"label column {label_column} out of range 0..{width - 1}")
        return index
    if header is None or label_column not in header:
        where = f"columns are {header}" if header is not None else "the file has no header row; give a position"
        raise TableError(path, f"no column named {label_column!r}; {where}")
    return header.index(label_column)


def load_csv_table(path: str | Path, label_column: str | int | None = None) -> tuple[FloatMatrix, Labels]:
    """Load a numeric CSV (see the module docstring): header optional, label ``label`` or last by default.

    Raises
    ------
    TableError
        Not readable, fewer than two columns, a row with another number of fields (ragged), a non-numeric value,
        or an unknown label column.
    DatasetError
        Labels that are not non-negative integers, or NaN/infinite features.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(p, "no such file")
    rows = _read_rows(p)
    if not rows:
        raise TableError(p, "no data rows")
    header = rows[0] if not all(_is_number(v) for v in rows[0]) else None
    if header is not None:
        # a named header: the loader of header CSVs, with its label-column rules and messages
        return load_csv(p, _label_index(p, label_column, header, len(header)))
    width = len(rows[0])
    if width < 2:
        raise TableError(p, "needs at least one feature column besides the label")
    label_idx = _label_index(p, label_column, None, width)
    table = np.empty((len(rows), width), dtype=np.float64)
    for line_no, row in enumerate(rows, start=1):
        if len(row) != width:
            raise TableError(p, f"line {line_no} has {len(row)} fields, line 1 has {width} (ragged rows)")
        try:
            table[line_no - 1] = [float(v) for v in row]
        except ValueError as exc:
            raise TableError(p, f"line {line_no}: non-numeric value ({exc})") from exc
    return _check_pair(p, np.delete(table, label_idx, axis=1), table[:, label_idx])


def load_table(path: str | Path, label_column: str | int | None = None) -> tuple[FloatMatrix, Labels]:
    """Load ``(X, y)`` from a ``.csv``, a ``.npz`` or an image folder (see the module docstring).

    Returns
    -------
    X, y
        Features float32 ``(n, features)``, labels int64 ``(n,)``; features are not rescaled.

    Raises
    ------
    DatasetError
        A missing path, a file type pocfl cannot read, or a malformed file (:class:`TableError`).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        x, y, _ = load_image_folder(p)
        return x, y
    if not p.exists():
        raise DatasetError(p, "no such file or folder (expected a .csv, a .npz or an image folder)")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return load_csv_table(p, label_column)
    if suffix == ".npz":
        return load_npz(p)
    raise DatasetError(p, f"cannot read {suffix or 'files without a suffix'}: use .csv, .npz or an image folder")


def infer_shape(path: str | Path, y: Labels) -> tuple[int, int]:
    """The class count a validation set implies, ``max(y) + 1``, after checking it has at least two classes.

    Returns
    -------
    n_classes, n_present
        The model's output width and how many classes occur.

    Raises
    ------
    TooFewClassesError
        Only one class occurs.
    """
    present = int(np.unique(y).shape[0])
    if present < 2:
        raise TooFewClassesError(path, f"the labels hold {present} class(es); a classifier needs at least 2")
    return int(y.max()) + 1, present


def apply_preprocessing(pre: Preprocessing, x: NDArray[np.floating]) -> FloatMatrix:
    """``x`` after the manifest's transform, float32 (``none`` returns it unchanged).

    Raises
    ------
    PreprocessingError
        The statistics do not fit ``x``'s feature count.
    """
    arr = np.asarray(x, dtype=np.float32)
    if pre.transform == "none":
        return arr
    if pre.mean is None or pre.std is None or len(pre.mean) != arr.shape[1] or len(pre.std) != arr.shape[1]:
        raise PreprocessingError("preprocessing", f"the {pre.transform} statistics do not fit {arr.shape[1]} features")
    mean = np.asarray(pre.mean, dtype=np.float64)
    std = np.asarray(pre.std, dtype=np.float64)
    return ((arr.astype(np.float64) - mean) / std).astype(np.float32)


def fit_transform(transform: str, x: NDArray[np.floating]) -> Preprocessing:
    """The :class:`~pocfl.manifest.Preprocessing` named ``transform`` with its statistics computed on ``x``.

    Statistics are float64 rounded to 9 significant digits so the manifest's JSON is short and the same everywhere.

    Raises
    ------
    PreprocessingError
        An unknown transform name.
    """
    if transform not in TRANSFORMS:
        raise PreprocessingError("--transform", f"unknown transform {transform!r} (known: {', '.join(TRANSFORMS)})")
    if transform == "none":
        return Preprocessing()
    arr = np.asarray(x, dtype=np.float64)
    std = arr.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature: shift only
    return Preprocessing(
        transform,
        tuple(float(f"{v:.9g}") for v in arr.mean(axis=0)),
        tuple(float(f"{v:.9g}") for v in std),
    )


def scale_warning(pre: Preprocessing, x: NDArray[np.floating]) -> str | None:
    """One line when ``x``'s per-feature scale is far from the manifest's (the rule in the module docstring)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        return None
    if pre.transform == "standardize" and pre.mean is not None and pre.std is not None:
        z = np.abs(arr.mean(axis=0) - np.asarray(pre.mean)) / np.asarray(pre.std)
        median = float(np.median(z))
        if median > SCALE_Z_LIMIT:
            return (
                f"your data's feature means are a median {median:.1f} standard deviations from the project's "
                f"(limit {SCALE_Z_LIMIT:g}): give raw features in the owner's units, not rescaled ones"
            )
        return None
    spread = float(arr.std(axis=0).max())
    if spread > RAW_SCALE_LIMIT:
        return (
            f"your data is unscaled (a feature's std is {spread:.3g} > {RAW_SCALE_LIMIT:g}) and the project publishes "
            "no standardisation: training may stall at the majority class"
        )
    return None
