"""A trainer checks its own treatment once a round is posted, and keeps evidence when it was wronged.

Only the trainer holds the plaintext of a sealed update, so only it can show that an aggregator rejected a valid
update without revealing it. After each posted round, :func:`check_treatment` reads the round report and looks
at this trainer's entry: listed with the CID and commitment it submitted, not rejected, not flagged, and (sealed)
revealed after the round so that anyone can recompute it. When
something is wrong it returns one plain sentence and saves the evidence (:mod:`pocfl.rounds.evidence`: the plaintext,
CID, commitment, round, project and the report's reason) into ``<state dir>/evidence/``, so that anyone can run
``pocfl audit P --evidence FILE``, which checks the plaintext against the on-chain commitment.

The plaintext of the round in flight is kept in ``<state dir>/evidence/pending/`` from submission until the round
is checked (:class:`PlaintextKeeper`), so a trainer restarted in between still has its evidence.

What it cannot check: whether a *score* is fair (that needs the validation set and every other update; the
audit recomputes it for unsealed or revealed updates, and the evidence lets it do so for a sealed one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pocfl.chain.types import EventRecord
from pocfl.errors import PocflError
from pocfl.fsutil import PRIVATE, write_bytes_atomic
from pocfl.market import Market
from pocfl.rounds.evidence import Evidence, EvidenceError, bounded, write_evidence
from pocfl.rounds.inputs import PostedRound, posted_report
from pocfl.rounds.report import SubmissionEntry
from pocfl.updates import update_commitment
from pocfl.waiting import is_transient

FLAGGED = frozenset({"outlier", "free_rider", "copy", "stale"})
"""Report statuses that cost the trainer its share of the round."""


@dataclass(frozen=True)
class Treatment:
    """What the trainer's check found.

    Attributes
    ----------
    complaint
        One plain sentence when the trainer was rejected, flagged, misreported or its sealed update kept but never
        revealed; None when all is as submitted.
    evidence
        The saved evidence JSON, when a complaint was made and the plaintext is known.
    """

    complaint: str | None = None
    evidence: Path | None = None


KEPT_ROUNDS = 2
"""Rounds before the current one whose unchecked plaintext is kept (older ones are dropped when a round is kept)."""


@dataclass(frozen=True)
class PlaintextKeeper:
    """The plaintexts of submitted, not yet checked rounds, one file each, removed once the round is checked.

    Parameters
    ----------
    folder
        ``<state dir>/evidence/pending``.
    market
        The marketplace, signing as the trainer (the files are named by chain, market, project, round, trainer).
    project_id
        The project.
    """

    folder: Path
    market: Market
    project_id: int

    def path(self, round_: int) -> Path:
        """Where round ``round_``'s plaintext is kept."""
        c = self.market.client
        market, trainer = c.address.lower()[:10], str(c.sender).lower()
        return self.folder / f"{c.chain.chain_id}-{market}-p{self.project_id}-r{round_}-{trainer}.bin"

    def keep(self, round_: int, plaintext: bytes) -> None:
        """Save the plaintext before it is submitted (atomically); drop what older rounds left (at most 3 kept)."""
        write_bytes_atomic(self.path(round_), plaintext, mode=PRIVATE)
        for old in range(max(round_ - KEPT_ROUNDS - 16, 0), round_ - KEPT_ROUNDS):
            self.forget(old)  # rounds never checked (a caller without the run loop); earlier keeps dropped older

    def kept(self, round_: int, commitment: bytes, max_size: int) -> bytes | None:
        """The kept plaintext of ``round_`` when it opens ``commitment`` (another run's file may not)."""
        path = self.path(round_)
        try:
            if path.stat().st_size > max_size:
                return None
            data = path.read_bytes()
        except OSError:
            return None
        c = self.market.client
        ours = update_commitment(
            data,
            chain_id=c.chain.chain_id,
            market=c.address,
            project_id=self.project_id,
            round=round_,
            trainer=str(c.sender),
        )
        return data if ours == commitment else None

    def forget(self, round_: int) -> None:
        """Drop round ``round_``'s plaintext (checked: evidence, when needed, was saved elsewhere)."""
        self.path(round_).unlink(missing_ok=True)


