"""``pocfl demo``: the federated-learning demo (:mod:`pocfl.demo.fl`) or, with ``--scripted``, the scripted one.

Both are scenarios of one engine (:mod:`pocfl.demo.engine`), render their result as tables on stdout (``--json``:
one document) and exit 1 when anything does not reconcile to the wei. ``--scripted`` takes the chain, the store,
the rounds, the seed and ``--encrypt/--no-encrypt``, and refuses the options of the federated-learning demo.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.markup import escape
from rich.table import Table

from pocfl.cli.common import option
from pocfl.cli.output import Output, eth, guarded, short
from pocfl.cli.session import JsonOpt

if TYPE_CHECKING:
    from pocfl.demo import DemoReporter, DemoResult, FlDemoResult, FlRound, ProjectResult

_NUMERIC = ("round", "score", "credited (wei)", "expected (wei)")
FL_DEFAULT_ROUNDS = 4
SCRIPTED_DEFAULT_ROUNDS = 3
FL_ONLY = {
    "trainers": "--trainers",
    "attack": "--attack",
    "free_riders": "--free-riders",
    "hidden": "--hidden",
    "epochs": "--epochs",
    "prove": "--prove",
    "sketch_dim": "--sketch-dim",
    "zk_cache": "--zk-cache",
}
"""Options of the federated-learning demo that ``--scripted`` (three scripted trainers, no training) refuses."""

RoundsOpt = Annotated[
    int | None,
    option(
        min=1,
        max=64,
        help="Number of rounds. Default: 4 (3 with --scripted, whose script repeats).",
    ),
]
ScriptedOpt = Annotated[
    bool,
    typer.Option("--scripted", help="Run the scripted 3-trainer demo (fixed scores, no training) instead."),
]
TrainersOpt = Annotated[int, typer.Option(min=3, max=64, help="Trainers in all (honest + attackers + free riders).")]
AttackOpt = Annotated[
    list[str] | None,
    option(
        "--attack",
        metavar="NAME",
        help="One attacking trainer per use: sign_flip, scaling, gaussian, label_flip, copycat, free_rider "
        "(default: sign_flip and scaling; 'none' for no attacker).",
    ),
]
FreeRidersOpt = Annotated[int, typer.Option(min=0, help="Trainers that submit zero updates.")]
HiddenOpt = Annotated[int, typer.Option(min=1, max=4096, help="Hidden width of the MLP.")]
EpochsOpt = Annotated[int, typer.Option(min=1, max=100, help="Round-0 local epochs.")]
SeedOpt = Annotated[
    int,
    typer.Option(
        min=0,
        help="Seed of the model, the data partition, training and the accounts (--scripted: of its model and "
        "updates, default 2023).",
    ),
]
EncryptOpt = Annotated[
    bool, typer.Option("--encrypt/--no-encrypt", help="Trainers seal their updates to the aggregator's key.")
]
ProveOpt = Annotated[
    bool,
    typer.Option(
        "--prove",
        help="Prove every round with ezkl (zero-knowledge proof of the outlier flags and scores over the "
        "trainers' committed features) and have the contract verify it. Uses a locally generated SRS: "
        "test-only trust.",
    ),
]
SketchDimOpt = Annotated[
    int, typer.Option("--sketch-dim", min=2, max=128, help="Committed feature dimension with --prove.")
]
ZkCacheOpt = Annotated[
    Path | None,
    option(
        "--zk-cache",
        help="Folder caching circuit setups (proving keys are hundreds of MB). Default: a temporary folder.",
    ),
]


@guarded
def demo(
    ctx: typer.Context,
    rpc: Annotated[
        str,
        typer.Option(
            "--rpc",
            metavar="CHAIN",
            help="'embedded' (in-process, nothing to install), 'anvil' (a throwaway local node) or a local node URL.",
        ),
    ] = "embedded",
    rounds: RoundsOpt = None,
    scripted: ScriptedOpt = False,
    trainers: TrainersOpt = 8,
    attack: AttackOpt = None,
    free_riders: FreeRidersOpt = 1,
    hidden: HiddenOpt = 32,
    epochs: EpochsOpt = 3,
    seed: SeedOpt = 4,
    encrypt: EncryptOpt = True,
    ipfs: Annotated[
        str | None,
        option(
            "--ipfs",
            envvar="POCFL_IPFS",
            metavar="URL|DIR",
            help="Content store for the demo's files: an IPFS node's RPC URL or a directory (kept). "
            "Default: a temporary directory, deleted after the run.",
        ),
    ] = None,
    prove: ProveOpt = False,
    sketch_dim: SketchDimOpt = 16,
    zk_cache: ZkCacheOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a federated-learning project end to end and reconcile every balance to the wei.

    An owner escrows 1 ETH per round; 8 trainers with non-IID shares of the digits data stake and register, 2
    of them attack (sign_flip, scaling) and 1 free-rides. Each round they train and submit sealed updates, the
    aggregator filters outliers, scores contributions (Shapley values), stores the new model and a report, and
    posts; then everyone withdraws. Prints a table per round (accuracy, outliers, credits) and the payouts.
    Exits 1 if any credit, balance or stored file does not check out. --scripted runs the older 3-trainer
    demo with fixed scores instead (it takes --rpc, --ipfs, --rounds, --seed and --encrypt/--no-encrypt).
    """
    out = Output(json_out)
    if scripted:
        for name, flag in FL_ONLY.items():
            if _given(ctx, name):
                raise typer.BadParameter(f"{flag} runs with the federated-learning demo, not --scripted")
        _scripted(out, rpc, rounds or SCRIPTED_DEFAULT_ROUNDS, ipfs, seed if _given(ctx, "seed") else None, encrypt)
        return

    from pocfl.demo import DEFAULT_ATTACKS, FlDemoConfig, run_fl_demo

    attacks = tuple(a for a in (attack if attack else DEFAULT_ATTACKS) if a.strip().lower() != "none")
    config = FlDemoConfig(
        rounds=rounds or FL_DEFAULT_ROUNDS,
        trainers=trainers,
        attacks=attacks,
        free_riders=free_riders,
        hidden=hidden,
        epochs=epochs,
        seed=seed,
        encrypt=encrypt,
        prove=prove,
        sketch_dim=sketch_dim,
        zk_cache=zk_cache,
    )
    config.roles()  # a bad mix of roles fails before anything starts
    with _progress(out, config.rounds) as reporter:
        fl_result = run_fl_demo(config, rpc=rpc, ipfs=ipfs, reporter=reporter)
    out.result(fl_result.to_json(), lambda: render_fl(out, fl_result))
    if not fl_result.reconciled:
        raise typer.Exit(1)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set option ``name`` (on the command line or through its environment variable)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source not in (
        click.core.ParameterSource.DEFAULT,
        click.core.ParameterSource.DEFAULT_MAP,
    )


