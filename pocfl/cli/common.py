"""Small helpers shared by the command modules: transaction summaries and event queries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
