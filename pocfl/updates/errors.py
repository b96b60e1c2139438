"""Errors of the model-update format, its commitment and its encryption.

Every message says what is wrong precisely (which tensor, expected vs got), so a trainer whose update the
aggregator rejected can fix it from the message alone.

::

    PocflError
    └── UpdateFormatError               anything wrong with an update, its commitment or its envelope
        ├── UpdateArgumentError         a caller passed an invalid argument (also a ValueError)
        ├── UpdateTooLargeError         over the size limit (checked before any parsing)
        ├── CorruptUpdateError          not a valid pocfl safetensors file (truncated, bad header, ...)
        ├── UpdateKindError             a delta where weights were expected, or the other way round
        ├── ArchitectureMismatchError   made for another model (fingerprint differs; both named in words)
        ├── TensorShapeError            tensor set or a tensor's shape differs from the model spec
        ├── TensorDTypeError            a tensor's dtype differs from the model spec
        ├── NonFiniteUpdateError        NaN or infinity in a tensor
        ├── CommitmentMismatchError     the plaintext does not match the on-chain commitment
        └── EncryptionError             anything wrong with an encrypted envelope or a key
            ├── WrongRecipientError     the envelope is sealed to another public key
            ├── DecryptionError         tampered, truncated or not an envelope
            └── KeyFileError            a key file is unreadable, malformed or too open
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

from pocfl.errors import PocflError
from pocfl.untrusted import quote


class UpdateFormatError(PocflError):
    """An update, its commitment or its encrypted envelope was refused."""


MAX_DESCRIBED_LAYERS = 8
"""Longest chain of layers :func:`describe_model` spells out; a longer one is summarised by its size."""


def describe_model(shapes: Sequence[tuple[int, ...]]) -> str:
    """A model in words from its tensor shapes, in order: ``a 64-32-10 MLP`` when its matrices chain.

    Torch ``Linear`` weights are ``(out, in)``: the matrices chain when each one's input width is the previous
    one's output width. Anything else is ``a model of N tensors, P parameters`` (numbers only: the shapes may
    come from an untrusted update, so nothing of its names is echoed).
    """
    matrices = [s for s in shapes if len(s) == 2]
    chained = bool(matrices) and all(b[1] == a[0] for a, b in pairwise(matrices))
    if chained and len(matrices) <= MAX_DESCRIBED_LAYERS:
        widths = [matrices[0][1], *(m[0] for m in matrices)]
        return f"a {'-'.join(str(w) for w in widths)} MLP"
    total = sum(math.prod(s) for s in shapes)
    return f"a model of {len(shapes)} tensor{'s' * (len(shapes) != 1)}, {total} parameters"


class UpdateArgumentError(UpdateFormatError, ValueError):
    """A caller passed an invalid argument: a bad model spec, address, integer range or key."""


class UpdateTooLargeError(UpdateFormatError):
    """The input is larger than the configured limit; it was not parsed.

    Parameters
    ----------
    size
        Its size in bytes.
    limit
        The limit in bytes.
    """

    def __init__(self, size: int, limit: int, what: str = "update") -> None:
        super().__init__(f"{what} is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class CorruptUpdateError(UpdateFormatError):
    """The bytes are not a valid pocfl update.

    Truncated, a bad header length, invalid JSON, offsets out of range, overlapping or not covering the data,
    an unknown dtype, duplicate names, or missing or unsupported metadata.
    """


class UpdateKindError(UpdateFormatError):
    """The update is a ``delta`` where ``weights`` were expected (or the other way round).

    Parameters
    ----------
    expected
        The kind the caller asked for.
    got
        The kind the update declares.
    """

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"update is of kind {got!r}, expected {expected!r}")
        self.expected = expected
        self.got = got


class ArchitectureMismatchError(UpdateFormatError):
    """The update declares another model-architecture fingerprint than the project's model spec.

    Parameters
    ----------
    expected
        The fingerprint of the spec the caller decodes with.
    got
        The fingerprint in the update's metadata.
    expected_model, got_model
        Both models in words (:func:`describe_model`: ``a 64-32-10 MLP``); the fingerprints follow as a
        second detail. None when unknown.
    """

    def __init__(
        self, expected: str, got: str, *, expected_model: str | None = None, got_model: str | None = None
    ) -> None:
        # ``got`` comes from the update's header: quoted, so a huge or odd value cannot bloat the message
        if expected_model is not None and got_model is not None:
            super().__init__(
                f"update is for model architecture {got_model}, the project's model is {expected_model} "
                f"(architecture fingerprint {quote(got)}, expected {expected}: it was made for another model)"
            )
        else:
            super().__init__(
                f"update is for model architecture {quote(got)}, expected {expected} (it was made for another model)"
            )
        self.expected = expected
        self.got = got
        self.expected_model = expected_model
        self.got_model = got_model


class TensorShapeError(UpdateFormatError):
    """The tensor names, or one tensor's shape, differ from the model spec.

    Attributes
    ----------
    tensor
        The tensor whose shape is wrong (``None`` when the set of names differs).
    expected, got
        Its expected and actual shapes (``None`` when the set of names differs).
    missing, unexpected
        Names the spec has and the update lacks, and names the update has and the spec lacks.
    """

    def __init__(
        self,
        message: str,
        *,
        tensor: str | None = None,
        expected: tuple[int, ...] | None = None,
        got: tuple[int, ...] | None = None,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.tensor = tensor
        self.expected = expected
        self.got = got
        self.missing = tuple(missing)
        self.unexpected = tuple(unexpected)


class TensorDTypeError(UpdateFormatError):
    """A tensor's dtype differs from the model spec (or its values do not fit the spec's dtype).

    Attributes
    ----------
    tensor
        The tensor's name.
    expected, got
        The spec's dtype name (``F32``...) and what the tensor has.
    """

    def __init__(self, message: str, *, tensor: str, expected: str, got: str) -> None:
        super().__init__(message)
        self.tensor = tensor
        self.expected = expected
        self.got = got


class NonFiniteUpdateError(UpdateFormatError):
    """A tensor holds NaN or infinity.

    Attributes
    ----------
    tensor
        The tensor's name (``"<vector>"`` for a flat vector).
    nan, posinf, neginf
        How many values of each kind it holds.
    """

    def __init__(self, tensor: str, *, nan: int, posinf: int, neginf: int, size: int) -> None:
        count = nan + posinf + neginf
        super().__init__(
            f"tensor {tensor!r} has {count} non-finite value{'s' if count != 1 else ''} of {size} "
            f"({nan} NaN, {posinf} +Inf, {neginf} -Inf)"
        )
        self.tensor = tensor
        self.nan = nan
        self.posinf = posinf
        self.neginf = neginf
        self.count = count


class CommitmentMismatchError(UpdateFormatError):
    """The plaintext update, in the stated context, does not hash to the commitment on chain.

    Parameters
    ----------
    expected
        The commitment on chain.
    computed
        The commitment recomputed from the plaintext and the context.
    context
        The context used, for the message (``chain 1, market 0x.., project 3, round 2, trainer 0x..``).
    """

    def __init__(self, expected: bytes, computed: bytes, context: str) -> None:
        super().__init__(
            f"commitment mismatch for {context}: on chain 0x{expected.hex()}, the update gives 0x{computed.hex()} "
            "(another plaintext, or an update replayed from another trainer, project or round)"
        )
        self.expected = expected
        self.computed = computed


class EncryptionError(UpdateFormatError):
    """An encrypted envelope or an encryption key was refused."""


class WrongRecipientError(EncryptionError):
    """The envelope is sealed to another public key than the one decrypting it.

    Parameters
    ----------
    recipient
        The public key (hex) the envelope names.
    ours
        The public key (hex) of the key pair trying to decrypt.
    """

    def __init__(self, recipient: str, ours: str) -> None:
        super().__init__(f"envelope is encrypted to public key {recipient}, not to this key {ours}")
        self.recipient = recipient
        self.ours = ours


class DecryptionError(EncryptionError):
    """The envelope is truncated, tampered with, of an unknown version, or not an envelope at all."""


class KeyFileError(EncryptionError):
    """A key file cannot be used: missing, malformed, inconsistent, or readable by group or others."""
