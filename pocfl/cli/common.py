"""Small helpers shared by the command modules: transactions, events, options and progress bars."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from pocfl.chain.types import jsonable

if TYPE_CHECKING:
    from rich.progress import Progress

    from pocfl.chain.client import MarketplaceClient
    from pocfl.chain.types import EventRecord, Receipt
    from pocfl.cli.output import Output
    from pocfl.store import ContentStore


def tx_doc(receipt: Receipt) -> dict[str, Any]:
    """A transaction's summary for ``--json`` output."""
    return {
        "hash": receipt.tx_hash,
        "block": receipt.block_number,
        "gas_used": receipt.gas_used,
        "events": [{"name": e.name, "args": jsonable(e.args)} for e in receipt.events],
    }


def project_events(market: MarketplaceClient, name: str, from_block: int, **filters: Any) -> list[EventRecord]:
    """Events ``name`` of the marketplace from ``from_block`` on, filtered on indexed arguments."""
    return market.events(name, from_block=from_block, **filters)


def option(*names: str, help: str, metavar: str | None = None, **settings: Any) -> Any:
    """A ``typer.Option`` that does not show its default (None, or said in ``help``) unless ``settings`` say so.

    The commands' optional paths and settings are declared with it on a line or two each.
    """
    return typer.Option(*names, help=help, metavar=metavar, **({"show_default": False} | settings))


def progress_bars(out: Output, *, spinner: bool = False, **settings: Any) -> Progress:
    """Rich progress bars on ``out``'s stderr: [spinner,] description, bar, done/total, elapsed time.

    ``settings`` go to :class:`rich.progress.Progress` (``transient``, ``disable``, ...).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*([SpinnerColumn()] if spinner else []), *columns, console=out.err, **settings)


def submission_doc(event: EventRecord, store: ContentStore) -> dict[str, Any]:
    """An ``UpdateSubmitted`` event for ``--json`` output, with whether the store holds the update."""
    from pocfl.cli.parse import store_holds

    return {
        "index": int(event.args["index"]),
        "trainer": str(event.args["trainer"]),
        "cid": event.args["cid"],
        "stored": store_holds(store, str(event.args["cid"])),
        "commitment": event.args["commitment"],
        "feature_commitment": event.args["featureCommitment"],
    }
