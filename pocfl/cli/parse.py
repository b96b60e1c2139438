"""Parsing of command-line values into exact chain values (wei, addresses, bytes32, score lists).

Every parser raises :class:`pocfl.errors.ConfigError` naming the option and the expected form, so the
message reaches ``--json`` callers as a structured error.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path

from pocfl.cids import store_holds as store_holds  # re-exported: the commands check CIDs through parse
from pocfl.cids import stored_cid as stored_cid
from pocfl.errors import ConfigError
from pocfl.payouts import INT128_MAX, INT128_MIN

WEI_PER_ETH = 10**18


def parse_eth(text: str, option: str = "--budget") -> int:
    """Exact wei of a decimal ether amount (``"1.5"`` → 1500000000000000000); at most 18 decimals.

    Raises
    ------
    ConfigError
        If ``text`` is not a non-negative decimal number with at most 18 decimals.
    """
    cleaned = text.strip().replace("_", "")
    if cleaned.lower().endswith("eth"):
        cleaned = cleaned[:-3].strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ConfigError(f"{option} takes an amount of ETH like 1.5, got {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{option} must be a non-negative amount of ETH, got {text!r}")
    with localcontext() as ctx:
        ctx.prec = 200
        wei = value * WEI_PER_ETH
        if wei != wei.to_integral_value():
            raise ConfigError(f"{option} has more than 18 decimals (1 wei = 0.000000000000000001 ETH): {text!r}")
        return int(wei)


def parse_wei(text: str, option: str = "--budget-wei") -> int:
    """A non-negative integer amount of wei."""
    try:
        value = int(text.strip().replace("_", ""), 10)
    except ValueError:
        raise ConfigError(f"{option} takes a whole number of wei, got {text!r}") from None
    if value < 0:
        raise ConfigError(f"{option} must not be negative, got {text!r}")
    return value


def parse_address(text: str, option: str = "ADDRESS") -> str:
    """A checksummed address (any case accepted, but a mixed-case one must have a valid checksum)."""
    from eth_utils.address import is_address, to_checksum_address

    value = text.strip()
    if not is_address(value):
        raise ConfigError(f"{option} is not an Ethereum address (0x and 40 hex digits): {text!r}")
    return to_checksum_address(value)


def parse_addresses(values: list[str] | None, option: str) -> list[str]:
    """Addresses given repeatedly and/or comma-separated."""
    out: list[str] = []
    for value in values or []:
        out += [parse_address(part, option) for part in value.split(",") if part.strip()]
    return out


def parse_bytes32(text: str, option: str) -> bytes:
    """32 bytes from ``0x`` + 64 hex digits."""
    value = text.strip()
    body = value[2:] if value.lower().startswith("0x") else value
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{option} takes 32 bytes as 0x followed by 64 hex digits, got {text!r}")
    return raw


def sha256_file(path: Path, option: str) -> bytes:
    """sha256 of a file's bytes."""
    try:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    return digest.digest()


def read_bytes(path: Path, option: str) -> bytes:
    """The bytes of a file."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None


def existing_file(path: Path, option: str) -> Path:
    """``path`` if it is a readable regular file."""
    if not path.is_file():
        raise ConfigError(f"{option}: {path} is not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    return path


def parse_scores(text: str, option: str = "--scores") -> tuple[int, ...]:
    """Comma-separated signed integer scores (int128): ``"5,3,-1"``; an empty string is no scores."""
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    scores: list[int] = []
    for i, part in enumerate(parts):
        try:
            value = int(part.replace("_", ""), 10)
        except ValueError:
            raise ConfigError(
                f"{option}: entry {i} is not an integer: {part!r} (scores are fixed-point integers)"
            ) from None
        if not INT128_MIN <= value <= INT128_MAX:
            raise ConfigError(f"{option}: entry {i} does not fit int128: {part}")
        scores.append(value)
    return tuple(scores)


_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


def parse_flags(text: str, option: str = "--outliers") -> tuple[bool, ...]:
    """Comma-separated booleans: ``"0,1,0"`` or ``"false,true,false"``; an empty string is no flags."""
    parts = [p.strip().lower() for p in text.split(",")] if text.strip() else []
    flags: list[bool] = []
    for i, part in enumerate(parts):
        if part in _TRUE:
            flags.append(True)
        elif part in _FALSE:
            flags.append(False)
        else:
            raise ConfigError(f"{option}: entry {i} is not 0/1 or true/false: {part!r}")
    return tuple(flags)