def _scripted(out: Output, rpc: str, rounds: int, ipfs: str | None, seed: int | None, encrypt: bool) -> None:
    """Run and render the scripted demo (its own seed unless ``seed`` is given); exit 1 unless it reconciles."""
    from pocfl.demo import run_demo
    from pocfl.demo.config import SEED

    with out.status("starting the demo") as update:
        result = run_demo(rpc, rounds, progress=update, ipfs=ipfs, seed=SEED if seed is None else seed, encrypt=encrypt)
    out.result(result.to_json(), lambda: render(out, result))
    if not result.reconciled:
        raise typer.Exit(1)


# --- progress -----------------------------------------------------------------------------------------------


@contextmanager
def _progress(out: Output, rounds: int) -> Iterator[DemoReporter]:
    """Progress bars on stderr when it is a terminal, else one note per step."""
    from pocfl.demo import DemoReporter

    if not out.err.is_terminal:

        class Lines(DemoReporter):
            def stage(self, text: str) -> None:
                out.note(text)

            def round_started(self, round_: int, trainers: int) -> None:
                out.note(f"round {round_}: {trainers} trainers train and submit")

            def round_done(self, row: FlRound) -> None:
                outliers = ", ".join(row.outliers) or "none"
                out.note(
                    f"round {row.round} {row.outcome}: accuracy {row.accuracy_before:.3f} -> {row.accuracy:.3f}, "
                    f"outliers {outliers}, {eth(row.credited)} ETH credited"
                )

        yield Lines()
        return

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out.err,
    )

    class Bars(DemoReporter):
        def __init__(self) -> None:
            self.setup = progress.add_task("setting up", total=None)
            self.rounds = progress.add_task("rounds", total=rounds, visible=False)
            self.step: Any = None

        def stage(self, text: str) -> None:
            progress.update(self.setup, description=text)

        def round_started(self, round_: int, trainers: int) -> None:
            progress.update(self.setup, visible=False)
            progress.update(self.rounds, visible=True, description=f"round {round_ + 1}/{rounds}")
            if self.step is not None:
                progress.remove_task(self.step)
            self.step = progress.add_task(f"round {round_}: training", total=trainers)

        def trainer_done(self, round_: int, name: str, role: str, message: str) -> None:
            progress.update(self.step, advance=1, description=f"round {round_}: {name} ({role}) submitted")

        def aggregating(self, round_: int, message: str, done: int, total: int) -> None:
            progress.update(self.step, description=f"aggregator: {message}")

        def round_done(self, row: FlRound) -> None:
            progress.update(self.rounds, advance=1)
            progress.update(
                self.step,
                description=f"round {row.round}: accuracy {row.accuracy:.3f}, "
                f"outliers {', '.join(row.outliers) or 'none'}",
            )
            progress.update(self.setup, visible=True)

    with progress:
        yield Bars()


