"""Datasets for local training: the bundled digits data, a non-IID partitioner and loaders for user data.

Every loader returns features as a float32 matrix ``(n, features)`` scaled to roughly [0, 1] and labels
as an int64 vector, the layout :func:`pocfl.ml.training.local_train` expects.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pocfl.errors import PocflError

FloatMatrix = NDArray[np.float32]
Labels = NDArray[np.int64]
IndexArray = NDArray[np.int64]

#: file suffixes :func:`load_image_folder` reads; anything else in a class folder is ignored
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


class DatasetError(PocflError):
    """A data file or folder is missing, unreadable or not in the expected layout.

    Parameters
    ----------
    path
        The file or folder at fault.
    reason
        What is wrong with it and, where possible, how to fix it.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def load_digits_split(seed: int, val_fraction: float = 0.2) -> tuple[FloatMatrix, Labels, FloatMatrix, Labels]:
    """Load scikit-learn's bundled 8x8 digits (1,797 images, 10 classes) as a stratified train/val split.

    Parameters
    ----------
    seed
        Seed of the shuffle; the same seed gives the same split.
    val_fraction
        Share of the samples held out for validation, in (0, 1).

    Returns
    -------
    X_train, y_train, X_val, y_val
        Features are float32 in [0, 1] (pixel intensities 0..16 divided by 16), labels int64 in 0..9.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    features = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    x_tr, x_va, y_tr, y_va = train_test_split(
        features, labels, test_size=val_fraction, random_state=seed, stratify=labels
    )
    return (
        np.ascontiguousarray(x_tr, dtype=np.float32),
        np.asarray(y_tr, dtype=np.int64),
        np.ascontiguousarray(x_va, dtype=np.float32),
        np.asarray(y_va, dtype=np.int64),
    )


def dirichlet_partition(
    y: NDArray[np.integer], n_clients: int, alpha: float, seed: int, min_size: int = 1
) -> list[IndexArray]:
    """Split sample indices among clients with per-class Dirichlet proportions (label-skewed, non-IID).

    For every class, the class's samples are shuffled and cut according to proportions drawn from
    ``Dirichlet(alpha, ..., alpha)`` over the clients: small ``alpha`` gives each client few classes,
    large ``alpha`` approaches an IID split. Clients left with fewer than ``min_size`` samples then
    receive random samples from the currently largest client, so every client can train.

    Parameters
    ----------
    y
        Labels, shape ``(n,)``.
    n_clients
        Number of clients, at least 1.
    alpha
        Dirichlet concentration, > 0.
    seed
        Seed; the same inputs give the same partition.
    min_size
        Minimum samples per client, at least 1; ``n_clients * min_size`` must not exceed ``n``.

    Returns
    -------
    list of numpy.ndarray
        ``n_clients`` sorted int64 index arrays that are pairwise disjoint and together cover ``0..n-1``.
    """
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {labels.shape}")
    if n_clients < 1:
        raise ValueError(f"n_clients must be >= 1, got {n_clients}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    if n_clients * min_size > labels.shape[0]:
        raise ValueError(f"{labels.shape[0]} samples cannot give {n_clients} clients {min_size} each")

    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(n_clients)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        proportions = rng.dirichlet(np.full(n_clients, alpha))
        cuts = (np.cumsum(proportions)[:-1] * members.shape[0]).astype(np.int64)
        for client, chunk in enumerate(np.split(members, cuts)):
            parts[client].extend(chunk.tolist())

    # Repair instead of redrawing: always terminates, and stays deterministic for the seed.
    for client in range(n_clients):
        while len(parts[client]) < min_size:
            donor = max(range(n_clients), key=lambda c: len(parts[c]))
            taken = parts[donor].pop(int(rng.integers(len(parts[donor]))))
            parts[client].append(taken)
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _integral(values: NDArray[np.float64]) -> bool:
    """True if every value is a finite whole number."""
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _check_pair(path: Path, x: NDArray[np.generic], y: NDArray[np.generic]) -> tuple[FloatMatrix, Labels]:
    """Validate and convert a loaded ``(X, y)`` pair to the float32 / int64 layout."""
    if x.ndim < 2:
        raise DatasetError(path, f"features must have one row per sample, got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DatasetError(path, f"labels of shape {y.shape} do not match {x.shape[0]} feature rows")
    if x.shape[0] == 0:
        raise DatasetError(path, "no samples")
    try:
        features = np.asarray(x, dtype=np.float32).reshape(x.shape[0], -1)
    except (TypeError, ValueError) as exc:
        raise DatasetError(path, f"features are not numeric ({exc})") from exc
    if not np.all(np.isfinite(features)):
        raise DatasetError(path, "features contain NaN or infinity")
    if np.issubdtype(y.dtype, np.integer):
        labels = np.asarray(y, dtype=np.int64)
    elif np.issubdtype(y.dtype, np.floating) and _integral(y.astype(np.float64)):
        labels = np.asarray(y, dtype=np.int64)  # e.g. labels read from a CSV as 3.0
    else:
        raise DatasetError(path, f"labels must be integers, got dtype {y.dtype}")
    if labels.min() < 0:
        raise DatasetError(path, "labels must be >= 0")
    return features, labels


def load_npz(path: str | Path) -> tuple[FloatMatrix, Labels]:
    """Load a NumPy ``.npz`` archive holding arrays ``X`` (one row per sample) and ``y`` (integer labels).

    Parameters
    ----------
    path
        The archive; written e.g. with ``numpy.savez(path, X=X, y=y)``.

    Returns
    -------
    X, y
        ``X`` float32 flattened to ``(n, features)``, ``y`` int64. Features are not rescaled.

    Raises
    ------
    DatasetError
        The file is missing, not an npz archive, lacks ``X`` or ``y``, or holds mismatched arrays.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(p, "no such file")
    try:
        # allow_pickle=False: a data file must never be able to run code
        with np.load(p, allow_pickle=False) as archive:
            missing = sorted({"X", "y"} - set(archive.files))
            if missing:
                raise DatasetError(p, f"missing array(s) {', '.join(missing)}; found {sorted(archive.files)}")
            x, y = archive["X"], archive["y"]
    except DatasetError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(p, f"not a readable .npz archive ({exc})") from exc
    return _check_pair(p, x, y)