def submission_entry(
    market: Market, round_: int, event: EventRecord, trainer: str
) -> tuple[SubmissionEntry | None, str]:
    """The trainer's entry in a posted round's report, or None and why (a store outage raises: it is no complaint)."""
    posted = PostedRound.from_event(event)
    try:
        _, report = posted_report(market, posted)
    except PocflError as exc:
        if is_transient(exc):  # a store outage is no complaint: the trainer's loop waits it out and checks again
            raise
        return None, f"its report cannot be read ({type(exc).__name__})"
    for entry in report.submissions:
        if entry.trainer.lower() == trainer.lower():
            return entry, ""
    return None, "its report does not list this trainer"


def _problem(
    entry: SubmissionEntry | None, missing: str, cid: str, commitment: bytes, encrypted: bool | None
) -> str | None:
    if entry is None:
        return missing
    if entry.cid != cid or entry.commitment.lower().removeprefix("0x") != commitment.hex():
        return f"its report lists another submission for this trainer ({bounded(entry.cid, 80)})"
    if entry.status == "rejected":
        return f"the aggregator REJECTED this trainer's update: {bounded(entry.reason)}"
    if entry.status in FLAGGED:
        return f"the aggregator flagged this trainer's update as {bounded(entry.status, 20)} (no share of the round)"
    if encrypted is None:  # submitted by an earlier run that did not record it
        return None
    if entry.encrypted != encrypted:
        said = "sealed" if entry.encrypted else "not sealed"
        return f"its report says this trainer's update was {said}; it was the opposite"
    if encrypted and entry.plaintext_cid is None:
        # Nobody can recompute the round without the plaintext: the evidence lets the audit do it.
        return "the aggregator kept this trainer's sealed update but never revealed it (no plaintext_cid)"
    return None


def check_treatment(
    market: Market,
    project_id: int,
    round_: int,
    posted: EventRecord,
    *,
    cid: str,
    commitment: bytes,
    encrypted: bool | None,
    plaintext: bytes | None,
    evidence_dir: Path | None,
) -> Treatment:
    """Check this trainer's entry in the posted round ``round_``; save evidence when something is wrong.

    Parameters
    ----------
    market
        The marketplace (signing as the trainer) and its store.
    project_id, round_, posted
        The round and its ``RoundPosted`` event.
    cid, commitment, encrypted
        What the trainer submitted (``encrypted`` None when unknown).
    plaintext
        Its plaintext update (None when this run did not produce it: no evidence then).
    evidence_dir
        Where evidence goes (None: nowhere).
    """
    trainer = market.client.sender
    entry, missing = submission_entry(market, round_, posted, trainer)
    problem = _problem(entry, missing, cid, commitment, encrypted)
    if problem is None:
        return Treatment()
    head = f"round {round_}: {problem}."
    if plaintext is None or evidence_dir is None:
        return Treatment(f"{head} This run does not hold the plaintext: no evidence saved.")
    evidence = Evidence(
        chain_id=market.client.chain.chain_id,
        market=market.client.address,
        project_id=project_id,
        round=round_,
        trainer=trainer,
        cid=cid,
        commitment=commitment,
        encrypted=bool(entry.encrypted if encrypted is None and entry is not None else encrypted),
        plaintext=plaintext,
        report_status=None if entry is None else entry.status,
        report_reason=None if entry is None else entry.reason,
    )
    try:
        path = write_evidence(evidence_dir, evidence)
    except (OSError, EvidenceError) as exc:
        return Treatment(f"{head} Evidence could not be saved into {evidence_dir}: {bounded(exc, 120)}")
    return Treatment(
        f"{head} Evidence saved: {path}; anyone can check it: pocfl audit {project_id} --evidence {path}",
        path,
    )