# --- rendering ----------------------------------------------------------------------------------------------


def _eth3(wei: int) -> str:
    return f"{wei / 10**18:.3f}"


def render_fl(out: Output, result: FlDemoResult) -> None:
    """Print the FL demo's rounds, timings and payouts, and the verdict."""
    cfg = result.config
    dishonest = [f"{t.name} {t.role}" for t in result.trainers if t.group != "honest"]
    out.print(
        f"[bold]pocfl demo[/bold]: federated learning on {result.chain} (chain id {result.chain_id}), marketplace "
        f"{result.market}, project {result.project_id}: {len(result.trainers)} trainers with non-IID digits data "
        f"(Dirichlet alpha {cfg.alpha:g}), {cfg.rounds} rounds, budget {eth(result.budget)} ETH, "
        f"stake {eth(result.stake)} ETH; dishonest: {', '.join(dishonest) or 'none'}"
    )
    out.print(
        f"Model: MLP 64-{cfg.hidden}-10, {cfg.epochs} local epochs, lr {cfg.learning_rate:g}, seed {cfg.seed}; "
        f"updates {'sealed to the aggregator' if cfg.encrypt else 'in plaintext'}. Manifest "
        f"{short_cid(result.manifest_cid)}, {len(result.objects)} stored objects, every one re-hashed."
    )
    rounds = Table(title="Rounds: ETH credited per trainer (flag: outlier; <0: negative score; both unpaid)")
    rounds.add_column("round", justify="right")
    rounds.add_column("accuracy", justify="right")
    rounds.add_column("outliers")
    for t in result.trainers:
        rounds.add_column(f"{t.name.removeprefix('trainer-')}\n{_role_label(t.role)}", justify="right")
    rounds.add_column("credited", justify="right")
    for r in result.rounds:
        cells = {e.trainer: _cell(e.outlier, e.status, e.score, e.credited) for e in r.entries}
        outliers = ",".join(name.removeprefix("trainer-") for name in r.outliers) or "-"
        rounds.add_row(
            str(r.round),
            f"{r.accuracy_before:.3f}->{r.accuracy:.3f}",
            outliers,
            *[cells.get(t.name, "-") for t in result.trainers],
            _eth3(r.credited),
        )
    out.table(rounds)
    _fl_timings(out, result)
    _fl_payouts(out, result)
    _fl_verdict(out, result)