def load_csv(path: str | Path, label_column: str | int) -> tuple[FloatMatrix, Labels]:
    """Load a CSV file with a header row: one sample per row, numeric feature columns, integer labels.

    Parameters
    ----------
    path
        The CSV file (comma separated, first row = column names).
    label_column
        Name of the label column, or its zero-based position.

    Returns
    -------
    X, y
        ``X`` float32 ``(n, columns - 1)`` in file column order without the label, ``y`` int64.

    Raises
    ------
    DatasetError
        Missing file, no header, unknown label column, ragged rows, or non-numeric values.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(p, "no such file")
    try:
        with p.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(p, f"not a readable CSV file ({exc})") from exc
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise DatasetError(p, "needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if isinstance(label_column, int):
        if not 0 <= label_column < len(header):
            raise DatasetError(p, f"label column {label_column} out of range 0..{len(header) - 1}")
        label_idx = label_column
    elif label_column in header:
        label_idx = header.index(label_column)
    else:
        raise DatasetError(p, f"no column named {label_column!r}; columns are {header}")
    if len(header) < 2:
        raise DatasetError(p, "needs at least one feature column besides the label")

    table = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DatasetError(p, f"line {line_no} has {len(row)} fields, the header has {len(header)}")
        try:
            table[line_no - 2] = [float(v) for v in row]
        except ValueError as exc:
            raise DatasetError(p, f"line {line_no}: non-numeric value ({exc})") from exc
    features = np.delete(table, label_idx, axis=1)
    return _check_pair(p, features, table[:, label_idx])


def load_image_folder(
    root: str | Path, *, size: tuple[int, int] | None = None, grayscale: bool = True
) -> tuple[FloatMatrix, Labels, list[str]]:
    """Load images stored as ``root/<class name>/<image file>``, one subfolder per class.

    Parameters
    ----------
    root
        Folder whose subfolders are the classes; labels follow the sorted subfolder names.
    size
        ``(width, height)`` every image is resized to; ``None`` requires all images to share one size.
    grayscale
        Convert to one channel (``"L"``) if true, else to RGB.

    Returns
    -------
    X, y, classes
        ``X`` float32 ``(n, height * width * channels)`` scaled to [0, 1], ``y`` int64 class indices,
        ``classes`` the class names in label order.

    Raises
    ------
    DatasetError
        Missing root, no class folders or images, an unreadable image, or mismatched sizes.
    """
    from PIL import Image, UnidentifiedImageError

    base = Path(root)
    if not base.is_dir():
        raise DatasetError(base, "no such folder")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetError(base, "no class subfolders (expected root/<class>/<image>)")

    mode = "L" if grayscale else "RGB"
    rows: list[NDArray[np.float32]] = []
    labels: list[int] = []
    shape: tuple[int, ...] | None = None
    for label, name in enumerate(classes):
        files = sorted(f for f in (base / name).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        for file in files:
            try:
                with Image.open(file) as img:
                    converted = img.convert(mode)
                    if size is not None:
                        converted = converted.resize(size)
                    pixels = np.asarray(converted, dtype=np.float32) / 255.0
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                raise DatasetError(file, f"not a readable image ({exc})") from exc
            if shape is None:
                shape = pixels.shape
            elif pixels.shape != shape:
                raise DatasetError(file, f"image shape {pixels.shape} differs from {shape}; pass size=(w, h)")
            rows.append(pixels.reshape(-1))
            labels.append(label)
    if not rows:
        raise DatasetError(base, f"no images with suffixes {sorted(IMAGE_SUFFIXES)} in the class folders")
    return np.stack(rows).astype(np.float32), np.asarray(labels, dtype=np.int64), classes


def subset(x: FloatMatrix, y: Labels, indices: Sequence[int] | IndexArray) -> tuple[FloatMatrix, Labels]:
    """Return the rows ``indices`` of ``(x, y)``, e.g. one client's share from :func:`dirichlet_partition`."""
    idx = np.asarray(indices, dtype=np.int64)
    return x[idx], y[idx]
