"""The model-update file format: determinism, safetensors interop, strict decoding, model specs."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
import struct
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pocfl.errors import PocflError
from pocfl.updates import (
    DEFAULT_MAX_UPDATE_SIZE,
    ArchitectureMismatchError,
    CorruptUpdateError,
    ModelSpec,
    NonFiniteUpdateError,
    TensorDTypeError,
    TensorShapeError,
    TensorSpec,
    UpdateArgumentError,
    UpdateFormatError,
    UpdateKindError,
    UpdateTooLargeError,
    decode_update,
    encode_update,
    read_safetensors,
    write_safetensors,
)
from pocfl.updates.errors import describe_model
from pocfl.updates.format import FINGERPRINT_KEY, FORMAT_KEY, FORMAT_NAME, KIND_KEY

pytestmark = pytest.mark.unit

NUMPY_DTYPES = {
    "F16": np.float16,
    "F32": np.float32,
    "F64": np.float64,
    "I8": np.int8,
    "I16": np.int16,
    "I32": np.int32,
    "I64": np.int64,
    "U8": np.uint8,
    "U16": np.uint16,
    "U32": np.uint32,
    "U64": np.uint64,
}


def _finite_arrays(dtype: Any, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    elements = {"allow_nan": False, "allow_infinity": False} if np.dtype(dtype).kind == "f" else None
    return hnp.arrays(dtype, shape, elements=elements)


@st.composite
def tensor_dicts(draw: st.DrawFn, *, dtypes: tuple[str, ...] = tuple(NUMPY_DTYPES)) -> dict[str, np.ndarray]:
    names = draw(
        st.lists(
            st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8).filter(
                lambda s: s != "__metadata__"
            ),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    out = {}
    for name in names:
        dtype = NUMPY_DTYPES[draw(st.sampled_from(dtypes))]
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        out[name] = draw(_finite_arrays(dtype, shape))
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-exact equality (distinguishes -0.0 and compares dtypes and shapes)."""
    return a.dtype.newbyteorder("=") == b.dtype.newbyteorder("=") and a.shape == b.shape and a.tobytes() == b.tobytes()


def small_spec(name: str | None = "mlp") -> ModelSpec:
    return ModelSpec((TensorSpec("fc1.weight", (3, 2), "F32"), TensorSpec("fc1.bias", (3,), "F32")), name=name)


def small_tensors() -> dict[str, np.ndarray]:
    return {
        "fc1.weight": np.arange(6, dtype=np.float32).reshape(3, 2) / 4,
        "fc1.bias": np.array([-1.5, 0.0, 2.25], dtype=np.float32),
    }


def craft(tensors: dict[str, np.ndarray], spec: ModelSpec, kind: str = "delta", **meta: str) -> bytes:
    """A safetensors file with the pocfl metadata of ``spec`` around arbitrary tensors (bypasses the checks)."""
    metadata = {FORMAT_KEY: FORMAT_NAME, KIND_KEY: kind, FINGERPRINT_KEY: spec.fingerprint, **meta}
    return write_safetensors(tensors, metadata)


def raw_file(header: object, data: bytes = b"", *, pad: bool = True) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def pocfl_meta(spec: ModelSpec, kind: str = "delta") -> dict[str, str]:
    return {FORMAT_KEY: FORMAT_NAME, KIND_KEY: kind, FINGERPRINT_KEY: spec.fingerprint}


# --- round trip, determinism, layout ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(tensors=tensor_dicts(), kind=st.sampled_from(["delta", "weights"]))
def test_round_trip_random_tensors(tensors: dict[str, np.ndarray], kind: str) -> None:
    spec = ModelSpec.from_arrays(tensors)
    data = encode_update(tensors, spec, kind)
    update = decode_update(data, spec, kind=kind)
    assert update.kind == kind and update.fingerprint == spec.fingerprint and update.spec == spec
    assert list(update.tensors) == list(spec.names)
    for name, array in tensors.items():
        assert _same(update.tensors[name], array)
        assert not update.tensors[name].flags.writeable
    with np.errstate(over="ignore"):
        fits = all(np.isfinite(a.astype(np.float32)).all() for a in tensors.values())
    if not fits:  # F64 values beyond float32 cannot go into the flat vector
        with pytest.raises(TensorDTypeError, match="beyond the float32 range"):
            update.vector()
        return
    vector = update.vector()
    assert vector.dtype == np.float32 and vector.shape == (spec.size,) and vector.flags.writeable


