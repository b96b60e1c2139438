"""The chain as one trainer of one project sees it: each read retried through transient failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pocfl.chain.types import EventRecord, ProjectState
from pocfl.market import Market
from pocfl.waiting import Backoff, StatusLine, retry_transient

T = TypeVar("T")

MAX_BACKOFF = 8.0


class ProjectView:
    """Reads of one project's chain state and events for one trainer, retried with bounded backoff.

    Parameters
    ----------
    market
        The marketplace; its client signs as the trainer.
    project_id
        The project.
    from_block
        First block to search for the project's creation; later searches start at its ``ProjectCreated`` block.
    retries, backoff
        Attempts for transient failures and the first delay between them (doubling, at most :data:`MAX_BACKOFF`).
    sleep
        Waits between retries (replaceable: every collaborator waits through this attribute).
    status
        One line per state change, shared by retries and the round loop.
    """

    def __init__(
        self,
        market: Market,
        project_id: int,
        *,
        from_block: int,
        retries: int,
        backoff: float,
        sleep: Callable[[float], None],
        status: StatusLine,
    ) -> None:
        self.market = market
        self.project_id = project_id
        self.address = market.client.sender
        self.chain_id = market.client.chain.chain_id
        self.market_address = market.client.address
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.status = status
        self._search_from = from_block
        self._project_block: int | None = None

    def retry(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn``; retry transient failures with exponential backoff, up to ``retries`` attempts."""
        return retry_transient(
            what,
            fn,
            sleep=self.sleep,
            status=self.status,
            backoff=Backoff(self.backoff, max(MAX_BACKOFF, self.backoff)),
            attempts=self.retries,
        )

    @property
    def from_block(self) -> int:
        """First block of the project's events: its ``ProjectCreated`` block (looked up once), else ``from_block``."""
        if self._project_block is None:
            created = self.retry(
                "find the project",
                lambda: self.market.client.events(
                    "ProjectCreated", from_block=self._search_from, projectId=self.project_id
                ),
            )
            if not created:
                return self._search_from  # not created (yet): look again next time
            self._project_block = created[0].block_number
        return self._project_block

    def events(self, what: str, name: str, **filters: Any) -> list[EventRecord]:
        """The project's ``name`` events matching ``filters`` (``what`` names the read in retry messages)."""
        return self.retry(
            what,
            lambda: self.market.client.events(name, from_block=self.from_block, projectId=self.project_id, **filters),
        )

    def now(self) -> int:
        """The chain's time: its latest block's timestamp, the time the contract's checks see in calls."""
        return self.retry("read the chain time", self.market.client.chain.now)

    def project(self) -> ProjectState:
        """The project's live state."""
        return self.retry("read the project", lambda: self.market.client.project(self.project_id))

    def registered(self) -> bool:
        """Whether the signing account is registered in the project."""
        trainer = self.retry("read the trainer", lambda: self.market.client.trainer(self.project_id, self.address))
        return trainer.registered

    def submission(self, round_: int) -> EventRecord | None:
        """The ``UpdateSubmitted`` event of this trainer in ``round_``, if the chain has one."""
        events = self.events("read submissions", "UpdateSubmitted", round=round_, trainer=self.address)
        return events[0] if events else None

    def credited(self) -> list[EventRecord]:
        """The trainer's ``TrainerCredited`` events in the project."""
        return self.events("read credits", "TrainerCredited", trainer=self.address)
