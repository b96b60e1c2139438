"""A trainer's evidence against a rejection: the plaintext update it committed to, kept to be checked by anyone.

An aggregator can reject a sealed update while never revealing its plaintext ("CorruptUpdateError"), or an
unsealed one as unavailable ("ObjectNotFoundError"). Nobody but the trainer can then show what it submitted. The
trainer client (:meth:`trainer_client.TrainerClient.run`) saves, when its update was rejected or flagged, two
files in its state folder:

- ``<name>.bin``: the plaintext update file, byte for byte;
- ``<name>.json``: ``{"format": "pocfl-evidence/1", chain_id, market, project_id, round, trainer, cid,
  commitment, encrypted, plaintext_file, plaintext_sha256, report_status, report_reason, created_at}``.

``pocfl audit --evidence FILE`` loads them (:func:`load_evidence`, bounded, every problem a named
:class:`EvidenceError`) and checks the plaintext against the submission's on-chain commitment (which binds the
plaintext's sha256 to chain, market, project, round and trainer) and, for an unsealed update, against its CID.
Evidence files are untrusted input: sizes are capped, the plaintext file must sit beside the JSON, and every text
taken from them is bounded before it is printed.

Core (:mod:`pocfl.rounds`), not :mod:`pocfl.audit`: the trainer client writes these files and imports no
application.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocfl.errors import PocflError
from pocfl.fsutil import PRIVATE, write_bytes_atomic, write_json_atomic
from pocfl.untrusted import UntrustedJsonError, clip, loads_untrusted
from pocfl.updates import DEFAULT_MAX_UPDATE_SIZE

EVIDENCE_FORMAT = "pocfl-evidence/1"

MAX_EVIDENCE_JSON = 64 << 10
"""Largest evidence JSON read (64 KiB: a few hundred bytes of fields plus a bounded reason)."""

MAX_EVIDENCE_PLAINTEXT = DEFAULT_MAX_UPDATE_SIZE
"""Largest plaintext read (the largest update any manifest may allow)."""

MAX_EVIDENCE_DEPTH = 2
"""Deepest JSON nesting read: a genuine file is one flat object (depth 1); one level spare."""

MAX_TEXT = 300
"""Longest text kept from an evidence file or a report reason (more is cut, with a mark)."""

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


class EvidenceError(PocflError):
    """An evidence file cannot be read or is malformed (not a judgement on the aggregator)."""


def bounded(text: object, limit: int = MAX_TEXT) -> str:
    """``text`` as one printable ASCII line of at most ``limit`` characters (:func:`pocfl.untrusted.clip`)."""
    return clip(str(text), limit)


@dataclass(frozen=True)
class Evidence:
    """One trainer's evidence for one submission.

    Attributes
    ----------
    chain_id, market, project_id, round, trainer
        The submission's context (market and trainer as 0x hex).
    cid
        The submitted CID (of the envelope, when sealed).
    commitment
        The on-chain commitment the trainer submitted.
    encrypted
        Whether the stored object was sealed to the aggregator.
    plaintext
        The plaintext update file.
    report_status, report_reason
        What the round report said about it (bounded), when known.
    path
        Where it was read from (None when built in memory).
    """

    chain_id: int
    market: str
    project_id: int
    round: int
    trainer: str
    cid: str
    commitment: bytes
    encrypted: bool
    plaintext: bytes
    report_status: str | None = None
    report_reason: str | None = None
    path: Path | None = None

    @property
    def name(self) -> str:
        """The file stem this evidence is saved under."""
        market, trainer = self.market.lower()[:10], self.trainer.lower()
        return f"evidence-{self.chain_id}-{market}-p{self.project_id}-r{self.round}-{trainer}"

    def key(self) -> tuple[int, int, str]:
        """``(project, round, trainer)``, lower-case: what the audit matches submissions by."""
        return self.project_id, self.round, self.trainer.lower()

    def where(self) -> str:
        """How to name it in output."""
        return str(self.path) if self.path is not None else f"evidence of {self.trainer} for round {self.round}"

    def to_json(self, plaintext_file: str) -> dict[str, Any]:
        """The JSON document (the plaintext goes to ``plaintext_file``, beside it)."""
        return {
            "format": EVIDENCE_FORMAT,
            "chain_id": self.chain_id,
            "market": self.market,
            "project_id": self.project_id,
            "round": self.round,
            "trainer": self.trainer,
            "cid": self.cid,
            "commitment": "0x" + self.commitment.hex(),
            "encrypted": self.encrypted,
            "plaintext_file": plaintext_file,
            "plaintext_sha256": "0x" + hashlib.sha256(self.plaintext).hexdigest(),
            "report_status": None if self.report_status is None else bounded(self.report_status, 40),
            "report_reason": None if self.report_reason is None else bounded(self.report_reason),
            "created_at": int(time.time()),
        }


def write_evidence(folder: Path, evidence: Evidence) -> Path:
    """Save ``evidence`` into ``folder`` (created); returns the JSON's path.

    Both files are written atomically, the plaintext first, so a JSON file never names a missing or partial
    plaintext; owner-only (the plaintext is the trainer's own until it chooses to share it).
    """
    folder.mkdir(parents=True, exist_ok=True)
    bin_path, json_path = folder / f"{evidence.name}.bin", folder / f"{evidence.name}.json"
    write_bytes_atomic(bin_path, evidence.plaintext, mode=PRIVATE)
    return write_json_atomic(json_path, evidence.to_json(bin_path.name), mode=PRIVATE, sort_keys=True)


def _read_capped(path: Path, cap: int, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(cap + 1)
    except OSError as exc:
        raise EvidenceError(f"evidence {bounded(path)}: cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > cap:
        raise EvidenceError(f"evidence {bounded(path)}: {what} is larger than {cap} bytes")
    return data


def _field(doc: dict[str, Any], name: str, kind: type, path: Path) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        wanted = {int: "an integer", str: "a string", bool: "true or false"}.get(kind, kind.__name__)
        raise EvidenceError(f"evidence {bounded(path)}: field {name!r} must be {wanted}")
    return value


def _text(doc: dict[str, Any], name: str, pattern: re.Pattern[str], path: Path) -> str:
    value = _field(doc, name, str, path)
    if not pattern.match(value):
        raise EvidenceError(f"evidence {bounded(path)}: field {name!r} is malformed ({bounded(value, 80)})")
    return str(value)


def load_evidence(path: Path, *, max_plaintext: int = MAX_EVIDENCE_PLAINTEXT) -> Evidence:
    """Read an evidence JSON and the plaintext it names (which must sit in the same folder).

    Raises
    ------
    EvidenceError
        Unreadable, too large, not ``pocfl-evidence/1``, a malformed field, or a plaintext whose sha256 is not
        the one the JSON records.
    """
    raw = _read_capped(path, MAX_EVIDENCE_JSON, "the JSON file")
    try:  # screened for depth first: the parser recurses per level and py_ecc lifts the recursion limit
        doc = loads_untrusted(raw, max_size=MAX_EVIDENCE_JSON, max_depth=MAX_EVIDENCE_DEPTH, what="the JSON file")
    except UntrustedJsonError as exc:  # its message gives figures and a clipped parser error, never the content
        raise EvidenceError(f"evidence {bounded(path)}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != EVIDENCE_FORMAT:
        raise EvidenceError(f"evidence {bounded(path)}: not a {EVIDENCE_FORMAT} document")
    name = _text(doc, "plaintext_file", _FILE_NAME, path)
    plaintext = _read_capped(path.parent / name, max_plaintext, f"the plaintext {name}")
    digest = "0x" + hashlib.sha256(plaintext).hexdigest()
    if _text(doc, "plaintext_sha256", _BYTES32, path).lower() != digest:
        raise EvidenceError(
            f"evidence {bounded(path)}: the plaintext {name} has sha256 {digest}, the JSON records another"
        )
    for name_ in ("chain_id", "project_id", "round"):
        if _field(doc, name_, int, path) < 0:
            raise EvidenceError(f"evidence {bounded(path)}: field {name_!r} is negative")
    cid = _field(doc, "cid", str, path)
    if len(cid) > 200:
        raise EvidenceError(f"evidence {bounded(path)}: field 'cid' is too long")
    reason, status = doc.get("report_reason"), doc.get("report_status")
    return Evidence(
        chain_id=int(doc["chain_id"]),
        market=_text(doc, "market", _ADDRESS, path),
        project_id=int(doc["project_id"]),
        round=int(doc["round"]),
        trainer=_text(doc, "trainer", _ADDRESS, path),
        cid=cid,
        commitment=bytes.fromhex(_text(doc, "commitment", _BYTES32, path)[2:]),
        encrypted=bool(_field(doc, "encrypted", bool, path)),
        plaintext=plaintext,
        report_status=None if status is None else bounded(status, 40),
        report_reason=None if reason is None else bounded(reason),
        path=path,
    )