@settings(max_examples=40, deadline=None)
@given(tensors=tensor_dicts(), seed=st.randoms())
def test_bytes_do_not_depend_on_insertion_order(tensors: dict[str, np.ndarray], seed: Any) -> None:
    spec = ModelSpec.from_arrays(tensors)
    names = list(tensors)
    seed.shuffle(names)
    shuffled = {name: tensors[name].copy() for name in names}
    assert encode_update(shuffled, spec) == encode_update(tensors, spec)


def test_different_metadata_gives_different_bytes() -> None:
    tensors = small_tensors()
    delta = encode_update(tensors, small_spec())
    assert encode_update(tensors, small_spec(), "weights") != delta
    assert encode_update(tensors, small_spec(name="other")) != delta
    assert encode_update(tensors, small_spec(name=None)) != delta
    assert encode_update(tensors, small_spec()) == delta


def test_golden_bytes() -> None:
    """Locks the byte layout: any change to it changes every CID, so it must be a new format version."""
    spec = small_spec()
    assert spec.fingerprint == hashlib.sha256(spec.canonical_json()).hexdigest()
    assert spec.canonical_json() == (
        b'{"format":"pocfl-model-spec/1","name":"mlp","tensors":[["fc1.weight",[3,2],"F32"],["fc1.bias",[3],"F32"]]}'
    )
    data = encode_update(small_tensors(), spec)
    (n,) = struct.unpack("<Q", data[:8])
    header = data[8 : 8 + n]
    expected = (
        b'{"__metadata__":{"pocfl.fingerprint":"' + spec.fingerprint.encode() + b'","pocfl.format":"pocfl-update/1",'
        b'"pocfl.kind":"delta"},"fc1.bias":{"data_offsets":[0,12],"dtype":"F32","shape":[3]},'
        b'"fc1.weight":{"data_offsets":[12,36],"dtype":"F32","shape":[3,2]}}'
    )
    assert header.rstrip(b" ") == expected and (8 + n) % 8 == 0 and set(header[len(expected) :]) <= {0x20}
    assert data[8 + n :] == small_tensors()["fc1.bias"].tobytes() + small_tensors()["fc1.weight"].tobytes()
    assert spec.fingerprint == "dda58ae3a0f1e742b2ccc289a7cfc4af3f139e1528fa36a657b73bbbf58d7c66"
    assert hashlib.sha256(data).hexdigest() == "7db9e49a8a6f26d640ef298ad1eeccccad79c141c9c872a94f970aa00cbe116d"


@settings(max_examples=40, deadline=None)
@given(tensors=tensor_dicts())
def test_header_is_canonical_json_in_sorted_name_order(tensors: dict[str, np.ndarray]) -> None:
    spec = ModelSpec.from_arrays(tensors)
    data = encode_update(tensors, spec)
    (n,) = struct.unpack("<Q", data[:8])
    assert (8 + n) % 8 == 0
    text = data[8 : 8 + n].rstrip(b" ")
    header = json.loads(text)
    assert text == json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    offsets = [header[name]["data_offsets"] for name in sorted(tensors)]
    assert offsets[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(offsets))
    assert offsets[-1][1] == len(data) - 8 - n
    assert header["__metadata__"] == pocfl_meta(spec)


def test_big_endian_and_non_contiguous_inputs_encode_identically() -> None:
    spec = small_spec()
    tensors = small_tensors()
    odd = {
        "fc1.weight": np.asfortranarray(tensors["fc1.weight"]).astype(">f4"),
        "fc1.bias": np.repeat(tensors["fc1.bias"], 2)[::2],
    }
    assert not odd["fc1.bias"].flags.c_contiguous
    assert encode_update(odd, spec) == encode_update(tensors, spec)


