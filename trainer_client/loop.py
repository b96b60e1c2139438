"""The trainer's loop over rounds: wait for a round to open, take part, wait for its settlement, report it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pocfl.chain.types import ProjectState, ProjectStatus
from pocfl.manifest import ProjectManifest
from pocfl.waiting import Backoff, clock_lag_hint, hhmmss, is_transient, outage_line
from trainer_client.progress import TrainerReporter
from trainer_client.results import NotATrainerError, RoundOutcome, RoundResult, RoundSummary, TrainerError
from trainer_client.view import ProjectView


class Participant(Protocol):
    """What the loop asks of a trainer (:class:`trainer_client.client.TrainerClient`)."""

    def manifest(self) -> ProjectManifest:
        """The project manifest, after checking the data fits it."""
        ...

    def project(self) -> ProjectState:
        """The project's live state."""
        ...

    def now(self) -> int:
        """The chain's time."""
        ...

    def train_round(self, round_: int) -> RoundResult:
        """Take part in ``round_``."""
        ...

    def outcome(self, round_: int, state: ProjectState | None = None) -> RoundOutcome | None:
        """How ``round_`` ended; None while it is open."""
        ...

    def check_treatment(self, result: RoundResult, outcome: RoundOutcome) -> RoundOutcome:
        """``outcome`` with the trainer's own check of it."""
        ...

    def history(self, state: ProjectState) -> list[RoundSummary]:
        """The rounds this trainer submitted, from the chain, each with how it ended."""
        ...


@dataclass
class LoopState:
    """What the loop carries from one look at the project to the next."""

    rounds: int | None
    summaries: list[RoundSummary] = field(default_factory=list)
    handled: set[int] = field(default_factory=set)
    pending: RoundResult | None = None
    submitted: int = 0
    expected: int | None = None  # the next round this trainer expects to take part in
    registered: bool = False  # seen registered (once seen, not read again)
    countdown: tuple[str, int, int] | None = None  # a wait for a known time: (its stable line, the time, now)
    told_unregistered: bool = False


