"""The federated-learning demo behind ``pocfl demo``: real training rounds, attackers, free riders, exact payouts.

One project goes through its whole life on a chain (the embedded one by default) with real files in a content
store (a temporary embedded store by default):

1. an owner deploys the marketplace, builds a project manifest (:func:`pocfl.fl_project.make_manifest`: a digits
   MLP, its seeded initial weights, a public validation recipe and the aggregator's encryption key) and creates
   the project with a budget of 1 ETH per round (:func:`pocfl.fl_project.create_fl_project`);
2. eight trainers (by default) register with a stake of 0.1 ETH; each owns a Dirichlet(0.5) label-skewed share
   of the digits training split (``digits:part=i:of=8:alpha=0.5:seed=S``), two of them attack (``sign_flip``
   and ``scaling``) and one free-rides (submits a zero update);
3. each round every trainer trains and submits in-process through :class:`trainer_client.TrainerClient` (updates
   sealed to the aggregator), the chain's clock moves past the submission window, and the
   :class:`aggregator.node.AggregatorNode` fetches, decrypts and validates every update, filters outliers (Flag
   Aggregator), scores contributions (Shapley values on the validation set), stores the new global model and the
   round report, and posts the round;
4. after the last round every trainer releases its stake and claims, and the owner withdraws the rest.

Everything is then reconciled to the wei: each round's ``TrainerCredited`` amounts against
:func:`pocfl.payouts.allocate` of the scores and flags in the stored round report, every party's balance change
(with the gas of every transaction it sent added back, and its transaction count checked against its nonce)
against the credits, and the contract's final balance against zero. Every object the demo stored is read back
and re-hashed.

Timings: each round is split into ``train`` (local training, encoding, sealing), ``aggregate`` (validation,
outlier filter, Shapley scores, report), ``store`` (every content-store call, measured by a wrapper around the
store) and ``chain`` (every JSON-RPC request, measured by a web3 middleware; on the embedded chain this includes
executing the EVM).

:func:`run_fl_demo` returns a :class:`FlDemoResult`; ``pocfl demo`` renders it.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from web3.middleware.base import Web3Middleware

from pocfl.chain.gas import fast_gas_estimate
from pocfl.chain.logs import LogIndex
from pocfl.chain.types import ZERO_ADDRESS, ProjectParams, ProjectStatus, Receipt
from pocfl.demo import PartyBalance
from pocfl.errors import ConfigError, PocflError
from pocfl.manifest import TrainingConfig
from pocfl.store import ContentStore, EmbeddedStore, compute_cid, open_store
from pocfl.store.timed import TimedStore

if TYPE_CHECKING:
    from aggregator.node import AggregatorNode
    from pocfl.chain.backends import Chain
    from trainer_client import TrainerClient

ETH = 10**18
FUNDING = 10 * ETH
STAKE = ETH // 10
ROUND_BUDGET = ETH
START_IN = 60
SUBMISSION_WINDOW = 600
AGGREGATION_WINDOW = 600
DEFAULT_ROUNDS = 4
DEFAULT_TRAINERS = 8
DEFAULT_ATTACKS = ("sign_flip", "scaling")
DEFAULT_FREE_RIDERS = 1
DEFAULT_HIDDEN = 32
DEFAULT_EPOCHS = 3
DEFAULT_LEARNING_RATE = 0.3
DEFAULT_BATCH_SIZE = 16
DEFAULT_ALPHA = 0.5
DEFAULT_SEED = 4
HONEST = "honest"
FREE_RIDER = "free_rider"


class DemoReporter:
    """Receives the demo's progress; every method does nothing by default (the CLI draws progress bars)."""

    def stage(self, text: str) -> None:
        """A setup or settlement step starts."""

    def round_started(self, round_: int, trainers: int) -> None:
        """Round ``round_`` starts; ``trainers`` will train and submit."""

    def trainer_done(self, round_: int, name: str, role: str, message: str) -> None:
        """A trainer submitted its update (``message`` says how)."""

    def aggregating(self, round_: int, message: str, done: int, total: int) -> None:
        """The aggregator node reports progress (``total`` 0 when unknown)."""

    def round_done(self, row: FlRound) -> None:
        """A round was posted (or failed)."""


