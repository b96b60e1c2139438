"""``pocfl train``: take part in a project as a trainer, round after round (:class:`trainer_client.TrainerClient`).

The same code path as the Flower ClientApp: each round's update is trained on the local data, stored in the
content store (``--ipfs``), and its CID and commitment are submitted on chain; then the command waits for the
aggregator's results and prints the trainer's score, outlier flag and credit. Interrupted and restarted, it never
submits a round twice (the chain and the journal in the state folder are checked first).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, TaskID
from rich.table import Table

from pocfl.cli import args
from pocfl.cli.args import ProjectArg, ProjectOptAlias
from pocfl.cli.common import option, progress_bars
from pocfl.cli.output import Output, eth, guarded, short
from pocfl.cli.session import (
    Session,
    connected,
)

if TYPE_CHECKING:
    from trainer_client.client import RoundOutcome, RoundResult, RoundSummary, TrainerReporter


def _reporter(out: Output, progress: Progress | None, rounds_task: TaskID | None) -> TrainerReporter:
    """A reporter that drives the progress bars (on a terminal) or writes one note per event (elsewhere)."""
    from trainer_client.client import RoundStatus, TrainerReporter, describe_outcome
    from trainer_client.progress import epoch_metrics

    class RichReporter(TrainerReporter):
        def __init__(self) -> None:
            self.epochs: TaskID | None = None
            self.last = ""

        def _line(self, text: str) -> None:
            if progress is not None:
                progress.console.print(escape(text), soft_wrap=True, highlight=False)
            else:
                out.note(text)

        def waiting(self, text: str) -> None:
            if text == self.last:
                return
            self.last = text
            if progress is not None and rounds_task is not None:
                progress.update(rounds_task, description=escape(text))
            else:
                out.note(text)

        def ticking(self, text: str) -> None:
            if progress is not None and rounds_task is not None:  # a terminal: the countdown in place
                progress.update(rounds_task, description=escape(text))

        def warning(self, text: str) -> None:
            self.last = ""
            out.warn(text.removeprefix("WARNING: "))

        def training(self, round_: int, epochs: int) -> None:
            self.last = ""
            if progress is None:
                out.note(f"round {round_}: training {epochs} local epoch(s)")
                return
            if rounds_task is not None:
                progress.update(rounds_task, description=f"round {round_}: training")
            if self.epochs is not None:
                progress.remove_task(self.epochs)
            self.epochs = progress.add_task(f"round {round_} local epochs", total=epochs)

        def epoch(self, round_: int, epoch: int, epochs: int, *, loss: float, accuracy: float) -> None:
            figures = epoch_metrics(loss, accuracy)
            if progress is None:
                out.note(f"round {round_}: epoch {epoch}/{epochs}: {figures}")
            elif self.epochs is not None:
                progress.update(self.epochs, completed=epoch, description=f"round {round_} local epochs ({figures})")
                if epoch == epochs:
                    self._line(f"round {round_}: trained {epochs} local epoch(s): {figures}")
                    progress.remove_task(self.epochs)
                    self.epochs = None

        def trained(self, result: RoundResult) -> None:
            self._line(f"round {result.round}: {result.message}")
            if result.status is RoundStatus.LATE and progress is not None and rounds_task is not None:
                progress.advance(rounds_task)

        def settled(self, outcome: RoundOutcome) -> None:
            self._line(describe_outcome(outcome))
            if outcome.complaint is not None:
                self._line(f"WARNING: {outcome.complaint}")
            if progress is not None and rounds_task is not None:
                progress.advance(rounds_task)

    return RichReporter()


def _summary_table(summaries: list[RoundSummary]) -> Table:
    table = Table(title="Rounds", title_justify="left")
    for name in ("round", "submission", "CID", "score", "outlier", "verdict", "credit (ETH)"):
        table.add_column(name, justify="right" if name in ("round", "score", "credit (ETH)") else "left")
    for s in summaries:
        r, o = s.result, s.outcome
        outlier = "" if o is None or o.outlier is None else ("yes" if o.outlier else "no")
        table.add_row(
            str(r.round),
            r.status.value.replace("_", " ") + ("" if r.attack is None else f" ({r.attack})"),
            short(r.cid) if r.cid and len(r.cid) > 20 else (r.cid or ""),
            "" if o is None or o.score is None else str(o.score),
            outlier,
            "" if o is None else escape(o.verdict or o.state),
            "" if o is None else eth(o.credited_wei),
        )
    return table


DataOpt = Annotated[
    str,
    option(
        "--data",
        metavar="PATH|SPEC",
        help="Private training data: a .csv (header row; see --label-column), a .npz (arrays X, y), an image "
        "folder (root/<class>/<image>), or a demo share 'digits:part=I:of=N[:alpha=A][:seed=S]'.",
        show_default=True,
    ),
]
RoundsOpt = Annotated[
    int | None,
    option("--rounds", min=1, metavar="N", help="Stop after N submitted rounds. Default: until the project ends."),
]
AttackOpt = Annotated[
    str | None,
    option(
        "--attack",
        metavar="NAME",
        help="Demo/benchmark attacker: sign_flip, scaling, gaussian, free_rider, label_flip or copycat.",
    ),
]
LabelColumnOpt = Annotated[
    str | None,
    option(
        "--label-column",
        metavar="NAME|INDEX",
        help="CSV label column. Default: 'label' if present, else the last column.",
    ),
]
PollOpt = Annotated[
    float,
    option("--poll", min=0.05, metavar="SECONDS", help="Seconds between looks at the chain.", show_default=True),
]
MaxWaitOpt = Annotated[
    float | None,
    option(
        "--max-wait",
        min=1,
        metavar="SECONDS",
        help="Give up when nothing happens for this long (e.g. the aggregator is gone). Default: wait forever.",
    ),
]
StateDirOpt = Annotated[
    Path | None,
    option("--state-dir", metavar="DIR", help="Folder of the submission journal. Default: $POCFL_HOME, else ./.pocfl."),
]


@guarded
@connected(store=True, deadline=True)
def train(
    data: DataOpt,
    project: ProjectArg = None,
    rounds: RoundsOpt = None,
    attack: AttackOpt = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of local training (with the round number).")] = 0,
    label_column: LabelColumnOpt = None,
    poll: PollOpt = 5.0,
    max_wait: MaxWaitOpt = None,
    state_dir: StateDirOpt = None,
    project_alias: ProjectOptAlias = None,
    *,
    s: Session,
) -> None:
    """Train on your private data and submit an update every round until the project ends.

    Each round: fetch the global model by CID (verified), train locally, store the update (sealed to the
    aggregator when the project's manifest names a key) and submit its CID and commitment on chain before the
    deadline; then wait for the aggregator's results and print your score, outlier flag and credit. Safe to
    interrupt and rerun: a round is never submitted twice, and a round whose window closed is skipped.
    """
    from pocfl.deployment import state_dir as default_state_dir
    from trainer_client.setup import prepare_trainer, training_result

    project_id = args.project_id(project, project_alias)
    # started during an outage, wait for the chain and the store instead of exiting (the loop does the same)
    prepared = prepare_trainer(
        s.store_market, project_id, data, label_column=label_column, attack=attack, rounds=rounds, say=s.out.note
    )
    s.out.note(prepared.describe())
    progress = _progress(s.out)
    rounds_task = progress.add_task("starting", total=prepared.rounds) if progress is not None else None
    client = prepared.start(
        seed=seed,
        state_dir=state_dir or default_state_dir(),
        reporter=_reporter(s.out, progress, rounds_task),
        from_block=s.from_block,
        say=s.out.note,
    )
    try:
        with progress or nullcontext():
            summaries = client.run(rounds, poll=poll, max_wait=max_wait)
    except KeyboardInterrupt:
        s.out.warn("interrupted; run the same command again to resume (no round is submitted twice)")
        raise typer.Exit(130) from None
    result = training_result(client, summaries, say=s.out.note)

    def human() -> None:
        s.out.table(_summary_table(summaries))
        for summary in summaries:  # the reasons under the table too: a rerun after the end printed no round lines
            if summary.outcome is not None and summary.outcome.why is not None:
                s.out.print(f"round {summary.result.round}: {escape(summary.outcome.why)}")
        s.out.print(
            f"Project {project_id} is {result.project_status}. Earned {eth(result.earned)} ETH here; "
            f"{eth(result.claimable)} ETH claimable in all (withdraw with `pocfl claim`)."
        )

    s.out.result(result.to_json(), human)


def _progress(out: Output) -> Progress | None:
    """Progress bars on a terminal's stderr; None elsewhere (one note per event instead)."""
    if not out.err.is_terminal:
        return None
    return progress_bars(out, transient=False, redirect_stdout=False, redirect_stderr=False)