class RoundLoop:
    """Takes part in a project round after round (see :meth:`trainer_client.client.TrainerClient.run`).

    Parameters
    ----------
    trainer
        The trainer taking part.
    view
        The chain as the trainer sees it: its ``sleep``, status line and first backoff serve the loop too.
    reporter
        Told about each event.
    """

    def __init__(self, trainer: Participant, view: ProjectView, reporter: TrainerReporter) -> None:
        self.trainer, self.view, self.reporter = trainer, view, reporter
        self.project_id = view.project_id

    def run(self, rounds: int | None, poll: float, max_wait: float | None) -> list[RoundSummary]:
        """One summary per round handled, in order, until the project ends or ``rounds`` were submitted."""
        if rounds is not None and rounds < 1:
            raise TrainerError(f"rounds must be >= 1, got {rounds}")
        loop = LoopState(rounds)
        status = self.view.status
        first = max(self.view.backoff, 0.1)
        backoff = Backoff(first, cap=max(poll, first))  # capped at the poll: an outage's end is seen within one
        waited = 0.0
        while True:
            try:
                step, text = self.step(loop)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                status(*outage_line(exc))
                self.view.sleep(backoff.next())
                continue
            if status.key is not None and status.key.startswith("outage"):
                status("recovered", "the outage is over; carrying on")
            backoff.reset()
            if step == "done":
                return loop.summaries
            if step == "progress":
                status.clear()
                waited = 0.0
                continue
            # one line per state awaited, whatever its numbers (the clock-lag hint's grows each poll); the time
            # left ticks on a terminal only (TrainerReporter.ticking), in place
            countdown = loop.countdown
            status(text if countdown is None else countdown[0], text)
            if countdown is not None:
                key, target, now = countdown
                self.reporter.ticking(f"{key.removesuffix(' (lagging)')} (in {max(target - now, 0)} s)")
            if max_wait is not None and waited >= max_wait:
                raise TrainerError(f"nothing happened in project {self.project_id} for {waited:.0f} s; giving up")
            self.view.sleep(poll)
            waited += poll

    def step(self, loop: LoopState) -> tuple[str, str]:
        """One look at the project: ``("done", "")``, ``("progress", "")`` or ``("wait", what is awaited)``."""
        trainer = self.trainer
        loop.countdown = None
        trainer.manifest()  # fail early on a bad manifest or data that does not fit the model
        state = trainer.project()
        if loop.pending is not None:
            return self._settle(loop, loop.pending, state)
        if state.status != ProjectStatus.ACTIVE:
            ended = f"project {self.project_id} is {state.status.name.lower()}"
            if not loop.summaries and not loop.handled:  # it ended before this run looked: show what it did
                loop.summaries = trainer.history(state)
                ended += f"; this trainer submitted {len(loop.summaries)} round(s) in it"
            self.reporter.waiting(ended)
            return "done", ""
        now, r = trainer.now(), state.current_round
        if loop.expected is None:
            loop.expected = r
        waiting = self._not_open(state, now, r, loop)
        if waiting is not None:
            return "wait", waiting
        if r > loop.expected:
            missed = f"round {loop.expected}" if r == loop.expected + 1 else f"rounds {loop.expected}..{r - 1}"
            self.reporter.warning(
                f"WARNING: project {self.project_id} is at round {r}: {missed} passed without this trainer "
                "(nothing was submitted for it)"
            )
        result = trainer.train_round(r)
        loop.handled.add(r)
        loop.expected = r + 1
        self.reporter.trained(result)
        if result.submitted:
            loop.submitted += 1
            loop.pending = result
        else:
            loop.summaries.append(RoundSummary(result, None))
        return "progress", ""

    def _settle(self, loop: LoopState, pending: RoundResult, state: ProjectState) -> tuple[str, str]:
        """Report the pending round once settled."""
        outcome = self.trainer.outcome(pending.round, state)
        if outcome is None:
            return "wait", f"round {pending.round}: waiting for the aggregator to post the results"
        outcome = self.trainer.check_treatment(pending, outcome)
        self.reporter.settled(outcome)
        loop.summaries.append(RoundSummary(pending, outcome))
        loop.pending = None
        return ("done" if loop.rounds is not None and loop.submitted >= loop.rounds else "progress"), ""

    def _check_registered(self, loop: LoopState, start: int) -> None:
        """Tell an unregistered trainer at once, while it can still register (not at the start, when it cannot).

        It keeps waiting: registering from another terminal before the start is enough. After the start the
        round's submission refuses it (:class:`~trainer_client.results.NotATrainerError`).
        """
        if loop.registered:
            return
        loop.registered = self.view.registered()
        if not loop.registered and not loop.told_unregistered:
            loop.told_unregistered = True
            self.reporter.warning(
                f"WARNING: {self.view.address} is not registered in project {self.project_id}: run "
                f"`pocfl register {self.project_id}` before its start at {hhmmss(start)} (registration closes then)"
            )

    def _not_open(self, state: ProjectState, now: int, r: int, loop: LoopState) -> str | None:
        """What round ``r`` waits for before this trainer can take part; None when it can now."""
        if now < state.params.start_time:
            start = state.params.start_time
            self._check_registered(loop, start)
            line = f"project {self.project_id} starts at {hhmmss(start)} by the chain's clock"
            hint = clock_lag_hint(now)
            loop.countdown = (line + (" (lagging)" if hint else ""), start, now)  # a new line when the hint appears
            return line + hint
        if not loop.registered:  # registration closed at the start: waiting cannot help an unregistered account
            loop.registered = self.view.registered()
            if not loop.registered:
                raise NotATrainerError(
                    f"{self.view.address} is not registered in project {self.project_id}, and registration closed "
                    f"at its start ({hhmmss(state.params.start_time)}): this account cannot take part in it"
                )
        if state.trainer_count < state.params.min_trainers:
            return (
                f"project {self.project_id}: {state.trainer_count} of {state.params.min_trainers} trainers "
                "registered; waiting for more (or a cancellation)"
            )
        if r in loop.handled:
            return f"waiting for round {r + 1} to open"
        return None
