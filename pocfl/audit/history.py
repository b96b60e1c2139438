"""One scan of a project's events: its :class:`ProjectHistory`, which every checker of the audit reads.

:class:`EventSnapshotClient` reads every marketplace log once, pinned at one block, so the history and every
view call (project state, credits) describe the same moment: a claim mined during the audit cannot make the
ledger look wrong. :func:`read_history` groups the project's events by round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_utils.abi import event_abi_to_log_topic
from web3.contract.contract import ContractFunction

from pocfl.audit.result import Difference, Findings, ProjectRef, to_hex
from pocfl.chain.client import MarketplaceClient
from pocfl.chain.reverts import decode_revert
from pocfl.chain.types import EventRecord, ProjectState, ProjectStatus
from pocfl.errors import ConfigError
from pocfl.market import Market, SubmittedUpdate


class EventSnapshotClient(MarketplaceClient):
    """A read-only marketplace client whose events come from one log scan, pinned at one block.

    The audit and the round-input helpers of :mod:`pocfl.rounds.inputs` ask for the same events many times (every
    round re-reads ``RoundPosted``); a node scans its logs for each query. This client reads every marketplace
    log from ``from_block`` to the block that was latest when it was created, once (on first use), decodes them,
    and answers :meth:`events` from that list; view calls (project state, credits) run at that same block. Fast,
    and one consistent snapshot: a claim mined during the audit cannot make the ledger look wrong.

    Parameters
    ----------
    client
        The marketplace to read.
    from_block
        First block of the scan (the deployment block); queries starting earlier go to the node.
    """

    def __init__(self, client: MarketplaceClient, from_block: int = 0) -> None:
        super().__init__(client.chain, client.address, None)
        self.from_block = from_block
        self.to_block = int(self.w3.eth.block_number)
        self._records: list[EventRecord] | None = None

    def call(self, fn: ContractFunction) -> Any:
        """Run a view function at the snapshot's block, so state and events describe the same moment."""
        try:
            return fn.call(block_identifier=self.to_block)
        except Exception as exc:
            decoded = decode_revert(exc)
            if decoded is not None:
                raise decoded from None
            raise

    def _scan(self) -> list[EventRecord]:
        if self._records is None:
            by_topic = {
                bytes(event_abi_to_log_topic(item)): str(item["name"])
                for item in self.contract.abi
                if item["type"] == "event"
            }
            records = []
            logs = self.w3.eth.get_logs(
                {"address": self.address, "fromBlock": self.from_block, "toBlock": self.to_block}
            )
            for log in logs:
                topics = log.get("topics") or []
                name = by_topic.get(bytes(topics[0])) if topics else None
                if name is not None:
                    records.append(self._record(self.contract.events[name]().process_log(log)))
            records.sort(key=lambda r: (r.block_number, r.log_index))
            self._records = records
        return self._records

    def events(
        self, name: str, from_block: int = 0, to_block: int | str = "latest", **filters: Any
    ) -> list[EventRecord]:
        """As :meth:`MarketplaceClient.events`, up to the snapshot's block, from the one scan."""
        if from_block < self.from_block:
            return super().events(name, from_block, self.to_block if to_block == "latest" else to_block, **filters)
        last = self.to_block if to_block == "latest" or not isinstance(to_block, int) else to_block
        wanted = {k: _normal(v) for k, v in filters.items()}
        return [
            e
            for e in self._scan()
            if e.name == name
            and from_block <= e.block_number <= last
            and all(_normal(e.args.get(k)) == v for k, v in wanted.items())
        ]


