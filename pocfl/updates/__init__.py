"""Model updates: a deterministic file format (safetensors, no pickle), its commitment, optional encryption.

File layout (a valid safetensors file, written in pure Python/numpy by :func:`encode_update`)::

    offset   size  field
    0        8     N, the header length, unsigned 64-bit little-endian; 8 + N is a multiple of 8
    8        N     header: canonical JSON (sorted keys, no whitespace, ASCII escapes), padded with spaces
    8 + N    ...   tensor data: C order, little-endian, in sorted-name order, back to back, no gaps

    header = {"__metadata__": {"pocfl.fingerprint": "<64 hex: ModelSpec.fingerprint>",
                               "pocfl.format": "pocfl-update/1",
                               "pocfl.kind": "delta" | "weights"},
              "<name>": {"data_offsets": [BEGIN, END], "dtype": "F32", "shape": [D0, D1, ...]}, ...}

``data_offsets`` are relative to the start of the data section. Supported dtypes: F16, F32, F64, I8-I64,
U8-U64 (no BF16/F8: numpy has no native type). The same tensors, kind and spec always give the same bytes,
hence the same CID. Decoding (:func:`decode_update`) is strict and rejects with the named errors of
:mod:`pocfl.updates.errors`; decoded tensors are read-only zero-copy views.

A :class:`ModelSpec` (ordered ``name, shape, dtype`` list, optional model name) is the architecture; its
:attr:`~ModelSpec.fingerprint` is the hex sha256 of its canonical JSON, and :meth:`~ModelSpec.flatten` /
:meth:`~ModelSpec.unflatten` convert to and from the aggregator's flat float32 vector in spec order.

The on-chain ``commitment`` of ``submit`` is :func:`update_commitment` (layout in its docstring); an
optional sealed-box envelope to the aggregator's key is :func:`encrypt_update` (layout in
:mod:`pocfl.updates.crypto`). The aggregator fetches by CID, decrypts if :func:`is_encrypted`, verifies the
commitment (:func:`verify_commitment`), then decodes.
"""

from __future__ import annotations

from pocfl.updates.crypto import (
    COMMITMENT_DOMAIN,
    ENVELOPE_MAGIC,
    ENVELOPE_OVERHEAD,
    ENVELOPE_VERSION,
    EncryptionKeyPair,
    decrypt_update,
    encrypt_update,
    is_encrypted,
    update_commitment,
    verify_commitment,
)
from pocfl.updates.errors import (
    ArchitectureMismatchError,
    CommitmentMismatchError,
    CorruptUpdateError,
    DecryptionError,
    EncryptionError,
    KeyFileError,
    NonFiniteUpdateError,
    TensorDTypeError,
    TensorShapeError,
    UpdateArgumentError,
    UpdateFormatError,
    UpdateKindError,
    UpdateTooLargeError,
    WrongRecipientError,
)
from pocfl.updates.format import (
    DEFAULT_MAX_UPDATE_SIZE,
    FORMAT_NAME,
    KINDS,
    SUPPORTED_DTYPES,
    ModelSpec,
    TensorSpec,
    Update,
    decode_update,
    encode_update,
    read_safetensors,
    write_safetensors,
)

__all__ = [
    "COMMITMENT_DOMAIN",
    "DEFAULT_MAX_UPDATE_SIZE",
    "ENVELOPE_MAGIC",
    "ENVELOPE_OVERHEAD",
    "ENVELOPE_VERSION",
    "FORMAT_NAME",
    "KINDS",
    "SUPPORTED_DTYPES",
    "ArchitectureMismatchError",
    "CommitmentMismatchError",
    "CorruptUpdateError",
    "DecryptionError",
    "EncryptionError",
    "EncryptionKeyPair",
    "KeyFileError",
    "ModelSpec",
    "NonFiniteUpdateError",
    "TensorDTypeError",
    "TensorShapeError",
    "TensorSpec",
    "Update",
    "UpdateArgumentError",
    "UpdateFormatError",
    "UpdateKindError",
    "UpdateTooLargeError",
    "WrongRecipientError",
    "decode_update",
    "decrypt_update",
    "encode_update",
    "encrypt_update",
    "is_encrypted",
    "read_safetensors",
    "update_commitment",
    "verify_commitment",
    "write_safetensors",
]
