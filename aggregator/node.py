"""The aggregator node: follows a project on chain and posts each round, idempotently and resumably.

After a round's submission window closes, :meth:`AggregatorNode.run_round` reads the round's ``UpdateSubmitted``
events, fetches and validates every update (:func:`pocfl.rounds.inputs.validate_submission`: a bad update is a
rejection with its reason, never a crash), runs :func:`aggregator.round.decide_round`, encodes and stores the new
global model, reveals the plaintexts of encrypted updates, stores the round report and posts the round.

Idempotence and restarts
    Every input is on chain (CIDs, commitments, digest, earlier posts) or in the store (updates, models,
    reports), and :func:`decide_round` is deterministic, so a restarted node recomputes exactly the same report
    and model bytes, hence the same CIDs. A small JSON journal, ``<state_dir>/project-<id>.json``, records each
    round's stage::

        {"format": "pocfl-aggregator-journal/1", "chain_id": 31337, "market": "0x..", "project_id": 1,
         "rounds": {"0": {"stage": "posted", "model_cid": "bafk..", "report_cid": "bafk..",
                          "report_hash": "0x..", "submissions": 5, "tx_hash": "0x..", "block": 42,
                          "credited": 10, "updated_at": 1700000000}}}

    ``decided`` (report and model computed, CIDs known) -> ``stored`` (model, report and revealed plaintexts in
    the store) -> ``posted`` (transaction mined). A node restarted at ``stored`` reads the report back from the
    store (verified) and posts it without recomputing; at ``decided`` or with the objects gone it recomputes.
    Before any post the chain is asked first (``RoundPosted`` for the round, or the project past it), so a
    restart never double-posts; the contract itself refuses a second post (``WrongRound``).

The node composes its parts around a shared :class:`~aggregator.node_context.NodeContext`:
:class:`~aggregator.preparing.RoundPreparer` (reading and validating a round's inputs, deciding, encoding;
reading back a stored round), :class:`~aggregator.proving.RoundProver` (proven projects),
:class:`~aggregator.posting.RoundPoster` (storing, posting, settled and overdue rounds) and the
:class:`~aggregator.node_records.Journal`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aggregator.node_context import NodeContext, Progress, silent
from aggregator.node_records import JOURNAL_FORMAT, STAGES, Journal, RoundOutcome
from aggregator.posting import RoundPoster
from aggregator.preparing import PreparedRound, RoundPreparer
from aggregator.proving import RoundProver, check_setup
from aggregator.round import RoundConfig
from aggregator.round_inputs import round_config
from aggregator.round_report import build_report, round_post_of
from pocfl.chain.client import MarketplaceClient
from pocfl.chain.types import ProjectState, ProjectStatus
from pocfl.errors import ConfigError
from pocfl.manifest import ProjectManifest
from pocfl.market import Market
from pocfl.rounds.inputs import PostedRound, RoundInputError, load_manifest, load_validation
from pocfl.updates import EncryptionKeyPair, ModelSpec
from pocfl.waiting import Backoff, StatusLine, clock_lag_hint, hhmmss, is_transient, outage_line

if TYPE_CHECKING:
    from zk.prover import RoundCircuitSetup


class AggregatorNode:
    """Posts a project's rounds from the chain's submissions (see the module docstring).

    Parameters
    ----------
    market
        Chain client (signing as the project's aggregator) bound to the content store.
    project_id
        The project.
    keypair
        Decryption key for updates sealed to the aggregator (``manifest.aggregator_public_key``); without it
        sealed updates are rejected.
    state_dir
        Where the journal lives.
    validation_file
        The revealed validation set, when the manifest names one by CID and the store does not hold it.
    config
        Overrides the manifest's round settings (recorded in every report, so audits see them).
    from_block
        First block to search for the project's events (its creation block, on long chains).
    clock
        Current chain time; default the latest block's timestamp (the time the contract's checks see in calls:
        a node mining on demand lags the wall clock until its next block).
    sleep
        How to wait (tests pass a function that moves the chain's clock instead).
    poll
        Seconds between checks while waiting.
    progress
        Called with what the node is doing (the CLI draws progress bars from it).
    zk_setup
        The round circuit whose verifier the project uses (``zk.prover.RoundCircuitSetup`` of the manifest's
        ``proof`` shape, with the same keys as the deployed verifier): required when the project has a verifier.
    """

    def __init__(
        self,
        market: Market,
        project_id: int,
        *,
        keypair: EncryptionKeyPair | None = None,
        state_dir: Path,
        validation_file: Path | None = None,
        config: RoundConfig | None = None,
        from_block: int = 0,
        clock: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        poll: float = 2.0,
        progress: Progress | None = None,
        zk_setup: RoundCircuitSetup | None = None,
    ) -> None:
        self.project_id = project_id
        self.keypair = keypair
        self.state_dir = Path(state_dir)
        self.validation_file = validation_file
        state = market.client.project(project_id)
        if state.status == ProjectStatus.NONE:
            raise ConfigError(f"project {project_id} does not exist on marketplace {market.client.address}")
        self.params = state.params
        self.manifest: ProjectManifest = load_manifest(market, state)
        self.spec: ModelSpec = self.manifest.model.spec()
        self.config: RoundConfig = config or round_config(self.manifest)
        self._validation: tuple[Any, Any] | None = None
        self.zk_setup = zk_setup
        proof = self.manifest.proof
        if self.proven:
            if proof is None:
                raise ConfigError(
                    f"project {project_id} has verifier {self.params.verifier} but its manifest has no `proof` "
                    "section: its rounds cannot be proven"
                )
            check_setup(proof, zk_setup)
        client = market.client
        path = self.state_dir / f"project-{project_id}.json"
        journal = Journal(path, client.chain.chain_id, client.address, project_id)
        self.ctx = NodeContext(
            market, project_id, journal, from_block, clock or client.chain.now, sleep, poll, progress or silent
        )
        pub = self.manifest.aggregator_public_key
        if keypair is not None and pub is not None and keypair.public_key_hex.lower() != pub.lower().removeprefix("0x"):
            raise ConfigError(
                f"the decryption key's public key {keypair.public_key_hex} is not the project's aggregator key {pub}"
            )
        prover = RoundProver(self.ctx, proof, zk_setup) if self.proven and proof is not None else None
        self.preparer = RoundPreparer(self.ctx, self.manifest, self.spec, self.config, keypair, self.validation, prover)
        self.poster = RoundPoster(self.ctx)

    @property
    def proven(self) -> bool:
        """Whether the project has a verifier (every round must carry a proof)."""
        return int(self.params.verifier, 16) != 0

    # --- the shared context: what tests and the demo read or replace -----------------------------------------

    @property
    def market(self) -> Market:
        """Chain client bound to the content store."""
        return self.ctx.market

    @property
    def client(self) -> MarketplaceClient:
        """The chain client (signing as the aggregator)."""
        return self.ctx.client

    @property
    def from_block(self) -> int:
        """First block searched for the project's events."""
        return self.ctx.from_block

    @property
    def progress(self) -> Progress:
        """Told what the node is doing (replaceable: the demo reports per round)."""
        return self.ctx.progress

    @progress.setter
    def progress(self, progress: Progress) -> None:
        self.ctx.progress = progress

    # --- chain views ----------------------------------------------------------------------------------------

    def state(self) -> ProjectState:
        """The project's current on-chain state."""
        return self.ctx.state()

    def posted(self, round_: int) -> PostedRound | None:
        """The round's ``RoundPosted`` event, if it was posted."""
        return self.ctx.posted(round_)

    def validation(self) -> tuple[Any, Any]:
        """The validation set (built or read once)."""
        if self._validation is None:
            self._validation = load_validation(
                self.manifest, self.market, self.validation_file, commitment=self.params.validation_set_commitment
            )
        return self._validation

    # --- one round ------------------------------------------------------------------------------------------

    def run_round(self, round_: int | None = None, *, wait: bool = True) -> RoundOutcome:
        """Post a round (default the current one), or report what the chain already holds for it.

        Waits until the submission window closed (``wait``; else raises), then validates, decides, stores and
        posts; safe to call again at any point (see the module docstring).

        Raises
        ------
        RoundInputError
            The round is not open yet, or the chain or store hold inconsistent inputs.
        ChainError
            The post was refused for another reason than the round being posted meanwhile.
        """
        state = self.state()
        r = state.current_round if round_ is None else round_
        done = self.poster.settled(r, state)
        if done is not None:
            return done
        if r > state.current_round or state.status != ProjectStatus.ACTIVE:
            raise RoundInputError(
                f"project {self.project_id} round {r} is not open (current round {state.current_round}, "
                f"{state.status.name.lower()})"
            )
        state = self._wait_for_deadline(r, state, wait)
        done = self.poster.settled(r, state)  # posted by another run while this one waited?
        if done is not None:
            return done
        if self.ctx.clock() >= state.aggregation_deadline:
            return RoundOutcome(self.project_id, r, "missed")
        entry = self.ctx.journal.get(r)
        prepared: PreparedRound | None = None
        if entry.get("stage") == "stored":
            prepared = self.preparer.resume(r, entry)
        resumed = prepared is not None
        if prepared is None:
            prepared = self.preparer.prepare(r, state)
        return self.poster.store_and_post(r, prepared, resumed)

    def _wait_for_deadline(self, r: int, state: ProjectState, wait: bool) -> ProjectState:
        while True:
            now = self.ctx.clock()
            if now >= state.submission_deadline:
                return state
            if not wait:
                raise RoundInputError(
                    f"project {self.project_id} round {r}: submissions close at {state.submission_deadline} (now {now})"
                )
            self.progress(f"round {r}: waiting for submissions ({state.submission_deadline - now} s left)", 0, 0)
            self.ctx.wait(state.submission_deadline, now)
            state = self.state()

    # --- following a project --------------------------------------------------------------------------------

    def follow(
        self,
        *,
        until_finished: bool = True,
        rounds: int | None = None,
        poll: float | None = None,
        fail_overdue: bool = True,
        on_round: Callable[[RoundOutcome], None] | None = None,
    ) -> list[RoundOutcome]:
        """Post rounds as their submission windows close, until the project ends (or ``rounds`` were handled).

        Parameters
        ----------
        until_finished
            Keep going until the project is finished or cancelled; otherwise stop after ``rounds`` rounds (one if
            not given).
        rounds
            Stop after handling this many rounds.
        poll
            Seconds between chain checks (default the node's).
        fail_overdue
            Call ``failRound`` on a round whose aggregation window closed unposted, so the project moves on.
        on_round
            Called with each round's outcome.
        """
        if poll is not None:
            self.ctx.poll = poll
        limit = rounds if rounds is not None else (None if until_finished else 1)
        outcomes: list[RoundOutcome] = []
        status = StatusLine(lambda text: self.progress(text, 0, 0))
        backoff = Backoff(cap=max(self.ctx.poll, 0.5))  # capped at the poll: an outage's end is seen within one
        while limit is None or len(outcomes) < limit:
            try:
                outcome = self._follow_step(fail_overdue)
            except Exception as exc:  # an outage of the store or the chain is waited out; anything else is raised
                if not is_transient(exc):
                    raise
                status(*outage_line(exc))
                self.ctx.sleep(backoff.next())
                continue
            backoff.reset()
            status.clear()
            if outcome == "ended":
                break
            if isinstance(outcome, str):  # "waiting"
                continue
            outcomes.append(outcome)
            if on_round is not None:
                on_round(outcome)
        return outcomes

    def _follow_step(self, fail_overdue: bool) -> RoundOutcome | str:
        """Handle the current round once its submission window closed by the chain's clock.

        Returns the round's outcome, ``"waiting"`` (after one poll's wait) or ``"ended"`` (the project is over).
        """
        state = self.state()
        if state.status != ProjectStatus.ACTIVE:
            return "ended"
        now, r = self.ctx.clock(), state.current_round
        if now < state.submission_deadline:
            self.progress(
                f"round {r}: waiting for submissions ({state.submission_deadline - now} s left, closes at "
                f"{hhmmss(state.submission_deadline)} by the chain's clock){clock_lag_hint(now)}",
                0,
                0,
            )
            self.ctx.wait(state.submission_deadline, now)
            return "waiting"
        outcome = self.run_round(r)
        if outcome.status == "missed" and fail_overdue:
            outcome = self.poster.fail_overdue(r)
        return outcome


__all__ = [
    "JOURNAL_FORMAT",
    "STAGES",
    "AggregatorNode",
    "Journal",
    "RoundOutcome",
    "build_report",
    "round_post_of",
]