def _normal(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(("0x", "0X")):
        return value.lower()
    if isinstance(value, bytes):
        return value.hex()
    return value


ACCOUNT_EVENTS = (
    ("TrainerCredited", "trainer", "amount"),
    ("TrainerLeft", "trainer", "stakeCredited"),
    ("StakeReleased", "trainer", "amount"),
    ("Claimed", "account", "amount"),
)
"""Account-wide events (all projects) that move a trainer's credits: (event, account argument, amount argument)."""


@dataclass
class RoundEvents:
    """One round of the project as its events tell it.

    Attributes
    ----------
    round
        The round number.
    submissions
        ``UpdateSubmitted``, by index.
    last_digest
        The submissions digest the round's last ``UpdateSubmitted`` left on chain (None without submissions).
    posted
        ``RoundPosted`` (None when the round was not posted).
    failed
        Whether ``RoundFailed`` was emitted.
    credited
        ``TrainerCredited``, in chain order.
    """

    round: int
    submissions: list[SubmittedUpdate]
    last_digest: bytes | None = None
    posted: EventRecord | None = None
    failed: bool = False
    credited: list[EventRecord] = field(default_factory=list)


@dataclass
class ProjectHistory:
    """A project's on-chain history, read once (:func:`read_history`).

    Attributes
    ----------
    market
        The marketplace (an :class:`EventSnapshotClient`) and the content store.
    project_id, chain_id, address
        What is audited (``address``: the marketplace).
    state
        The project's state at the snapshot's block.
    created
        ``ProjectCreated`` (one, on a sound chain).
    from_block
        The project's creation block (where its own events start).
    origin_block
        Where account-wide events start (the marketplace's deployment).
    rounds
        Every round of the project, 0 to ``numRounds - 1``.
    posted_events
        ``RoundPosted``, in chain order.
    withdrawn_wei
        Withdrawn by the owner (``RemainingWithdrawn``).
    account_events
        :data:`ACCOUNT_EVENTS` by name, every project, from ``origin_block``.
    """

    market: Market
    project_id: int
    chain_id: int
    address: str
    state: ProjectState
    created: list[EventRecord]
    from_block: int
    origin_block: int
    rounds: list[RoundEvents] = field(default_factory=list)
    posted_events: list[EventRecord] = field(default_factory=list)
    withdrawn_wei: int = 0
    account_events: dict[str, list[EventRecord]] = field(default_factory=dict)

    @property
    def ref(self) -> ProjectRef:
        """The audited project, chain and marketplace."""
        return ProjectRef(self.project_id, self.chain_id, self.address)

    @property
    def client(self) -> MarketplaceClient:
        """The marketplace client (view calls at the snapshot's block)."""
        return self.market.client


def read_history(market: Market, project_id: int, from_block: int = 0) -> ProjectHistory:
    """Read project ``project_id``'s events (from ``from_block``, the marketplace's deployment) and group them.

    Raises
    ------
    ConfigError
        No such project.
    """
    client = market.client
    chain_id, address = client.chain.chain_id, client.address
    state = client.project(project_id)
    if state.status is ProjectStatus.NONE:
        raise ConfigError(
            f"there is no project {project_id} on the marketplace {address} (chain {chain_id}): "
            "check the id (`pocfl project list`), --rpc and the deployment"
        )
    created = client.events("ProjectCreated", from_block=from_block, projectId=project_id)
    start = max(from_block, created[0].block_number) if created else from_block
    history = ProjectHistory(market, project_id, chain_id, address, state, created, start, from_block)

    def events(name: str) -> list[EventRecord]:
        return client.events(name, from_block=start, projectId=project_id)

    submitted: dict[int, list[SubmittedUpdate]] = {}
    digests_seen: dict[int, bytes] = {}  # the digest the round's last submission left on chain
    for e in events("UpdateSubmitted"):
        r = int(e.args["round"])
        submitted.setdefault(r, []).append(SubmittedUpdate.from_event(e))
        digests_seen[r] = bytes(e.args["submissionsDigest"])  # events come in chain order
    history.posted_events = events("RoundPosted")
    posted = {int(e.args["round"]): e for e in history.posted_events}
    failed = {int(e.args["round"]) for e in events("RoundFailed")}
    credits: dict[int, list[EventRecord]] = {}
    for e in events("TrainerCredited"):
        credits.setdefault(int(e.args["round"]), []).append(e)
    history.rounds = [
        RoundEvents(
            r,
            sorted(submitted.get(r, []), key=lambda u: u.index),
            digests_seen.get(r),
            posted.get(r),
            r in failed,
            credits.get(r, []),
        )
        for r in range(state.params.num_rounds)
    ]
    history.withdrawn_wei = sum(int(e.args["amount"]) for e in events("RemainingWithdrawn"))
    history.account_events = {name: client.events(name, from_block=from_block) for name, _, _ in ACCOUNT_EVENTS}
    return history


def check_round_events(history: ProjectHistory, r: int, digest: bytes) -> list[Difference]:
    """The round's ``UpdateSubmitted`` indices run 0..n-1 and its last digest is the events' fold ``digest``."""
    out = Findings(history.project_id)
    subs, last_digest = history.rounds[r].submissions, history.rounds[r].last_digest
    if [u.index for u in subs] != list(range(len(subs))):
        out.diff(r, "events", f"UpdateSubmitted indices are {[u.index for u in subs]}, not 0..{len(subs) - 1}")
    if last_digest is not None and last_digest != digest:
        out.diff(
            r,
            "digest",
            f"the last UpdateSubmitted carries digest {to_hex(last_digest)}, the events fold to {to_hex(digest)}",
        )
    return out.differences