def _fl_timings(out: Output, result: FlDemoResult) -> None:
    timing = Table(title="Time per round (s)")
    for name in ("round", "train", "store", "aggregate", "chain", "total"):
        timing.add_column(name, justify="right")
    for r in result.rounds:
        timing.add_row(
            str(r.round), *(f"{r.timings.get(k, 0.0):.2f}" for k in ("train", "store", "aggregate", "chain", "total"))
        )
    out.table(timing)


def _fl_payouts(out: Output, result: FlDemoResult) -> None:
    cfg = result.config
    roles = {t.name: t.role for t in result.trainers}
    flagged = {
        t.name: sum(e.outlier for r in result.rounds for e in r.entries if e.trainer == t.name) for t in result.trainers
    }
    payouts = Table(title="Payouts (net = end - start + gas paid, to the wei; expected from the reports' scores)")
    for name in ("party", "role", "data", "flagged", "gas (ETH)", "net (ETH)", "expected (ETH)"):
        payouts.add_column(name, justify="right" if "ETH" in name or name == "flagged" else "left")
    payouts.add_column("ok")
    info = {t.name: t for t in result.trainers}
    for p in result.parties:
        who = info.get(p.party)
        payouts.add_row(
            p.party,
            roles.get(p.party, p.party),
            f"{who.samples} ({who.classes} cl.)" if who is not None else "",
            f"{flagged[p.party]}/{cfg.rounds}" if who is not None else "",
            f"{p.gas / 10**18:.6f}",
            eth(p.net),
            eth(p.expected),
            "[green]yes[/green]" if p.reconciled else "[red]NO[/red]",
        )
    out.table(payouts)


def _fl_verdict(out: Output, result: FlDemoResult) -> None:
    for group, g in result.groups().items():
        out.print(
            f"  {group}: {g['trainers']} trainer(s) earned {_eth3(g['min_wei'])}-{_eth3(g['max_wei'])} ETH each, "
            f"{_eth3(g['total_wei'])} ETH in all"
        )
    if result.incentives_hold:
        out.print("[bold green]Attackers and free riders earned less than every honest trainer.[/bold green]")
    else:
        out.print("[yellow]Not every honest trainer out-earned the attackers and free riders in this run.[/yellow]")
    totals = {k: sum(r.timings.get(k, 0.0) for r in result.rounds) for k in ("train", "store", "aggregate", "chain")}
    out.print(_totals(result) + " (rounds: " + ", ".join(f"{k} {v:.1f} s" for k, v in totals.items()) + ").")
    proven = [r for r in result.rounds if r.proven]
    if result.config.prove:
        times = [r.prove_seconds for r in proven if r.prove_seconds is not None]
        v = result.verifier or {}
        out.print(
            f"Proofs: {len(proven)}/{len(result.rounds)} rounds proven and verified on chain by EzklRoundVerifier "
            f"{v.get('adapter', '?')} (circuit {v.get('circuit', '?')}, Halo2 verifier "
            f"{v.get('halo2_runtime_bytes', '?')} bytes; prove {min(times, default=0):.1f}-"
            f"{max(times, default=0):.1f} s per round; local SRS: test-only trust)."
        )
    if result.audit_ok:
        out.print(
            f"Audit: every round recomputed from the chain and the store matches what was posted and paid "
            f"({result.timings.get('audit', 0.0):.1f} s; `pocfl audit` does the same on any chain)."
        )
    _verdict(out, result, "Every credit and balance reconciles to the wei.")


def _totals(result: ProjectResult) -> str:
    return (
        f"Contract balance at the end: {result.contract_balance} wei; project {result.final_status}; "
        f"{result.transactions} transactions in {result.elapsed_s:.1f} s"
    )


