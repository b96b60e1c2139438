"""The model-update file: a canonical safetensors file, written and read in pure Python/numpy (no pickle).

Writing is deterministic: the same tensors, kind and model spec always give the same bytes, hence the same
CID, whatever the dict insertion order, process or platform. The ``safetensors`` library is not used to
write: its ``__metadata__`` is a Rust ``HashMap`` whose iteration order is randomised per process (checked
with safetensors 0.8.0: three runs, three orders of the same eight keys), and it orders tensors by dtype
alignment, not by name. Its files are still read here, and it reads the files written here.

Reading is strict (see :func:`read_safetensors` and :func:`decode_update`) and never copies tensor data:
decoded arrays are read-only ``np.frombuffer`` views of an immutable ``bytes`` object (a ``bytearray`` or
``memoryview`` input is copied once into ``bytes`` first, so later writes to it cannot change an update
already checked). :meth:`Update.vector` returns a fresh, writable float32 vector.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import DTypeLike, NDArray

from pocfl.untrusted import UntrustedJsonError, quote, screen_json
from pocfl.updates.errors import (
    ArchitectureMismatchError,
    CorruptUpdateError,
    NonFiniteUpdateError,
    TensorDTypeError,
    TensorShapeError,
    UpdateArgumentError,
    UpdateKindError,
    UpdateTooLargeError,
    describe_model,
)

if TYPE_CHECKING:
    import torch

FORMAT_KEY = "pocfl.format"
KIND_KEY = "pocfl.kind"
FINGERPRINT_KEY = "pocfl.fingerprint"
FORMAT_NAME = "pocfl-update/1"
"""Value of ``pocfl.format``; a reader refuses any other (a new layout gets a new version)."""

SPEC_FORMAT_NAME = "pocfl-model-spec/1"
"""Tag inside the fingerprinted JSON, so a future spec encoding can never collide with this one."""

KINDS = ("delta", "weights")
DEFAULT_MAX_UPDATE_SIZE = 256 << 20
"""Default cap on an encoded update (256 MiB); pass ``spec.nbytes`` plus some header room to be tighter."""

MAX_HEADER_SIZE = 100_000_000
"""The safetensors library's own header cap: every file accepted here is one it accepts too."""

MAX_EXTRA_HEADER = 64 << 10
"""Header bytes an update may have beyond the canonical header of its model (another writer's layout, extra
metadata). :func:`decode_update` refuses a longer header before parsing it, so parsing costs time and memory in
proportion to the model, not to whatever a trainer sends (a 64 MiB header of ``[[],[],...]`` would take 1.4 GB)."""

MAX_DIMS = 32
"""Most dimensions of a tensor: numpy's limit (32 before numpy 2, 64 since); a longer shape is refused, not
left to fail inside numpy."""

MAX_HEADER_DEPTH = 3
"""Nesting of a valid header: an object of tensor entries (objects) holding lists of integers. Anything deeper
is refused before the JSON parser sees it (CPython's parser recurses once per level)."""

Array: TypeAlias = NDArray[Any]

_DTYPES: dict[str, np.dtype[Any]] = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"),
    "U16": np.dtype("<u2"),
    "U32": np.dtype("<u4"),
    "U64": np.dtype("<u8"),
}
"""Supported safetensors dtypes. BF16 and the F8 types are left out: numpy has no native type for them."""

SUPPORTED_DTYPES = tuple(_DTYPES)
_BY_KIND = {(dt.kind, dt.itemsize): name for name, dt in _DTYPES.items()}
_ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})


def dtype_name(dtype: np.dtype[Any]) -> str | None:
    """The safetensors name (``F32``...) of a numpy dtype of either byte order; ``None`` if unsupported."""
    return _BY_KIND.get((dtype.kind, dtype.itemsize)) if dtype.kind in "fiu" else None


def _describe_dtype(dtype: np.dtype[Any]) -> str:
    return dtype_name(dtype) or f"numpy {dtype}"