def test_decoded_arrays_do_not_alias_a_mutable_input() -> None:
    spec = small_spec()
    buffer = bytearray(encode_update(small_tensors(), spec))
    update = decode_update(buffer, spec)
    buffer[-4:] = b"\xff\xff\xff\xff"
    assert _same(update.tensors["fc1.weight"], small_tensors()["fc1.weight"])
    assert decode_update(memoryview(bytes(buffer[:-4]) + b"\0\0\0\0"), spec).kind == "delta"
    with pytest.raises(ValueError, match="read-only"):
        update.tensors["fc1.bias"][0] = 1.0


def test_large_update_round_trip() -> None:
    spec = ModelSpec((TensorSpec("w", (5 * 1024, 1024), "F32"), TensorSpec("b", (1024,), "F32")))
    rng = np.random.default_rng(0)
    tensors = {"w": rng.standard_normal((5 * 1024, 1024), dtype=np.float32), "b": np.ones(1024, np.float32)}
    data = encode_update(tensors, spec)
    assert len(data) > 20 * 2**20
    update = decode_update(data, spec, kind="delta")
    assert np.array_equal(update.tensors["w"], tensors["w"])
    vector = update.vector()
    assert np.array_equal(vector[: 5 * 2**20], tensors["w"].reshape(-1))


# --- interop with the safetensors library -------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(tensors=tensor_dicts())
def test_safetensors_library_reads_our_files(tensors: dict[str, np.ndarray]) -> None:
    spec = ModelSpec.from_arrays(tensors)
    loaded = safetensors.numpy.load(encode_update(tensors, spec, "weights"))
    assert set(loaded) == set(tensors)
    for name, array in tensors.items():
        assert _same(loaded[name], array)


@settings(max_examples=60, deadline=None)
@given(tensors=tensor_dicts())
def test_we_read_safetensors_library_files(tensors: dict[str, np.ndarray]) -> None:
    spec = ModelSpec.from_arrays(tensors)
    data = safetensors.numpy.save(tensors, metadata=pocfl_meta(spec, "weights"))
    update = decode_update(data, spec, kind="weights")
    for name, array in tensors.items():
        assert _same(update.tensors[name], array)
    raw, metadata = read_safetensors(safetensors.numpy.save(tensors))
    assert metadata == {} and set(raw) == set(tensors)


def test_library_and_our_encoding_agree_on_tensor_bytes() -> None:
    spec = small_spec()
    ours = read_safetensors(encode_update(small_tensors(), spec))
    theirs = read_safetensors(safetensors.numpy.save(small_tensors(), metadata=pocfl_meta(spec)))
    assert ours[1] == theirs[1]
    assert all(_same(ours[0][k], theirs[0][k]) for k in small_tensors())


# --- decoding errors ----------------------------------------------------------------------------------------


def test_every_truncation_is_corrupt() -> None:
    data = encode_update(small_tensors(), small_spec())
    for cut in range(len(data)):
        with pytest.raises(CorruptUpdateError):
            decode_update(data[:cut], small_spec())


def test_trailing_bytes_are_corrupt() -> None:
    data = encode_update(small_tensors(), small_spec())
    with pytest.raises(CorruptUpdateError, match="1 trailing bytes"):
        decode_update(data + b"\0", small_spec())


