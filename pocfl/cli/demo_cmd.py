"""``pocfl demo``: run :func:`pocfl.demo.run_demo` and render its tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
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
    ipfs: Annotated[
        str | None,
        typer.Option(
            "--ipfs",
            envvar="POCFL_IPFS",
            metavar="URL|DIR",
            help="Content store for the demo's files: an IPFS node's RPC URL or a directory (kept). "
            "Default: a temporary directory, deleted after the run.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a whole project end to end with real files and scripted scores, and reconcile every balance to the wei.

    An owner stores a small model and escrows a budget, three trainers stake and register; each round they
    store pocfl update files (one encrypted to the aggregator) and submit their CIDs and commitments; the
    aggregator fetches and checks every update, stores the new model and a round report, and posts (with
    rounding dust, an outlier and a negative score) or misses its window and the round fails; then everyone
    withdraws. Exits 1 if any balance or stored file does not check out.
    """
    from pocfl.demo import run_demo

    out = Output(json_out)
    with out.status("starting the demo") as update:
        result = run_demo(rpc, rounds, progress=update, ipfs=ipfs)
    out.result(result.to_json(), lambda: render(out, result))
    if not result.reconciled:
        raise typer.Exit(1)


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
    out.print(
        f"Contract balance at the end: {result.contract_balance} wei; project {result.final_status}; "
        f"{result.transactions} transactions in {result.elapsed_s:.1f} s."
    )
    if result.reconciled:
        out.print("[bold green]Every balance reconciles to the wei.[/bold green]")
    else:
        for problem in result.problems:
            out.print(f"[bold red]mismatch:[/bold red] {problem}")
