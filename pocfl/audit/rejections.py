"""Re-checking the rejections a round report posts: a censoring aggregator must not pass the audit.

An aggregator decides alone which updates it rejects. Most reasons are facts about public bytes, which the audit
re-derives with the node's own :func:`pocfl.rounds.inputs.validate_submission`. Two kinds are not, and were once
accepted as posted:

- **availability** (``ObjectNotFoundError``, ``StoreUnavailableError``, ``CidMismatchError``): the aggregator
  says it could not read the object. :class:`RejectionChecker` looks for it in the audited store, every extra
  store (``pocfl audit --extra-ipfs``) and the trainers' evidence; when it is there and valid, the rejection is
  *disproved* (a difference). When nobody can read it, it is *unchecked*.
- **a sealed update never revealed**: only the aggregator holds the key. The trainer's evidence
  (:mod:`pocfl.rounds.evidence`) gives its plaintext; when it opens the on-chain commitment and validates, a rejection
  that claims the decrypted bytes were bad (``CorruptUpdateError`` and every other decoding reason: they are only
  reached after the commitment held, so the aggregator saw these very bytes) is disproved. Reasons about the
  envelope itself (:data:`ENVELOPE_ERRORS`) stay unchecked: the envelope may hold other bytes than the committed
  plaintext, and only the aggregator's key can tell.

:class:`SubmissionReader` reads every submission of a posted round as the recomputation uses it and judges its
posted status, handing these two kinds to the :class:`RejectionChecker`.

Verdicts: ``confirmed`` (the audit rejects it too), ``disproved`` (a difference naming the round and the trainer)
and ``unchecked`` (listed by the audit and a failure under ``--strict``; never a silent pass).

A trainer can withhold its object and publish it after the round to make an honest aggregator look like a
censor; docs/verifiability.md discusses that trade-off and the on-chain recourse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from pocfl.audit.result import Findings, ProjectRef, SubmissionAudit
from pocfl.errors import PocflError
from pocfl.market import Market, SubmittedUpdate
from pocfl.rounds.evidence import Evidence, bounded
from pocfl.rounds.inputs import NO_KEY_REASON, ValidatedUpdate, rejection_reason, validate_submission
from pocfl.rounds.report import MAX_CID_BYTES, SubmissionEntry
from pocfl.store import ContentStore, MemoryStore, StoreError, StoreUnavailableError
from pocfl.untrusted import clip, quote
from pocfl.updates import ModelSpec, decode_update, verify_commitment

Vector = NDArray[np.float32]

AVAILABILITY_ERRORS = frozenset({"ObjectNotFoundError", "StoreUnavailableError", "CidMismatchError"})
"""Reasons that say an object could not be read from a store, not that its bytes are wrong."""

ENVELOPE_ERRORS = frozenset(
    {"CommitmentMismatchError", "DecryptionError", "WrongRecipientError", "EncryptionError", "KeyFileError"}
)
"""Rejections of a sealed update about its envelope: the trainer's plaintext cannot disprove them."""


def error_name(reason: str | None) -> str | None:
    """The error class of a rejection reason (``"ObjectNotFoundError: ..."`` -> ``ObjectNotFoundError``).

    Reasons come from reports (untrusted): the name is cut to 80 characters and made printable.
    """
    if reason is None:
        return None
    return bounded(reason.split(":", 1)[0].strip(), 80) or None


@dataclass(frozen=True)
class RejectionCheck:
    """The audit's verdict on one posted rejection.

    Attributes
    ----------
    verdict
        ``confirmed``, ``disproved`` or ``unchecked``.
    note
        Why, in one sentence (bounded).
    vector
        The update, when the rejection is disproved and the update is valid (so the round is recomputed with it).
    """

    verdict: str
    note: str
    vector: Vector | None = None


@dataclass(frozen=True)
class Opened:
    """Trainer evidence checked against a submission.

    Attributes
    ----------
    opens
        Whether its plaintext opens the submission's on-chain commitment.
    vector
        The decoded update (None when it does not open the commitment or does not decode).
    reason
        Why not (None when ``vector`` is set).
    """

    opens: bool
    vector: Vector | None
    reason: str | None


