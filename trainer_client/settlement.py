"""How a submitted round ended for the trainer: its posted score, flag and credit, and its own check of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pocfl.chain.types import EventRecord, ProjectState, ProjectStatus
from pocfl.errors import PocflError
from pocfl.manifest import ProjectManifest
from pocfl.rounds.inputs import PostedRound, posted_report
from pocfl.rounds.report import explain_entry
from pocfl.testing.attacks import Attack
from trainer_client.results import RoundOutcome, RoundResult
from trainer_client.self_check import PlaintextKeeper, check_treatment
from trainer_client.view import ProjectView


class Settlement:
    """Reads a round's settlement for one trainer and checks its treatment (:mod:`trainer_client.self_check`).

    Parameters
    ----------
    view
        Reads the round's events and report.
    attack
        The trainer's attack (demo attackers do not check their treatment).
    manifest
        The project manifest (read lazily: the update size limit of kept plaintexts).
    evidence_dir
        Where complaints save their evidence; None keeps no plaintexts and no evidence.
    """

    def __init__(
        self,
        view: ProjectView,
        attack: Attack | None,
        manifest: Callable[[], ProjectManifest],
        evidence_dir: Path | None,
    ) -> None:
        self.view, self.attack, self.manifest, self.evidence_dir = view, attack, manifest, evidence_dir
        self.keeper: PlaintextKeeper | None = None
        if evidence_dir is not None:
            self.keeper = PlaintextKeeper(evidence_dir / "pending", view.market, view.project_id)

    def _posted(self, round_: int) -> list[EventRecord]:
        return self.view.events("read the round's results", "RoundPosted", round=round_)

    def outcome(self, round_: int, state: ProjectState) -> RoundOutcome | None:
        """How ``round_`` ended for this trainer; None while it is still open or aggregating."""
        view = self.view
        if state.status == ProjectStatus.ACTIVE and state.current_round <= round_:
            return None
        posted = self._posted(round_)
        credited_events = view.credited()
        earned = sum(int(e.args["amount"]) for e in credited_events)
        claimable = view.retry("read credits", lambda: view.market.client.credits(view.address))
        mine = [e for e in credited_events if int(e.args["round"]) == round_]
        if not posted:
            failed = view.events("read the round's results", "RoundFailed", round=round_)
            return RoundOutcome(
                project_id=view.project_id,
                round=round_,
                trainer=view.address,
                state="failed" if failed else "cancelled",
                submitted=view.submission(round_) is not None,
                earned_wei=earned,
                claimable_wei=claimable,
            )
        event = posted[0]
        verdict, reason, accuracy, why = self.report_entry(event)
        return RoundOutcome(
            project_id=view.project_id,
            round=round_,
            trainer=view.address,
            state="posted",
            submitted=bool(mine),
            score=int(mine[0].args["score"]) if mine else None,
            outlier=bool(mine[0].args["outlier"]) if mine else None,
            credited_wei=sum(int(e.args["amount"]) for e in mine),
            earned_wei=earned,
            claimable_wei=claimable,
            model_cid=str(event.args["modelCid"]),
            verdict=verdict,
            reason=reason,
            accuracy=accuracy,
            why=why,
        )

    def check_treatment(self, result: RoundResult, outcome: RoundOutcome) -> RoundOutcome:
        """``outcome`` with this trainer's own check of a posted round (see :mod:`trainer_client.self_check`).

        Skipped for demo attackers (they know why they were flagged) and for rounds without a known submission.
        """
        if outcome.state != "posted" or self.attack is not None or result.cid is None or result.commitment is None:
            return outcome
        cid, commitment = result.cid, result.commitment
        plaintext = result.plaintext
        if plaintext is None and self.keeper is not None:
            plaintext = self.keeper.kept(result.round, commitment, self.manifest().max_update_size)
        events = self._posted(result.round)
        if not events:
            return outcome
        found = check_treatment(
            self.view.market,
            self.view.project_id,
            result.round,
            events[0],
            cid=cid,
            commitment=commitment,
            encrypted=result.encrypted,
            plaintext=plaintext,
            evidence_dir=self.evidence_dir,
        )
        if self.keeper is not None:
            self.keeper.forget(result.round)
        evidence = None if found.evidence is None else str(found.evidence)
        return replace(outcome, complaint=found.complaint, evidence=evidence)

    def earned(self) -> int:
        """Wei credited to this trainer in the project so far (all posted rounds)."""
        return sum(int(e.args["amount"]) for e in self.view.credited())

    def report_entry(self, event: EventRecord) -> tuple[str | None, str | None, float | None, str | None]:
        """The trainer's status, reason, the report's accuracy and why (:func:`~pocfl.rounds.report.explain_entry`).

        ``why`` says why the trainer was flagged, rejected or paid nothing; None when it was scored above 0.
        """
        posted = PostedRound.from_event(event)
        try:
            _, report = self.view.retry("fetch the round report", lambda: posted_report(self.view.market, posted))
        except PocflError:
            return None, None, None, None
        for entry in report.submissions:
            if entry.trainer.lower() == self.view.address.lower():
                return entry.status, entry.reason, report.accuracy, explain_entry(entry, report.config)
        return None, None, report.accuracy, None
