"""What an audit finds: its result objects, the differences its checkers return, and how they are bounded.

:class:`AuditResult` holds every round, submission and trainer; every checker returns :class:`Difference` s,
written through :class:`Findings`.

Every message and value in a difference is bounded (:data:`MESSAGE_LIMIT`, :data:`VALUE_LIMIT`): posted values
come from reports and events (aggregator- and trainer-controlled), so a report's content never grows the audit
beyond a bound.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pocfl.chain.types import jsonable
from pocfl.errors import ConfigError, PocflError
from pocfl.untrusted import ELLIPSIS, QUOTE_LIMIT, clip, quote

AUDIT_FORMAT = "pocfl-audit/1"


MESSAGE_LIMIT = 1024
"""Most characters of one difference's message: untrusted values in it are quoted (at most ``QUOTE_LIMIT``
characters each), this caps the sentence too, so a report's content never grows the audit beyond a bound."""

VALUE_LIMIT = 4 * QUOTE_LIMIT
"""Most characters of a difference's ``posted`` or ``recomputed`` string (a JSON rendering, when it is not one)."""

FLOAT_RTOL = 1e-9
"""Relative tolerance of float fields (values, weights, ratios, accuracies, losses); ints and flags are exact."""


class AuditMismatchError(PocflError):
    """The chain's records differ from the recomputation; ``differences`` lists every one.

    Parameters
    ----------
    project_id
        The audited project.
    differences
        Every difference found, in round order.
    result
        The whole audit (for reports written despite the failure).
    """

    def __init__(self, project_id: int, differences: Sequence[Difference], result: AuditResult | None = None):
        self.project_id = project_id
        self.differences = tuple(differences)
        self.result = result
        n = len(self.differences)
        lines = "\n".join(f"  - {d.message}" for d in self.differences)
        super().__init__(f"project {project_id}: {n} difference{'s' if n != 1 else ''} found by the audit:\n{lines}")


@dataclass(frozen=True)
class ProjectRef:
    """What an audit is about: the project, the chain and the marketplace (``market``: its address)."""

    project_id: int
    chain_id: int
    market: str


class WrongStoreError(ConfigError):
    """The content store holds none of the project's objects: probably the wrong ``--ipfs``; nothing was audited."""


@dataclass(frozen=True)
class Difference:
    """One thing the chain (or a posted artifact) says that the recomputation does not.

    Attributes
    ----------
    round
        The round (None for project-wide checks).
    field
        What differs: ``score``, ``outlier``, ``status``, ``credit``, ``model_cid``, ``report``, ``ledger``, ...
    message
        A precise sentence naming where, the posted and the recomputed value.
    index, trainer
        The submission, when the difference is about one.
    posted, recomputed
        The two values (JSON-able).
    """

    round: int | None
    field: str
    message: str
    index: int | None = None
    trainer: str | None = None
    posted: Any = None
    recomputed: Any = None

    def __str__(self) -> str:
        return self.message


@dataclass
class SubmissionAudit:
    """One submission of a posted round: what was posted and what the audit recomputed.

    Attributes
    ----------
    index, trainer, cid, commitment
        From ``UpdateSubmitted``.
    source
        How the audit read the update: ``plaintext`` (by CID), ``revealed`` (sealed; through the plaintext the
        aggregator revealed), ``evidence`` (a rejection disproved by the trainer's evidence), ``rejected`` (the
        audit rejects it too), ``unchecked`` (a rejection the audit can neither confirm nor disprove: listed in
        :attr:`AuditResult.unchecked`) or ``unverifiable``.
    note
        Why, for the last three.
    posted_score, posted_outlier, credited_wei
        From ``TrainerCredited``.
    report_status, report_reason
        From the round report.
    status, score, outlier, value, expected_wei
        Recomputed (None when the round could not be recomputed).
    """

    index: int
    trainer: str
    cid: str
    commitment: str
    source: str = "plaintext"
    note: str | None = None
    posted_score: int | None = None
    posted_outlier: bool | None = None
    credited_wei: int | None = None
    report_status: str | None = None
    report_reason: str | None = None
    status: str | None = None
    score: int | None = None
    outlier: bool | None = None
    value: float | None = None
    expected_wei: int | None = None