# --- configuration and results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlDemoConfig:
    """What the demo runs.

    Attributes
    ----------
    rounds
        Training rounds (at least 1).
    trainers
        Trainers in all (honest + attackers + free riders).
    attacks
        One attack per attacking trainer (names :func:`trainer_client.parse_attack` knows).
    free_riders
        Trainers that submit zero updates.
    hidden, epochs, learning_rate, batch_size
        Model width and round-0 local training settings.
    alpha
        Dirichlet concentration of the label skew of the trainers' data shares.
    seed
        Seed of the initial weights, the data split and partition, and local training.
    encrypt
        Whether the manifest carries the aggregator's key (trainers seal their updates to it).
    prove
        Prove every round (``zk/``): deploy an ezkl verifier for a ``trainers``-slot circuit, set it as the project's
        verifier, and have trainers commit to ``sketch_dim`` features; the contract verifies each round's proof.
    sketch_dim
        Feature (sketch) dimension of the proven decision.
    zk_cache
        Where circuit setups (proving keys, local SRS) are cached; default a temporary folder.
    """

    rounds: int = DEFAULT_ROUNDS
    trainers: int = DEFAULT_TRAINERS
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    free_riders: int = DEFAULT_FREE_RIDERS
    hidden: int = DEFAULT_HIDDEN
    epochs: int = DEFAULT_EPOCHS
    learning_rate: float = DEFAULT_LEARNING_RATE
    batch_size: int = DEFAULT_BATCH_SIZE
    alpha: float = DEFAULT_ALPHA
    seed: int = DEFAULT_SEED
    encrypt: bool = True
    prove: bool = False
    sketch_dim: int = 16
    zk_cache: Path | None = None

    def roles(self) -> tuple[str, ...]:
        """Each trainer's role (``honest``, an attack name or ``free_rider``), dishonest ones spread out.

        Raises
        ------
        ConfigError
            Fewer than 3 trainers, no honest trainer, or an unknown attack.
        """
        from trainer_client import parse_attack

        dishonest = [parse_attack(a) for a in self.attacks]
        names = [a.value if a is not None else HONEST for a in dishonest] + [FREE_RIDER] * self.free_riders
        if self.rounds < 1:
            raise ConfigError(f"the demo needs at least one round, got {self.rounds}")
        if self.trainers < 3:
            raise ConfigError(f"the demo needs at least 3 trainers, got {self.trainers}")
        if len(names) >= self.trainers:
            raise ConfigError(
                f"{len(names)} attackers and free riders leave no honest trainer among {self.trainers} trainers"
            )
        roles = [HONEST] * self.trainers
        n, d = self.trainers, len(names)
        for k, name in enumerate(names):  # evenly spread: 8 trainers, 3 dishonest -> trainers 2, 5 and 8
            roles[min(n - 1, round((k + 0.5) * n / d))] = name
        return tuple(roles)

    def data_spec(self, i: int) -> str:
        """Trainer ``i``'s private data: its share of the digits training split."""
        return f"digits:part={i}:of={self.trainers}:alpha={self.alpha:g}:seed={self.seed}"


def group_of(role: str) -> str:
    """``honest``, ``attacker`` or ``free rider``."""
    if role == HONEST:
        return "honest"
    return "free rider" if role == FREE_RIDER else "attacker"


@dataclass(frozen=True)
class TrainerInfo:
    """A demo trainer: who it is, what it does, what data it owns."""

    name: str
    address: str
    role: str
    data: str
    samples: int
    classes: int

    @property
    def group(self) -> str:
        """``honest``, ``attacker`` or ``free rider``."""
        return group_of(self.role)


@dataclass(frozen=True)
class FlEntry:
    """One trainer's submission in a posted round and its on-chain credit."""

    trainer: str
    address: str
    role: str
    cid: str
    encrypted: bool
    plaintext_cid: str | None
    status: str
    outlier: bool
    score: int
    value: float
    weight: float
    credited: int
    expected: int

    @property
    def reconciled(self) -> bool:
        """Whether the contract credited exactly what :func:`pocfl.payouts.allocate` predicts."""
        return self.credited == self.expected


@dataclass(frozen=True)
class FlRound:
    """A settled demo round."""

    round: int
    outcome: str
    accuracy_before: float
    accuracy: float
    loss: float
    budget: int
    credited: int
    unallocated: int
    entries: tuple[FlEntry, ...]
    model_cid: str
    report_cid: str
    tx_hash: str
    shapley_method: str
    timings: dict[str, float]
    proven: bool = False
    """The contract verified a zero-knowledge proof of the round's flags and scores (``RoundPosted.proven``)."""
    prove_seconds: float | None = None

    @property
    def outliers(self) -> tuple[str, ...]:
        """Names of the trainers flagged as outliers."""
        return tuple(e.trainer for e in self.entries if e.outlier)