def _normalise_dtype(dtype: DTypeLike) -> str:
    if isinstance(dtype, str) and dtype in _DTYPES:
        return dtype
    try:  # np.dtype(None) is float64: never guess a dtype
        name = dtype_name(np.dtype(dtype)) if dtype is not None else None
    except (TypeError, ValueError):
        name = None
    if name is None:
        raise UpdateArgumentError(f"unsupported dtype {dtype!r}; use one of {', '.join(SUPPORTED_DTYPES)}")
    return name


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or name == "__metadata__":
        raise UpdateArgumentError(f"invalid tensor name {name!r}: must be a non-empty string other than __metadata__")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: JSON-escapable, but no other reader would accept it
        raise UpdateArgumentError(f"invalid tensor name {name!r}: not valid Unicode") from exc
    return name


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


# --- the architecture ---------------------------------------------------------------------------------------


@dataclass(frozen=True, init=False)
class TensorSpec:
    """One tensor of a model: name, shape and safetensors dtype.

    Parameters
    ----------
    name
        The ``state_dict`` key, e.g. ``fc1.weight``.
    shape
        Dimensions (a list is accepted and stored as a tuple); ``()`` for a scalar.
    dtype
        A safetensors name (``F32``) or anything ``np.dtype`` accepts (``"float32"``, ``np.float32``); stored
        as the safetensors name.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str

    def __init__(self, name: str, shape: Iterable[int | np.integer[Any]], dtype: DTypeLike) -> None:
        _check_name(name)
        dims = tuple(shape)
        if not all(isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 0 for d in dims):
            raise UpdateArgumentError(f"tensor {name!r}: shape {dims!r} must be non-negative integers")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "shape", tuple(int(d) for d in dims))
        object.__setattr__(self, "dtype", _normalise_dtype(dtype))

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The little-endian numpy dtype the tensor is stored as."""
        return _DTYPES[self.dtype]

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Number of bytes of its data."""
        return self.size * self.numpy_dtype.itemsize


TensorLike: TypeAlias = "TensorSpec | tuple[str, Iterable[int | np.integer[Any]], DTypeLike]"


@dataclass(frozen=True, init=False)
class ModelSpec:
    """A model architecture: its tensors in a fixed order (the order of :meth:`flatten`), and an optional name.

    Parameters
    ----------
    tensors
        :class:`TensorSpec` objects or ``(name, shape, dtype)`` tuples (the ``ParamSpec`` of
        ``pocfl.ml.model.architecture_spec`` fits as is). Order matters: it is the flat-vector order, and
        part of the fingerprint.
    name
        Optional model name; part of the fingerprint.
    """

    tensors: tuple[TensorSpec, ...]
    name: str | None

    def __init__(self, tensors: Iterable[TensorLike], name: str | None = None) -> None:
        specs = tuple(t if isinstance(t, TensorSpec) else TensorSpec(*t) for t in tensors)
        if not specs:
            raise UpdateArgumentError("a model spec needs at least one tensor")
        dupes = sorted(n for n, c in Counter(t.name for t in specs).items() if c > 1)
        if dupes:
            raise UpdateArgumentError(f"duplicate tensor names in model spec: {dupes}")
        if name is not None and not isinstance(name, str):
            raise UpdateArgumentError(f"model name must be a string or None, got {name!r}")
        object.__setattr__(self, "tensors", specs)
        object.__setattr__(self, "name", name)

    # --- construction ---------------------------------------------------------------------------------------

    @classmethod
    def from_arrays(cls, tensors: Mapping[str, Array], *, name: str | None = None) -> ModelSpec:
        """The spec of a mapping of numpy arrays, in the mapping's iteration order."""
        return cls(tuple(TensorSpec(k, np.shape(v), np.asarray(v).dtype.name) for k, v in tensors.items()), name)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], *, name: str | None = None) -> ModelSpec:
        """The spec of a torch ``state_dict``, in its order (torch is imported only here).

        Raises
        ------
        UpdateArgumentError
            A value is not a tensor, or has a dtype numpy cannot hold (``bfloat16``: cast it to float32).
        """
        import torch  # lazily: numpy-only users (the aggregator's scoring) need no torch

        specs = []
        for key, value in state_dict.items():
            if not isinstance(value, torch.Tensor):
                raise UpdateArgumentError(f"state_dict[{key!r}] is a {type(value).__name__}, not a torch.Tensor")
            torch_name = str(value.dtype).removeprefix("torch.")
            try:
                dtype = _normalise_dtype(torch_name)
            except UpdateArgumentError as exc:
                raise UpdateArgumentError(
                    f"state_dict[{key!r}] has dtype {value.dtype}, unsupported; use one of "
                    f"{', '.join(SUPPORTED_DTYPES)} (cast bfloat16 to float32)"
                ) from exc
            specs.append(TensorSpec(key, tuple(value.shape), dtype))
        return cls(tuple(specs), name)

    # --- identity -------------------------------------------------------------------------------------------

    def canonical_json(self) -> bytes:
        """The bytes :attr:`fingerprint` hashes.

        ``{"format":"pocfl-model-spec/1","name":NAME_OR_NULL,"tensors":[[NAME,[DIMS...],DTYPE],...]}``
        with sorted keys, no whitespace, ASCII escapes, tensors in spec order.
        """
        return _canonical_json(
            {
                "format": SPEC_FORMAT_NAME,
                "name": self.name,
                "tensors": [[t.name, list(t.shape), t.dtype] for t in self.tensors],
            }
        )

    def describe(self) -> str:
        """The model in words (:func:`pocfl.updates.errors.describe_model`): ``a 64-32-10 MLP``."""
        return describe_model([t.shape for t in self.tensors])

    @cached_property
    def fingerprint(self) -> str:
        """Hex sha256 of :meth:`canonical_json`: equal exactly when names, order, shapes, dtypes and name are."""
        return hashlib.sha256(self.canonical_json()).hexdigest()

    @cached_property
    def header_size(self) -> int:
        """Bytes of the canonical safetensors header of an update of this spec (the longer kind, unpadded)."""
        header: dict[str, object] = {
            "__metadata__": {FORMAT_KEY: FORMAT_NAME, KIND_KEY: "weights", FINGERPRINT_KEY: self.fingerprint}
        }
        offset = 0
        for t in sorted(self.tensors, key=lambda t: t.name):
            header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
            offset += t.nbytes
        return len(_canonical_json(header))

    @property
    def names(self) -> tuple[str, ...]:
        """Tensor names in spec order."""
        return tuple(t.name for t in self.tensors)

    @property
    def size(self) -> int:
        """Length ``d`` of the flat vector."""
        return sum(t.size for t in self.tensors)

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data in an encoded update (the header comes on top)."""
        return sum(t.nbytes for t in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def __iter__(self) -> Iterator[TensorSpec]:
        return iter(self.tensors)

    # --- checks and the flat-vector view --------------------------------------------------------------------

    def check(self, tensors: Mapping[str, Array], *, finite: bool = True) -> dict[str, Array]:
        """Check that ``tensors`` are exactly this spec's; return them as numpy arrays in spec order.

        Raises
        ------
        TensorShapeError
            A name is missing or unexpected, or a shape differs.
        TensorDTypeError
            A dtype differs (byte order aside).
        NonFiniteUpdateError
            ``finite`` and a floating tensor holds NaN or infinity.
        """
        missing = [t.name for t in self.tensors if t.name not in tensors]
        known = set(self.names)
        unexpected = sorted(k for k in tensors if k not in known)
        if missing or unexpected:
            parts = [f"missing tensors {quote(missing)}"] if missing else []
            parts += [f"unexpected tensors {quote(unexpected)}"] if unexpected else []
            raise TensorShapeError(
                f"update does not match the model spec: {', '.join(parts)}", missing=missing, unexpected=unexpected
            )
        out: dict[str, Array] = {}
        for spec in self.tensors:
            array = np.asarray(tensors[spec.name])
            got = _describe_dtype(array.dtype)
            if got != spec.dtype:
                raise TensorDTypeError(
                    f"tensor {spec.name!r} has dtype {got}, expected {spec.dtype}",
                    tensor=spec.name,
                    expected=spec.dtype,
                    got=got,
                )
            if array.shape != spec.shape:
                raise TensorShapeError(
                    f"tensor {spec.name!r} has shape {list(array.shape)}, expected {list(spec.shape)}",
                    tensor=spec.name,
                    expected=spec.shape,
                    got=array.shape,
                )
            if finite:
                _check_finite(spec.name, array)
            out[spec.name] = array
        return out

    def flatten(self, tensors: Mapping[str, Array]) -> NDArray[np.float32]:
        """Concatenate ``tensors`` in spec order into a new float32 vector ``(d,)``.

        Names, shapes and dtypes are checked (:meth:`check`); finiteness is not (decoding already did).

        Raises
        ------
        TensorShapeError, TensorDTypeError
            As :meth:`check`; also TensorDTypeError if F64 values overflow float32.
        """
        arrays = self.check(tensors, finite=False)
        out = np.empty(self.size, dtype=np.float32)
        offset = 0
        for spec in self.tensors:
            part = out[offset : offset + spec.size]
            with np.errstate(over="ignore"):  # only F64 can overflow float32; checked just below
                part[...] = arrays[spec.name].reshape(-1)
            if spec.dtype == "F64" and np.any(np.isfinite(arrays[spec.name].reshape(-1)) & ~np.isfinite(part)):
                raise TensorDTypeError(
                    f"tensor {spec.name!r} has F64 values beyond the float32 range of the flat vector",
                    tensor=spec.name,
                    expected="F32",
                    got="F64",
                )
            offset += spec.size
        return out

    def unflatten(self, vector: NDArray[Any]) -> dict[str, Array]:
        """Split a flat vector ``(d,)`` into new, writable arrays with this spec's names, shapes and dtypes.

        Integer tensors take the rounded values.

        Raises
        ------
        TensorShapeError
            The vector is not one-dimensional of length :attr:`size`.
        NonFiniteUpdateError
            The vector holds NaN or infinity.
        TensorDTypeError
            A value does not fit its tensor's dtype (beyond the F16 or integer range).
        """
        vec = np.asarray(vector)
        if vec.dtype.kind not in "fiu":
            raise UpdateArgumentError(f"vector has dtype {vec.dtype}, expected a real numeric dtype")
        if vec.shape != (self.size,):
            raise TensorShapeError(
                f"vector has shape {list(vec.shape)}, expected [{self.size}] for this model spec",
                expected=(self.size,),
                got=vec.shape,
            )
        _check_finite("<vector>", vec)
        out: dict[str, Array] = {}
        offset = 0
        for spec in self.tensors:
            chunk = vec[offset : offset + spec.size]
            offset += spec.size
            target = spec.numpy_dtype.newbyteorder("=")
            if target.kind == "f":
                with np.errstate(over="ignore"):  # overflow to inf is detected right after
                    values = chunk.astype(target)
                if not np.isfinite(values).all():
                    raise TensorDTypeError(
                        f"tensor {spec.name!r}: vector values exceed the range of {spec.dtype}",
                        tensor=spec.name,
                        expected=spec.dtype,
                        got=_describe_dtype(vec.dtype),
                    )
            else:
                info = np.iinfo(target)
                if vec.dtype.kind == "f":
                    rounded = np.rint(chunk)
                    # max + 1 is a power of two, exact in every float dtype, unlike max itself
                    overflow = bool(rounded.size) and (rounded.min() < info.min or rounded.max() >= float(info.max + 1))
                else:
                    rounded = chunk
                    overflow = bool(rounded.size) and (int(rounded.min()) < info.min or int(rounded.max()) > info.max)
                if overflow:
                    raise TensorDTypeError(
                        f"tensor {spec.name!r}: vector values outside the range of {spec.dtype}",
                        tensor=spec.name,
                        expected=spec.dtype,
                        got=_describe_dtype(vec.dtype),
                    )
                values = rounded.astype(target)
            out[spec.name] = values.reshape(spec.shape)
        return out


def _check_finite(name: str, array: Array) -> None:
    if array.dtype.kind != "f" or np.isfinite(array).all():
        return
    nan = int(np.count_nonzero(np.isnan(array)))
    posinf = int(np.count_nonzero(np.isposinf(array)))
    neginf = int(np.count_nonzero(np.isneginf(array)))
    raise NonFiniteUpdateError(name, nan=nan, posinf=posinf, neginf=neginf, size=int(array.size))


# --- raw safetensors ----------------------------------------------------------------------------------------


def write_safetensors(tensors: Mapping[str, Array], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize tensors to canonical safetensors bytes.

    Layout: ``u64 LE header length N``, ``N`` bytes of header, tensor data. The header is canonical JSON
    (sorted keys, no whitespace, ASCII escapes, ``__metadata__`` omitted when empty) padded with spaces to a
    multiple of 8, so data starts 8-byte aligned. Data is laid out in sorted-name order, each tensor
    C-contiguous and little-endian, with no gaps.

    Raises
    ------
    UpdateArgumentError
        An invalid name, an unsupported dtype, or non-string metadata.
    """
    meta = dict(metadata or {})
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise UpdateArgumentError(f"metadata must map strings to strings, got {key!r}: {value!r}")
    header: dict[str, object] = {"__metadata__": meta} if meta else {}
    chunks: list[memoryview] = []
    offset = 0
    for name in sorted(tensors):
        _check_name(name)
        array = np.asarray(tensors[name])
        dtype = dtype_name(array.dtype)
        if dtype is None:
            raise UpdateArgumentError(
                f"tensor {name!r} has unsupported dtype {array.dtype}; use one of {', '.join(SUPPORTED_DTYPES)}"
            )
        # one C-order little-endian copy only when the array is not that already
        data = np.ascontiguousarray(array.astype(_DTYPES[dtype], copy=False).reshape(-1)).view(np.uint8)
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + data.size]}
        chunks.append(data.data)
        offset += data.size
    text = _canonical_json(header)
    text += b" " * (-len(text) % 8)  # 8 (length prefix) + N is then a multiple of 8
    return b"".join([struct.pack("<Q", len(text)), text, *chunks])


