"""The demo engine: one project's whole life on a chain, with the rounds left to a scenario.

:func:`run_scenario` connects to the chain (the embedded one by default) and a content store (a temporary
embedded store by default), then :class:`DemoRun` funds the parties' accounts, deploys the marketplace, lets the
:class:`Scenario` create the project and register its trainers, moves the clock to the project's start, plays the
scenario's rounds, has every trainer release its stake and claim and the owner withdraw what nobody earned, and
reconciles to the wei with one :class:`~pocfl.demo.reconcile.Ledger`: every credit, every party's balance, the
contract's final zero balance, every stored object read back and re-hashed. The scenario turns all that into its
result.

Timings: every content-store call is measured by a wrapper around the store and every JSON-RPC request by a web3
middleware (on the embedded chain this includes executing the EVM); see :class:`~pocfl.demo.instrument.Stopwatch`.
"""

from __future__ import annotations

import tempfile
import time
from abc import ABC, abstractmethod
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pocfl.chain.types import ZERO_ADDRESS, ZERO_BYTES32, ProjectParams, ProjectStatus, Receipt
from pocfl.demo.config import AGGREGATION_WINDOW, ETH, FUNDING, ROUND_BUDGET, STAKE, START_IN, SUBMISSION_WINDOW
from pocfl.demo.instrument import Stopwatch, chain_timer, fast_gas_estimates
from pocfl.demo.reconcile import Ledger, check_objects
from pocfl.demo.result import Settlement
from pocfl.store import ContentStore, EmbeddedStore, open_store
from pocfl.store.timed import TimedStore

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from pocfl.chain.backends import Chain
    from pocfl.chain.client import MarketplaceClient
    from pocfl.demo.result import FlRound
    from pocfl.market import Market

R = TypeVar("R")


class DemoReporter:
    """Receives a demo's progress; every method does nothing by default (the CLI draws progress bars)."""

    def stage(self, text: str) -> None:
        """A setup or settlement step starts."""

    def round_started(self, round_: int, trainers: int) -> None:
        """Round ``round_`` starts; ``trainers`` will train and submit."""

    def trainer_done(self, round_: int, name: str, role: str, message: str) -> None:
        """A trainer submitted its update (``message`` says how)."""

    def aggregating(self, round_: int, message: str, done: int, total: int) -> None:
        """The aggregator node reports progress (``total`` 0 when unknown)."""

    def round_done(self, row: FlRound) -> None:
        """A federated-learning round was posted (or failed)."""


class Scenario(ABC, Generic[R]):
    """What a demo does in its project: the initial model, the trainers, the rounds, and its result."""

    work_prefix = "pocfl-demo-"
    """Prefix of the run's temporary folder (the default store, node and trainer state)."""

    @property
    @abstractmethod
    def rounds(self) -> int:
        """Rounds of the project."""

    @property
    @abstractmethod
    def trainer_names(self) -> tuple[str, ...]:
        """The trainers, in registration order."""

    @abstractmethod
    def account(self, name: str) -> LocalAccount:
        """The account of party ``name`` (``owner``, ``aggregator`` or a trainer)."""

    @abstractmethod
    def create_project(self, run: DemoRun) -> tuple[int, Receipt]:
        """Store the initial model and create the project (:meth:`DemoRun.project_params`)."""

    @abstractmethod
    def register(self, run: DemoRun, index: int, name: str) -> None:
        """Prepare trainer ``name`` and register it (:meth:`DemoRun.register`)."""

    def open_rounds(self, run: DemoRun) -> None:
        """The project has started: set up what plays the rounds (nothing by default)."""

    @abstractmethod
    def play_round(self, run: DemoRun, round_: int) -> None:
        """Play one round: submit, close the window, post (or fail), and book its credits in ``run.ledger``."""

    @abstractmethod
    def finish(self, run: DemoRun, settled: Settlement) -> R:
        """The scenario's result, once the project is settled and reconciled."""