@dataclass
class RoundAudit:
    """One round of the project.

    Attributes
    ----------
    round
        The round number.
    state
        ``posted``, ``failed``, ``open`` (current round, not settled yet), ``future`` or ``not played`` (the
        project ended first).
    verdict
        ``verified`` (recomputed, equal), ``unchecked`` (recomputed and equal, but a posted rejection could be
        neither confirmed nor disproved: see :attr:`AuditResult.unchecked`), ``mismatch``, ``unverifiable``
        (could not be recomputed: see ``notes``), or the state for rounds that were not posted.
    proven
        ``RoundPosted.proven`` (None when not posted).
    model_in, model_cid, report_cid, report_hash, hyperparams_hash, submissions_digest
        The round's inputs and posted outputs.
    accuracy_before, accuracy, loss
        Validation metrics of the global model before and after the round (recomputed; as reported when the round
        could not be recomputed).
    credited_wei, unallocated_wei
        From ``RoundPosted``.
    shapley_method
        The estimator that ran.
    unverifiable
        Why the round could not be recomputed (None when it was, or when it is not posted).
    submissions
        Per submission.
    notes
        Everything the audit could not check, and why.
    """

    round: int
    state: str
    verdict: str
    proven: bool | None = None
    model_in: str | None = None
    model_cid: str | None = None
    report_cid: str | None = None
    report_hash: str | None = None
    hyperparams_hash: str | None = None
    submissions_digest: str | None = None
    accuracy_before: float | None = None
    accuracy: float | None = None
    loss: float | None = None
    credited_wei: int = 0
    unallocated_wei: int = 0
    shapley_method: str | None = None
    unverifiable: str | None = None
    submissions: list[SubmissionAudit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class TrainerAudit:
    """One trainer's payouts.

    Attributes
    ----------
    trainer
        The address.
    rounds
        Rounds it submitted to (posted rounds only).
    total_score
        Sum of its posted scores.
    outliers
        How many of its posted submissions were flagged as outliers.
    credited_wei
        Credited by this project (``TrainerCredited``).
    expected_wei
        What the recomputation credits it (posted amounts for rounds that could not be recomputed).
    credited_elsewhere_wei
        Credited by other projects plus stakes credited back, all projects (claims are per account).
    claimed_wei
        Withdrawn with ``claim``/``claimTo``, all projects.
    pending_wei
        Its on-chain ``credits``: still claimable.
    """

    trainer: str
    rounds: int = 0
    total_score: int = 0
    outliers: int = 0
    credited_wei: int = 0
    expected_wei: int = 0
    credited_elsewhere_wei: int = 0
    claimed_wei: int = 0
    pending_wei: int = 0


@dataclass
class AuditResult:
    """A project's audit: every round, every trainer, every difference.

    Attributes
    ----------
    project_id, chain_id, market
        What was audited.
    owner, aggregator, verifier, status, budget, round_budget, num_rounds, escrow, withdrawn_wei
        The project's on-chain facts.
    manifest_cid, manifest_name
        The manifest (the project's ``initialModelCid``).
    validation
        Where the validation set came from.
    proofs
        ``verifier`` (rounds proven on chain) or ``none`` (results unproven, recomputed only).
    rounds, trainers
        Per round and per trainer.
    differences
        Every mismatch found.
    warnings
        Everything the audit could not check.
    unchecked
        Every posted rejection the audit could neither confirm nor disprove (a sealed update never revealed, an
        object nobody can read): one line each, naming the round and the trainer. ``strict`` fails on them.
    evidence
        What each trainer evidence file showed (``--evidence``), including invalid ones.
    store
        The content store read.
    """

    project_id: int
    chain_id: int
    market: str
    owner: str
    aggregator: str
    verifier: str
    status: str
    budget: int
    round_budget: int
    num_rounds: int
    escrow: int
    withdrawn_wei: int = 0
    manifest_cid: str = ""
    manifest_name: str | None = None
    validation: str | None = None
    proofs: str = "none"
    store: str = ""
    rounds: list[RoundAudit] = field(default_factory=list)
    trainers: list[TrainerAudit] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no difference was found."""
        return not self.differences

    @property
    def unverifiable_rounds(self) -> list[int]:
        """Posted rounds that could not be recomputed."""
        return [r.round for r in self.rounds if r.verdict == "unverifiable"]

    def check(self) -> AuditResult:
        """Return self, or raise :class:`AuditMismatchError` listing every difference."""
        if self.differences:
            raise AuditMismatchError(self.project_id, self.differences, self)
        return self

    def to_json(self) -> dict[str, Any]:
        """The audit as a JSON document (wei as exact integers, bytes as 0x-hex)."""
        doc: dict[str, Any] = {"format": AUDIT_FORMAT, "ok": self.ok}
        doc.update(jsonable(asdict(self)))
        doc["unverifiable_rounds"] = self.unverifiable_rounds
        return doc


# --- helpers --------------------------------------------------------------------------------------------------


def short(address: str) -> str:
    """``0x1234…abcd``."""
    return f"{address[:6]}…{address[-4:]}" if len(address) == 42 else address


def error_text(exc: BaseException) -> str:
    """An error's message in one of ours: errors about input may carry its text, so it is clipped (ASCII)."""
    return clip(str(exc), MESSAGE_LIMIT // 2)


def cap(sentence: str) -> str:
    """One of our sentences cut to :data:`MESSAGE_LIMIT` characters; untrusted parts are quoted before this."""
    return sentence if len(sentence) <= MESSAGE_LIMIT else sentence[: MESSAGE_LIMIT - len(ELLIPSIS)] + ELLIPSIS


def bounded_value(value: Any) -> Any:
    """``jsonable(value)``, with a long or non-ASCII string, or a large list or dict, as a bounded rendering.

    Posted values come from reports and events (aggregator- and trainer-controlled): a difference keeps them
    for the audit's JSON, so they are bounded like its messages.
    """
    value = jsonable(value)
    if isinstance(value, str):
        return clip(value, VALUE_LIMIT)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 256:
        return quote(value, VALUE_LIMIT)  # a JSON integer may have thousands of digits; chain values fit 256 bits
    if isinstance(value, list | dict) and len(json.dumps(value)) > VALUE_LIMIT:
        return quote(value, VALUE_LIMIT)
    return value


def to_hex(value: bytes) -> str:
    """``0x``-hex of ``value``."""
    return "0x" + bytes(value).hex()


def same_hex(a: str | None, b: str | None) -> bool:
    """Whether two hex strings name the same bytes (case and ``0x`` aside); None equals nothing."""
    return a is not None and b is not None and a.lower().removeprefix("0x") == b.lower().removeprefix("0x")


def close(a: float, b: float) -> bool:
    """Whether two floats are equal within :data:`FLOAT_RTOL` (relative and absolute)."""
    return math.isclose(a, b, rel_tol=FLOAT_RTOL, abs_tol=FLOAT_RTOL)


@dataclass
class Findings:
    """What a checker found: differences (bounded, in the order found), warnings and unchecked rejections.

    Every checker returns one (or its list of differences); the audit concatenates them in order.

    Parameters
    ----------
    project_id
        The audited project (named by project-wide differences).
    """

    project_id: int
    differences: list[Difference] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    def diff(
        self,
        round_: int | None,
        field_: str,
        message: str,
        *,
        index: int | None = None,
        trainer: str | None = None,
        posted: Any = None,
        recomputed: Any = None,
    ) -> None:
        """Record a difference: ``message`` prefixed with where (round, submission), values bounded."""
        where = f"round {round_}" if round_ is not None else f"project {self.project_id}"
        if index is not None:
            where += f", submission {index}" + (f" ({short(trainer)})" if trainer else "")
        self.differences.append(
            Difference(
                round_,
                field_,
                cap(f"{where}: {message}"),
                index,
                trainer,
                bounded_value(posted),
                bounded_value(recomputed),
            )
        )

    def at(self, round_: int, submission: Submission) -> SubmissionFindings:
        """:meth:`diff` for one submission of ``round_``: its index and trainer given once."""
        return SubmissionFindings(self, round_, submission.index, submission.trainer)

    def extend(self, other: Findings | Sequence[Difference]) -> None:
        """Append another checker's differences (and warnings and unchecked rejections), keeping their order."""
        if isinstance(other, Findings):
            self.differences += other.differences
            self.warnings += other.warnings
            self.unchecked += other.unchecked
        else:
            self.differences += other


class Submission(Protocol):
    """Anything that names a submission: ``UpdateSubmitted`` (:class:`~pocfl.market.SubmittedUpdate`) or its audit."""

    @property
    def index(self) -> int:
        """Position in the round's submission order."""
        ...

    @property
    def trainer(self) -> str:
        """The trainer's address."""
        ...


@dataclass(frozen=True)
class SubmissionFindings:
    """The differences about one submission: :meth:`Findings.diff` with its round, index and trainer bound."""

    findings: Findings
    round: int
    index: int
    trainer: str

    def diff(self, field_: str, message: str, *, posted: Any = None, recomputed: Any = None) -> None:
        """Record a difference about this submission (see :meth:`Findings.diff`)."""
        self.findings.diff(
            self.round, field_, message, index=self.index, trainer=self.trainer, posted=posted, recomputed=recomputed
        )
