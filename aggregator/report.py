"""The round report: everything needed to recompute a round, as canonical JSON in the content store.

Its CID's root digest is the ``reportHash`` posted on chain (:func:`pocfl.market.report_hash`), so the chain
fixes the report's bytes. ``pocfl audit`` reads it, re-fetches every input by CID, re-runs
:func:`aggregator.round.decide_round` and compares field by field.

Encrypted updates: after posting, the aggregator stores each decrypted plaintext and records its CID as
``plaintext_cid``, so auditors can check the commitment and recompute without the aggregator's key (the round is
over, so revealing updates no longer helps copycats of that round).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pocfl.errors import PocflError

REPORT_FORMAT = "pocfl-round-report/1"


class ReportError(PocflError):
    """A round report is malformed; the message names the field."""


@dataclass(frozen=True)
class SubmissionEntry:
    """One submission's fate.

    Attributes
    ----------
    index, trainer, cid, commitment
        As on chain (commitment as 0x hex).
    status
        ``scored``, ``outlier``, ``free_rider``, ``copy``, ``stale`` or ``rejected``.
    reason
        For ``rejected``: the named error and its message (e.g. ``CidMismatchError: ...``); else None.
    outlier, score
        What was posted.
    value, weight, ratio
        Shapley value, aggregation weight, Flag Aggregator reconstruction ratio.
    encrypted
        Whether the stored payload was sealed to the aggregator.
    plaintext_cid
        Where the decrypted plaintext was revealed after the round (None when not encrypted or not decodable).
    """

    index: int
    trainer: str
    cid: str
    commitment: str
    status: str
    reason: str | None
    outlier: bool
    score: int
    value: float
    weight: float
    ratio: float
    encrypted: bool = False
    plaintext_cid: str | None = None


@dataclass(frozen=True)
class RoundReport:
    """A posted round, self-describing and recomputable."""

    project_id: int
    round: int
    chain_id: int
    market: str
    submissions_digest: str
    model_in: str
    model_out: str
    shapley_seed: str
    sketch_seed: str
    hyperparams: str
    next_hyperparams: str
    next_hyperparams_hash: str
    accuracy_before: float
    loss_before: float
    accuracy: float
    loss: float
    shapley_method: str
    shapley_evaluations: int
    submissions: tuple[SubmissionEntry, ...]
    config: dict[str, Any] = field(default_factory=dict)
    format: str = REPORT_FORMAT

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace; floats in Python's shortest round-trip form)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RoundReport:
        """Parse a report.

        Raises
        ------
        ReportError
            Not JSON, another format, or missing or mistyped fields.
        """
        try:
            raw: Any = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ReportError(f"the round report is not JSON: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("format") != REPORT_FORMAT:
            got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise ReportError(f"not a pocfl round report (format {got!r}, expected {REPORT_FORMAT!r})")
        try:
            subs = tuple(SubmissionEntry(**s) for s in raw.pop("submissions"))
            return cls(submissions=subs, **raw)
        except (KeyError, TypeError) as exc:
            raise ReportError(f"the round report is missing or has a wrong field: {exc}") from exc