class _Entry:
    __slots__ = ("begin", "dtype", "end", "name", "shape")

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...], begin: int, end: int) -> None:
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end


def read_safetensors(
    data: bytes | bytearray | memoryview, *, max_header_size: int = MAX_HEADER_SIZE
) -> tuple[dict[str, Array], dict[str, str]]:
    """Parse safetensors bytes strictly; return ``(tensors in header order, metadata)``.

    Accepts any valid layout (the library's dtype-ordered one too), but only a valid one: the header must
    be a JSON object (starting with ``{``, followed only by space padding) without duplicate keys; each
    tensor must have exactly ``dtype``, ``shape`` and ``data_offsets`` with a supported dtype and a byte
    span that matches its shape; the spans must tile the data section exactly, from 0 to its end, without
    gaps or overlaps. Arrays are read-only views of the (immutable) input. The header is screened for size
    (``max_header_size``) and nesting (:data:`MAX_HEADER_DEPTH`) before it is parsed.

    Raises
    ------
    CorruptUpdateError
        Anything above; the message says what and where.
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    total = len(buf)
    if total < 8:
        raise CorruptUpdateError(f"truncated: {total} bytes, too short for the 8-byte header length")
    (header_len,) = struct.unpack_from("<Q", buf)
    if header_len > total - 8:
        raise CorruptUpdateError(
            f"truncated or bad header length: the header claims {header_len} bytes but only {total - 8} follow"
        )
    if header_len > max_header_size:
        raise CorruptUpdateError(f"header length {header_len} is over the {max_header_size}-byte header limit")
    header = _parse_header(buf[8 : 8 + header_len])
    metadata = _parse_metadata(header.pop("__metadata__", None))
    entries = [_parse_entry(name, value) for name, value in header.items()]
    base = 8 + header_len
    _check_tiling(entries, total - base)
    tensors = {
        e.name: np.frombuffer(buf, dtype=_DTYPES[e.dtype], count=math.prod(e.shape), offset=base + e.begin).reshape(
            e.shape
        )
        for e in entries
    }
    return tensors, metadata


def _parse_header(raw: bytes) -> dict[str, Any]:
    if not raw.startswith(b"{"):
        raise CorruptUpdateError(f"header does not start with '{{' (starts with {raw[:16]!r})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptUpdateError(f"header is not UTF-8: {exc}") from exc
    try:  # before any parsing: the JSON parser itself would overflow the C stack on deep nesting
        screen_json(raw, max_size=MAX_HEADER_SIZE, max_depth=MAX_HEADER_DEPTH, what="header")
    except UntrustedJsonError as exc:
        raise CorruptUpdateError(str(exc)) from exc
    decoder = json.JSONDecoder(
        object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant, parse_int=_parse_u64
    )
    try:
        value, end = decoder.raw_decode(text)
    except ValueError as exc:  # JSONDecodeError, and int() refusing a huge literal
        raise CorruptUpdateError(f"header is not valid JSON: {exc}") from exc
    if text[end:].strip(" "):
        raise CorruptUpdateError(f"header has {len(text) - end} bytes after the JSON object that are not space padding")
    if not isinstance(value, dict):  # pragma: no cover - starts with '{', so raw_decode returns an object
        raise CorruptUpdateError("header is not a JSON object")
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise CorruptUpdateError(f"duplicate key {quote(key)} in header (a duplicate tensor name or field)")
        out[key] = value
    return out


def _parse_u64(token: str) -> int:
    # safetensors integers are u64; refusing longer literals early also bounds int() parsing time
    if len(token.lstrip("-")) > 20:
        raise CorruptUpdateError(f"header integer {token[:24]}... has {len(token)} digits, more than a u64 holds")
    return int(token)


def _reject_constant(token: str) -> object:
    raise CorruptUpdateError(f"header contains the non-JSON constant {token}")


def _parse_metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CorruptUpdateError(f"__metadata__ is a {type(value).__name__}, expected an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise CorruptUpdateError(f"__metadata__[{quote(key)}] is {quote(item)}, expected a string")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_entry(name: str, value: object) -> _Entry:
    if not name:
        raise CorruptUpdateError("a tensor has an empty name")
    if not isinstance(value, dict):
        raise CorruptUpdateError(f"tensor {quote(name)}: header entry is {quote(value)}, expected an object")
    if set(value) != _ENTRY_KEYS:
        raise CorruptUpdateError(
            f"tensor {quote(name)}: header entry has keys {quote(sorted(value))}, expected {sorted(_ENTRY_KEYS)}"
        )
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if dtype not in _DTYPES:
        raise CorruptUpdateError(
            f"tensor {quote(name)}: unknown or unsupported dtype {quote(dtype)} "
            f"(supported: {', '.join(SUPPORTED_DTYPES)})"
        )
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise CorruptUpdateError(f"tensor {quote(name)}: shape {quote(shape)} is not a list of non-negative integers")
    if len(shape) > MAX_DIMS:
        raise CorruptUpdateError(f"tensor {quote(name)}: shape has {len(shape)} dimensions, more than {MAX_DIMS}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise CorruptUpdateError(f"tensor {quote(name)}: data_offsets {quote(offsets)} is not a pair of integers")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise CorruptUpdateError(f"tensor {quote(name)}: data_offsets [{begin}, {end}] are not 0 <= begin <= end")
    needed = math.prod(shape) * _DTYPES[dtype].itemsize
    if end - begin != needed:
        raise CorruptUpdateError(
            f"tensor {quote(name)}: shape {quote(shape)} of {dtype} needs {needed} bytes, "
            f"but data_offsets [{begin}, {end}] span {end - begin}"
        )
    return _Entry(name, dtype, tuple(shape), begin, end)


def _check_tiling(entries: Iterable[_Entry], data_len: int) -> None:
    cursor, previous = 0, None
    for entry in sorted(entries, key=lambda e: (e.begin, e.end)):
        if entry.begin < cursor:
            assert previous is not None
            raise CorruptUpdateError(
                f"tensor {quote(entry.name)} data_offsets [{entry.begin}, {entry.end}] overlap tensor "
                f"{quote(previous.name)} [{previous.begin}, {previous.end}]"
            )
        if entry.begin > cursor:
            raise CorruptUpdateError(
                f"gap of {entry.begin - cursor} bytes before tensor {quote(entry.name)} (data bytes [{cursor}, "
                f"{entry.begin}) belong to no tensor)"
            )
        cursor, previous = entry.end, entry
    if cursor > data_len:
        assert previous is not None
        raise CorruptUpdateError(
            f"truncated: tensor {quote(previous.name)} ends at data byte {cursor} but the data section has {data_len}"
        )
    if cursor < data_len:
        raise CorruptUpdateError(f"{data_len - cursor} trailing bytes after the last tensor's data")


# --- updates ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Update:
    """A decoded, validated update.

    Attributes
    ----------
    tensors
        Read-only arrays in spec order, zero-copy views of the decoded bytes.
    kind
        ``delta`` (to add to the global model) or ``weights`` (a full model).
    fingerprint
        The architecture fingerprint (equal to ``spec.fingerprint``).
    spec
        The model spec it was checked against.
    metadata
        The whole ``__metadata__`` (the ``pocfl.*`` keys and any others the writer added).
    """

    tensors: dict[str, Array]
    kind: str
    fingerprint: str
    spec: ModelSpec
    metadata: dict[str, str] = field(default_factory=dict)

    def vector(self) -> NDArray[np.float32]:
        """The tensors as a new, writable float32 vector ``(d,)`` in spec order."""
        return self.spec.flatten(self.tensors)


def _check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise UpdateArgumentError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    return str(kind)


def encode_update(tensors: Mapping[str, Array], spec: ModelSpec, kind: str = "delta") -> bytes:
    """Encode an update as canonical safetensors bytes (see :func:`write_safetensors`).

    The metadata is ``pocfl.format=pocfl-update/1``, ``pocfl.kind=KIND`` and
    ``pocfl.fingerprint=spec.fingerprint``. The same tensors (whatever the mapping's order), kind and spec
    always give the same bytes. Values may be numpy arrays or anything ``np.asarray`` accepts (CPU torch
    tensors of a ``state_dict``), with exactly the spec's dtypes.

    Raises
    ------
    UpdateArgumentError
        ``kind`` is not ``delta`` or ``weights``.
    TensorShapeError, TensorDTypeError, NonFiniteUpdateError
        The tensors are not exactly the spec's, or hold NaN or infinity (decoding would refuse them).
    """
    kind = _check_kind(kind)
    arrays = spec.check(tensors)
    metadata = {FORMAT_KEY: FORMAT_NAME, KIND_KEY: kind, FINGERPRINT_KEY: spec.fingerprint}
    return write_safetensors(arrays, metadata)


def decode_update(
    data: bytes | bytearray | memoryview,
    spec: ModelSpec,
    *,
    kind: str | None = None,
    max_size: int = DEFAULT_MAX_UPDATE_SIZE,
) -> Update:
    """Decode and validate an update against the project's model spec.

    Checks in order: size, header size (at most :data:`MAX_EXTRA_HEADER` over the spec's canonical header),
    safetensors structure, ``pocfl.*`` metadata, kind, fingerprint, tensor names,
    dtypes, shapes, finiteness. Files written by the ``safetensors`` library with the same metadata are
    accepted; non-canonical layouts are not rejected (compare with :func:`encode_update` of the result if
    byte-canonical form matters).

    Parameters
    ----------
    data
        The plaintext update (decrypt an envelope first).
    spec
        The architecture the update must have.
    kind
        Require this kind; ``None`` accepts either.
    max_size
        Refuse inputs over this many bytes before parsing anything.

    Raises
    ------
    UpdateTooLargeError, CorruptUpdateError, UpdateKindError, ArchitectureMismatchError, TensorShapeError,
    TensorDTypeError, NonFiniteUpdateError
        See :mod:`pocfl.updates.errors`.
    """
    if kind is not None:
        _check_kind(kind)
    size = memoryview(data).nbytes
    if size > max_size:
        raise UpdateTooLargeError(size, max_size)
    tensors, metadata = read_safetensors(data, max_header_size=spec.header_size + MAX_EXTRA_HEADER)
    if FORMAT_KEY in metadata and metadata[FORMAT_KEY] != FORMAT_NAME:  # a future version: say so, not "missing"
        raise CorruptUpdateError(f"unsupported format {quote(metadata[FORMAT_KEY])}; this reader reads {FORMAT_NAME!r}")
    for key in (FORMAT_KEY, KIND_KEY, FINGERPRINT_KEY):
        if key not in metadata:
            raise CorruptUpdateError(
                f"missing metadata {key!r}: not a pocfl update (metadata keys: {quote(sorted(metadata))})"
            )
    declared = metadata[KIND_KEY]
    if declared not in KINDS:
        raise CorruptUpdateError(f"invalid metadata {KIND_KEY}={quote(declared)}; expected one of {list(KINDS)}")
    if kind is not None and declared != kind:
        raise UpdateKindError(kind, declared)
    if metadata[FINGERPRINT_KEY] != spec.fingerprint:
        raise ArchitectureMismatchError(
            spec.fingerprint,
            metadata[FINGERPRINT_KEY],
            expected_model=spec.describe(),
            got_model=describe_model([tuple(t.shape) for t in tensors.values()]),
        )
    arrays = spec.check(tensors)
    return Update(arrays, declared, spec.fingerprint, spec, metadata)
