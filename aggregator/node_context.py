"""What every part of the aggregator node shares: the project it posts, how it reads the chain, waits and reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aggregator.node_records import Journal
from pocfl.chain.client import MarketplaceClient
from pocfl.chain.types import ProjectState
from pocfl.market import Market
from pocfl.rounds.inputs import PostedRound, posted_rounds

Progress = Callable[[str, int, int], None]
"""``progress(message, done, total)``: what the node is doing (``total`` 0 when unknown)."""


def silent(message: str, done: int, total: int) -> None:
    """A :data:`Progress` that says nothing."""
    del message, done, total


@dataclass
class NodeContext:
    """The node's project, chain and store, journal, clock and progress (shared, so a replaced field is seen by all).

    The fields are the :class:`aggregator.node.AggregatorNode` parameters of the same names (``clock`` and
    ``progress`` with their defaults filled in), plus the node's :class:`~aggregator.node_records.Journal`.
    """

    market: Market
    project_id: int
    journal: Journal
    from_block: int
    clock: Callable[[], int]
    sleep: Callable[[float], None]
    poll: float
    progress: Progress

    @property
    def client(self) -> MarketplaceClient:
        """The chain client."""
        return self.market.client

    def say(self, message: str, done: int = 0, total: int = 0) -> None:
        """Report progress."""
        self.progress(message, done, total)

    def state(self) -> ProjectState:
        """The project's current on-chain state."""
        return self.client.project(self.project_id)

    def posted(self, round_: int) -> PostedRound | None:
        """The round's ``RoundPosted`` event, if it was posted."""
        for p in posted_rounds(self.market, self.project_id, from_block=self.from_block):
            if p.round == round_:
                return p
        return None

    def wait(self, deadline: int, now: int) -> None:
        """Sleep one poll, or until ``deadline`` when it comes sooner."""
        self.sleep(min(self.poll, max(deadline - now, 0.01)))