def run_scenario(
    scenario: Scenario[R],
    *,
    rpc: str | None = "embedded",
    ipfs: str | None = None,
    reporter: DemoReporter | None = None,
    fast_chain: bool = True,
) -> R:
    """Run ``scenario``'s project end to end on ``rpc`` with its files in ``ipfs``, and reconcile every balance.

    Parameters
    ----------
    scenario
        What the project does.
    rpc
        ``"embedded"`` (default, in-process), ``"anvil"`` (a throwaway local node) or the URL of a local node whose
        clock can be moved and that has an unlocked funded account.
    ipfs
        The content store (:func:`pocfl.store.open_store`: an IPFS node's RPC URL or a directory, kept); ``None``
        for a temporary embedded store deleted after the run.
    reporter
        Receives progress.
    fast_chain
        On a chain the demo owns (embedded or a throwaway anvil): serve repeated reads from a cache, answer
        ``eth_getLogs`` from the incremental :class:`~pocfl.chain.logs.LogIndex`, and (embedded) estimate gas with
        two EVM runs instead of a bisection. Off: every request goes to the chain as sent.
    """
    from pocfl.chain.backends import connect

    say = reporter or DemoReporter()
    t0 = time.monotonic()
    watch = Stopwatch(cache=fast_chain and rpc in (None, "embedded", "anvil"))
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=scenario.work_prefix)))
        inner: ContentStore = EmbeddedStore(work / "store") if ipfs is None else open_store(ipfs)
        stack.callback(inner.close)
        store = TimedStore(inner, watch.add_store)
        say.stage(f"connecting to the {rpc or 'embedded'} chain; files go to {inner.location}")
        chain = connect(rpc)
        stack.callback(chain.close)
        chain.w3.middleware_onion.inject(chain_timer(watch), name="pocfl-chain-timer", layer=0)
        if fast_chain:
            fast_gas_estimates(chain)
        run = DemoRun(chain, rpc or "embedded", store, watch, work, say, t0)
        run.store_label = inner.location if ipfs is not None else "temporary embedded store (deleted after the run)"
        run.store_kept = ipfs is not None
        return run.play(scenario)


