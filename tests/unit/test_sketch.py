"""Seeded CountSketch (pocfl.sketch): the specification, reproducibility, JL behaviour."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocfl.sketch import CHUNK, DOMAIN, sketch, sketch_hash, sketch_matrix, sketch_updates

pytestmark = pytest.mark.unit

SEED = hashlib.sha256(b"round 7 of project 1").digest()


def spec_matrix(seed: bytes, d: int, k: int) -> np.ndarray:
    """The module docstring's derivation, written independently in plain Python."""
    s = np.zeros((k, d), dtype=np.int8)
    for c in range((d + CHUNK - 1) // CHUNK):
        stream = hashlib.shake_256(DOMAIN + seed + k.to_bytes(4, "big") + c.to_bytes(8, "big")).digest(4 * CHUNK)
        for t in range(min(CHUNK, d - c * CHUNK)):
            w = int.from_bytes(stream[4 * t : 4 * t + 4], "big")
            s[(w & 0x7FFFFFFF) % k, c * CHUNK + t] = -1 if w >> 31 else 1
    return s


def test_matrix_follows_the_specification_across_a_chunk_boundary() -> None:
    d, k = CHUNK + 300, 48
    assert np.array_equal(sketch_matrix(SEED, d, k), spec_matrix(SEED, d, k))


def test_each_column_has_one_signed_entry() -> None:
    s = sketch_matrix(SEED, 5000, 64)
    assert np.array_equal(np.abs(s).sum(axis=0), np.ones(5000))
    # buckets and signs are balanced (a broken derivation would show here)
    assert abs(int(s.sum())) < 4 * np.sqrt(5000)
    counts = np.abs(s).sum(axis=1)
    assert counts.min() > 5000 / 64 * 0.5 and counts.max() < 5000 / 64 * 1.5


def test_prefix_stability_and_independence() -> None:
    big = sketch_matrix(SEED, 3000, 32)
    assert np.array_equal(big[:, :1000], sketch_matrix(SEED, 1000, 32))
    other = sketch_matrix(bytes(32), 3000, 32)
    assert not np.array_equal(big, other)
    assert not np.array_equal(sketch_hash(SEED, 33, 0, 3000)[0], sketch_hash(SEED, 32, 0, 3000)[0])


def test_hash_ranges_agree_with_the_whole() -> None:
    b, s = sketch_hash(SEED, 64, 0, 2 * CHUNK + 10)
    b2, s2 = sketch_hash(SEED, 64, CHUNK - 5, CHUNK + 7)
    assert np.array_equal(b[CHUNK - 5 : CHUNK + 7], b2) and np.array_equal(s[CHUNK - 5 : CHUNK + 7], s2)
    assert sketch_hash(SEED, 64, 7, 7)[0].size == 0


def test_sketch_equals_matrix_product() -> None:
    rng = np.random.default_rng(0)
    u = rng.standard_normal((5, 2500))
    s = sketch_matrix(SEED, 2500, 64).astype(np.float64)
    np.testing.assert_allclose(sketch_updates(u, SEED, 64), u @ s.T, rtol=1e-12, atol=1e-12)
    ints = rng.integers(-1000, 1000, (3, 2500))
    assert np.array_equal(sketch_updates(ints, SEED, 64), ints @ s.T)  # exact on integers


def test_bit_reproducible_single_batch_and_float32() -> None:
    rng = np.random.default_rng(1)
    u = rng.standard_normal((4, CHUNK + 1234)).astype(np.float32)
    a = sketch_updates(u, SEED, 128)
    assert a.tobytes() == sketch_updates(u.copy(), SEED, 128).tobytes()
    for i in range(4):  # a trainer sketching its own update gets the aggregator's bytes
        assert sketch(u[i], SEED, 128).tobytes() == a[i].tobytes()
    assert a.dtype == np.float64
    assert not np.array_equal(a, sketch_updates(u, bytes(32), 128))


def test_inner_products_unbiased_with_jl_variance() -> None:
    rng = np.random.default_rng(2)
    d, k = 4000, 64
    u = rng.standard_normal(d)
    v = 0.5 * u + rng.standard_normal(d)
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    c = float(u @ v)
    est = []
    for i in range(300):
        y = sketch_updates(np.stack([u, v]), hashlib.sha256(i.to_bytes(4, "big")).digest(), k)
        est.append(y[0] @ y[1])
    err = np.array(est) - c
    var = (1 + c**2) / k
    assert abs(err.mean()) < 4 * np.sqrt(var / len(est))
    assert 0.7 * var < err.var() < 1.3 * var


def test_non_finite_propagates_without_warnings() -> None:
    u = np.ones((3, 100))
    u[1, 5] = np.nan
    u[2, 6] = np.inf
    u[2, 7] = -np.inf
    y = sketch_updates(u, SEED, 16)
    assert np.isfinite(y[0]).all() and not np.isfinite(y[1]).all() and not np.isfinite(y[2]).all()


def test_large_d_streams() -> None:
    u = np.ones((2, 300_001), dtype=np.float32)
    y = sketch_updates(u, SEED, 64)
    assert y.shape == (2, 64) and np.array_equal(y[0], y[1])
    assert y[0].sum() == sketch_hash(SEED, 64, 0, 300_001)[1].sum()


@pytest.mark.parametrize(
    ("seed", "k"),
    [(b"short", 64), (bytes(33), 64), (bytes(32), 0), (bytes(32), 1 << 17)],
)
def test_rejects_bad_parameters(seed: bytes, k: int) -> None:
    with pytest.raises(ValueError):
        sketch_updates(np.zeros((1, 4)), seed, k)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        sketch_updates(np.zeros(4), SEED, 8)
    with pytest.raises(ValueError):
        sketch(np.zeros((1, 4)), SEED, 8)
    with pytest.raises(ValueError):
        sketch_hash(SEED, 8, 5, 4)
    assert sketch_updates(np.zeros((0, 4)), SEED, 8).shape == (0, 8)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(1, 300), st.integers(1, 200))
def test_linearity(seed: bytes, d: int, k: int) -> None:
    rng = np.random.default_rng(d * 1000 + k)
    u, v = rng.integers(-50, 50, (2, d)).astype(np.float64)
    y = sketch_updates(np.stack([u, v, 3 * u - 2 * v]), seed, k)
    assert np.array_equal(y[2], 3 * y[0] - 2 * y[1])  # integers: exact
