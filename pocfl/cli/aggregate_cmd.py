"""``pocfl aggregate``: run the aggregator node of a project (standalone, without Flower).

After each round's submission window the node fetches and validates every submitted update, filters outliers,
scores contributions, stores the new global model and the round report, and posts the round. It keeps a journal in
``--state-dir`` so that, killed at any point and restarted, it finishes the round without posting twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

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


def _zk_setup(market: Any, project: int, cache: Path | None, note: Callable[[str], None]) -> Any:
    """The circuit setup of a proven project (None for a project without a verifier)."""
    from pocfl.rounds.inputs import load_manifest

    state = market.client.project(project)
    if int(state.params.verifier, 16) == 0:
        return None
    manifest = load_manifest(market, state)
    if manifest.proof is None:
        return None  # the node refuses such a project with a clear error
    from zk.cache import default_cache_dir
    from zk.prover import CircuitShape, RoundCircuitSetup

    proof = manifest.proof
    shape = CircuitShape(proof.slots, proof.sketch_dim, proof.scale)
    return RoundCircuitSetup.build(shape, cache or default_cache_dir(), progress=note, cached_only=True)


@guarded
@connected(store=True, deadline=True)
def aggregate(
    project: Annotated[int, typer.Option("--project", min=1, metavar="ID", help="Project id.")],
    rounds: Annotated[
        int | None,
        typer.Option(
            "--rounds", min=1, metavar="N", help="Handle N rounds, then stop. Default: one.", show_default=False
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep posting rounds until the project is finished or cancelled.")
    ] = False,
    decrypt_key: Annotated[
        Path | None,
        typer.Option(
            "--decrypt-key",
            metavar="FILE",
            help="The aggregator's encryption key file (updates sealed to it are rejected without it).",
            show_default=False,
        ),
    ] = None,
    validation: Annotated[
        Path | None,
        typer.Option(
            "--validation",
            metavar="FILE",
            help="The revealed validation set (NPZ with X and y), when the manifest names one by CID.",
            show_default=False,
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            metavar="DIR",
            help="Where the node journals its progress. Default: <state dir>/aggregator.",
            show_default=False,
        ),
    ] = None,
    zk_cache: Annotated[
        Path | None,
        typer.Option(
            "--zk-cache",
            metavar="DIR",
            help="Circuit setups of proven projects (what `pocfl deploy --with-verifier` built; the same keys as the "
            "deployed verifier). Default: <state dir>/zk.",
            show_default=False,
        ),
    ] = None,
    poll: Annotated[
        float, typer.Option("--poll", min=0.1, metavar="SECONDS", help="Seconds between chain checks.")
    ] = 5.0,
    fail_overdue: Annotated[
        bool,
        typer.Option("--fail-overdue/--no-fail-overdue", help="Fail a round whose aggregation window closed unposted."),
    ] = True,
    *,
    s: Session,
) -> None:
    """Aggregator: post a project's rounds (validate updates, score, aggregate, store, post).

    Waits for the current round's submission window to close. Without --rounds or --follow it handles one round.
    """
    from aggregator.node import AggregatorNode
    from pocfl.deployment import state_dir as pocfl_home
    from pocfl.updates import EncryptionKeyPair

    if follow and rounds is not None:
        raise ConfigError("give --rounds N or --follow, not both")
    keypair = EncryptionKeyPair.load(decrypt_key) if decrypt_key is not None else None
    # started during an outage, wait for the chain and the store instead of exiting (--follow does the same)
    sm = start_when_up("connect to the chain", s.store_market, say=s.out.note)
    sender = sm.client.sender
    aggregator = start_when_up("read the project", lambda: sm.client.project(project), say=s.out.note).params.aggregator
    if sender.lower() != aggregator.lower():
        raise ConfigError(
            f"{sender} is not the aggregator of project {project} ({aggregator}): sign with its key "
            "(--key ENV_VAR or --keystore FILE)"
        )
    outcomes: list[RoundOutcome] = []
    with s.out.status("loading the round circuit") as update:
        zk_setup = start_when_up("read the manifest", lambda: _zk_setup(sm, project, zk_cache, update), say=s.out.note)
    with _progress(s.out) as progress:
        node = start_when_up(
            "start the aggregator (project, manifest)",
            lambda: AggregatorNode(
                sm,
                project,
                keypair=keypair,
                state_dir=state_dir or pocfl_home() / "aggregator",
                validation_file=validation,
                from_block=s.from_block,
                clock=lambda: chain_now(s.chain()),
                poll=poll,
                progress=progress,
                zk_setup=zk_setup,
            ),
            say=s.out.note,
        )
        if keypair is None and node.manifest.aggregator_public_key:
            s.out.warn("no --decrypt-key: updates sealed to the aggregator's key will be rejected")

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
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out.err,
            transient=True,
            disable=not self.live,
        )
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
