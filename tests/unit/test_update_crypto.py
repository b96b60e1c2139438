"""The update commitment (binding plaintext and submission context) and encryption to the aggregator."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_abi.packed import encode_packed
from hypothesis import given, settings
from hypothesis import strategies as st

from pocfl.updates import (
    COMMITMENT_DOMAIN,
    ENVELOPE_MAGIC,
    ENVELOPE_OVERHEAD,
    CommitmentMismatchError,
    DecryptionError,
    EncryptionError,
    EncryptionKeyPair,
    KeyFileError,
    ModelSpec,
    TensorSpec,
    UpdateArgumentError,
    UpdateFormatError,
    WrongRecipientError,
    decode_update,
    decrypt_update,
    encode_update,
    encrypt_update,
    is_encrypted,
    update_commitment,
    verify_commitment,
)

pytestmark = pytest.mark.unit

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
CONTEXT: dict[str, Any] = {"chain_id": 31337, "market": MARKET, "project_id": 7, "round": 3, "trainer": ALICE}
PLAINTEXT = b"pocfl update bytes"


def _spec() -> ModelSpec:
    return ModelSpec((TensorSpec("w", (4, 3), "F32"), TensorSpec("b", (3,), "F32")), name="tiny")


def _update() -> bytes:
    rng = np.random.default_rng(1)
    tensors = {"w": rng.standard_normal((4, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}
    return encode_update(tensors, _spec())


# --- commitment ---------------------------------------------------------------------------------------------


def test_commitment_layout_is_the_documented_one() -> None:
    commitment = update_commitment(PLAINTEXT, **CONTEXT)
    preimage = (
        b"pocfl/update-commitment/v1"
        + (31337).to_bytes(32, "big")
        + bytes.fromhex(MARKET[2:])
        + (7).to_bytes(32, "big")
        + (3).to_bytes(32, "big")
        + bytes.fromhex(ALICE[2:])
        + hashlib.sha256(PLAINTEXT).digest()
    )
    assert len(preimage) == 194 and preimage[:26] == COMMITMENT_DOMAIN
    assert commitment == hashlib.sha256(preimage).digest() and len(commitment) == 32


def test_commitment_matches_solidity_abi_encode_packed() -> None:
    """``sha256(abi.encodePacked(tag, block.chainid, address(this), projectId, uint256(round), msg.sender, h))``."""
    packed = encode_packed(
        ["string", "uint256", "address", "uint256", "uint256", "address", "bytes32"],
        ["pocfl/update-commitment/v1", 31337, MARKET, 7, 3, ALICE, hashlib.sha256(PLAINTEXT).digest()],
    )
    assert update_commitment(PLAINTEXT, **CONTEXT) == hashlib.sha256(packed).digest()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chain_id", 1),
        ("market", BOB),
        ("project_id", 8),
        ("round", 4),
        ("trainer", BOB),
    ],
)
def test_commitment_binds_every_context_field(field: str, value: Any) -> None:
    base = update_commitment(PLAINTEXT, **CONTEXT)
    changed = update_commitment(PLAINTEXT, **{**CONTEXT, field: value})
    assert changed != base
    with pytest.raises(CommitmentMismatchError):
        verify_commitment(PLAINTEXT, base, **{**CONTEXT, field: value})


@settings(max_examples=50, deadline=None)
@given(a=st.binary(max_size=64), b=st.binary(max_size=64))
def test_commitment_binds_the_plaintext(a: bytes, b: bytes) -> None:
    assert (update_commitment(a, **CONTEXT) == update_commitment(b, **CONTEXT)) == (a == b)


def test_replay_by_another_trainer_is_detected() -> None:
    """Bob submits Alice's CID and commitment: recomputed with Bob as the trainer, it does not match."""
    alice_commitment = update_commitment(PLAINTEXT, **CONTEXT)
    verify_commitment(PLAINTEXT, alice_commitment, **CONTEXT)
    with pytest.raises(CommitmentMismatchError) as info:
        verify_commitment(PLAINTEXT, alice_commitment, **{**CONTEXT, "trainer": BOB})
    assert info.value.expected == alice_commitment
    assert info.value.computed == update_commitment(PLAINTEXT, **{**CONTEXT, "trainer": BOB})
    assert BOB in str(info.value) and "round 3" in str(info.value) and alice_commitment.hex() in str(info.value)


