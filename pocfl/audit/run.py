"""The audit's orchestration: read the project's history once, run every checker, assemble the result.

:func:`audit_project` builds the :class:`~pocfl.audit.history.ProjectHistory` (one event scan), then runs, in
order: the budget check, the store probe, the manifest and validation set, and for each posted round the event,
credit, proof, report and recomputation checkers; then the escrow and the trainers' ledgers. Each checker returns
its differences; they are concatenated in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pocfl.audit.history import (
    EventSnapshotClient,
    ProjectHistory,
    RoundEvents,
    check_round_events,
    read_history,
)
from pocfl.audit.ledger import check_budget, check_escrow, check_posted_credits, trainer_ledgers
from pocfl.audit.proofs import CircuitCache, check_proof_flag
from pocfl.audit.recompute import RoundRecomputer, Validation
from pocfl.audit.rejections import RejectionChecker
from pocfl.audit.reports import check_report, read_report
from pocfl.audit.result import (
    VALUE_LIMIT,
    AuditResult,
    Findings,
    RoundAudit,
    SubmissionAudit,
    WrongStoreError,
    cap,
    error_text,
    to_hex,
)
from pocfl.chain.types import ProjectStatus
from pocfl.errors import PocflError
from pocfl.manifest import ProjectManifest
from pocfl.market import Market, report_cids
from pocfl.rounds import inputs
from pocfl.rounds.evidence import Evidence
from pocfl.rounds.report import RoundReport, bounded_reason
from pocfl.store import ContentStore, StoreUnavailableError
from pocfl.untrusted import QUOTE_LIMIT, clip, quote

STORE_PROBE_ROUNDS = 20
"""Posted rounds whose model and report are probed to tell a wrong store from a few missing objects."""


def audit_project(
    market: Market,
    project_id: int,
    *,
    validation_file: Path | None = None,
    from_block: int = 0,
    strict: bool = False,
    progress: Callable[[str], None] | None = None,
    extra_stores: Sequence[ContentStore] = (),
    evidence: Sequence[Evidence] = (),
) -> AuditResult:
    """Audit a project: recompute every posted round and compare with the chain.

    Parameters
    ----------
    market
        The marketplace (no signing account needed) and the content store to read artifacts from.
    project_id
        The project.
    validation_file
        The owner's revealed validation set (NPZ), for projects whose manifest has no public recipe; checked
        against the on-chain ``validationSetCommitment`` (and the manifest's validation CID, if any).
    from_block
        First block to search for events (the marketplace's deployment block).
    strict
        Count rounds that cannot be recomputed and rejections that cannot be checked (a sealed update never
        revealed, an unreadable object) as differences instead of warnings.
    progress
        Called with a short text before each slow step.
    extra_stores
        Further stores where the audit looks for rejected updates the main store lacks.
    evidence
        Trainers' evidence (:func:`pocfl.rounds.evidence.load_evidence`): plaintexts that may disprove a rejection.

    Returns
    -------
    AuditResult
        Every round and trainer, and every difference (call :meth:`AuditResult.check` to raise on any).

    Raises
    ------
    ConfigError
        No such project.
    WrongStoreError
        The store holds none of the project's objects (nothing was audited; no report should be written).
    ValidationSetError
        ``validation_file`` is unreadable or does not match the on-chain commitment.
    StoreUnavailableError, ChainError
        The store or the chain could not be reached (transient: nothing was decided).
    """
    snapshot = Market(EventSnapshotClient(market.client, from_block), market.store)
    checker = RejectionChecker(snapshot, project_id, extra_stores, evidence)
    run = _Audit(snapshot, project_id, validation_file, from_block, strict, progress or (lambda _text: None), checker)
    return run.run()


def check_store(history: ProjectHistory) -> None:
    """Refuse a store that holds none of the project's objects: every round would look wrong, none is.

    Raises
    ------
    WrongStoreError
        The store holds none of the project's manifest, posted models and reports.
    """
    store, params = history.market.store, history.state.params
    cids = [params.initial_model_cid]
    for e in history.posted_events[:STORE_PROBE_ROUNDS]:
        cids += [str(e.args["modelCid"]), *report_cids(bytes(e.args["reportHash"]))]
    if not _holds_any(store, cids) and not _fetches(store, cids[0]):
        raise WrongStoreError(
            f"the store at {store.location} has none of project {history.project_id}'s objects (its "
            f"manifest {params.initial_model_cid}, posted models and reports): wrong --ipfs? Nothing was "
            "audited and no report was written"
        )


def _holds_any(store: ContentStore, cids: Sequence[str]) -> bool:
    for cid in cids:
        try:
            if store.has(cid):
                return True
        except StoreUnavailableError:
            raise  # transient: nothing can be concluded
        except PocflError:
            continue  # a malformed CID on chain says nothing about the store
    return False


def _fetches(store: ContentStore, cid: str) -> bool:
    # ``has`` asks a node for its local blocks only; a networked IPFS node may still find the object elsewhere.
    try:
        store.get_bytes(cid, max_size=inputs.MANIFEST_MAX_SIZE)
        return True
    except StoreUnavailableError:
        raise
    except PocflError:
        return False


def finish_round(audit: RoundAudit, mismatch: bool, why: str | None) -> list[str]:
    """Set a posted round's verdict; returns the warnings it gives.

    ``mismatch``: whether the round's checks found a difference; ``why``: why it was not recomputed (None: it was).
    """
    warnings: list[str] = []
    why = None if why is None else cap(why)
    if mismatch:
        audit.verdict = "mismatch"
    elif why is None and any(s.source == "unchecked" for s in audit.submissions):
        audit.verdict = "unchecked"  # recomputed and equal, but some rejections could not be checked
    elif why is not None:
        audit.verdict = "unverifiable"
        audit.unverifiable = why
        warnings.append(cap(f"round {audit.round}: not recomputed: {why}"))
    if why is not None:
        audit.notes.append(cap(f"not recomputed: {why}"))
        for s in audit.submissions:  # expected = posted where nothing could be recomputed
            s.expected_wei = s.credited_wei
    return warnings


class _Audit:
    """One audit run (see :func:`audit_project`): the checkers' findings, in order."""

    def __init__(
        self,
        market: Market,
        project_id: int,
        validation_file: Path | None,
        from_block: int,
        strict: bool,
        progress: Callable[[str], None],
        checker: RejectionChecker,
    ) -> None:
        self.market = market
        self.project_id = project_id
        self.validation_file = validation_file
        self.from_block = from_block
        self.strict = strict
        self.progress = progress
        self.checker = checker  # re-checks posted rejections (extra stores, trainers' evidence)
        self.found = Findings(project_id)
        self.circuits = CircuitCache()

    def run(self) -> AuditResult:
        """Build the history, run every checker, assemble the result."""
        self.progress(f"reading project {self.project_id}'s events")
        history = read_history(self.market, self.project_id, self.from_block)
        result = _empty_result(history)
        self.found.extend(check_budget(history))
        check_store(history)
        manifest, validation = self._inputs(history, result)
        recomputer = None
        if manifest is not None and validation is not None:
            recomputer = RoundRecomputer(history, manifest, validation, self.checker, self.circuits, strict=self.strict)
        for events in history.rounds:
            audit = self._round(history, events, recomputer)
            if audit.verdict == "unverifiable" and self.strict:
                self.found.diff(audit.round, "unverifiable", f"cannot be recomputed: {audit.unverifiable}")
            result.rounds.append(audit)

        self.progress("reconciling credits, claims and escrow")
        result.withdrawn_wei = history.withdrawn_wei
        self.found.extend(check_escrow(history, result.rounds))
        result.trainers, differences = trainer_ledgers(history, result.rounds)
        self.found.extend(differences)
        result.differences = self.found.differences
        result.warnings = self.found.warnings
        result.unchecked = self.found.unchecked
        result.evidence = self.checker.findings + self.checker.unused()
        return result

    def _inputs(self, history: ProjectHistory, result: AuditResult) -> tuple[ProjectManifest | None, Validation | None]:
        """The manifest and the validation set (None, with a difference or a warning, when unavailable)."""
        params = history.state.params
        try:
            manifest = inputs.load_manifest(self.market, history.state)
            result.manifest_name = clip(manifest.name, VALUE_LIMIT)  # the owner's text
        except PocflError as exc:
            self.found.diff(
                None, "manifest", f"manifest {params.initial_model_cid}: {type(exc).__name__}: {error_text(exc)}"
            )
            return None, None
        self.progress("loading the validation set")
        try:
            validation = inputs.load_validation(
                manifest, self.market, self.validation_file, commitment=params.validation_set_commitment
            )
        except PocflError as exc:
            if self.validation_file is not None:
                raise  # the auditor's own file is wrong: say so rather than audit without it
            self.found.warnings.append(
                f"no validation set, rounds cannot be recomputed: {type(exc).__name__}: {error_text(exc)}"
            )
            return manifest, None
        result.validation = (
            f"file {self.validation_file}"
            if self.validation_file is not None
            else (
                f"recipe {quote(manifest.validation.recipe)}"
                if manifest.validation.recipe is not None
                else f"cid {quote(manifest.validation.cid)}"
            )
        )
        return manifest, validation

    def _round(self, history: ProjectHistory, events: RoundEvents, recomputer: RoundRecomputer | None) -> RoundAudit:
        r, state = events.round, history.state
        if events.posted is not None:
            self.progress(f"round {r}: checking and recomputing {len(events.submissions)} submissions")
            return self._posted_round(history, events, recomputer)
        if events.failed:
            if events.credited:
                self.found.diff(r, "credit", "the round failed but TrainerCredited events exist for it")
            return RoundAudit(r, "failed", "failed", notes=["the aggregator missed its window: nobody credited"])
        if state.status is ProjectStatus.ACTIVE and r == state.current_round:
            notes = [f"{len(events.submissions)} submissions so far; not settled yet"]
            return RoundAudit(r, "open", "open", notes=notes)
        if state.status is ProjectStatus.ACTIVE and r > state.current_round:
            return RoundAudit(r, "future", "future")
        return RoundAudit(r, "not played", "not played")

    def _posted_round(
        self, history: ProjectHistory, events: RoundEvents, recomputer: RoundRecomputer | None
    ) -> RoundAudit:
        """Every check of a posted round, then its verdict."""
        r, subs, posted = events.round, events.submissions, events.posted
        assert posted is not None
        args = posted.args
        audit = RoundAudit(
            round=r,
            state="posted",
            verdict="verified",
            proven=bool(args["proven"]),
            model_cid=str(args["modelCid"]),
            report_hash=to_hex(args["reportHash"]),
            hyperparams_hash=to_hex(args["hyperparamsHash"]),
            credited_wei=int(args["credited"]),
            unallocated_wei=int(args["unallocated"]),
        )
        audit.submissions = [SubmissionAudit(u.index, u.trainer, u.cid, to_hex(u.commitment)) for u in subs]
        # the submissions digest, as the contract folds it
        digest = inputs.submissions_digest(history.chain_id, history.address, history.project_id, r, subs)
        audit.submissions_digest = to_hex(digest)
        found = Findings(history.project_id)
        found.extend(check_round_events(history, r, digest))
        found.extend(check_posted_credits(history, r, audit))
        found.extend(check_proof_flag(history, r, audit))
        report, differences = read_report(self.market, history.project_id, r, posted, audit)
        found.extend(differences)
        why = self._check_posted(history, events, report, audit, digest, recomputer, found)
        found.warnings += finish_round(audit, bool(found.differences), why)
        self.found.extend(found)
        return audit

    def _check_posted(
        self,
        history: ProjectHistory,
        events: RoundEvents,
        report: RoundReport | None,
        audit: RoundAudit,
        digest: bytes,
        recomputer: RoundRecomputer | None,
        found: Findings,
    ) -> str | None:
        """The report's checks and the recomputation; returns why the round was not recomputed (None: it was)."""
        if report is None:
            return "no verified report"
        r, subs = events.round, events.submissions
        found.extend(check_report(history.ref, r, report, audit, subs, digest))
        audit.accuracy_before, audit.accuracy, audit.loss = report.accuracy_before, report.accuracy, report.loss
        audit.shapley_method = report.shapley_method  # as reported, until recomputed
        for s, entry in zip(audit.submissions, report.submissions, strict=False):
            # Kept for the audit's JSON and tables: bounded like the report's own honest fields.
            s.report_status = clip(entry.status, QUOTE_LIMIT)
            s.report_reason = None if entry.reason is None else bounded_reason(entry.reason)
        if len(report.submissions) != len(subs):
            return "the report's submissions differ from the chain's"
        if recomputer is None:
            return "no manifest or validation set"
        why, recomputed = recomputer.recompute(r, report, audit, digest)
        found.extend(recomputed)
        return why


def _empty_result(history: ProjectHistory) -> AuditResult:
    """The project's facts, before any round is checked."""
    state, params = history.state, history.state.params
    return AuditResult(
        project_id=history.project_id,
        chain_id=history.chain_id,
        market=history.address,
        owner=state.owner,
        aggregator=params.aggregator,
        verifier=params.verifier,
        status=state.status.name.lower(),
        budget=state.budget,
        round_budget=state.round_budget,
        num_rounds=params.num_rounds,
        escrow=state.escrow,
        manifest_cid=params.initial_model_cid,
        proofs="none" if int(params.verifier, 16) == 0 else "verifier",
        store=history.market.store.location,
    )
