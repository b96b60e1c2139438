"""The on-chain commitment to a plaintext update, and optional encryption of updates to the aggregator.

Commitment
    :func:`update_commitment` is the ``commitment`` of ``submit``. It binds the plaintext update *and* who
    submits it where: a trainer replaying another trainer's CID and commitment is caught, because the
    commitment recomputed with its own address (or another round, project, market or chain) differs.

Encryption (optional confidentiality)
    :func:`encrypt_update` seals the plaintext to the aggregator's X25519 public key with libsodium's sealed
    box (through PyNaCl; nothing here is hand-rolled): ephemeral X25519 key agreement, XSalsa20-Poly1305.
    The envelope is what goes to the content store, so the CID is the envelope's; the commitment still
    binds the plaintext. The aggregator therefore (1) fetches the envelope by CID (the store verifies the
    CID), (2) decrypts it with :func:`decrypt_update`, (3) checks :func:`verify_commitment` against the
    on-chain commitment and the submitter's address, (4) decodes with :func:`~pocfl.updates.decode_update`.
    Sealed boxes are anonymous: the sender is authenticated by step (3), not by the envelope. Encryption
    also stops free-riding: nobody but the aggregator can read an update to recompute a commitment for it.

Envelope layout::

    offset  size  field
    0       8     magic b"POCFLENC"
    8       1     version (1)
    9       32    recipient X25519 public key
    41      48+n  sealed box of the n-byte plaintext: ephemeral public key (32) || Poly1305 MAC (16) || ciphertext
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat
from pathlib import Path

from eth_utils.address import is_checksum_address, to_checksum_address
from nacl.bindings import crypto_box_SEALBYTES
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from pocfl.fsutil import PRIVATE, write_json_atomic
from pocfl.updates.errors import (
    CommitmentMismatchError,
    DecryptionError,
    KeyFileError,
    UpdateArgumentError,
    WrongRecipientError,
)

# --- commitment ---------------------------------------------------------------------------------------------

COMMITMENT_DOMAIN = b"pocfl/update-commitment/v1"
"""Domain tag, first in the hashed bytes: no other pocfl hash can collide with a commitment."""

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def update_commitment(
    plaintext: bytes | bytearray | memoryview,
    *,
    chain_id: int,
    market: str | bytes,
    project_id: int,
    round: int,
    trainer: str | bytes,
) -> bytes:
    """The 32-byte commitment binding a plaintext update to its submission context.

    Exactly::

        sha256(
            b"pocfl/update-commitment/v1"      26 bytes, ASCII
            || uint256_be(chain_id)            32 bytes
            || market address                  20 bytes
            || uint256_be(project_id)          32 bytes
            || uint256_be(round)               32 bytes
            || trainer address                 20 bytes
            || sha256(plaintext)               32 bytes
        )                                      194 bytes hashed

    In Solidity: ``sha256(abi.encodePacked("pocfl/update-commitment/v1", block.chainid, address(this),
    projectId, uint256(round), msg.sender, payloadHash))`` (``round`` is a ``uint32`` on chain, so cast it:
    ``encodePacked`` would write 4 bytes). Every field has a fixed width, so the layout is unambiguous.

    Parameters
    ----------
    plaintext
        The encoded update (the plaintext, also when the stored object is an encrypted envelope).
    chain_id
        EIP-155 chain id.
    market
        The marketplace contract address (``0x`` hex, any case, a mixed-case one must be a valid EIP-55
        checksum; or 20 bytes).
    project_id
        The project id (uint256).
    round
        The round number (uint32, as on chain).
    trainer
        The submitting trainer's address.

    Raises
    ------
    UpdateArgumentError
        An address is malformed or an integer is out of range.
    """
    digest = hashlib.sha256(plaintext).digest()
    return hashlib.sha256(_commitment_preimage(digest, chain_id, market, project_id, round, trainer)).digest()


def verify_commitment(
    plaintext: bytes | bytearray | memoryview,
    commitment: bytes | str,
    *,
    chain_id: int,
    market: str | bytes,
    project_id: int,
    round: int,
    trainer: str | bytes,
) -> None:
    """Check that ``commitment`` (from ``UpdateSubmitted``) is :func:`update_commitment` of this context.

    Parameters
    ----------
    commitment
        32 bytes, or their ``0x`` hex.

    Raises
    ------
    CommitmentMismatchError
        It is not: another plaintext, or a submission replayed from another trainer, round, project or chain.
    UpdateArgumentError
        ``commitment`` is not 32 bytes, or a context value is invalid.
    """
    expected = _bytes32(commitment)
    computed = update_commitment(
        plaintext, chain_id=chain_id, market=market, project_id=project_id, round=round, trainer=trainer
    )
    if not hmac.compare_digest(expected, computed):
        context = (
            f"chain {chain_id}, market {_checksum(market)}, project {project_id}, round {round}, "
            f"trainer {_checksum(trainer)}"
        )
        raise CommitmentMismatchError(expected, computed, context)


def _commitment_preimage(
    digest: bytes, chain_id: int, market: str | bytes, project_id: int, round: int, trainer: str | bytes
) -> bytes:
    return b"".join(
        [
            COMMITMENT_DOMAIN,
            _uint(chain_id, 256, "chain_id").to_bytes(32, "big"),
            _address(market, "market"),
            _uint(project_id, 256, "project_id").to_bytes(32, "big"),
            _uint(round, 32, "round").to_bytes(32, "big"),  # uint32 on chain, widened to a uint256 word
            _address(trainer, "trainer"),
            digest,
        ]
    )


def _uint(value: object, bits: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << bits:
        raise UpdateArgumentError(f"{what} must be an integer in [0, 2**{bits}), got {value!r}")
    return value


def _address(value: object, what: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        if len(value) != 20:
            raise UpdateArgumentError(f"{what} address must be 20 bytes, got {len(value)}")
        return bytes(value)
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise UpdateArgumentError(f"{what} {value!r} is not a 0x-prefixed 20-byte hex address")
    digits = value[2:]
    if digits not in (digits.lower(), digits.upper()) and not is_checksum_address(value):
        raise UpdateArgumentError(f"{what} {value} has mixed case but an invalid EIP-55 checksum (a typo?)")
    return bytes.fromhex(digits)


def _checksum(value: str | bytes) -> str:
    return str(to_checksum_address(_address(value, "address")))


def _bytes32(value: object) -> bytes:
    if isinstance(value, str):
        text = value.removeprefix("0x")
        try:
            value = bytes.fromhex(text)
        except ValueError as exc:
            raise UpdateArgumentError(f"commitment {value!r} is not hex") from exc
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise UpdateArgumentError(f"commitment must be 32 bytes, got {value!r}")
    return bytes(value)


# --- encryption ---------------------------------------------------------------------------------------------

ENVELOPE_MAGIC = b"POCFLENC"
ENVELOPE_VERSION = 1
_HEADER_LEN = len(ENVELOPE_MAGIC) + 1 + PublicKey.SIZE
ENVELOPE_OVERHEAD = _HEADER_LEN + crypto_box_SEALBYTES
"""Bytes an envelope adds to the plaintext: 41 of header, 48 of sealed box (ephemeral key and MAC)."""

KEY_FILE_FORMAT = "pocfl-encryption-key/1"


class EncryptionKeyPair:
    """An X25519 key pair of an aggregator (the secret key never appears in ``repr``).

    Parameters
    ----------
    private_key
        A PyNaCl private key; usually made by :meth:`generate` or :meth:`load`.
    """

    def __init__(self, private_key: PrivateKey) -> None:
        self._private = private_key

    @classmethod
    def generate(cls) -> EncryptionKeyPair:
        """A fresh key pair from the operating system's CSPRNG."""
        return cls(PrivateKey.generate())

    @classmethod
    def from_secret_key(cls, secret: object) -> EncryptionKeyPair:
        """A key pair from its 32-byte secret key (bytes or hex).

        Raises
        ------
        UpdateArgumentError
            Not 32 bytes or 64 hex digits.
        """
        raw = _key_bytes(secret, "secret key")  # also validates untyped input (key files)
        return cls(PrivateKey(raw))

    @property
    def public_key(self) -> bytes:
        """The 32-byte public key to publish (trainers encrypt to it)."""
        return bytes(self._private.public_key)

    @property
    def public_key_hex(self) -> str:
        """The public key as 64 lower-case hex digits."""
        return self.public_key.hex()

    @property
    def secret_key(self) -> bytes:
        """The 32-byte secret key; keep it in a 0600 file (:meth:`save`)."""
        return bytes(self._private)

    def __repr__(self) -> str:
        return f"EncryptionKeyPair(public_key={self.public_key_hex})"

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the key pair as JSON to a file only its owner can read (mode 0600), atomically.

        The file is ``{"format":"pocfl-encryption-key/1","public_key":HEX,"secret_key":HEX}``. It is written
        to a 0600 temporary file in the same directory and renamed into place, so the secret is never in a
        file with wider permissions, nor in a half-written one.

        Raises
        ------
        KeyFileError
            ``path`` exists and ``overwrite`` is false.
        """
        path = Path(path)
        body = {"format": KEY_FILE_FORMAT, "public_key": self.public_key_hex, "secret_key": self.secret_key.hex()}
        try:
            # Created 0600 before the secret is written; exclusive publication, so no check-then-write race.
            return write_json_atomic(path, body, mode=PRIVATE, exclusive=not overwrite, indent=None, sort_keys=True)
        except FileExistsError:
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key (pass overwrite=True)") from None
        except OSError as exc:
            raise KeyFileError(f"cannot write key file {path}: {exc.strerror or exc}") from exc

    @classmethod
    def load(cls, path: str | Path, *, check_permissions: bool = True) -> EncryptionKeyPair:
        """Read a key file written by :meth:`save`.

        Parameters
        ----------
        check_permissions
            Refuse a file that group or others may access (as ssh does), on POSIX systems.

        Raises
        ------
        KeyFileError
            Missing, unreadable, too open, malformed, or its public key does not match its secret key.
        """
        path = Path(path)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc}") from exc
        if check_permissions and os.name == "posix" and mode & 0o077:
            raise KeyFileError(
                f"key file {path} has mode {stat.S_IMODE(mode):04o}, readable by others; run: chmod 600 {path}"
            )
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyFileError(f"key file {path} is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != KEY_FILE_FORMAT:
            raise KeyFileError(f"key file {path} is not a {KEY_FILE_FORMAT} file")
        try:
            pair = cls.from_secret_key(data.get("secret_key"))
            public = _key_bytes(data.get("public_key"), "public key")
        except UpdateArgumentError as exc:
            raise KeyFileError(f"key file {path}: {exc}") from exc
        if public != pair.public_key:
            raise KeyFileError(f"key file {path}: public_key does not belong to secret_key")
        return pair


def _key_bytes(value: object, what: str) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.removeprefix("0x"))
        except ValueError as exc:
            raise UpdateArgumentError(f"{what} is not hex") from exc
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise UpdateArgumentError(f"{what} must be 32 bytes (64 hex digits)")
    return bytes(value)


def is_encrypted(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` starts like an envelope (the magic); a safetensors file never does."""
    return bytes(data[: len(ENVELOPE_MAGIC)]) == ENVELOPE_MAGIC