@dataclass(frozen=True)
class FlDemoResult:
    """Everything the demo did and the numbers to check it (see the module docstring)."""

    chain: str
    chain_id: int
    market: str
    project_id: int
    config: FlDemoConfig
    budget: int
    stake: int
    trainers: tuple[TrainerInfo, ...]
    rounds: tuple[FlRound, ...]
    parties: tuple[PartyBalance, ...]
    contract_balance: int
    final_status: str
    transactions: int
    elapsed_s: float
    timings: dict[str, float]
    manifest_cid: str = ""
    initial_weights_cid: str = ""
    final_model_cid: str = ""
    validation_commitment: str = ""
    chain_methods: dict[str, tuple[int, float]] = field(default_factory=dict)
    store: str = ""
    store_kept: bool = False
    objects: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)
    audit_ok: bool | None = None
    audit_warnings: tuple[str, ...] = ()
    verifier: dict[str, Any] | None = None
    """The deployed verifier pair of a ``--prove`` run (addresses, circuit, sizes)."""

    @property
    def reconciled(self) -> bool:
        """Every credit, every balance, every stored file and the contract's final zero balance check out."""
        return not self.problems

    def earned(self) -> dict[str, int]:
        """Wei each trainer was credited over all rounds."""
        totals = {t.name: 0 for t in self.trainers}
        for r in self.rounds:
            for e in r.entries:
                totals[e.trainer] += e.credited
        return totals

    def groups(self) -> dict[str, dict[str, int]]:
        """Per group (honest / attacker / free rider): trainers, min, max and total wei earned."""
        earned = self.earned()
        out: dict[str, dict[str, int]] = {}
        for t in self.trainers:
            g = out.setdefault(t.group, {"trainers": 0, "min_wei": earned[t.name], "max_wei": 0, "total_wei": 0})
            g["trainers"] += 1
            g["min_wei"] = min(g["min_wei"], earned[t.name])
            g["max_wei"] = max(g["max_wei"], earned[t.name])
            g["total_wei"] += earned[t.name]
        return out

    @property
    def incentives_hold(self) -> bool:
        """Every attacker and free rider earned less than every honest trainer."""
        groups = self.groups()
        honest_min = groups.get("honest", {}).get("min_wei", 0)
        others = [g["max_wei"] for name, g in groups.items() if name != "honest"]
        return all(m < honest_min for m in others)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (amounts in wei, as integers)."""
        earned = self.earned()
        return {
            "demo": "fl",
            "reconciled": self.reconciled,
            "audit_ok": self.audit_ok,
            "audit_warnings": list(self.audit_warnings),
            "problems": list(self.problems),
            "incentives_hold": self.incentives_hold,
            "chain": self.chain,
            "chain_id": self.chain_id,
            "market": self.market,
            "project_id": self.project_id,
            "num_rounds": self.config.rounds,
            "config": {
                "rounds": self.config.rounds,
                "trainers": self.config.trainers,
                "attacks": list(self.config.attacks),
                "free_riders": self.config.free_riders,
                "hidden": self.config.hidden,
                "epochs": self.config.epochs,
                "learning_rate": self.config.learning_rate,
                "batch_size": self.config.batch_size,
                "alpha": self.config.alpha,
                "seed": self.config.seed,
                "encrypt": self.config.encrypt,
                "prove": self.config.prove,
                "sketch_dim": self.config.sketch_dim,
            },
            "budget_wei": self.budget,
            "stake_wei": self.stake,
            "final_status": self.final_status,
            "contract_balance_wei": self.contract_balance,
            "transactions": self.transactions,
            "elapsed_s": round(self.elapsed_s, 3),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "chain_methods": {k: {"requests": n, "seconds": round(t, 4)} for k, (n, t) in self.chain_methods.items()},
            "store": self.store,
            "store_kept": self.store_kept,
            "manifest_cid": self.manifest_cid,
            "verifier": self.verifier,
            "initial_weights_cid": self.initial_weights_cid,
            "final_model_cid": self.final_model_cid,
            "validation_set_commitment": self.validation_commitment,
            "objects": list(self.objects),
            "trainers": [
                {
                    "name": t.name,
                    "address": t.address,
                    "role": t.role,
                    "group": t.group,
                    "data": t.data,
                    "samples": t.samples,
                    "classes": t.classes,
                    "earned_wei": earned[t.name],
                    "rounds_flagged": sum(e.outlier for r in self.rounds for e in r.entries if e.trainer == t.name),
                }
                for t in self.trainers
            ],
            "groups": self.groups(),
            "rounds": [
                {
                    "round": r.round,
                    "outcome": r.outcome,
                    "accuracy_before": r.accuracy_before,
                    "accuracy": r.accuracy,
                    "loss": r.loss,
                    "outliers": list(r.outliers),
                    "budget_wei": r.budget,
                    "credited_wei": r.credited,
                    "unallocated_wei": r.unallocated,
                    "model_cid": r.model_cid,
                    "report_cid": r.report_cid,
                    "tx_hash": r.tx_hash,
                    "shapley_method": r.shapley_method,
                    "proven": r.proven,
                    "prove_seconds": r.prove_seconds,
                    "timings_s": {k: round(v, 4) for k, v in r.timings.items()},
                    "entries": [
                        {
                            "trainer": e.trainer,
                            "address": e.address,
                            "role": e.role,
                            "cid": e.cid,
                            "encrypted": e.encrypted,
                            "plaintext_cid": e.plaintext_cid,
                            "status": e.status,
                            "outlier": e.outlier,
                            "score": e.score,
                            "value": e.value,
                            "weight": e.weight,
                            "credited_wei": e.credited,
                            "expected_wei": e.expected,
                            "reconciled": e.reconciled,
                        }
                        for e in r.entries
                    ],
                }
                for r in self.rounds
            ],
            "parties": [
                {
                    "party": p.party,
                    "address": p.address,
                    "start_wei": p.start,
                    "end_wei": p.end,
                    "gas_wei": p.gas,
                    "net_wei": p.net,
                    "expected_wei": p.expected,
                    "reconciled": p.reconciled,
                }
                for p in self.parties
            ],
        }


# --- instrumentation --------------------------------------------------------------------------------------------


class Stopwatch:
    """Seconds spent in content-store calls and in chain requests so far, and the chain's read cache.

    The read cache (used when the demo is the chain's only user: embedded chain or a throwaway anvil) answers
    a repeated read-only JSON-RPC request (``eth_getLogs``, ``eth_call``, ...) with the same parameters from
    memory until the next request that may change the chain (a transaction, mining, a time jump), which
    clears it. The trainer client and the aggregator node re-read the same events several times per round;
    eth-tester answers ``eth_getLogs`` by walking every block, so this keeps rounds from slowing down as the
    chain grows. ``chain_requests`` and ``chain_cached`` count the requests and the cache hits.
    """

    def __init__(self, cache: bool = False) -> None:
        self.store = 0.0
        self.chain = 0.0
        self.cache_enabled = cache
        self.cache: dict[str, Any] = {}
        self.chain_requests = 0
        self.chain_cached = 0
        self.methods: dict[str, list[float]] = {}
        """Per JSON-RPC method sent to the chain (cache misses): ``[count, seconds]``."""
        self.logs = LogIndex()

    def add_store(self, seconds: float) -> None:
        """Count ``seconds`` spent in one content-store call (the :class:`~pocfl.store.timed.TimedStore` hook)."""
        self.store += seconds

    def snapshot(self) -> tuple[float, float]:
        """``(store, chain)`` seconds so far."""
        return self.store, self.chain

    def invalidate(self) -> None:
        """Forget every cached read (the chain changed)."""
        self.cache.clear()


READ_ONLY_METHODS = frozenset(
    {
        "eth_getLogs",
        "eth_call",
        "eth_estimateGas",
        "eth_getBlockByNumber",
        "eth_getBalance",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_getCode",
        "eth_chainId",
        "eth_accounts",
        "eth_blockNumber",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
    }
)
"""JSON-RPC methods whose answers the demo's read cache may reuse until the chain changes."""


def _plain_filter(params: Any) -> bool:
    """Whether ``eth_getLogs`` params are one block-range filter (not a ``blockHash`` query)."""
    return (
        isinstance(params, list | tuple)
        and len(params) == 1
        and isinstance(params[0], dict)
        and "blockHash" not in params[0]
    )


def _chain_timer(watch: Stopwatch) -> type[Web3Middleware]:
    """A web3 middleware class that times every JSON-RPC request into ``watch.chain`` and serves cached reads."""

    class ChainTimer(Web3Middleware):
        def wrap_make_request(self, make_request: Any) -> Any:
            def timed(method: Any, params: Any) -> Any:
                t0 = time.perf_counter()
                watch.chain_requests += 1
                try:
                    name = str(method)
                    key = json.dumps([name, params], sort_keys=True, default=repr) if watch.cache_enabled else ""
                    if name not in READ_ONLY_METHODS:
                        watch.invalidate()
                        key = ""
                    elif key in watch.cache:
                        watch.chain_cached += 1
                        return copy.deepcopy(watch.cache[key])
                    elif key and name == "eth_getLogs" and _plain_filter(params):
                        stat = watch.methods.setdefault("eth_getLogs (indexed)", [0, 0.0])
                        t1 = time.perf_counter()
                        response = watch.logs.query(params[0], make_request)
                        stat[0] += 1
                        stat[1] += time.perf_counter() - t1
                        return response
                    t1 = time.perf_counter()
                    response = make_request(method, params)
                    stat = watch.methods.setdefault(name, [0, 0.0])
                    stat[0] += 1
                    stat[1] += time.perf_counter() - t1
                    if not key:
                        return response
                    if isinstance(response, dict) and "error" not in response and response.get("result") is not None:
                        watch.cache[key] = copy.deepcopy(response)
                    return response
                finally:
                    watch.chain += time.perf_counter() - t0

            return timed

    return ChainTimer


def _fast_gas_estimates(chain: Chain) -> None:
    """Use :func:`pocfl.chain.gas.fast_gas_estimate` on the demo's own embedded chain; others estimate natively."""
    chain.control.use_fast_gas_estimate(fast_gas_estimate)


# --- the run ----------------------------------------------------------------------------------------------------


def run_fl_demo(
    config: FlDemoConfig | None = None,
    *,
    rpc: str | None = "embedded",
    ipfs: str | None = None,
    reporter: DemoReporter | None = None,
    fast_chain: bool = True,
) -> FlDemoResult:
    """Run the federated-learning project end to end and reconcile every balance.

    Parameters
    ----------
    config
        Trainers, attacks, rounds and model settings (default :class:`FlDemoConfig`).
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
        ``eth_getLogs`` from the incremental :class:`LogIndex`, and (embedded) estimate gas with two EVM runs
        instead of a bisection. Off: every request goes to the chain as sent (for comparison).

    Returns
    -------
    FlDemoResult
        The rounds, the per-party balances, timings and any reconciliation problems (none when all is well).

    Raises
    ------
    ConfigError
        An impossible configuration (see :meth:`FlDemoConfig.roles`).
    """
    from pocfl.chain.backends import connect

    cfg = config or FlDemoConfig()
    cfg.roles()  # refuse a bad configuration before starting anything
    say = reporter or DemoReporter()
    t0 = time.monotonic()
    watch = Stopwatch(cache=fast_chain and rpc in (None, "embedded", "anvil"))
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pocfl-fl-demo-")))
        inner: ContentStore = EmbeddedStore(work / "store") if ipfs is None else open_store(ipfs)
        stack.callback(inner.close)
        store = TimedStore(inner, watch.add_store)
        say.stage(f"connecting to the {rpc or 'embedded'} chain; files go to {inner.location}")
        chain = connect(rpc)
        stack.callback(chain.close)
        chain.w3.middleware_onion.inject(_chain_timer(watch), name="pocfl-chain-timer", layer=0)
        if fast_chain:
            _fast_gas_estimates(chain)
        result = _Run(cfg, chain, rpc or "embedded", store, watch, work, say, t0).run()
        label = inner.location if ipfs is not None else "temporary embedded store (deleted after the run)"
        return replace(result, store=label, store_kept=ipfs is not None, elapsed_s=time.monotonic() - t0)


class _Run:
    """One demo run (state shared by its steps)."""

    def __init__(
        self,
        cfg: FlDemoConfig,
        chain: Chain,
        label: str,
        store: TimedStore,
        watch: Stopwatch,
        work: Path,
        say: DemoReporter,
        t0: float,
    ) -> None:
        self.cfg = cfg
        self.chain = chain
        self.label = label
        self.store = store
        self.watch = watch
        self.work = work
        self.say = say
        self.t0 = t0
        self.txs: dict[str, list[str]] = {}
        self.fees: dict[str, int] = {}
        self.problems: list[str] = []
        self.audit_ok: bool | None = None
        self.audit_warnings: list[str] = []
        self.stored: list[str] = []
        self.verifier: dict[str, Any] | None = None

    # --- gas bookkeeping ----------------------------------------------------------------------------------

    def paid(self, party: str, receipt: Receipt) -> Receipt:
        """Record a transaction ``party`` sent, with its fee."""
        self.txs.setdefault(party, []).append(receipt.tx_hash)
        self.fees[party] = self.fees.get(party, 0) + receipt.fee_wei
        return receipt

    def paid_hash(self, party: str, tx_hash: str | None) -> None:
        """Record a transaction sent by library code (trainer client, aggregator node) by its hash."""
        if tx_hash is None:
            self.problems.append(f"{party}: a transaction without a hash")
            return
        raw = self.chain.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        self.txs.setdefault(party, []).append(tx_hash)
        self.fees[party] = self.fees.get(party, 0) + int(raw["gasUsed"]) * int(raw["effectiveGasPrice"])

    def advance_to(self, timestamp: int) -> None:
        """Move the chain's clock so the next block is at or after ``timestamp`` (timed as chain time)."""
        now = self.chain.now()
        if now < timestamp:
            t0 = time.perf_counter()
            self.chain.increase_time(timestamp - now)  # the embedded chain's time travel bypasses JSON-RPC
            self.watch.chain += time.perf_counter() - t0
        self.watch.invalidate()

    def deploy_verifier(self, owner: LocalAccount) -> tuple[Any, str, Any]:
        """Set up the round circuit (cached) and deploy its verifier pair; returns (setup, adapter, ProofConfig)."""
        from pocfl.manifest import ProofConfig
        from zk.onchain import deploy_round_verifier
        from zk.prover import CircuitShape, RoundCircuitSetup

        cfg = self.cfg
        shape = CircuitShape(slots=cfg.trainers, sketch_dim=cfg.sketch_dim)
        cache = cfg.zk_cache or self.work / "zk"
        self.say.stage(f"setting up the round circuit ({shape.key}, local test-only SRS) in {cache}")
        setup = RoundCircuitSetup.build(shape, cache, progress=self.say.stage)
        self.say.stage("owner deploys the ezkl Halo2 verifier and the EzklRoundVerifier adapter")
        deployed = deploy_round_verifier(self.chain, owner, setup, self.work / "verifier")
        self.verifier = deployed.to_json()
        self.paid_blocks("owner", deployed.tx_hashes)
        return setup, deployed.adapter, ProofConfig(shape.slots, shape.sketch_dim, shape.scale)

    def paid_blocks(self, party: str, tx_hashes: Sequence[str]) -> None:
        """Record transactions sent by library code, by hash."""
        for h in tx_hashes:
            self.paid_hash(party, h)

    # --- the whole run ------------------------------------------------------------------------------------

    def run(self) -> FlDemoResult:
        from aggregator.node import AggregatorNode
        from pocfl.chain.client import MarketplaceClient
        from pocfl.fl_project import create_fl_project, make_manifest, validation_commitment
        from pocfl.market import Market
        from pocfl.payouts import round_budget
        from pocfl.updates import EncryptionKeyPair
        from trainer_client import TrainerClient, load_private_data

        cfg, chain, say = self.cfg, self.chain, self.say
        w3 = chain.w3
        roles = cfg.roles()
        t_setup = time.perf_counter()
        setup_store, setup_chain = self.watch.snapshot()
        budget = ROUND_BUDGET * cfg.rounds
        trainer_names = [f"trainer-{i + 1}" for i in range(cfg.trainers)]
        names = {name: demo_account(cfg.seed, name) for name in ("owner", "aggregator", *trainer_names)}
        owner, aggregator = names["owner"], names["aggregator"]
        nonces = {name: int(w3.eth.get_transaction_count(a.address)) for name, a in names.items()}
        say.stage(f"funding {len(names)} fresh accounts with {FUNDING // ETH} ETH each")
        for account in names.values():
            chain.fund(account.address, FUNDING)
        start = {name: int(w3.eth.get_balance(a.address)) for name, a in names.items()}

        say.stage("owner deploys PocMarketplace")
        client, receipt = MarketplaceClient.deploy(chain, owner)
        self.paid("owner", receipt)
        zk_setup, verifier, proof_config = None, ZERO_ADDRESS, None
        if cfg.prove:
            zk_setup, verifier, proof_config = self.deploy_verifier(owner)
        on = {name: Market(client.as_account(a), self.store) for name, a in names.items()}
        key = EncryptionKeyPair.generate()
        say.stage(f"owner builds the project manifest (digits MLP, hidden {cfg.hidden}) and stores the initial weights")
        manifest, manifest_bytes = make_manifest(
            "pocfl demo: digits",
            seed=cfg.seed,
            hidden=cfg.hidden,
            store=on["owner"],
            aggregator_public_key=key.public_key_hex if cfg.encrypt else None,
            training=TrainingConfig(
                learning_rate=cfg.learning_rate, local_epochs=cfg.epochs, batch_size=cfg.batch_size
            ),
            proof=proof_config,
        )
        manifest_cid = compute_cid(manifest_bytes)
        self.stored += [manifest.model.initial_weights_cid, manifest_cid]
        start_time = max(chain.now(), int(time.time())) + START_IN
        params = ProjectParams(
            aggregator=aggregator.address,
            start_time=start_time,
            num_rounds=cfg.rounds,
            submission_window=SUBMISSION_WINDOW,
            aggregation_window=AGGREGATION_WINDOW,
            min_trainers=cfg.trainers,
            max_trainers=cfg.trainers,
            stake=STAKE,
            initial_model_cid=manifest_cid,
            verifier=verifier,
        )
        say.stage(f"owner creates the project, escrowing {budget // ETH} ETH over {cfg.rounds} rounds")
        project_id, receipt = create_fl_project(on["owner"], params, budget, manifest)
        self.paid("owner", receipt)
        created_block = receipt.block_number
        commitment = validation_commitment(manifest)
        state = client.project(project_id)
        if state.params.initial_model_cid != manifest_cid or state.params.validation_set_commitment != commitment:
            self.problems.append("the project on chain does not name the manifest and its validation commitment")

        trainers: list[TrainerInfo] = []
        clients: list[TrainerClient] = []
        for i, name in enumerate(trainer_names):
            say.stage(f"{name} ({roles[i]}) loads its data and registers, staking {STAKE / ETH:g} ETH")
            spec = cfg.data_spec(i)
            x, y = load_private_data(spec)
            self.paid(name, on[name].client.register(project_id, STAKE))
            trainers.append(
                TrainerInfo(name, names[name].address, roles[i], spec, int(y.shape[0]), len(set(y.tolist())))
            )
            clients.append(
                TrainerClient(
                    on[name],
                    project_id,
                    x,
                    y,
                    seed=cfg.seed * 1000 + i,
                    attack=None if roles[i] == HONEST else roles[i],
                    state_dir=self.work / "trainers",
                    from_block=created_block,
                )
            )
        self.advance_to(start_time)
        node = AggregatorNode(
            on["aggregator"],
            project_id,
            keypair=key if cfg.encrypt else None,
            state_dir=self.work / "aggregator",
            from_block=created_block,
            clock=chain.now,
            sleep=lambda _s: None,
            zk_setup=zk_setup,
        )
        setup_s = time.perf_counter() - t_setup
        store_now, chain_now = self.watch.snapshot()
        timings = {
            "setup": setup_s,
            "setup_store": store_now - setup_store,
            "setup_chain": chain_now - setup_chain,
        }

        per_round = round_budget(budget, cfg.rounds)
        by_address = {t.address: t for t in trainers}
        rounds: list[FlRound] = []
        t_rounds = time.perf_counter()
        for r in range(cfg.rounds):
            rounds.append(self.round(r, clients, trainers, node, per_round, by_address, project_id))
            say.round_done(rounds[-1])
        timings["rounds"] = time.perf_counter() - t_rounds

        t_settle = time.perf_counter()
        final = client.project(project_id)
        if final.status != ProjectStatus.FINISHED:
            self.problems.append(f"project ended {final.status.name.lower()}, expected finished")
        for name in trainer_names:
            say.stage(f"{name} releases its stake and claims")
            self.paid(name, on[name].client.release_stake(project_id))
            _amount, receipt = on[name].client.claim()
            self.paid(name, receipt)
        if client.project(project_id).escrow > 0:
            say.stage("owner withdraws what nobody earned")
            _amount, receipt = on["owner"].client.withdraw_remaining(project_id)
            self.paid("owner", receipt)
        else:
            say.stage("every wei of the budget was earned: nothing for the owner to withdraw")

        expected = dict.fromkeys(names, 0)
        for row in rounds:
            for e in row.entries:
                expected[e.trainer] += e.expected
        expected["owner"] = -sum(expected[n] for n in trainer_names)
        parties = tuple(
            PartyBalance(
                party=name,
                address=a.address,
                start=start[name],
                end=int(w3.eth.get_balance(a.address)),
                gas=self.fees.get(name, 0),
                expected=expected[name],
            )
            for name, a in names.items()
        )
        self.problems += [f"{p.party}: net {p.net} wei, expected {p.expected}" for p in parties if not p.reconciled]
        for name, a in names.items():
            nonce = int(w3.eth.get_transaction_count(a.address)) - nonces[name]
            if nonce != len(self.txs.get(name, [])):
                self.problems.append(
                    f"{name} sent {nonce} transactions, the demo accounted for {len(self.txs.get(name, []))}"
                )
        contract_balance = client.balance()
        if contract_balance != 0:
            self.problems.append(f"the contract still holds {contract_balance} wei")
        say.stage("re-reading and re-hashing every stored file")
        objects = tuple(dict.fromkeys(self.stored))
        self.problems += _check_objects(self.store, objects)
        timings["settle"] = time.perf_counter() - t_settle

        # The third use: an auditor recomputes every round and payout from the chain and the store alone.
        t_audit = time.perf_counter()
        say.stage("auditing: recomputing every round and payout from the chain and the store")
        from pocfl.audit import audit_project

        audit = audit_project(on["owner"], project_id)
        self.audit_ok = audit.ok
        self.audit_warnings = list(audit.warnings)
        self.problems += [f"audit: {d}" for d in audit.differences]
        timings["audit"] = time.perf_counter() - t_audit
        timings["chain_requests"] = self.watch.chain_requests
        timings["chain_cached"] = self.watch.chain_cached
        return FlDemoResult(
            chain=self.label,
            chain_id=chain.chain_id,
            market=client.address,
            project_id=project_id,
            config=cfg,
            budget=budget,
            stake=STAKE,
            trainers=tuple(trainers),
            rounds=tuple(rounds),
            parties=parties,
            contract_balance=contract_balance,
            final_status=client.project(project_id).status.name.lower(),
            transactions=sum(len(v) for v in self.txs.values()),
            elapsed_s=time.monotonic() - self.t0,
            timings=timings,
            manifest_cid=manifest_cid,
            initial_weights_cid=manifest.model.initial_weights_cid,
            final_model_cid=final.model_cid,
            validation_commitment="0x" + commitment.hex(),
            chain_methods={k: (int(v[0]), float(v[1])) for k, v in self.watch.methods.items()},
            objects=objects,
            problems=tuple(self.problems),
            audit_ok=self.audit_ok,
            audit_warnings=tuple(self.audit_warnings),
            verifier=self.verifier,
        )

    def round(
        self,
        r: int,
        clients: Sequence[TrainerClient],
        trainers: Sequence[TrainerInfo],
        node: AggregatorNode,
        per_round: int,
        by_address: dict[str, TrainerInfo],
        project_id: int,
    ) -> FlRound:
        """Train and submit, close the window, aggregate and post; reconcile the round's credits."""
        from pocfl.payouts import allocate
        from trainer_client import RoundStatus

        say = self.say
        say.round_started(r, len(clients))
        t_start = time.perf_counter()
        s0, c0 = self.watch.snapshot()
        for client, info in zip(clients, trainers, strict=True):
            result = client.train_round(r)
            if result.status is not RoundStatus.SUBMITTED:
                self.problems.append(f"round {r}: {info.name} did not submit ({result.message})")
            else:
                self.paid_hash(info.name, result.tx_hash)
            say.trainer_done(r, info.name, info.role, result.message)
        t_trained = time.perf_counter()
        s1, c1 = self.watch.snapshot()
        self.advance_to(node.state().submission_deadline)
        node.progress = lambda message, done, total: say.aggregating(r, message, done, total)
        outcome = node.run_round(r)
        t_done = time.perf_counter()
        s2, c2 = self.watch.snapshot()
        timings = {
            "train": (t_trained - t_start) - (s1 - s0) - (c1 - c0),
            "aggregate": (t_done - t_trained) - (s2 - s1) - (c2 - c1),
            "store": s2 - s0,
            "chain": c2 - c0,
            "total": t_done - t_start,
        }
        if outcome.status != "posted" or outcome.report is None:
            self.problems.append(f"round {r}: the aggregator's round ended {outcome.status}")
            return FlRound(r, outcome.status, 0.0, 0.0, 0.0, per_round, 0, per_round, (), "", "", "", "", timings)
        self.paid_hash("aggregator", outcome.tx_hash)
        report = outcome.report
        subs = report.submissions
        allocation = allocate(per_round, [s.score for s in subs], [s.outlier for s in subs])
        block = outcome.block or 0
        events = [
            e
            for e in node.client.events("TrainerCredited", from_block=block, projectId=project_id, round=r)
            if e.tx_hash == outcome.tx_hash
        ]
        posted = [
            e
            for e in node.client.events("RoundPosted", from_block=block, projectId=project_id)
            if e.tx_hash == outcome.tx_hash
        ]
        credited_of = {str(e.args["trainer"]): int(e.args["amount"]) for e in events}
        if len(events) != len(subs):
            self.problems.append(f"round {r}: {len(events)} TrainerCredited events for {len(subs)} submissions")
        entries = []
        for k, s in enumerate(subs):
            info = by_address[s.trainer]
            entry = FlEntry(
                trainer=info.name,
                address=s.trainer,
                role=info.role,
                cid=s.cid,
                encrypted=s.encrypted,
                plaintext_cid=s.plaintext_cid,
                status=s.status,
                outlier=s.outlier,
                score=s.score,
                value=s.value,
                weight=s.weight,
                credited=credited_of.get(s.trainer, 0),
                expected=allocation.shares[k],
            )
            entries.append(entry)
            if not entry.reconciled:
                self.problems.append(f"round {r}: {info.name} credited {entry.credited} wei, expected {entry.expected}")
            self.stored.append(s.cid)
            if s.plaintext_cid is not None:
                self.stored.append(s.plaintext_cid)
        total = int(posted[0].args["credited"]) if posted else 0
        unallocated = int(posted[0].args["unallocated"]) if posted else per_round
        if len(posted) != 1:
            self.problems.append(f"round {r}: {len(posted)} RoundPosted events in the post transaction")
        proven = bool(posted[0].args["proven"]) if posted else False
        if proven != self.cfg.prove:
            self.problems.append(f"round {r}: posted with proven={proven}, the demo ran with prove={self.cfg.prove}")
        proof_info = report.config.get("proof") if isinstance(report.config, dict) else None
        if isinstance(proof_info, dict):
            self.stored.append(str(proof_info["cid"]))
        if total != allocation.credited:
            self.problems.append(f"round {r}: credited {total} wei in total, expected {allocation.credited}")
        assert outcome.model_cid is not None and outcome.report_cid is not None
        self.stored += [outcome.model_cid, outcome.report_cid]
        return FlRound(
            round=r,
            outcome="posted",
            accuracy_before=report.accuracy_before,
            accuracy=report.accuracy,
            loss=report.loss,
            budget=per_round,
            credited=total,
            unallocated=unallocated,
            entries=tuple(entries),
            model_cid=outcome.model_cid,
            report_cid=outcome.report_cid,
            tx_hash=outcome.tx_hash or "",
            shapley_method=report.shapley_method,
            timings=timings,
            proven=proven,
            prove_seconds=float(proof_info["prove_seconds"]) if isinstance(proof_info, dict) else None,
        )


def demo_account(seed: int, name: str) -> LocalAccount:
    """The demo's account for a party: its key is derived from the seed, so a run is reproducible.

    These keys are public knowledge: use them on local throwaway chains only.
    """
    from eth_account import Account
    from eth_utils.crypto import keccak

    account: LocalAccount = Account.from_key(keccak(f"pocfl-fl-demo/{seed}/{name}".encode()))
    return account


def _check_objects(store: ContentStore, cids: Sequence[str]) -> list[str]:
    """Read back and re-hash every object the demo stored; one problem per object that fails."""
    problems = []
    for cid in cids:
        try:
            if compute_cid(store.get_bytes(cid)) != cid:
                problems.append(f"stored object {cid} reads back as other bytes")
        except PocflError as exc:
            problems.append(f"stored object {cid} does not read back: {type(exc).__name__}: {exc}")
    return problems


__all__ = [
    "DEFAULT_ATTACKS",
    "DEFAULT_ROUNDS",
    "DEFAULT_TRAINERS",
    "DemoReporter",
    "FlDemoConfig",
    "FlDemoResult",
    "FlEntry",
    "FlRound",
    "Stopwatch",
    "TrainerInfo",
    "group_of",
    "run_fl_demo",
]
