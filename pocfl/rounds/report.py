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
import types
from dataclasses import asdict, dataclass, field, fields
from typing import Any, get_args, get_origin, get_type_hints

from pocfl.errors import PocflError
from pocfl.rounds.hyperparams import HYPERPARAMS_MAX_SIZE
from pocfl.untrusted import clip, load_document, quote

REPORT_FORMAT = "pocfl-round-report/1"

REPORT_MAX_DEPTH = 8
"""Deepest nesting of a report (the ``config`` dict holds the proof settings and lists): 4 in practice."""


REASON_LIMIT = 512
"""Most characters of a rejection reason in a report: printable ASCII (:func:`bounded_reason`), so at most
``2 * REASON_LIMIT + 2`` bytes of JSON. With the on-chain CID bound this keeps a report's size linear in the
number of submissions, whatever the trainers send."""


MAX_SUBMISSIONS = 512
"""Most submissions a round can have: the contract's ``MAX_TRAINERS``, one submission per trainer per round."""

MAX_CID_BYTES = 128
"""Longest CID the contract accepts (``MAX_CID_LENGTH``): every CID a report copies from the chain."""

STATUSES = ("scored", "outlier", "free_rider", "copy", "stale", "rejected", "unpaid")
"""Every :attr:`SubmissionEntry.status` the aggregator writes."""

CONFIG_MAX_JSON = 8 << 10
"""Most bytes of an honest report's ``config``: the round settings (about 20 numbers and names from the
manifest), the proof info (three CIDs, two digests, the circuit's shape) and the last ``HISTORY_ROUNDS`` (10)
accuracies come to under 4 KiB with every number at its longest; twice that
(``tests/unit/test_report_size.py`` builds the worst case)."""


class ReportError(PocflError):
    """A round report is malformed; the message names the field."""


def bounded_reason(reason: str) -> str:
    r"""A rejection reason as it goes into a report: at most :data:`REASON_LIMIT` printable ASCII characters.

    Reasons quote what trainers sent; without a bound one update's header, echoed and JSON-escaped
    (``\u00e9`` per character), could push the report over :data:`REPORT_MAX_SIZE` and make the project
    unreadable for everyone. Idempotent: a bounded reason comes back unchanged.
    """
    return clip(reason, REASON_LIMIT)


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
        """Canonical JSON (sorted keys, no whitespace; floats in Python's shortest round-trip form).

        Raises
        ------
        ReportError
            The report would exceed :data:`REPORT_MAX_SIZE`, which every reader enforces: posting it would
            make the project unreadable, so the node must fail the round loudly instead.
        """
        data = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
        if len(data) > REPORT_MAX_SIZE:
            raise ReportError(f"round report of {len(data)} bytes exceeds the readers' limit of {REPORT_MAX_SIZE}")
        return data

    @classmethod
    def from_json(cls, data: bytes) -> RoundReport:
        """Parse a report.

        Raises
        ------
        ReportError
            Not JSON, another format, or missing or mistyped fields.
        """
        raw = load_document(
            data, REPORT_FORMAT, "round report", ReportError, max_size=REPORT_MAX_SIZE, max_depth=REPORT_MAX_DEPTH
        )
        try:
            subs = raw.pop("submissions")
            if not isinstance(subs, list):
                raise TypeError(f"submissions is a {type(subs).__name__}, expected a list")
            entries = tuple(SubmissionEntry(**_typed(SubmissionEntry, s)) for s in subs)
            return cls(submissions=entries, **_typed(cls, raw, skip="submissions"))
        except (KeyError, TypeError) as exc:
            raise ReportError(f"the round report is missing or has a wrong field: {clip(str(exc), 200)}") from exc


def _typed(cls: type, values: object, skip: str = "") -> dict[str, Any]:
    """``values`` if it is a dict whose fields have the types ``cls`` declares (JSON types: int for float too).

    A report is read by the node and the audit field by field: a string where a number belongs must be refused
    here, with a named error, not crash a comparison later.

    Raises
    ------
    TypeError
        Not a dict, or a field of another type (missing and unknown fields are left to the constructor).
    """
    if not isinstance(values, dict):
        raise TypeError(f"{cls.__name__} is a {type(values).__name__}, expected an object")
    hints = get_type_hints(cls)
    for f in fields(cls):
        if f.name in values and f.name != skip and not _is_a(values[f.name], hints[f.name]):
            raise TypeError(f"{cls.__name__}.{f.name} is {quote(values[f.name])}, expected {hints[f.name]}")
    return values


