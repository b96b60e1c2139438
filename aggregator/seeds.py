"""Public, aggregator-independent randomness for contribution scoring (pure, no I/O).

The Monte-Carlo Shapley estimators sample permutations. If the aggregator could pick the random
stream it could re-draw until the scores favoured a friend, so the stream is derived from values the
chain fixed before the aggregator computes anything:

``seed = keccak256(abi.encode(DOMAIN, chainId, marketplace, projectId, round, submissionsDigest))``

``DOMAIN = keccak256("pocfl.shapley.seed.v1")``; every field is one 32-byte ABI word (``uint256``,
``address`` left-padded, ``uint256`` project id, ``uint32`` round, ``bytes32`` digest), so a contract or
a circuit can recompute it with one ``keccak256(abi.encode(...))``. ``submissionsDigest`` is the
round's final on-chain hash chain of ``(trainer, commitment, featureCommitment)``; it is known to
everyone once the submission window closes and cannot change afterwards.

The seed drives numpy's PCG64 through a ``SeedSequence`` (:func:`generator_from_seed`). The estimators
draw permutations with :func:`permutation`, which uses only the raw 64-bit PCG64 output (stable by
numpy's NEP 19 policy) and its own Fisher-Yates shuffle, so scores do not depend on how a numpy
version implements ``Generator.permutation``.
"""

from __future__ import annotations

import numpy as np
from eth_utils.crypto import keccak
from numpy.typing import NDArray

DOMAIN_TAG = b"pocfl.shapley.seed.v1"
"""Domain-separation tag; its keccak256 is the first ABI word of the seed preimage."""

DOMAIN = keccak(DOMAIN_TAG)
SEED_BYTES = 32
_UINT64 = 1 << 64


def _word_uint(value: int, bits: int, name: str) -> bytes:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} must fit uint{bits}, got {value}")
    return value.to_bytes(32, "big")


def _word_address(address: str | bytes) -> bytes:
    raw = bytes.fromhex(address.removeprefix("0x")) if isinstance(address, str) else bytes(address)
    if len(raw) != 20:
        raise ValueError(f"address must be 20 bytes, got {len(raw)}")
    return raw.rjust(32, b"\0")


def shapley_seed(
    chain_id: int,
    marketplace: str | bytes,
    project_id: int,
    round_index: int,
    submissions_digest: bytes,
) -> bytes:
    """Derive a round's 32-byte sampling seed from values fixed on chain.

    Parameters
    ----------
    chain_id
        EIP-155 chain id (``block.chainid``).
    marketplace
        The PocMarketplace address (hex string, checksummed or not, or 20 raw bytes).
    project_id
        Project id (``uint256``).
    round_index
        Round number (``uint32``).
    submissions_digest
        The round's final submissions digest (32 bytes) as stored by the contract.

    Returns
    -------
    bytes
        ``keccak256(abi.encode(DOMAIN, chainId, marketplace, projectId, round, submissionsDigest))``.
    """
    if len(submissions_digest) != 32:
        raise ValueError(f"submissions_digest must be 32 bytes, got {len(submissions_digest)}")
    preimage = b"".join(
        (
            DOMAIN,
            _word_uint(chain_id, 256, "chain_id"),
            _word_address(marketplace),
            _word_uint(project_id, 256, "project_id"),
            _word_uint(round_index, 32, "round_index"),
            bytes(submissions_digest),
        )
    )
    return keccak(preimage)


def generator_from_seed(seed: bytes) -> np.random.Generator:
    """Turn a 32-byte seed into a numpy PCG64 generator, deterministically.

    The seed is read as one big-endian 256-bit integer and fed to ``SeedSequence``, which mixes all of
    its bits into PCG64's state.
    """
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes, got {len(seed)}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int.from_bytes(seed, "big"))))


def uniform_below(rng: np.random.Generator, bound: int) -> int:
    """Unbiased integer in ``[0, bound)`` from raw 64-bit draws (rejection sampling).

    Draws above the largest multiple of ``bound`` are rejected so every residue is equally likely.
    """
    if not 0 < bound <= _UINT64:
        raise ValueError(f"bound must be in (0, 2**64], got {bound}")
    limit = _UINT64 - (_UINT64 % bound)
    while True:
        draw = int(rng.bit_generator.random_raw())
        if draw < limit:
            return draw % bound


def uniform_float(rng: np.random.Generator) -> float:
    """Uniform float in ``[0, 1)`` from the top 53 bits of one raw 64-bit draw."""
    return (int(rng.bit_generator.random_raw()) >> 11) * 2.0**-53


def permutation(rng: np.random.Generator, items: int | NDArray[np.int64]) -> NDArray[np.int64]:
    """Uniform random permutation (Fisher-Yates over :func:`uniform_below`).

    Parameters
    ----------
    rng
        Generator from :func:`generator_from_seed`; only its raw bit stream is used.
    items
        ``n`` to permute ``0..n-1``, or an array whose entries to shuffle (not modified).

    Returns
    -------
    numpy.ndarray
        A new int64 array.
    """
    out = np.arange(items, dtype=np.int64) if isinstance(items, int) else np.array(items, dtype=np.int64)
    for i in range(len(out) - 1, 0, -1):
        j = uniform_below(rng, i + 1)
        out[i], out[j] = out[j], out[i]
    return out
