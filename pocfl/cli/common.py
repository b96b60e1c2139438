"""Small helpers shared by the command modules: transaction summaries, event queries, option declarations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from pocfl.chain.types import jsonable

if TYPE_CHECKING:
    from pocfl.chain.client import MarketplaceClient
    from pocfl.chain.types import EventRecord, Receipt


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
