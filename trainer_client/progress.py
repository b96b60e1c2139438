"""Progress of the trainer client: the reporter it calls, a tqdm one, and a line per settled round."""

from __future__ import annotations

from typing import Any

from trainer_client.results import RoundOutcome, RoundResult


class TrainerReporter:
    """Receives progress from :class:`TrainerClient`; every method does nothing by default."""

    def waiting(self, text: str) -> None:
        """The client is waiting (for the start, the next round, a retry, the aggregator)."""

    def ticking(self, text: str) -> None:
        """The same wait as the last :meth:`waiting` line, with its time left (every poll).

        For a terminal that rewrites one line in place; a log ignores it, as the default does.
        """

    def warning(self, text: str) -> None:
        """Something the trainer must not miss (a round the project moved past without it)."""
        self.waiting(text)

    def training(self, round_: int, epochs: int) -> None:
        """Local training of ``round_`` starts, ``epochs`` epochs."""

    def epoch(self, round_: int, epoch: int, epochs: int, *, loss: float, accuracy: float) -> None:
        """Epoch ``epoch`` (1-based) of ``epochs`` finished; the model's loss and accuracy on the local data."""

    def trained(self, result: RoundResult) -> None:
        """The round was submitted, found already submitted, or skipped."""

    def settled(self, outcome: RoundOutcome) -> None:
        """The round was posted or failed."""


class TqdmReporter(TrainerReporter):
    """Library-friendly progress: a tqdm bar per round's epochs, one line per event on stderr."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._last = ""

    def waiting(self, text: str) -> None:
        """Print ``text`` once per change."""
        if text != self._last:
            self._last = text
            from tqdm import tqdm

            tqdm.write(text)

    def training(self, round_: int, epochs: int) -> None:
        """Open the epoch bar."""
        from tqdm import tqdm

        self._bar = tqdm(total=epochs, desc=f"round {round_}", unit="epoch", leave=False)

    def epoch(self, round_: int, epoch: int, epochs: int, *, loss: float, accuracy: float) -> None:
        """Advance the epoch bar, showing the epoch's loss and accuracy."""
        if self._bar is not None:
            self._bar.set_postfix_str(epoch_metrics(loss, accuracy), refresh=False)
            self._bar.update(1)
            if epoch == epochs:
                self._bar.close()
                self._bar = None

    def trained(self, result: RoundResult) -> None:
        """One line per round result."""
        from tqdm import tqdm

        tqdm.write(f"round {result.round}: {result.message}")

    def settled(self, outcome: RoundOutcome) -> None:
        """One line per settled round."""
        from tqdm import tqdm

        tqdm.write(describe_outcome(outcome))
        if outcome.complaint is not None:
            tqdm.write(f"WARNING: {outcome.complaint}")


def epoch_metrics(loss: float, accuracy: float) -> str:
    """``loss 0.4123, accuracy 88.2%``: an epoch's figures on the local data."""
    return f"loss {loss:.4f}, accuracy {accuracy:.1%}"


def describe_outcome(outcome: RoundOutcome) -> str:
    """One readable line: ``round 2 posted: score 12, not an outlier, +0.25 ETH (project total 0.5 ETH)``.

    A trainer flagged, rejected or paid nothing gets a second line saying why (:attr:`RoundOutcome.why`).
    """
    head = f"round {outcome.round} {outcome.state}"
    if outcome.state != "posted":
        return head + ("" if outcome.state == "cancelled" else " (no results; the round budget stays in escrow)")
    if not outcome.submitted:
        return head + ": this trainer is not in it"
    flag = "OUTLIER" if outcome.outlier else "not an outlier"
    verdict = f" [{outcome.verdict}]" if outcome.verdict not in (None, "scored", "outlier") else ""
    line = (
        f"{head}: score {outcome.score}, {flag}{verdict}, +{_eth(outcome.credited_wei)} ETH "
        f"(project total {_eth(outcome.earned_wei)} ETH, claimable {_eth(outcome.claimable_wei)} ETH)"
    )
    return line if outcome.why is None else f"{line}\n  why: {outcome.why}"


def _eth(wei: int) -> str:
    whole, frac = divmod(wei, 10**18)
    return f"{whole}.{frac:018d}".rstrip("0").rstrip(".")