def _verdict(out: Output, result: ProjectResult, reconciled: str) -> None:
    """``reconciled`` in green, or every problem in red."""
    if result.reconciled:
        out.print(f"[bold green]{reconciled}[/bold green]")
    else:
        for problem in result.problems:
            out.print(f"[bold red]mismatch:[/bold red] {escape(problem)}")


def _role_label(role: str) -> str:
    return {"honest": "honest", "free_rider": "free", "sign_flip": "signflip"}.get(role, role.replace("_", ""))


def _cell(outlier: bool, status: str, score: int, credited: int) -> str:
    if outlier:
        return "[red]flag[/red]"
    if status != "scored":
        return status
    return "0 (<0)" if score < 0 else _eth3(credited)


def short_cid(cid: str) -> str:
    """``bafkrei…wxyz`` for narrow tables (the full CIDs are in ``--json``)."""
    return f"{cid[:10]}…{cid[-6:]}" if len(cid) > 20 else cid


def _update_cell(cid: str, encrypted: bool) -> str:
    return short_cid(cid) + (" (encrypted)" if encrypted else "")


def render(out: Output, result: DemoResult) -> None:
    """Print the demo's round table, balance table and verdict."""
    out.print(
        f"[bold]pocfl demo[/bold] on {result.chain} (chain id {result.chain_id}): marketplace {result.market}, "
        f"project {result.project_id}, budget {eth(result.budget)} ETH over {result.num_rounds} rounds, "
        f"stake {eth(result.stake)} ETH"
    )
    out.print(
        f"Files in {escape(result.store)}: initial model {short_cid(result.initial_model_cid)}, "
        f"{len(result.objects)} objects in all, every one read back and re-hashed"
    )
    rounds = Table(title="Rounds")
    columns = ("round", "outcome", "trainer", "update", "score", "outlier", "credited (wei)", "expected (wei)", "ok")
    for name in columns:
        rounds.add_column(name, justify="right" if name in _NUMERIC else "left")
    for r in result.rounds:
        if r.outcome == "failed":
            for i, u in enumerate(r.submissions):
                rounds.add_row(
                    str(r.round) if i == 0 else "",
                    "failed" if i == 0 else "",
                    u.trainer,
                    _update_cell(u.cid, u.encrypted),
                    "-",
                    "-",
                    "0",
                    "0",
                    "ok",
                    end_section=i == len(r.submissions) - 1,
                )
            continue
        for i, c in enumerate(r.rows):
            rounds.add_row(
                str(r.round) if i == 0 else "",
                r.outcome if i == 0 else "",
                c.trainer,
                _update_cell(c.cid, c.encrypted),
                str(c.score),
                "yes" if c.outlier else "no",
                str(c.credited),
                str(c.expected),
                "ok" if c.reconciled else "[red]MISMATCH[/red]",
                end_section=i == len(r.rows) - 1,
            )
    out.table(rounds)
    for r in result.rounds:
        out.print(f"  round {r.round}: {r.note} ({r.unallocated} wei of its {eth(r.budget)} ETH unallocated)")
        if r.model_cid:
            out.print(f"    new model {short_cid(r.model_cid)}, report {short_cid(r.report_cid)}")
    balances = Table(title="Balances (net = end - start + gas paid)")
    for name in ("party", "address", "start (ETH)", "end (ETH)", "gas paid (ETH)", "net (ETH)", "expected (ETH)"):
        balances.add_column(name, justify="right" if "ETH" in name else "left")
    balances.add_column("reconciled")
    for p in result.parties:
        balances.add_row(
            p.party,
            short(p.address),
            eth(p.start),
            eth(p.end),
            eth(p.gas),
            eth(p.net),
            eth(p.expected),
            "[green]yes[/green]" if p.reconciled else "[red]NO[/red]",
        )
    out.table(balances)
    out.print(_totals(result) + ".")
    _verdict(out, result, "Every balance reconciles to the wei.")