def test_commitment_accepts_equivalent_inputs() -> None:
    base = update_commitment(PLAINTEXT, **CONTEXT)
    assert update_commitment(bytearray(PLAINTEXT), **{**CONTEXT, "trainer": ALICE.lower()}) == base
    assert update_commitment(memoryview(PLAINTEXT), **{**CONTEXT, "market": "0x" + MARKET[2:].upper()}) == base
    assert update_commitment(PLAINTEXT, **{**CONTEXT, "trainer": bytes.fromhex(ALICE[2:])}) == base
    verify_commitment(PLAINTEXT, "0x" + base.hex(), **CONTEXT)
    verify_commitment(PLAINTEXT, base.hex(), **CONTEXT)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("chain_id", -1, "chain_id must be an integer"),
        ("chain_id", 2**256, "chain_id must be an integer"),
        ("project_id", True, "project_id must be an integer"),
        ("round", 2**32, r"round must be an integer in \[0, 2\*\*32\)"),
        ("round", 1.0, "round must be an integer"),
        ("market", "5FbDB2315678afecb367f032d93F642f64180aa3", "not a 0x-prefixed"),
        ("market", MARKET[:-1], "not a 0x-prefixed"),
        ("trainer", ALICE[:-1] + "9", "invalid EIP-55 checksum"),
        ("trainer", b"\x00" * 19, "must be 20 bytes"),
    ],
)
def test_commitment_refuses_invalid_context(field: str, value: Any, message: str) -> None:
    with pytest.raises(UpdateArgumentError, match=message):
        update_commitment(PLAINTEXT, **{**CONTEXT, field: value})


def test_verify_refuses_malformed_commitment() -> None:
    with pytest.raises(UpdateArgumentError, match="32 bytes"):
        verify_commitment(PLAINTEXT, b"\x00" * 31, **CONTEXT)
    with pytest.raises(UpdateArgumentError, match="not hex"):
        verify_commitment(PLAINTEXT, "0xzz", **CONTEXT)


# --- encryption ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aggregator() -> EncryptionKeyPair:
    return EncryptionKeyPair.generate()


@settings(max_examples=20, deadline=None)
@given(plaintext=st.binary(max_size=2048))
def test_encryption_round_trip(aggregator: EncryptionKeyPair, plaintext: bytes) -> None:
    envelope = encrypt_update(plaintext, aggregator.public_key)
    assert is_encrypted(envelope) and len(envelope) == len(plaintext) + ENVELOPE_OVERHEAD
    assert envelope[:8] == ENVELOPE_MAGIC and envelope[8] == 1 and envelope[9:41] == aggregator.public_key
    assert decrypt_update(envelope, aggregator) == plaintext


def test_envelope_is_randomised_and_accepts_a_hex_key(aggregator: EncryptionKeyPair) -> None:
    first = encrypt_update(PLAINTEXT, aggregator.public_key_hex)
    second = encrypt_update(PLAINTEXT, "0x" + aggregator.public_key_hex)
    assert first != second  # fresh ephemeral key each time: equal updates are not linkable by CID
    assert decrypt_update(first, aggregator) == decrypt_update(bytearray(second), aggregator) == PLAINTEXT
    assert ENVELOPE_OVERHEAD == 89


def test_full_aggregator_flow(aggregator: EncryptionKeyPair) -> None:
    """Trainer: encode, commit to the plaintext, encrypt. Aggregator: decrypt, verify commitment, decode."""
    plaintext = _update()
    commitment = update_commitment(plaintext, **CONTEXT)
    stored = encrypt_update(plaintext, aggregator.public_key)
    assert not is_encrypted(plaintext)
    opened = decrypt_update(stored, aggregator) if is_encrypted(stored) else stored
    verify_commitment(opened, commitment, **CONTEXT)
    assert decode_update(opened, _spec(), kind="delta").tensors["w"].shape == (4, 3)


def test_wrong_key_is_wrong_recipient(aggregator: EncryptionKeyPair) -> None:
    other = EncryptionKeyPair.generate()
    envelope = encrypt_update(PLAINTEXT, other.public_key)
    with pytest.raises(WrongRecipientError) as info:
        decrypt_update(envelope, aggregator)
    assert info.value.recipient == other.public_key_hex and info.value.ours == aggregator.public_key_hex
    # rewriting the recipient field does not help: the sealed box is bound to the real recipient
    forged = envelope[:9] + aggregator.public_key + envelope[41:]
    with pytest.raises(DecryptionError, match="failed authentication"):
        decrypt_update(forged, aggregator)