class DemoRun:
    """One demo run: the chain, the store, the parties and their markets, the project, the books and the clock."""

    def __init__(
        self, chain: Chain, label: str, store: TimedStore, watch: Stopwatch, work: Path, say: DemoReporter, t0: float
    ) -> None:
        self.chain = chain
        self.label = label
        self.store = store
        self.watch = watch
        self.work = work
        self.say = say
        self.t0 = t0
        self.ledger = Ledger(chain)
        self.store_label = store.location
        self.store_kept = False
        self.timings: dict[str, float] = {}
        self.accounts: dict[str, LocalAccount] = {}
        self.on: dict[str, Market] = {}
        self.start_balances: dict[str, int] = {}
        self.nonces: dict[str, int] = {}
        self.rounds = 0
        self.trainer_names: tuple[str, ...] = ()
        self.project_id = 0
        self.start_time = 0

    @property
    def client(self) -> MarketplaceClient:
        """The owner's marketplace client."""
        return self.on["owner"].client

    @property
    def budget(self) -> int:
        """Wei the owner escrows: one ETH per round."""
        return ROUND_BUDGET * self.rounds

    @property
    def per_round(self) -> int:
        """Each round's share of the budget."""
        from pocfl.payouts import round_budget

        return round_budget(self.budget, self.rounds)

    def play(self, scenario: Scenario[R]) -> R:
        """Set up, play every round, settle and reconcile; the scenario's result."""
        t_setup = time.perf_counter()
        setup_store, setup_chain = self.watch.snapshot()
        self.rounds, self.trainer_names = scenario.rounds, scenario.trainer_names
        self.open_accounts(scenario)
        self.deploy()
        self.project_id, receipt = scenario.create_project(self)
        self.ledger.paid("owner", receipt)
        for i, name in enumerate(self.trainer_names):
            scenario.register(self, i, name)
        self.advance_to(self.start_time)
        scenario.open_rounds(self)
        store_now, chain_now = self.watch.snapshot()
        self.timings["setup"] = time.perf_counter() - t_setup
        self.timings.update(setup_store=store_now - setup_store, setup_chain=chain_now - setup_chain)
        t_rounds = time.perf_counter()
        for r in range(self.rounds):
            scenario.play_round(self, r)
        self.timings["rounds"] = time.perf_counter() - t_rounds
        t_settle = time.perf_counter()
        settled = self.settle()
        self.timings["settle"] = time.perf_counter() - t_settle
        return scenario.finish(self, settled)

    # --- the shared steps ---------------------------------------------------------------------------------

    def open_accounts(self, scenario: Scenario[R]) -> None:
        """Fund every party's account and note its balance and nonce."""
        w3 = self.chain.w3
        names = ("owner", "aggregator", *self.trainer_names)
        self.accounts = {name: scenario.account(name) for name in names}
        self.nonces = {name: int(w3.eth.get_transaction_count(a.address)) for name, a in self.accounts.items()}
        self.say.stage(f"funding {len(names)} fresh accounts with {FUNDING // ETH} ETH each")
        for account in self.accounts.values():
            self.chain.fund(account.address, FUNDING)
        self.start_balances = {name: int(w3.eth.get_balance(a.address)) for name, a in self.accounts.items()}

    def deploy(self) -> None:
        """The owner deploys the marketplace; every party gets its market (its client bound to the store)."""
        from pocfl.chain.client import MarketplaceClient
        from pocfl.market import Market

        self.say.stage("owner deploys PocMarketplace")
        client, receipt = MarketplaceClient.deploy(self.chain, self.accounts["owner"])
        self.ledger.paid("owner", receipt)
        self.on = {name: Market(client.as_account(a), self.store) for name, a in self.accounts.items()}

    def project_params(
        self, initial_model_cid: str, *, validation_set_commitment: bytes = ZERO_BYTES32, verifier: str = ZERO_ADDRESS
    ) -> ProjectParams:
        """The project's parameters: every trainer registers, rounds start a minute from now."""
        self.start_time = max(self.chain.now(), int(time.time())) + START_IN
        n = len(self.trainer_names)
        return ProjectParams(
            aggregator=self.accounts["aggregator"].address,
            start_time=self.start_time,
            num_rounds=self.rounds,
            submission_window=SUBMISSION_WINDOW,
            aggregation_window=AGGREGATION_WINDOW,
            min_trainers=n,
            max_trainers=n,
            stake=STAKE,
            validation_set_commitment=validation_set_commitment,
            initial_model_cid=initial_model_cid,
            verifier=verifier,
        )

    def register(self, name: str) -> None:
        """Trainer ``name`` registers, staking :data:`~pocfl.demo.config.STAKE`."""
        self.ledger.paid(name, self.on[name].client.register(self.project_id, STAKE))

    def advance_to(self, timestamp: int) -> None:
        """Move the chain's clock so the next block is at or after ``timestamp`` (timed as chain time)."""
        now = self.chain.now()
        if now < timestamp:
            t0 = time.perf_counter()
            self.chain.increase_time(timestamp - now)  # the embedded chain's time travel bypasses JSON-RPC
            self.watch.chain += time.perf_counter() - t0
        self.watch.invalidate()

    def settle(self) -> Settlement:
        """Trainers release their stakes and claim, the owner withdraws the rest; reconcile everything."""
        client, say, ledger = self.client, self.say, self.ledger
        final = client.project(self.project_id)
        if final.status != ProjectStatus.FINISHED:
            ledger.problems.append(f"project ended {final.status.name.lower()}, expected finished")
        for name in self.trainer_names:
            say.stage(f"{name} releases its stake and claims")
            ledger.paid(name, self.on[name].client.release_stake(self.project_id))
            _amount, receipt = self.on[name].client.claim()
            ledger.paid(name, receipt)
        if client.project(self.project_id).escrow > 0:
            say.stage("owner withdraws what nobody earned")
            _amount, receipt = client.withdraw_remaining(self.project_id)
            ledger.paid("owner", receipt)
        else:
            say.stage("every wei of the budget was earned: nothing for the owner to withdraw")
        parties = ledger.balances(self.accounts, self.start_balances, self.nonces, payer="owner")
        contract_balance = client.balance()
        if contract_balance != 0:
            ledger.problems.append(f"the contract still holds {contract_balance} wei")
        say.stage("re-reading and re-hashing every stored file")
        objects = tuple(dict.fromkeys(ledger.stored))
        ledger.problems += check_objects(self.store, objects)
        return Settlement(
            parties=parties,
            contract_balance=contract_balance,
            final_status=client.project(self.project_id).status.name.lower(),
            final_model_cid=final.model_cid,
            transactions=ledger.transactions,
            objects=objects,
        )

    def project_fields(self, settled: Settlement) -> dict[str, Any]:
        """The fields of :class:`~pocfl.demo.result.ProjectResult`, with every problem noted so far."""
        return {
            "chain": self.label,
            "chain_id": self.chain.chain_id,
            "market": self.client.address,
            "project_id": self.project_id,
            "budget": self.budget,
            "stake": STAKE,
            "parties": settled.parties,
            "contract_balance": settled.contract_balance,
            "final_status": settled.final_status,
            "transactions": self.ledger.transactions,
            "elapsed_s": time.monotonic() - self.t0,
            "problems": tuple(self.ledger.problems),
            "store": self.store_label,
            "store_kept": self.store_kept,
            "final_model_cid": settled.final_model_cid,
            "objects": settled.objects,
        }