@dataclass
class RejectionChecker:
    """Re-checks the rejections of one audit, with extra stores and trainers' evidence.

    Parameters
    ----------
    market
        The audited marketplace and its store.
    project_id
        The audited project.
    extra_stores
        Further stores to look for objects the audited store lacks.
    evidence
        Trainers' evidence files (already loaded).
    """

    market: Market
    project_id: int
    extra_stores: Sequence[ContentStore] = ()
    evidence: Sequence[Evidence] = ()
    findings: list[str] = field(default_factory=list)
    """One line per evidence file: what it showed (or why it is invalid)."""
    _by_key: dict[tuple[int, int, str], Evidence] = field(default_factory=dict, init=False)
    _used: set[tuple[int, int, str]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        chain_id, address = self.market.client.chain.chain_id, self.market.client.address.lower()
        for ev in self.evidence:
            if (ev.chain_id, ev.market.lower(), ev.project_id) != (chain_id, address, self.project_id):
                self.findings.append(
                    f"evidence {bounded(ev.where())}: for chain {ev.chain_id}, market {ev.market}, project "
                    f"{ev.project_id}; not this audit's: ignored"
                )
            elif ev.key() in self._by_key:
                self.findings.append(f"evidence {bounded(ev.where())}: a second file for the same submission: ignored")
            else:
                self._by_key[ev.key()] = ev

    def unused(self) -> list[str]:
        """Evidence that matched no submission of the audited rounds."""
        return [
            f"evidence {bounded(ev.where())}: not needed (the audit read round {ev.round}'s submission of "
            f"{ev.trainer} itself, or there is none)"
            for key, ev in self._by_key.items()
            if key not in self._used
        ]

    def evidence_for(self, r: int, u: SubmittedUpdate) -> Evidence | None:
        """The evidence for submission ``u`` of round ``r`` (marked as used), if any."""
        key = (self.project_id, r, u.trainer.lower())
        ev = self._by_key.get(key)
        if ev is not None:
            self._used.add(key)
        return ev

    # --- the check ------------------------------------------------------------------------------------------

    def check(
        self,
        r: int,
        u: SubmittedUpdate,
        entry: SubmissionEntry,
        first: ValidatedUpdate,
        spec: ModelSpec,
        max_size: int,
    ) -> RejectionCheck:
        """Judge the posted rejection ``entry`` of submission ``u``, given the audited store's validation ``first``.

        Raises
        ------
        StoreUnavailableError
            The audited store could not be reached (transient; nothing is concluded).
        """
        posted = error_name(entry.reason)
        ev = self.evidence_for(r, u)
        v, where = first, self.market.store.location
        if error_name(v.reason) in AVAILABILITY_ERRORS:
            v, where = self._elsewhere(r, u, spec, max_size, ev, first)
        if v.encrypted and v.reason == NO_KEY_REASON:
            return self._sealed(r, u, posted, entry, ev, spec, max_size, envelope_seen=True)
        mine = error_name(v.reason)
        if mine in AVAILABILITY_ERRORS:
            if ev is not None and ev.encrypted:
                return self._sealed(r, u, posted, entry, ev, spec, max_size, envelope_seen=False)
            stores = ", ".join(s.location for s in (self.market.store, *self.extra_stores))
            return RejectionCheck(
                "unchecked",
                f"rejected for {posted}; the object is unavailable to this audit too ({bounded(v.reason)}; "
                f"looked in {bounded(stores)}{' and the evidence' if ev is not None else ''})",
            )
        if v.vector is not None:
            return RejectionCheck(
                "disproved",
                f"the update is in {bounded(where)} and valid: a false rejection of trainer {u.trainer}",
                v.vector,
            )
        if mine == posted or posted in AVAILABILITY_ERRORS:
            extra = "" if mine == posted else f" (the aggregator said {posted}; the update is invalid anyway)"
            return RejectionCheck("confirmed", f"{bounded(v.reason)}{extra}")
        return RejectionCheck(
            "disproved", f"rejected for {posted}, the audit rejects it for {bounded(v.reason)} (read from {where})"
        )

    def _elsewhere(
        self, r: int, u: SubmittedUpdate, spec: ModelSpec, max_size: int, ev: Evidence | None, first: ValidatedUpdate
    ) -> tuple[ValidatedUpdate, str]:
        """The submission validated from the first extra store (or the evidence) that holds it."""
        candidates: list[tuple[ContentStore, str]] = [(s, s.location) for s in self.extra_stores]
        if ev is not None:
            memory = MemoryStore()
            memory.put_bytes(ev.plaintext)  # found by CID only when the plaintext is the submitted object itself
            candidates.append((memory, f"the evidence {ev.where()}"))
        for store, where in candidates:
            try:
                v = validate_submission(Market(self.market.client, store), u, self.project_id, r, spec, None, max_size)
            except StoreUnavailableError:
                continue  # an extra store being down proves nothing
            if error_name(v.reason) not in AVAILABILITY_ERRORS:
                return v, where
        return first, self.market.store.location

    def _sealed(
        self,
        r: int,
        u: SubmittedUpdate,
        posted: str | None,
        entry: SubmissionEntry,
        ev: Evidence | None,
        spec: ModelSpec,
        max_size: int,
        *,
        envelope_seen: bool,
    ) -> RejectionCheck:
        """A sealed submission whose plaintext was never revealed: only the trainer's evidence can speak."""
        if ev is None:
            return RejectionCheck(
                "unchecked",
                f"sealed and never revealed; the aggregator rejected it ({bounded(entry.reason)}); no evidence from "
                "the trainer (`pocfl audit --evidence FILE`)",
            )
        opened = self.open_evidence(r, u, ev, spec, max_size)
        vector, why = opened.vector, opened.reason
        if not opened.opens:
            return RejectionCheck("unchecked", f"sealed and never revealed; the trainer's evidence is {why}")
        if vector is None:
            self.findings.append(f"evidence {bounded(ev.where())}: confirms the rejection: {why}")
            return RejectionCheck("confirmed", f"the trainer's own plaintext is rejected too: {why}")
        if posted in ENVELOPE_ERRORS or posted is None:
            self.findings.append(
                f"evidence {bounded(ev.where())}: opens the commitment and validates, but the rejection "
                f"({bounded(entry.reason)}) is about the envelope, which only the aggregator's key can open"
            )
            return RejectionCheck(
                "unchecked", "sealed; the trainer's plaintext is valid, but the envelope's contents cannot be checked"
            )
        if not envelope_seen and (posted in AVAILABILITY_ERRORS or posted == "ObjectTooLargeError"):
            self.findings.append(
                f"evidence {bounded(ev.where())}: opens the commitment and validates, but the envelope is "
                "unavailable to this audit too"
            )
            return RejectionCheck("unchecked", "sealed; valid evidence, but the envelope is unavailable here too")
        self.findings.append(
            f"evidence {bounded(ev.where())}: opens the on-chain commitment and validates: disproves the rejection "
            f"of round {r}, trainer {u.trainer}"
        )
        return RejectionCheck(
            "disproved",
            f"trainer {u.trainer}'s evidence opens the on-chain commitment and validates, but the aggregator "
            f"rejected it ({bounded(entry.reason)})",
            vector,
        )

    def open_evidence(self, r: int, u: SubmittedUpdate, ev: Evidence, spec: ModelSpec, max_size: int) -> Opened:
        """The evidence's plaintext checked against ``u``'s on-chain commitment, then decoded.

        Evidence that does not open the commitment is recorded in :attr:`findings` as invalid.
        """
        try:
            self.market.verify_opening(ev.plaintext, u, self.project_id, r)
        except PocflError as exc:
            why = f"invalid evidence: its plaintext does not open the on-chain commitment ({bounded(exc, 160)})"
            self.findings.append(f"evidence {bounded(ev.where())}: {why}")
            return Opened(False, None, why)
        try:
            return Opened(True, decode_update(ev.plaintext, spec, kind="delta", max_size=max_size).vector(), None)
        except PocflError as exc:
            return Opened(True, None, bounded(rejection_reason(exc)))


FEATURE_MISMATCH = "FeatureCommitmentMismatch"
"""Rejection reason of an update that does not match its on-chain ``featureCommitment`` (proven projects)."""


class SubmissionReader:
    """Reads each submission of a posted round as the recomputation uses it, judging its posted status.

    A plaintext update is validated from the audited store; a sealed one through the plaintext the aggregator
    revealed (``plaintext_cid``: its commitment must hold), or the trainer's evidence; a posted rejection the
    audited store alone cannot judge goes to the :class:`RejectionChecker`.

    Parameters
    ----------
    ref, market
        The audited project and marketplace (with its store).
    checker
        Re-checks the posted rejections (extra stores, trainers' evidence).
    strict
        Count a rejection that cannot be checked as a difference.
    out
        Where differences, warnings and unchecked rejections go.
    """

    def __init__(
        self, ref: ProjectRef, market: Market, checker: RejectionChecker, *, strict: bool, out: Findings
    ) -> None:
        self.ref, self.market, self.checker, self.strict, self.out = ref, market, checker, strict, out

    def read(
        self,
        r: int,
        u: SubmittedUpdate,
        entry: SubmissionEntry,
        s: SubmissionAudit,
        spec: ModelSpec,
        max_size: int,
        *,
        proven: bool = False,
    ) -> Vector | None:
        """The update as the recomputation uses it; sets ``s.source`` and ``s.note``, records differences.

        On a proven project a ``FeatureCommitmentMismatch`` rejection is checked later, against the features
        (:func:`pocfl.audit.proofs.proven_flags`), so a valid update rejected for it is returned here without a
        difference.
        """
        v = validate_submission(self.market, u, self.ref.project_id, r, spec, None, max_size)
        vector, reason, encrypted = v.vector, v.reason, v.encrypted
        posted_rejected = entry.status == "rejected"
        posted_name = error_name(entry.reason) if posted_rejected else None
        if encrypted != entry.encrypted and error_name(reason) not in AVAILABILITY_ERRORS:
            self.out.at(r, u).diff(
                "encrypted",
                f"the report says encrypted={quote(entry.encrypted)}, the stored update is "
                f"{'an encryption envelope' if encrypted else 'plaintext'}",
            )
        mine = error_name(reason)
        sealed_unrevealed = encrypted and reason == NO_KEY_REASON and entry.plaintext_cid is None
        if posted_rejected and (sealed_unrevealed or posted_name in AVAILABILITY_ERRORS or mine in AVAILABILITY_ERRORS):
            return self._recheck(r, u, entry, s, v, spec, max_size, proven=proven)
        if sealed_unrevealed:
            return self._sealed_accepted(r, u, s, spec, max_size)
        if encrypted and reason == NO_KEY_REASON:
            assert entry.plaintext_cid is not None
            vector, reason = self._read_revealed(r, u, entry.plaintext_cid, s, spec, max_size)
            if s.source == "unverifiable":
                return None
            mine = error_name(reason)
        if vector is None and mine in AVAILABILITY_ERRORS:
            s.source = "unverifiable"
            s.note = f"cannot be read here ({reason}) but the aggregator accepted it"
            return None
        if vector is None:
            self._rejected_too(r, u, entry, s, reason)
            return None
        if posted_rejected and not (proven and posted_name == FEATURE_MISMATCH):
            self.out.at(r, u).diff(
                "status",
                f"the aggregator rejected trainer {u.trainer}'s update, the audit accepts it: {quote(entry.reason)}",
                posted=entry.reason,
                recomputed="accepted",
            )
        return vector

    def _rejected_too(
        self, r: int, u: SubmittedUpdate, entry: SubmissionEntry, s: SubmissionAudit, reason: str | None
    ) -> None:
        """The audit rejects the update too: a difference unless the aggregator rejected it for the same reason."""
        s.source = "rejected"
        s.note = reason
        posted_name = error_name(entry.reason)
        if entry.status != "rejected":
            self.out.at(r, u).diff(
                "status",
                f"the aggregator accepted the update (status {quote(entry.status)}), the audit rejects it: {reason}",
                posted=entry.status,
                recomputed="rejected",
            )
        elif posted_name != error_name(reason):
            self.out.at(r, u).diff(
                "status",
                f"rejected for {posted_name}, the audit rejects it for {reason}",
                posted=entry.reason,
                recomputed=reason,
            )

    def _recheck(
        self,
        r: int,
        u: SubmittedUpdate,
        entry: SubmissionEntry,
        s: SubmissionAudit,
        first: ValidatedUpdate,
        spec: ModelSpec,
        max_size: int,
        *,
        proven: bool,
    ) -> Vector | None:
        """A rejection the audited store alone cannot judge: see :class:`RejectionChecker`."""
        check = self.checker.check(r, u, entry, first, spec, max_size)
        s.note = check.note
        if proven and error_name(entry.reason) == FEATURE_MISMATCH and check.vector is not None:
            s.source = "plaintext"
            return check.vector  # judged against its featureCommitment by proofs.proven_flags
        if check.verdict == "confirmed":
            s.source = "rejected"
            return None
        if check.verdict == "unchecked":
            s.source = "unchecked"
            self.out.unchecked.append(f"round {r}, submission {u.index} (trainer {u.trainer}): {check.note}")
            if self.strict:
                self.out.diff(
                    r, "unchecked", f"rejection cannot be checked: {check.note}", index=u.index, trainer=u.trainer
                )
            return None
        s.source = "evidence" if first.encrypted or check.vector is None else "plaintext"
        self.out.at(r, u).diff(
            "status",
            f"false rejection: {check.note}",
            posted=entry.reason,
            recomputed="accepted" if check.vector is not None else "rejected",
        )
        return check.vector

    def _sealed_accepted(
        self, r: int, u: SubmittedUpdate, s: SubmissionAudit, spec: ModelSpec, max_size: int
    ) -> Vector | None:
        """A sealed update the aggregator kept but never revealed: recomputable only through trainer evidence."""
        ev = self.checker.evidence_for(r, u)
        if ev is not None:
            opened = self.checker.open_evidence(r, u, ev, spec, max_size)
            if opened.vector is not None:
                s.source, s.note = "evidence", f"sealed, not revealed; read through the evidence {ev.where()}"
                return opened.vector
            self.out.warnings.append(
                f"round {r}, submission {u.index}: evidence {ev.where()} not used: {opened.reason}"
            )
        s.source = "unverifiable"
        s.note = "sealed to the aggregator and its plaintext was not revealed (no plaintext_cid)"
        return None

    def _read_revealed(
        self, r: int, u: SubmittedUpdate, cid: str, s: SubmissionAudit, spec: ModelSpec, max_size: int
    ) -> tuple[Vector | None, str | None]:
        """A sealed update read through the plaintext the aggregator revealed: fetched, commitment checked, decoded.

        Returns the vector or the rejection reason; ``s.source`` becomes ``revealed``, or ``unverifiable`` when the
        plaintext cannot be read.
        """
        try:
            plaintext = self.market.fetch(cid, max_size)
        except StoreUnavailableError:
            raise
        except StoreError as exc:
            s.source = "unverifiable"
            s.note = (
                f"sealed; its revealed plaintext {clip(cid, MAX_CID_BYTES)} cannot be read: {rejection_reason(exc)}"
            )
            return None, None
        s.source = "revealed"
        s.note = f"plaintext {clip(cid, MAX_CID_BYTES)}"  # from the report: an honest CID comes back unchanged
        try:
            verify_commitment(
                plaintext,
                u.commitment,
                chain_id=self.ref.chain_id,
                market=self.ref.market,
                project_id=self.ref.project_id,
                round=r,
                trainer=u.trainer,
            )
            return decode_update(plaintext, spec, kind="delta", max_size=max_size).vector(), None
        except PocflError as exc:
            return None, rejection_reason(exc)