def _is_a(value: object, hint: Any) -> bool:
    if isinstance(hint, types.UnionType):
        return any(_is_a(value, h) for h in get_args(hint))
    base = get_origin(hint) or hint
    if base is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return value is None if hint is type(None) else isinstance(value, base)


# --- why: a submission's treatment in words ---------------------------------------------------------------------

EXPLANATION_LIMIT = 600
"""Most characters of :func:`explain_entry`'s text (it quotes a bounded rejection reason and a few numbers)."""


def _setting(config: dict[str, Any], *path: str) -> str:
    """A numeric setting of the report's ``config`` as text; ``?`` when missing or not a number (untrusted)."""
    value: Any = config
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "?"
    return f"{value:.4g}"


def _outlier_reason(entry: SubmissionEntry, config: dict[str, Any]) -> str:
    """Which outlier rule flagged ``entry``, with the statistic the report carries and the rule's threshold."""
    if "proof" in config:
        return "outlier: flagged by the round's proven outlier rule (the circuit's flags over the committed features)"
    if config.get("rule") == "flag":
        return (
            f"outlier: the Flag Aggregator flagged it (reconstruction ratio {entry.ratio:.4g}, the share of the "
            "update the round's majority subspace explains, a robust z-score outlier among the round's)"
        )
    limit = _setting(config, "trust", "max_norm_ratio")
    if entry.ratio == 0:
        return "outlier: a zero update (norm 0)"
    if limit != "?" and entry.ratio > float(limit):
        return (
            f"outlier by the norm rule: the update's norm is {entry.ratio:.4g} times the round's median norm, above "
            f"the limit of {limit} (trust.max_norm_ratio)"
        )
    drop = config.get("trust", {}).get("drop_negative") if isinstance(config.get("trust"), dict) else None
    return (
        "outlier by the direction rule: the update's cosine with the owner's reference update (one training run on "
        f"the validation set) was at or below {_setting(config, 'trust', 'min_trust')} times the round's median "
        f"(trust.min_trust); its norm, {entry.ratio:.4g} times the median, was within the limit of {limit}"
        + (", or its contribution value was negative (trust.drop_negative)" if drop is True else "")
    )


def explain_entry(entry: SubmissionEntry, config: dict[str, Any]) -> str | None:
    """Why a submission was flagged, rejected or paid nothing: the rule, its statistic and threshold, in words.

    Read from the report alone (its entry and its ``config``), so what it says is what the audit checks. None for
    a submission scored above 0. A setting the report lacks reads ``?``. The cosine of the ``trust`` rule's
    direction test is not in a report of this format (only its threshold is): see docs/payouts.md.

    Parameters
    ----------
    entry
        The submission's report entry.
    config
        The report's ``config`` (:attr:`RoundReport.config`).
    """
    status, value = entry.status, entry.value
    if status == "rejected":
        text = f"rejected before scoring: {entry.reason or 'no reason given'}"
    elif status == "outlier":
        text = _outlier_reason(entry, config)
    elif status == "free_rider":
        text = (
            "free rider: the update's norm was below "
            f"{_setting(config, 'scoring', 'free_rider_rel_norm')} times the median norm of the round's kept "
            "updates (scoring.free_rider_rel_norm); it scores 0"
        )
    elif status in ("copy", "stale"):
        earlier = "an earlier submission of this round" if status == "copy" else "an earlier round's public update"
        text = (
            f"{status}: the update's cosine with {earlier} reached {_setting(config, 'scoring', 'copy_cosine')} "
            "(scoring.copy_cosine); it scores 0"
        )
    elif status == "unpaid":
        text = (
            f"unpaid: the round's validation gain was within {_setting(config, 'noise_z')} standard errors of the "
            "noise (noise_z), so the round paid nobody; its budget stays in escrow"
        )
    elif entry.score <= 0:
        metric = config.get("metric") if config.get("metric") in ("neg_loss", "accuracy") else "?"
        worse = "no better" if value == 0 else ("worse" if value < 0 else "barely better")
        text = (
            f"scored {entry.score}: its contribution value was {value:.4g} ({metric} on the owner's validation "
            f"set): the model did {worse} with the update than without it; only scores above 0 are paid "
            f"(score = value x {_setting(config, 'scoring', 'scale')})"
        )
    else:
        return None
    return clip(text, EXPLANATION_LIMIT)