def encrypt_update(plaintext: bytes | bytearray | memoryview, recipient_public_key: bytes | str) -> bytes:
    """Seal a plaintext update to the aggregator's public key; return the envelope (see the module docs).

    Raises
    ------
    UpdateArgumentError
        The public key is not 32 bytes / 64 hex digits, or not a usable X25519 key.
    """
    recipient = _key_bytes(recipient_public_key, "recipient public key")
    try:
        sealed = SealedBox(PublicKey(recipient)).encrypt(bytes(plaintext))
    except CryptoError as exc:  # e.g. a low-order point such as all zeros
        raise UpdateArgumentError(f"recipient public key {recipient.hex()} is not a usable X25519 key") from exc
    return b"".join([ENVELOPE_MAGIC, bytes([ENVELOPE_VERSION]), recipient, bytes(sealed)])


def decrypt_update(envelope: bytes | bytearray | memoryview, keypair: EncryptionKeyPair) -> bytes:
    """Open an envelope with the aggregator's key pair; return the plaintext update.

    Verify the commitment on the result next (:func:`verify_commitment`), then decode it.

    Raises
    ------
    DecryptionError
        Not an envelope, an unknown version, truncated, or tampered with (authentication failed).
    WrongRecipientError
        The envelope is sealed to another public key.
    """
    data = bytes(envelope)
    if not is_encrypted(data):
        raise DecryptionError(f"not an encrypted update: does not start with {ENVELOPE_MAGIC!r}")
    if len(data) < ENVELOPE_OVERHEAD:
        raise DecryptionError(f"truncated envelope: {len(data)} bytes, an envelope has at least {ENVELOPE_OVERHEAD}")
    version = data[len(ENVELOPE_MAGIC)]
    if version != ENVELOPE_VERSION:
        raise DecryptionError(f"unsupported envelope version {version}; this reader opens version {ENVELOPE_VERSION}")
    recipient = data[len(ENVELOPE_MAGIC) + 1 : _HEADER_LEN]
    if recipient != keypair.public_key:
        raise WrongRecipientError(recipient.hex(), keypair.public_key_hex)
    try:
        return bytes(SealedBox(keypair._private).decrypt(data[_HEADER_LEN:]))
    except CryptoError as exc:
        raise DecryptionError(
            f"envelope failed authentication ({len(data)} bytes): tampered with, truncated or corrupted"
        ) from exc
