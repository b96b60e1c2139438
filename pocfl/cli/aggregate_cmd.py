"""``pocfl aggregate``: run the aggregator node of a project (standalone, without Flower).

After each round's submission window the node fetches and validates every submitted update, filters outliers,
scores contributions, stores the new global model and the round report, and posts the round. It keeps a journal in
``--state-dir`` so that, killed at any point and restarted, it finishes the round without posting twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pocfl.cli import args
from pocfl.cli.args import ProjectArg, ProjectOptAlias
from pocfl.cli.common import option, progress_bars
from pocfl.cli.output import Output, eth, guarded, short
from pocfl.cli.session import (
    Session,
    chain_now,
    connected,
)
from pocfl.errors import ConfigError
from pocfl.untrusted import clip
from pocfl.waiting import start_when_up

if TYPE_CHECKING:
    from aggregator.node import RoundOutcome


RoundsOpt = Annotated[
    int | None, option("--rounds", min=1, metavar="N", help="Handle N rounds, then stop. Default: one.")
]
FollowOpt = Annotated[
    bool, typer.Option("--follow", help="Keep posting rounds until the project is finished or cancelled.")
]
DecryptKeyOpt = Annotated[
    Path | None,
    option(
        "--decrypt-key",
        metavar="FILE",
        help="The aggregator's encryption key file (updates sealed to it are rejected without it).",
    ),
]
ValidationOpt = Annotated[
    Path | None,
    option(
        "--validation",
        metavar="FILE",
        help="The revealed validation set (NPZ with X and y), when the manifest names one by CID.",
    ),
]
StateDirOpt = Annotated[
    Path | None,
    option("--state-dir", metavar="DIR", help="Where the node journals its progress. Default: <state dir>/aggregator."),
]
ZkCacheOpt = Annotated[
    Path | None,
    option(
        "--zk-cache",
        metavar="DIR",
        help="Circuit setups of proven projects (what `pocfl deploy --with-verifier` built; the same keys as the "
        "deployed verifier). Default: <state dir>/zk.",
    ),
]
PollOpt = Annotated[float, typer.Option("--poll", min=0.1, metavar="SECONDS", help="Seconds between chain checks.")]
FailOverdueOpt = Annotated[
    bool,
    typer.Option("--fail-overdue/--no-fail-overdue", help="Fail a round whose aggregation window closed unposted."),
]


@guarded
@connected(store=True, deadline=True)
def aggregate(
    project: ProjectArg = None,
    rounds: RoundsOpt = None,
    follow: FollowOpt = False,
    decrypt_key: DecryptKeyOpt = None,
    validation: ValidationOpt = None,
    state_dir: StateDirOpt = None,
    zk_cache: ZkCacheOpt = None,
    poll: PollOpt = 5.0,
    fail_overdue: FailOverdueOpt = True,
    project_alias: ProjectOptAlias = None,
    *,
    s: Session,
) -> None:
    """Aggregator: post a project's rounds (validate updates, score, aggregate, store, post).

    Waits for the current round's submission window to close. Without --rounds or --follow it handles one round.
    """
    from aggregator.setup import NodeOptions, connect_aggregator, load_circuit, missing_key_warning, start_node
    from pocfl.deployment import state_dir as pocfl_home
    from pocfl.updates import EncryptionKeyPair

    project = args.project_id(project, project_alias)
    if follow and rounds is not None:
        raise ConfigError("give --rounds N or --follow, not both")
    keypair = EncryptionKeyPair.load(decrypt_key) if decrypt_key is not None else None
    options = NodeOptions(keypair, state_dir or pocfl_home() / "aggregator", validation, poll)
    # started during an outage, wait for the chain and the store instead of exiting (--follow does the same)
    sm = connect_aggregator(s.store_market, project, say=s.out.note)
    zk_setup = load_circuit(sm, project, zk_cache, loading=s.out.status, say=s.out.note)
    with _progress(s.out) as progress:
        node = start_node(
            sm,
            project,
            options,
            from_block=s.from_block,
            clock=lambda: chain_now(s.chain()),
            progress=progress,
            zk_setup=zk_setup,
            say=s.out.note,
        )
        warning = missing_key_warning(node)
        if warning is not None:
            s.out.warn(warning)

        def done(outcome: RoundOutcome) -> None:
            if not s.out.as_json:
                _print_outcome(s.out, outcome)

        outcomes = node.follow(until_finished=follow, rounds=rounds, fail_overdue=fail_overdue, on_round=done)
    if not outcomes:
        state = start_when_up("read the project", node.state, say=s.out.note)
        s.out.note(f"project {project} is {state.status.name.lower()}: no round to post")
    if s.out.as_json:
        s.out.json({"project_id": project, "rounds": [o.to_json() for o in outcomes]})


class _ProgressSink:
    """Turns the node's progress calls into a rich progress bar (stderr), or plain notes off a terminal."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.live = out.err.is_terminal
        self.bar = progress_bars(out, spinner=True, transient=True, disable=not self.live)
        self.task = self.bar.add_task("starting", total=None)
        self.last = ""

    def __call__(self, message: str, done: int, total: int) -> None:
        self.bar.update(self.task, description=escape(message), completed=done, total=total or None)
        step = message.split(" (")[0]  # without the changing counters
        if not self.live and step != self.last:
            self.out.note(message)
        self.last = step

    def __enter__(self) -> _ProgressSink:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)


def _progress(out: Output) -> _ProgressSink:
    return _ProgressSink(out)


def _print_outcome(out: Output, o: RoundOutcome) -> None:
    if o.report is None:
        out.print(f"[bold]Round {o.round}[/bold]: {o.status.replace('_', ' ')}.")
        return
    r = o.report
    verb = {"posted": "posted", "already_posted": "already posted"}.get(o.status, o.status)
    resumed = " (resumed)" if o.resumed else ""
    credited = f", {eth(o.credited)} ETH credited" if o.credited is not None else ""
    out.print(
        f"[bold]Round {o.round}[/bold] {verb}{resumed}: accuracy {r.accuracy_before:.3f} -> {r.accuracy:.3f}, "
        f"{len(r.submissions)} submission(s){credited}; tx {o.tx_hash}"
    )
    out.print(f"  model {escape(r.model_out)}  report {escape(o.report_cid or '')}")
    proof = r.config.get("proof") if isinstance(r.config, dict) else None
    if isinstance(proof, dict):
        out.print(
            f"  proven: proof {escape(str(proof.get('cid')))} (circuit {escape(str(proof.get('circuit')))}, "
            f"{proof.get('prove_seconds')} s); the contract verified it"
        )
    table = Table(show_edge=False, pad_edge=False)
    for name, justify in (("#", "right"), ("trainer", "left"), ("status", "left"), ("outlier", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("score", justify="right")
    table.add_column("value", justify="right")
    for e in r.submissions:
        status = e.status if e.reason is None else f"{e.status}: {e.reason}"
        table.add_row(
            str(e.index),
            short(e.trainer),
            escape(clip(status, 90)),
            "yes" if e.outlier else "no",
            str(e.score),
            f"{e.value:.4f}",
        )
    out.table(table)
