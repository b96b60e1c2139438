"""A trainer's private data: files it owns, or a demo share of the bundled digits data.

:func:`load_private_data` takes a path or a spec and returns ``(X, y)`` in the layout
:func:`pocfl.ml.training.local_train` expects (float32 ``(n, features)``, int64 labels):

- ``PATH.csv``: one sample per row, numeric columns, header row optional
  (:func:`pocfl.ml.tabular.load_csv_table`); the label column is ``label_column`` (default: the column named
  ``label``, else the last one);
- ``PATH.npz``: arrays ``X`` and ``y``;
- ``PATH.csv:part=I:of=N[:seed=S]`` (or ``.npz``): share ``I`` of ``N`` of that file's rows, a seeded shuffle cut
  into ``N`` near-equal parts (:func:`file_share`), so one file feeds every simulated trainer (Flower's
  ``{partition-id}``/``{num-partitions}`` placeholders fill ``I`` and ``N``);
- a folder: images as ``root/<class>/<image>`` (``image_size`` resizes them);
- ``digits:part=I:of=N[:alpha=A][:seed=S][:fraction=F]``: trainer ``I`` of ``N`` in a Dirichlet(``A``)
  label-skewed partition of the *training* split of scikit-learn's digits. The split is
  :func:`pocfl.ml.data.load_digits_split` ``(S, F)``, the same call the manifest's validation recipe
  ``sklearn-digits:seed=S:fraction=F`` makes, so the owner's validation samples are never in a trainer's share.
  Defaults: ``alpha=0.5``, ``seed=0``, ``fraction=0.2``.

The features are returned as stored; the project's preprocessing (its manifest's ``preprocessing``) is applied
by the trainer once it has read the manifest (:meth:`trainer_client.client.TrainerClient.manifest`).

Every problem is a :class:`DataSpecError` (a bad spec) or a :class:`~pocfl.ml.data.DatasetError` (a bad file),
both :class:`~pocfl.errors.PocflError`, so the CLI shows them as one line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pocfl.ml.data import DatasetError, dirichlet_partition, load_digits_split, load_image_folder, load_npz
from pocfl.ml.tabular import load_csv_table

FloatMatrix = NDArray[np.float32]
Labels = NDArray[np.int64]

DIGITS_SCHEME = "digits"
DEFAULT_LABEL_COLUMN = "label"
MIN_PART_SIZE = 10
"""Fewest samples a digits share gets (fewer when the split is too small to give everyone this many)."""


class DataSpecError(DatasetError):
    """A data path or spec is malformed or names nothing loadable; the message says what is expected."""


@dataclass(frozen=True)
class DigitsSpec:
    """A parsed ``digits:part=I:of=N:alpha=A:seed=S:fraction=F`` spec.

    Attributes
    ----------
    part
        This trainer's share, ``0 <= part < of``.
    of
        Number of shares.
    alpha
        Dirichlet concentration of the label skew (> 0; small = few classes per trainer).
    seed
        Seed of the train/validation split and of the partition.
    fraction
        Validation share held out of the split, in (0, 1).
    """

    part: int
    of: int
    alpha: float = 0.5
    seed: int = 0
    fraction: float = 0.2

    def __str__(self) -> str:
        return f"digits:part={self.part}:of={self.of}:alpha={self.alpha:g}:seed={self.seed}:fraction={self.fraction:g}"


def parse_digits_spec(spec: str) -> DigitsSpec:
    """Parse a ``digits:...`` spec (see the module docstring).

    Raises
    ------
    DataSpecError
        Another scheme, a part that is not ``key=value``, an unknown or repeated key, a missing ``part`` or
        ``of``, or a value out of range.
    """
    scheme, *parts = spec.strip().split(":")
    if scheme.strip() != DIGITS_SCHEME:
        raise DataSpecError(spec, f"not a {DIGITS_SCHEME}: spec")
    fields: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise DataSpecError(spec, f"{part!r} is not key=value (expected digits:part=I:of=N[:alpha=A][:seed=S])")
        if key in fields:
            raise DataSpecError(spec, f"{key!r} given twice")
        fields[key] = value
    allowed = {"part", "of", "alpha", "seed", "fraction"}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise DataSpecError(spec, f"unknown key(s) {unknown}; known: {sorted(allowed)}")
    missing = sorted({"part", "of"} - set(fields))
    if missing:
        raise DataSpecError(spec, f"missing {', '.join(missing)} (expected digits:part=I:of=N)")
    try:
        parsed = DigitsSpec(
            part=int(fields["part"]),
            of=int(fields["of"]),
            alpha=float(fields.get("alpha", "0.5")),
            seed=int(fields.get("seed", "0")),
            fraction=float(fields.get("fraction", "0.2")),
        )
    except ValueError as exc:
        raise DataSpecError(spec, f"a value is not a number ({exc})") from exc
    if parsed.of < 1 or not 0 <= parsed.part < parsed.of:
        raise DataSpecError(spec, f"need 0 <= part < of, got part={parsed.part}, of={parsed.of}")
    if not (np.isfinite(parsed.alpha) and parsed.alpha > 0):
        raise DataSpecError(spec, f"alpha must be > 0, got {parsed.alpha}")
    if not 0.0 < parsed.fraction < 1.0:
        raise DataSpecError(spec, f"fraction must be in (0, 1), got {parsed.fraction}")
    if parsed.seed < 0:
        raise DataSpecError(spec, f"seed must be >= 0, got {parsed.seed}")
    return parsed


def digits_share(spec: DigitsSpec | str) -> tuple[FloatMatrix, Labels]:
    """Trainer ``spec.part``'s share of the digits training split (the validation split excluded).

    Raises
    ------
    DataSpecError
        The spec is malformed or asks for more shares than the split has samples.
    """
    parsed = parse_digits_spec(spec) if isinstance(spec, str) else spec
    x_train, y_train, _, _ = load_digits_split(parsed.seed, parsed.fraction)
    n = y_train.shape[0]
    if parsed.of > n:
        raise DataSpecError(str(parsed), f"{n} training samples cannot be split {parsed.of} ways")
    min_size = max(1, min(MIN_PART_SIZE, n // parsed.of))
    parts = dirichlet_partition(y_train, parsed.of, parsed.alpha, parsed.seed, min_size=min_size)
    idx = parts[parsed.part]
    return np.ascontiguousarray(x_train[idx]), np.asarray(y_train[idx], dtype=np.int64)


@dataclass(frozen=True)
class FileShare:
    """A parsed ``PATH:part=I:of=N[:seed=S]`` spec: rows ``I`` of ``N`` of a CSV or NPZ file."""

    path: Path
    part: int
    of: int
    seed: int = 0


def parse_file_share(spec: str) -> FileShare | None:
    """The share a ``PATH.csv:part=I:of=N[:seed=S]`` spec names, or None for a plain path.

    Raises
    ------
    DataSpecError
        The options after the file name are malformed or out of range.
    """
    head, sep, options = spec.partition(":part=")
    if not sep or Path(head).suffix.lower() not in (".csv", ".npz"):
        return None
    fields: dict[str, str] = {}
    for item in ("part=" + options).split(":"):
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in ("part", "of", "seed") or key.strip() in fields:
            raise DataSpecError(spec, f"{item!r}: expected {head}:part=I:of=N[:seed=S]")
        fields[key.strip()] = value.strip()
    if "of" not in fields:
        raise DataSpecError(spec, f"missing of (expected {head}:part=I:of=N)")
    try:
        share = FileShare(Path(head).expanduser(), int(fields["part"]), int(fields["of"]), int(fields.get("seed", 0)))
    except ValueError as exc:
        raise DataSpecError(spec, f"a value is not an integer ({exc})") from exc
    if share.of < 1 or not 0 <= share.part < share.of or share.seed < 0:
        raise DataSpecError(spec, f"need 0 <= part < of and seed >= 0, got {share}")
    return share


def file_share(x: FloatMatrix, y: Labels, share: FileShare) -> tuple[FloatMatrix, Labels]:
    """Rows ``share.part`` of ``share.of`` after a shuffle seeded by ``share.seed`` (the shares are disjoint).

    Raises
    ------
    DataSpecError
        The file has fewer rows than shares.
    """
    if share.of > y.shape[0]:
        raise DataSpecError(str(share.path), f"{y.shape[0]} rows cannot be split {share.of} ways")
    order = np.random.default_rng(share.seed).permutation(y.shape[0])
    idx = np.sort(np.array_split(order, share.of)[share.part])
    return np.ascontiguousarray(x[idx]), np.ascontiguousarray(y[idx])


def _csv_label(path: Path, label_column: str | int | None) -> str | int:
    """The label column to use: the given one, else ``label`` if the header has it, else the last column."""
    if label_column is not None:
        if isinstance(label_column, str) and label_column.strip().lstrip("-").isdigit():
            return int(label_column)
        return label_column
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(path, f"not a readable CSV file ({exc})") from exc
    names = [h.strip() for h in header]
    if DEFAULT_LABEL_COLUMN in names:
        return DEFAULT_LABEL_COLUMN
    return max(len(names) - 1, 0)


def load_private_data(
    path_or_spec: str | Path,
    *,
    label_column: str | int | None = None,
    image_size: tuple[int, int] | None = None,
) -> tuple[FloatMatrix, Labels]:
    """Load a trainer's data from a file, a folder or a ``digits:`` spec.

    Parameters
    ----------
    path_or_spec
        ``*.csv``, ``*.npz`` (either with ``:part=I:of=N[:seed=S]``), an image folder, or
        ``digits:part=I:of=N[:alpha=A][:seed=S][:fraction=F]``.
    label_column
        CSV only: the label column's name or zero-based position (a string of digits counts as a position).
        Default: ``label`` when the header has it, else the last column.
    image_size
        Image folders only: ``(width, height)`` every image is resized to.

    Returns
    -------
    X, y
        Features float32 ``(n, features)``, labels int64 ``(n,)``.

    Raises
    ------
    DataSpecError
        A malformed ``digits:`` spec, a path that does not exist, or a file type pocfl cannot read.
    DatasetError
        A file that exists but is not in the expected layout.
    """
    text = str(path_or_spec).strip()
    if not text:
        raise DataSpecError(text, "empty data path")
    if not isinstance(path_or_spec, Path) and text.split(":", 1)[0] == DIGITS_SCHEME:
        return digits_share(parse_digits_spec(text))
    share = None if isinstance(path_or_spec, Path) else parse_file_share(text)
    if share is not None:
        x, y = load_private_data(share.path, label_column=label_column)
        return file_share(x, y, share)
    path = Path(text).expanduser()
    if path.is_dir():
        x, y, _ = load_image_folder(path, size=image_size)
        return x, y
    if not path.exists():
        raise DataSpecError(
            text, "no such file or folder (expected a .csv, a .npz, an image folder or digits:part=I:of=N)"
        )
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return load_csv_table(path, _csv_label(path, label_column))
    if suffix == ".npz":
        return load_npz(path)
    raise DataSpecError(text, f"cannot read {suffix or 'files without a suffix'}: use .csv, .npz or an image folder")
