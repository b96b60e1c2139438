"""``pocfl demo``: run :func:`pocfl.demo.run_demo` and render its tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from pocfl.cli.output import Output, eth, guarded, short
from pocfl.cli.session import JsonOpt

if TYPE_CHECKING:
    from pocfl.demo import DemoResult

_NUMERIC = ("round", "score", "credited (wei)", "expected (wei)")


@guarded
def demo(
    rpc: Annotated[
        str,
        typer.Option(
            "--rpc",
            metavar="CHAIN",
            help="'embedded' (in-process, nothing to install), 'anvil' (a throwaway local node) or a local node URL.",
        ),
    ] = "embedded",
    rounds: Annotated[int, typer.Option(min=1, max=64, help="Number of rounds (the 3-round script repeats).")] = 3,
    json_out: JsonOpt = False,
) -> None:
    """Run a whole project end to end with scripted scores and reconcile every balance to the wei.

    An owner escrows a budget, three trainers stake and register, rounds are posted (with rounding dust,
    an outlier and a negative score) or failed when the aggregator misses its window, then everyone
    withdraws. Exits 1 if any balance does not reconcile.
    """
    from pocfl.demo import run_demo

    out = Output(json_out)
    with out.status("starting the demo") as update:
        result = run_demo(rpc, rounds, progress=update)
    out.result(result.to_json(), lambda: render(out, result))
    if not result.reconciled:
        raise typer.Exit(1)


def render(out: Output, result: DemoResult) -> None:
    """Print the demo's round table, balance table and verdict."""
    out.print(
        f"[bold]pocfl demo[/bold] on {result.chain} (chain id {result.chain_id}): marketplace {result.market}, "
        f"project {result.project_id}, budget {eth(result.budget)} ETH over {result.num_rounds} rounds, "
        f"stake {eth(result.stake)} ETH"
    )
    rounds = Table(title="Rounds")
    for name in ("round", "outcome", "trainer", "score", "outlier", "credited (wei)", "expected (wei)", "ok"):
        rounds.add_column(name, justify="right" if name in _NUMERIC else "left")
    for r in result.rounds:
        if r.outcome == "failed":
            rounds.add_row(str(r.round), "failed", "-", "-", "-", "0", "0", "ok", end_section=True)
            continue
        for i, c in enumerate(r.rows):
            rounds.add_row(
                str(r.round) if i == 0 else "",
                r.outcome if i == 0 else "",
                c.trainer,
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
    out.print(
        f"Contract balance at the end: {result.contract_balance} wei; project {result.final_status}; "
        f"{result.transactions} transactions in {result.elapsed_s:.1f} s."
    )
    if result.reconciled:
        out.print("[bold green]Every balance reconciles to the wei.[/bold green]")
    else:
        for problem in result.problems:
            out.print(f"[bold red]mismatch:[/bold red] {problem}")