# --- the size limit -------------------------------------------------------------------------------------------
# Every reader (node, trainers, auditors) parses a whole report, at up to ~22 bytes of memory per byte (a JSON list
# of empty lists; docs/benchmarks.md "Fuzzing"), so the limit is the largest report an honest aggregator can
# write, with a margin, not a round number. The bound is measured on the canonical JSON of reports whose every
# field is at its longest: JSON-escaping included, so it holds whatever text trainers put in CIDs.

_LONGEST_FLOAT = -2.2250738585072014e-308  # 24 characters: no finite float's repr is longer
_LONGEST_UINT = 2**256 - 1  # 78 digits: any integer the chain holds
_LONGEST_INT128 = -(2**127)  # 40 characters: a score (int128 on chain)
_WORST_CID = "\x00" * MAX_CID_BYTES  # a control character is escaped to 6 bytes (\u0000), the most per byte
_WORST_REASON = '"' * REASON_LIMIT  # printable ASCII escaped to 2 bytes each (\", \\), the most
_WORST_HYPERPARAMS = '"' * HYPERPARAMS_MAX_SIZE  # canonical ASCII JSON held as a string: 2 bytes a byte at most
_HEX32 = "0x" + "f" * 64
_ADDRESS = "0x" + "f" * 40


def _json_size(value: object) -> int:
    return len(json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())


SUBMISSION_MAX_JSON = _json_size(
    asdict(
        SubmissionEntry(
            index=MAX_SUBMISSIONS - 1,
            trainer=_ADDRESS,
            cid=_WORST_CID,
            commitment=_HEX32,
            status=max(STATUSES, key=len),
            reason=_WORST_REASON,
            outlier=False,
            score=_LONGEST_INT128,
            value=_LONGEST_FLOAT,
            weight=_LONGEST_FLOAT,
            ratio=_LONGEST_FLOAT,
            encrypted=False,
            plaintext_cid=_WORST_CID,
        )
    )
) + len(",")
"""Most bytes one honest submission entry takes in a report (about 2.9 KiB, two CIDs and the reason), with its
comma."""

REPORT_FIXED_MAX_JSON = (
    _json_size(
        asdict(
            RoundReport(
                project_id=_LONGEST_UINT,
                round=_LONGEST_UINT,
                chain_id=_LONGEST_UINT,
                market=_ADDRESS,
                submissions_digest=_HEX32,
                model_in=_WORST_CID,
                model_out=_WORST_CID,
                shapley_seed=_HEX32,
                sketch_seed=_HEX32,
                hyperparams=_WORST_HYPERPARAMS,
                next_hyperparams=_WORST_HYPERPARAMS,
                next_hyperparams_hash=_HEX32,
                accuracy_before=_LONGEST_FLOAT,
                loss_before=_LONGEST_FLOAT,
                accuracy=_LONGEST_FLOAT,
                loss=_LONGEST_FLOAT,
                shapley_method="x" * 32,  # an estimator's name (aggregator.shapley.Method: 11 characters at most)
                shapley_evaluations=_LONGEST_UINT,
                submissions=(),
                config={},
            )
        )
    )
    + CONFIG_MAX_JSON
)
"""Most bytes of everything in an honest report but its submissions (about 25 KiB, mostly the hyper-parameters)."""

REPORT_HONEST_MAX_SIZE = REPORT_FIXED_MAX_JSON + MAX_SUBMISSIONS * SUBMISSION_MAX_JSON
"""Largest report an honest aggregator writes: 512 maximal submissions and maximal fixed parts (about 1.5 MiB)."""

REPORT_SIZE_MARGIN = 2
"""Room above the honest bound for fields a later report format may add."""

REPORT_MAX_SIZE = REPORT_SIZE_MARGIN * REPORT_HONEST_MAX_SIZE
"""Largest round report read (about 2.9 MiB; the worst JSON of that size peaks near 65 MiB to parse)."""