def test_every_flipped_ciphertext_byte_is_detected(aggregator: EncryptionKeyPair) -> None:
    envelope = encrypt_update(PLAINTEXT, aggregator.public_key)
    for position in range(41, len(envelope)):
        tampered = bytearray(envelope)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionError):
            decrypt_update(bytes(tampered), aggregator)
    tampered = bytearray(envelope)
    tampered[20] ^= 0x01
    with pytest.raises(WrongRecipientError):
        decrypt_update(bytes(tampered), aggregator)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e[:-1], "failed authentication"),
        (lambda e: e[:88], "truncated envelope: 88 bytes"),
        (lambda e: e[:8], "truncated envelope"),
        (lambda e: e[:8] + b"\x02" + e[9:], "unsupported envelope version 2"),
        (lambda e: b"X" + e[1:], "not an encrypted update"),
        (lambda e: b"", "not an encrypted update"),
    ],
)
def test_malformed_envelopes_are_decryption_errors(aggregator: EncryptionKeyPair, mutate: Any, message: str) -> None:
    envelope = encrypt_update(PLAINTEXT, aggregator.public_key)
    with pytest.raises(DecryptionError, match=message):
        decrypt_update(mutate(envelope), aggregator)


@pytest.mark.parametrize(
    ("key", "message"),
    [(b"\x01" * 31, "32 bytes"), ("ab" * 33, "32 bytes"), ("xyz", "not hex"), (b"\x00" * 32, "not a usable X25519")],
)
def test_invalid_recipient_keys(key: bytes | str, message: str) -> None:
    with pytest.raises(UpdateArgumentError, match=message):
        encrypt_update(PLAINTEXT, key)


def test_key_file_round_trip_and_permissions(tmp_path: Path) -> None:
    pair = EncryptionKeyPair.generate()
    path = pair.save(tmp_path / "aggregator.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["aggregator.key"]  # no temporary file left
    loaded = EncryptionKeyPair.load(path)
    assert loaded.public_key == pair.public_key and loaded.secret_key == pair.secret_key
    body = json.loads(path.read_text())
    assert body == {
        "format": "pocfl-encryption-key/1",
        "public_key": pair.public_key_hex,
        "secret_key": pair.secret_key.hex(),
    }
    assert pair.secret_key.hex() not in repr(pair) and pair.public_key_hex in repr(pair)
    assert decrypt_update(encrypt_update(PLAINTEXT, pair.public_key_hex), loaded) == PLAINTEXT


def test_key_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = EncryptionKeyPair.generate().save(tmp_path / "k.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_file_refusals(tmp_path: Path) -> None:
    pair = EncryptionKeyPair.generate()
    path = pair.save(tmp_path / "k.json")
    with pytest.raises(KeyFileError, match="already exists"):
        EncryptionKeyPair.generate().save(path)
    replacement = EncryptionKeyPair.generate()
    replacement.save(path, overwrite=True)
    assert EncryptionKeyPair.load(path).public_key == replacement.public_key

    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="mode 0644, readable by others; run: chmod 600"):
        EncryptionKeyPair.load(path)
    assert EncryptionKeyPair.load(path, check_permissions=False).public_key == replacement.public_key
    path.chmod(0o600)

    def write(body: str) -> Path:
        target = tmp_path / "bad.json"
        target.write_text(body)
        target.chmod(0o600)
        return target

    good = json.loads(path.read_text())
    cases = {
        "not JSON": "{",
        "is not a pocfl-encryption-key/1 file": json.dumps({**good, "format": "other"}),
        "does not belong to secret_key": json.dumps({**good, "public_key": pair.public_key_hex}),
        "secret key must be 32 bytes": json.dumps({**good, "secret_key": "00"}),
        "public key is not hex": json.dumps({**good, "public_key": "zz"}),
    }
    for message, body in cases.items():
        with pytest.raises(KeyFileError, match=message):
            EncryptionKeyPair.load(write(body))
    with pytest.raises(KeyFileError, match="cannot read key file"):
        EncryptionKeyPair.load(tmp_path / "missing.json")


def test_from_secret_key_and_error_hierarchy() -> None:
    pair = EncryptionKeyPair.generate()
    assert EncryptionKeyPair.from_secret_key(pair.secret_key.hex()).public_key == pair.public_key
    with pytest.raises(UpdateArgumentError):
        EncryptionKeyPair.from_secret_key(b"short")
    for cls in (WrongRecipientError, DecryptionError, KeyFileError):
        assert issubclass(cls, EncryptionError) and issubclass(cls, UpdateFormatError)
    assert issubclass(CommitmentMismatchError, UpdateFormatError)


def test_key_save_refuses_a_file_that_appears_after_any_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal to overwrite is the write itself (exclusive), not a check before it that a race can pass."""
    path = tmp_path / "aggregator.key"
    first = EncryptionKeyPair.generate()
    first.save(path)
    with monkeypatch.context() as m:
        m.setattr(Path, "exists", lambda self: False)  # as if the file was created right after a check
        with pytest.raises(KeyFileError, match="refusing to overwrite"):
            EncryptionKeyPair.generate().save(path)
    assert EncryptionKeyPair.load(path).public_key == first.public_key
    assert [p.name for p in tmp_path.iterdir()] == ["aggregator.key"]
