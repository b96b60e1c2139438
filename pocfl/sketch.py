"""Seeded, bit-reproducible sketches of model updates (pure functions, no I/O).

A sketch maps an update ``u`` of dimension ``d`` to ``k`` numbers (``k`` in 32..128 in practice) so
that inner products, and hence the Gram matrix the Flag Aggregator decides from, are preserved in
expectation: ``E[<S u, S v>] = <u, v>``. The outlier decision can then be computed, and later proven
in a circuit, over ``K x k`` numbers instead of ``K x d``.

Construction: CountSketch (feature hashing; Charikar et al. 2002, Weinberger et al. 2009), the
sparsest Johnson-Lindenstrauss projection. Column ``j`` of the ``k x d`` matrix ``S`` holds a single
non-zero entry ``sign(j)`` in row ``bucket(j)``, so ``(S u)[r] = sum over j with bucket(j) = r of
sign(j) * u[j]``. For unit vectors the variance of ``<S u, S v>`` is
``(1 + <u, v>^2 - 2 sum_j u_j^2 v_j^2) / k``, the same as a dense Rademacher matrix scaled by
``1/sqrt(k)``, but applying it costs O(d) per update instead of O(k d) and no ``k x d`` matrix is ever
held. It was chosen over a dense Rademacher matrix because the dense float64 product, generated and
multiplied in blocks, measured 0.4 s (k = 64) and 0.8 s (k = 128) for 15 updates at ``d = 1e6`` on one
core, against 0.08-0.2 s here whatever ``k`` (``scripts/bench_aggregation.py``), and because BLAS sums
are not bit-reproducible across machines.

Derivation (the specification; any language can reproduce it). Coordinates are cut into chunks of
``CHUNK = 65536``. Chunk ``c`` expands to ``4 * CHUNK`` bytes::

    SHAKE-256(b"pocfl/sketch/countsketch/v1" || seed (32 bytes) || uint32_be(k) || uint64_be(c))

read as big-endian ``uint32`` words ``w``, one per coordinate ``j = c * CHUNK + t`` (word ``t``).
``sign(j) = -1`` if the top bit of ``w`` is set, else ``+1``; ``bucket(j) = (w & 0x7FFFFFFF) mod k``.
The matrix for ``d`` is the first ``d`` columns of the one for any larger ``d``.

Reproducibility. The matrix is exact (integers). Sketch values are float64 sums in a fixed order:
within each chunk in coordinate order (``numpy.bincount`` is a sequential loop, no BLAS), then chunk
by chunk. float32/float64 inputs are converted exactly and multiplied by +-1 exactly, so the same
bytes in give the same bytes out on every IEEE-754 machine, whether one update or many are sketched.

Security. The seed must be unpredictable until the updates are fixed: an update built with the seed
known can hide an arbitrary direction in the null space of ``S`` (see ``aggregator.flag``).

Core, not ``aggregator``: the Flag Aggregator (:mod:`aggregator.flag`) and the trainer's feature commitment
(:mod:`zk.decision`) must sketch identically, and the trainer does not import ``aggregator``. Not in
:mod:`pocfl.ml` either, whose ``__init__`` loads torch; this module needs numpy only.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

__all__ = [
    "CHUNK",
    "DOMAIN",
    "SEED_BYTES",
    "sketch",
    "sketch_hash",
    "sketch_matrix",
    "sketch_updates",
]

DOMAIN = b"pocfl/sketch/countsketch/v1"
SEED_BYTES = 32
CHUNK = 65536
_MAX_K = 1 << 16


def _check(seed: bytes, k: int) -> None:
    if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_BYTES:
        raise ValueError(f"sketch seed must be exactly {SEED_BYTES} bytes")
    if not 1 <= k <= _MAX_K:
        raise ValueError(f"sketch dimension k must be in [1, {_MAX_K}], got {k}")


def sketch_hash(seed: bytes, k: int, start: int, stop: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Buckets and signs of coordinates ``start .. stop-1``.

    Parameters
    ----------
    seed : bytes
        32-byte round seed.
    k : int
        Sketch dimension.
    start, stop : int
        Coordinate range, ``0 <= start <= stop``.

    Returns
    -------
    buckets : ndarray of int64, shape (stop - start,)
        Row of ``S`` holding column ``j``'s non-zero.
    signs : ndarray of float64, shape (stop - start,)
        That entry, +1.0 or -1.0.
    """
    _check(seed, k)
    if not 0 <= start <= stop:
        raise ValueError("need 0 <= start <= stop")
    words: list[npt.NDArray[np.uint32]] = []
    for c in range(start // CHUNK, (stop + CHUNK - 1) // CHUNK):
        xof = hashlib.shake_256(DOMAIN + bytes(seed) + k.to_bytes(4, "big") + c.to_bytes(8, "big"))
        chunk = np.frombuffer(xof.digest(4 * CHUNK), dtype=">u4")
        lo, hi = max(start - c * CHUNK, 0), min(stop - c * CHUNK, CHUNK)
        words.append(chunk[lo:hi].astype(np.uint32))
    w = np.concatenate(words) if words else np.zeros(0, dtype=np.uint32)
    buckets = ((w & np.uint32(0x7FFFFFFF)) % np.uint32(k)).astype(np.int64)
    signs = np.where(w >> np.uint32(31), -1.0, 1.0)
    return buckets, signs


def sketch_matrix(seed: bytes, d: int, k: int) -> npt.NDArray[np.int8]:
    """The dense ``k x d`` sketch matrix (entries -1, 0, +1), for checks and small ``d``.

    ``sketch_updates(U, seed, k)`` equals ``U @ sketch_matrix(seed, d, k).T`` up to float rounding;
    the streaming functions never build this matrix.
    """
    buckets, signs = sketch_hash(seed, k, 0, d)
    s = np.zeros((k, d), dtype=np.int8)
    s[buckets, np.arange(d)] = signs.astype(np.int8)
    return s


def sketch_updates(updates: npt.ArrayLike, seed: bytes, k: int) -> npt.NDArray[np.float64]:
    """Sketch every row of a ``(K, d)`` array: returns ``(K, k)`` float64.

    Streams over coordinate chunks, so memory stays O(K * CHUNK) whatever ``d`` is. Non-finite inputs
    give non-finite sketches (the decision excludes them).
    """
    u = np.asarray(updates)
    if u.ndim != 2:
        raise ValueError(f"updates must be 2-D (K, d), got shape {u.shape}")
    n_upd, d = u.shape
    _check(seed, k)
    out = np.zeros((n_upd, k), dtype=np.float64)
    if n_upd == 0:
        return out
    # Row i's buckets are offset by i * k so one bincount sketches all rows; bincount adds in
    # index order, which fixes the summation order (the reproducibility contract above).
    offsets = (np.arange(n_upd, dtype=np.int64) * k)[:, None]
    for start in range(0, d, CHUNK):
        stop = min(start + CHUNK, d)
        buckets, signs = sketch_hash(seed, k, start, stop)
        vals = u[:, start:stop].astype(np.float64) * signs
        idx = (offsets + buckets[None, :]).ravel()
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite updates stay non-finite
            out += np.bincount(idx, weights=vals.ravel(), minlength=n_upd * k).reshape(n_upd, k)
    return out


def sketch(update: npt.ArrayLike, seed: bytes, k: int) -> npt.NDArray[np.float64]:
    """Sketch one flattened update of shape ``(d,)``: returns ``(k,)`` float64."""
    u = np.asarray(update)
    if u.ndim != 1:
        raise ValueError(f"update must be 1-D, got shape {u.shape}")
    out: npt.NDArray[np.float64] = sketch_updates(u[None, :], seed, k)[0]
    return out