def test_every_flipped_header_byte_is_refused() -> None:
    spec = small_spec()
    data = encode_update(small_tensors(), spec)
    (n,) = struct.unpack("<Q", data[:8])
    for position in range(8 + n):
        for mask in (0x01, 0x02, 0x20, 0x80, 0xFF):
            flipped = bytearray(data)
            flipped[position] ^= mask
            with pytest.raises(UpdateFormatError):
                decode_update(bytes(flipped), spec)


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=200), header=st.binary(max_size=120))
def test_garbage_only_raises_update_errors(blob: bytes, header: bytes) -> None:
    for data in (blob, struct.pack("<Q", len(header)) + header, raw_file(b"{" + header)):
        with pytest.raises(UpdateFormatError):
            decode_update(data, small_spec())


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_header_edits_only_raise_update_errors(data: st.DataObject) -> None:
    """Random byte replacements in the header of a valid file are refused with a named error, never crash."""
    valid = bytearray(encode_update(small_tensors(), small_spec()))
    (n,) = struct.unpack("<Q", valid[:8])
    for _ in range(data.draw(st.integers(1, 4))):
        valid[data.draw(st.integers(0, 7 + n))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(UpdateFormatError):
        decode_update(bytes(valid), small_spec())
    try:
        tensors, _ = read_safetensors(bytes(valid))
    except CorruptUpdateError:
        return
    # never more lenient than the reference implementation: what we parse, it parses identically
    theirs = safetensors.numpy.load(bytes(valid))
    assert set(theirs) == set(tensors) and all(_same(theirs[k], v) for k, v in tensors.items())


def test_truncation_messages_are_precise() -> None:
    data = encode_update(small_tensors(), small_spec())
    with pytest.raises(CorruptUpdateError, match="too short for the 8-byte header length"):
        decode_update(data[:5], small_spec())
    with pytest.raises(CorruptUpdateError, match="header claims"):
        decode_update(data[:40], small_spec())
    with pytest.raises(CorruptUpdateError, match=re.escape("truncated: tensor 'fc1.weight' ends at data byte 36")):
        decode_update(data[:-1], small_spec())


F32_ENTRY = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (struct.pack("<Q", 2**63) + b"{}", "header claims"),
        (raw_file(b"[]      "), "does not start with '{'"),
        (raw_file(b" {}     "), "does not start with '{'"),
        (raw_file(b'{"a":1  ,'), "not valid JSON"),
        (raw_file(b'{"\xff":1}'), "not UTF-8"),
        (raw_file(b"{}\n"), "not space padding"),
        (raw_file(b'{"a":NaN}'), "non-JSON constant NaN"),
        (raw_file(b"{" + b'"a":' * 3000 + b"1" + b"}" * 3000), "nested too deeply|not valid JSON"),
        (raw_file({"a": F32_ENTRY, "b": {**F32_ENTRY, "data_offsets": [2, 6]}}, bytes(8)), "overlap tensor 'a'"),
        (raw_file({"a": F32_ENTRY, "b": {**F32_ENTRY, "data_offsets": [0, 4]}}, bytes(4)), "overlap"),
        (raw_file({"a": F32_ENTRY, "b": {**F32_ENTRY, "data_offsets": [6, 10]}}, bytes(10)), "gap of 2 bytes"),
        (raw_file({"a": {**F32_ENTRY, "data_offsets": [4, 8]}}, bytes(8)), "gap of 4 bytes before tensor 'a'"),
        (raw_file({"a": {**F32_ENTRY, "data_offsets": [0, 4]}}, bytes(2)), "ends at data byte 4"),
        (raw_file({"a": {**F32_ENTRY, "data_offsets": [4, 0]}}, bytes(4)), "not 0 <= begin <= end"),
        (raw_file({"a": {**F32_ENTRY, "data_offsets": [-4, 0]}}, bytes(4)), "not 0 <= begin <= end"),
        (raw_file({"a": {**F32_ENTRY, "data_offsets": [0, 8]}}, bytes(8)), "needs 4 bytes"),
        (raw_file({"a": {**F32_ENTRY, "data_offsets": [0]}}, bytes(4)), "not a pair of integers"),
        (raw_file({"a": {**F32_ENTRY, "data_offsets": [0.0, 4]}}, bytes(4)), "not a pair of integers"),
        (raw_file({"a": {**F32_ENTRY, "shape": [-1]}}, bytes(4)), "not a list of non-negative integers"),
        (raw_file({"a": {**F32_ENTRY, "shape": [True]}}, bytes(4)), "not a list of non-negative integers"),
        (raw_file({"a": {**F32_ENTRY, "shape": 1}}, bytes(4)), "not a list of non-negative integers"),
        (raw_file({"a": {**F32_ENTRY, "shape": [2**40, 2**40]}}, bytes(4)), "needs"),
        (raw_file(b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,4]}}'), "more than a u64"),
        (raw_file({"a": {**F32_ENTRY, "dtype": "BF16", "data_offsets": [0, 2]}}, bytes(2)), "unsupported dtype 'BF16'"),
        (raw_file({"a": {**F32_ENTRY, "dtype": "X9"}}, bytes(4)), "unknown or unsupported dtype 'X9'"),
        (raw_file({"a": {**F32_ENTRY, "extra": 1}}, bytes(4)), "has keys"),
        (raw_file({"a": {"dtype": "F32", "shape": [1]}}, bytes(4)), "has keys"),
        (raw_file({"a": [1]}, bytes(4)), "expected an object"),
        (raw_file({"": F32_ENTRY}, bytes(4)), "empty name"),
        (raw_file(b'{"a":' + json.dumps(F32_ENTRY).encode() + b',"a":' + json.dumps(F32_ENTRY).encode() + b"}"), "dup"),
        (raw_file({"__metadata__": {"k": 1}, "a": F32_ENTRY}, bytes(4)), r"__metadata__\['k'\] is 1"),
        (raw_file({"__metadata__": ["k"], "a": F32_ENTRY}, bytes(4)), "__metadata__ is a list"),
        (raw_file({"a": F32_ENTRY}, bytes(4)), "missing metadata 'pocfl.format'"),
        (
            raw_file({"__metadata__": {FORMAT_KEY: FORMAT_NAME}, "a": F32_ENTRY}, bytes(4)),
            "missing metadata 'pocfl.kind'",
        ),
        (raw_file({"__metadata__": {FORMAT_KEY: "pocfl-update/2"}}), "unsupported format 'pocfl-update/2'"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_corrupt_files_are_refused_precisely(blob: bytes, message: str) -> None:
    with pytest.raises(CorruptUpdateError, match=message):
        decode_update(blob, small_spec())


def test_invalid_kind_and_missing_fingerprint_in_metadata() -> None:
    spec = small_spec()
    with pytest.raises(CorruptUpdateError, match=re.escape("invalid metadata pocfl.kind='gradient'")):
        decode_update(craft(small_tensors(), spec, kind="gradient"), spec)
    no_fp = write_safetensors(small_tensors(), {FORMAT_KEY: FORMAT_NAME, KIND_KEY: "delta"})
    with pytest.raises(CorruptUpdateError, match=re.escape("missing metadata 'pocfl.fingerprint'")):
        decode_update(no_fp, spec)


@pytest.mark.parametrize(
    ("value", "nan", "posinf", "neginf"),
    [(np.nan, 1, 0, 0), (np.inf, 0, 1, 0), (-np.inf, 0, 0, 1)],
)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_non_finite_values_are_refused(value: float, nan: int, posinf: int, neginf: int, dtype: Any) -> None:
    spec = ModelSpec((TensorSpec("w", (2, 2), np.dtype(dtype).name), TensorSpec("b", (2,), "I64")))
    tensors = {"w": np.zeros((2, 2), dtype), "b": np.zeros(2, np.int64)}
    tensors["w"][1, 0] = value
    with pytest.raises(NonFiniteUpdateError) as info:
        decode_update(craft(tensors, spec), spec)
    assert (info.value.tensor, info.value.nan, info.value.posinf, info.value.neginf) == ("w", nan, posinf, neginf)
    assert "tensor 'w' has 1 non-finite value of 4" in str(info.value)
    with pytest.raises(NonFiniteUpdateError):
        encode_update(tensors, spec)


def test_non_finite_counts_every_kind() -> None:
    spec = ModelSpec((TensorSpec("w", (5,), "F32"),))
    tensors = {"w": np.array([np.nan, np.nan, np.inf, -np.inf, 1.0], np.float32)}
    with pytest.raises(NonFiniteUpdateError, match=r"4 non-finite values of 5 \(2 NaN, 1 \+Inf, 1 -Inf\)"):
        decode_update(craft(tensors, spec), spec)


def test_wrong_fingerprint_is_architecture_mismatch() -> None:
    other = ModelSpec((TensorSpec("fc1.weight", (3, 2), "F32"), TensorSpec("fc1.bias", (3,), "F32")), name="cnn")
    data = encode_update(small_tensors(), other)
    with pytest.raises(ArchitectureMismatchError) as info:
        decode_update(data, small_spec())
    assert info.value.expected == small_spec().fingerprint and info.value.got == other.fingerprint
    assert other.fingerprint in str(info.value) and small_spec().fingerprint in str(info.value)
    # issue 14: the models in words first, the fingerprints as a second detail
    assert info.value.got_model == "a 2-3 MLP" and info.value.expected_model == small_spec().describe()
    assert str(info.value).startswith(
        f"update is for model architecture a 2-3 MLP, the project's model is {small_spec().describe()}"
    )


def test_models_are_described_in_words() -> None:
    assert describe_model([(32, 64), (32,), (10, 32), (10,)]) == "a 64-32-10 MLP"
    assert describe_model([(3, 2), (5, 4)]) == "a model of 2 tensors, 26 parameters"  # the layers do not chain
    assert describe_model([(2, 2)] * 9) == "a model of 9 tensors, 36 parameters"  # too deep to spell out
    assert describe_model([(7,)]) == "a model of 1 tensor, 7 parameters"


def test_missing_and_extra_tensors() -> None:
    spec = small_spec()
    missing = {"fc1.weight": small_tensors()["fc1.weight"]}
    with pytest.raises(TensorShapeError, match=r"missing tensors \['fc1.bias'\]") as info:
        decode_update(craft(missing, spec), spec)
    assert info.value.missing == ("fc1.bias",)
    extra = {**small_tensors(), "zz": np.zeros(1, np.float32)}
    with pytest.raises(TensorShapeError, match=r"unexpected tensors \['zz'\]") as info:
        decode_update(craft(extra, spec), spec)
    assert info.value.unexpected == ("zz",)
    with pytest.raises(TensorShapeError):
        encode_update(extra, spec)


def test_wrong_shape_and_dtype_name_the_tensor() -> None:
    spec = small_spec()
    wrong_shape = {**small_tensors(), "fc1.weight": np.zeros((2, 3), np.float32)}
    with pytest.raises(TensorShapeError, match=r"'fc1.weight' has shape \[2, 3\], expected \[3, 2\]") as info:
        decode_update(craft(wrong_shape, spec), spec)
    assert (info.value.tensor, info.value.expected, info.value.got) == ("fc1.weight", (3, 2), (2, 3))
    wrong_dtype = {**small_tensors(), "fc1.bias": np.zeros(3, np.float64)}
    with pytest.raises(TensorDTypeError, match=re.escape("'fc1.bias' has dtype F64, expected F32")) as dinfo:
        decode_update(craft(wrong_dtype, spec), spec)
    assert (dinfo.value.tensor, dinfo.value.expected, dinfo.value.got) == ("fc1.bias", "F32", "F64")
    with pytest.raises(TensorDTypeError, match="numpy bool"):
        encode_update({**small_tensors(), "fc1.bias": np.zeros(3, bool)}, spec)


def test_size_limit_is_checked_before_parsing() -> None:
    data = encode_update(small_tensors(), small_spec())
    with pytest.raises(UpdateTooLargeError, match=f"{len(data)} bytes, over the limit of {len(data) - 1}"):
        decode_update(data, small_spec(), max_size=len(data) - 1)
    assert decode_update(data, small_spec(), max_size=len(data)).kind == "delta"
    with pytest.raises(UpdateTooLargeError):
        decode_update(b"\xff" * 100, small_spec(), max_size=99)  # garbage, but too large first
    assert DEFAULT_MAX_UPDATE_SIZE == 256 << 20


def test_wrong_kind() -> None:
    data = encode_update(small_tensors(), small_spec(), "weights")
    with pytest.raises(UpdateKindError, match="update is of kind 'weights', expected 'delta'") as info:
        decode_update(data, small_spec(), kind="delta")
    assert (info.value.expected, info.value.got) == ("delta", "weights")
    assert decode_update(data, small_spec()).kind == "weights"
    with pytest.raises(UpdateArgumentError, match="kind must be one of"):
        decode_update(data, small_spec(), kind="weight")
    with pytest.raises(UpdateArgumentError, match="kind must be one of"):
        encode_update(small_tensors(), small_spec(), "gradient")


def test_errors_form_one_hierarchy() -> None:
    for cls in (CorruptUpdateError, ArchitectureMismatchError, TensorShapeError, TensorDTypeError):
        assert issubclass(cls, UpdateFormatError) and issubclass(cls, PocflError)
    assert issubclass(UpdateArgumentError, ValueError)


# --- model specs --------------------------------------------------------------------------------------------


def test_fingerprint_depends_on_everything_in_the_spec() -> None:
    base = small_spec()
    variants = [
        small_spec(name=None),
        small_spec(name="mlp2"),
        ModelSpec(tuple(reversed(base.tensors)), name="mlp"),
        ModelSpec((TensorSpec("fc1.weight", (2, 3), "F32"), base.tensors[1]), name="mlp"),
        ModelSpec((TensorSpec("fc1.weight", (3, 2), "F64"), base.tensors[1]), name="mlp"),
        ModelSpec((TensorSpec("fc1.weights", (3, 2), "F32"), base.tensors[1]), name="mlp"),
    ]
    prints = {v.fingerprint for v in variants} | {base.fingerprint}
    assert len(prints) == len(variants) + 1
    same = ModelSpec((("fc1.weight", [3, 2], "float32"), ("fc1.bias", (np.int64(3),), np.float32)), name="mlp")
    assert same == base and same.fingerprint == base.fingerprint and same.tensors[0].shape == (3, 2)


def test_spec_properties() -> None:
    spec = small_spec()
    assert spec.size == 9 and spec.nbytes == 36 and len(spec) == 2 and spec.names == ("fc1.weight", "fc1.bias")
    assert [t.name for t in spec] == list(spec.names)
    assert ModelSpec.from_arrays(small_tensors(), name="mlp") == spec


def test_from_state_dict_matches_from_arrays() -> None:
    torch = pytest.importorskip("torch")
    layer = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    state = layer.state_dict()
    spec = ModelSpec.from_state_dict(state, name="net")
    arrays = {k: v.numpy() for k, v in state.items()}
    assert spec == ModelSpec.from_arrays(arrays, name="net")
    assert spec.tensors[-1] == TensorSpec("1.num_batches_tracked", (), "I64")
    # a state_dict's CPU tensors encode directly
    assert decode_update(encode_update(state, spec, "weights"), spec).kind == "weights"
    with pytest.raises(UpdateArgumentError, match="bfloat16"):
        ModelSpec.from_state_dict({"w": torch.zeros(2, dtype=torch.bfloat16)})
    with pytest.raises(UpdateArgumentError, match=re.escape("not a torch.Tensor")):
        ModelSpec.from_state_dict({"w": [1.0]})  # type: ignore[dict-item]


@settings(max_examples=40, deadline=None)
@given(tensors=tensor_dicts(dtypes=("F16", "F32", "I8", "I16", "U8", "U16")))
def test_flatten_unflatten_round_trip(tensors: dict[str, np.ndarray]) -> None:
    """Every value of these dtypes is exact in float32, so the round trip is bit-exact (modulo -0)."""
    spec = ModelSpec.from_arrays(tensors)
    vector = spec.flatten(tensors)
    assert vector.shape == (spec.size,) and vector.dtype == np.float32
    back = spec.unflatten(vector)
    assert list(back) == list(spec.names)
    for name, array in tensors.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        assert np.array_equal(back[name], array) and back[name].flags.writeable


def test_flatten_order_is_spec_order() -> None:
    spec = small_spec()
    vector = spec.flatten(small_tensors())
    assert np.array_equal(vector, np.concatenate([small_tensors()["fc1.weight"].ravel(), small_tensors()["fc1.bias"]]))


def test_unflatten_refuses_what_does_not_fit() -> None:
    spec = small_spec()
    with pytest.raises(TensorShapeError, match=r"vector has shape \[8\], expected \[9\]"):
        spec.unflatten(np.zeros(8, np.float32))
    with pytest.raises(TensorShapeError):
        spec.unflatten(np.zeros((9, 1), np.float32))
    with pytest.raises(NonFiniteUpdateError, match="'<vector>'"):
        spec.unflatten(np.full(9, np.nan, np.float32))
    with pytest.raises(UpdateArgumentError):
        spec.unflatten(np.zeros(9, complex))
    half = ModelSpec((TensorSpec("h", (1,), "F16"),))
    with pytest.raises(TensorDTypeError, match="exceed the range of F16"):
        half.unflatten(np.array([1e6], np.float32))
    for dtype, bad in [("I8", 128.0), ("I8", -129.0), ("U8", -1.0), ("I64", 2.0**63), ("U64", 2.0**64)]:
        ints = ModelSpec((TensorSpec("i", (1,), dtype),))
        with pytest.raises(TensorDTypeError, match=f"outside the range of {dtype}"):
            ints.unflatten(np.array([bad], np.float64))
    assert ModelSpec((TensorSpec("i", (2,), "I8"),)).unflatten(np.array([126.6, -128.0]))["i"].tolist() == [127, -128]
    assert ModelSpec((TensorSpec("i", (1,), "I8"),)).unflatten(np.array([5], np.int64))["i"].tolist() == [5]


def test_flatten_refuses_f64_overflow() -> None:
    spec = ModelSpec((TensorSpec("d", (2,), "F64"),))
    with pytest.raises(TensorDTypeError, match="beyond the float32 range"):
        spec.flatten({"d": np.array([1.0, 1e300])})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", (1,), "F32"), "invalid tensor name"),
        (("__metadata__", (1,), "F32"), "invalid tensor name"),
        (("\ud800", (1,), "F32"), "not valid Unicode"),
        (("w", (-1,), "F32"), "non-negative integers"),
        (("w", (1.5,), "F32"), "non-negative integers"),
        (("w", (True,), "F32"), "non-negative integers"),
        (("w", (1,), "BF16"), "unsupported dtype"),
        (("w", (1,), "bool"), "unsupported dtype"),
        (("w", (1,), "nonsense"), "unsupported dtype"),
        (("w", (1,), None), "unsupported dtype"),
    ],
)
def test_invalid_tensor_specs(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(UpdateArgumentError, match=message):
        TensorSpec(*args)


def test_invalid_model_specs() -> None:
    with pytest.raises(UpdateArgumentError, match="at least one tensor"):
        ModelSpec(())
    with pytest.raises(UpdateArgumentError, match=r"duplicate tensor names in model spec: \['a'\]"):
        ModelSpec((TensorSpec("a", (1,), "F32"), TensorSpec("a", (2,), "F32")))
    with pytest.raises(UpdateArgumentError, match="unsupported dtype"):
        write_safetensors({"a": np.zeros(1, complex)})
    with pytest.raises(UpdateArgumentError, match="metadata must map strings"):
        write_safetensors({"a": np.zeros(1)}, {"k": 1})  # type: ignore[dict-item]


def test_more_dimensions_than_numpy_holds_is_a_named_error() -> None:
    """Numpy refused a 70-dimension shape with a bare ValueError: the aggregator, catching named errors, stopped."""
    for dims in (33, 70):
        data = raw_file({"a": {**F32_ENTRY, "shape": [1] * dims}}, bytes(4))
        with pytest.raises(CorruptUpdateError, match=f"shape has {dims} dimensions, more than 32"):
            read_safetensors(data)
    assert read_safetensors(raw_file({"a": {**F32_ENTRY, "shape": [1] * 32}}, bytes(4)))[0]["a"].ndim == 32
