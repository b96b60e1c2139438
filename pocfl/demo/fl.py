"""The federated-learning demo behind ``pocfl demo``: real training rounds, attackers, free riders, exact payouts.

A scenario of the demo engine (:mod:`pocfl.demo.engine`), which runs the project's life on a chain (the embedded
one by default) with real files in a content store (a temporary embedded store by default):

1. the owner builds a project manifest (:func:`pocfl.fl_project.make_manifest`: a digits MLP, its seeded initial
   weights, a public validation recipe and the aggregator's encryption key) and creates the project with a
   budget of 1 ETH per round (:func:`pocfl.fl_project.create_fl_project`);
2. eight trainers (by default) register with a stake of 0.1 ETH; each owns a Dirichlet(0.5) label-skewed share
   of the digits training split (``digits:part=i:of=8:alpha=0.5:seed=S``), two of them attack (``sign_flip``
   and ``scaling``) and one free-rides (submits a zero update);
3. each round every trainer trains and submits in-process through :class:`trainer_client.TrainerClient` (updates
   sealed to the aggregator), the chain's clock moves past the submission window, and the
   :class:`aggregator.node.AggregatorNode` fetches, decrypts and validates every update, filters outliers (Flag
   Aggregator), scores contributions (Shapley values on the validation set), stores the new global model and the
   round report, and posts the round;
4. after the last round the engine settles the project and reconciles it to the wei: each round's
   ``TrainerCredited`` amounts against :func:`pocfl.payouts.allocate` of the scores and flags in the stored round
   report, every party's balance and nonce, the contract's final zero balance, every stored object re-hashed;
   then an auditor recomputes every round and payout from the chain and the store alone.

Timings: each round is split into ``train`` (local training, encoding, sealing), ``aggregate`` (validation,
outlier filter, Shapley scores, report), ``store`` (every content-store call) and ``chain`` (every JSON-RPC
request; on the embedded chain this includes executing the EVM).

:func:`run_fl_demo` returns a :class:`~pocfl.demo.result.FlDemoResult`; ``pocfl demo`` renders it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pocfl.chain.types import ZERO_ADDRESS, Receipt
from pocfl.demo.config import ETH, HONEST, STAKE, FlDemoConfig
from pocfl.demo.engine import DemoReporter, DemoRun, Scenario, run_scenario
from pocfl.demo.result import FlDemoResult, FlEntry, FlRound, Settlement, TrainerInfo
from pocfl.store import compute_cid

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from aggregator.node import AggregatorNode, RoundOutcome
    from pocfl.manifest import ProjectManifest
    from pocfl.rounds.report import SubmissionEntry
    from trainer_client import TrainerClient


def demo_account(seed: int, name: str) -> LocalAccount:
    """The demo's account for a party: its key is derived from the seed, so a run is reproducible.

    These keys are public knowledge: use them on local throwaway chains only.
    """
    from eth_account import Account
    from eth_utils.crypto import keccak

    account: LocalAccount = Account.from_key(keccak(f"pocfl-fl-demo/{seed}/{name}".encode()))
    return account


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
        Trainers, attacks, rounds and model settings (default :class:`~pocfl.demo.config.FlDemoConfig`).
    rpc, ipfs, reporter, fast_chain
        The chain, the content store, who hears of progress and whether the demo's own chain answers repeated
        reads from a cache: see :func:`pocfl.demo.engine.run_scenario`.

    Returns
    -------
    FlDemoResult
        The rounds, the per-party balances, timings and any reconciliation problems (none when all is well).

    Raises
    ------
    ConfigError
        An impossible configuration (see :meth:`FlDemoConfig.roles`).
    """
    scenario = FlScenario(config or FlDemoConfig())  # refuses a bad configuration before starting anything
    return run_scenario(scenario, rpc=rpc, ipfs=ipfs, reporter=reporter, fast_chain=fast_chain)


class FlScenario(Scenario[FlDemoResult]):
    """Trainers train on their data and submit; the aggregator node filters, scores and posts each round."""

    work_prefix = "pocfl-fl-demo-"

    def __init__(self, cfg: FlDemoConfig) -> None:
        from pocfl.updates import EncryptionKeyPair

        self.cfg = cfg
        self.roles = cfg.roles()
        self.key = EncryptionKeyPair.generate()
        self.zk_setup: Any = None
        self.verifier: dict[str, Any] | None = None
        self.manifest: ProjectManifest | None = None
        self.manifest_cid = ""
        self.commitment = b""
        self.created_block = 0
        self.trainers: list[TrainerInfo] = []
        self.clients: list[TrainerClient] = []
        self.node: AggregatorNode | None = None
        self.played: list[FlRound] = []

    @property
    def rounds(self) -> int:
        """Training rounds."""
        return self.cfg.rounds

    @property
    def trainer_names(self) -> tuple[str, ...]:
        """``trainer-1`` to ``trainer-N``."""
        return tuple(f"trainer-{i + 1}" for i in range(self.cfg.trainers))

    def account(self, name: str) -> LocalAccount:
        """The seeded account of ``name`` (:func:`demo_account`)."""
        return demo_account(self.cfg.seed, name)

    def create_project(self, run: DemoRun) -> tuple[int, Receipt]:
        """Deploy the verifier (``prove``), store the manifest and its initial weights, create the project."""
        from pocfl.fl_project import make_manifest, validation_commitment
        from pocfl.manifest import TrainingConfig
        from pocfl.projects import ProjectRequest, create_project

        cfg, say = self.cfg, run.say
        verifier, proof_config = ZERO_ADDRESS, None
        if cfg.prove:
            verifier, proof_config = self._deploy_verifier(run)
        say.stage(f"owner builds the project manifest (digits MLP, hidden {cfg.hidden}) and stores the initial weights")
        manifest, manifest_bytes = make_manifest(
            "pocfl demo: digits",
            seed=cfg.seed,
            hidden=cfg.hidden,
            store=run.on["owner"],
            aggregator_public_key=self.key.public_key_hex if cfg.encrypt else None,
            training=TrainingConfig(
                learning_rate=cfg.learning_rate, local_epochs=cfg.epochs, batch_size=cfg.batch_size
            ),
            proof=proof_config,
        )
        self.manifest, self.manifest_cid = manifest, compute_cid(manifest_bytes)
        run.ledger.stored += [manifest.model.initial_weights_cid, self.manifest_cid]
        params = run.project_params(self.manifest_cid, verifier=verifier)
        say.stage(f"owner creates the project, escrowing {run.budget // ETH} ETH over {cfg.rounds} rounds")
        # the checks `pocfl project create` makes (manifest against the store, the proof configuration) run here too
        created = create_project(run.on["owner"], ProjectRequest.from_params(params, run.budget, manifest=manifest))
        project_id, receipt = created.project_id, created.receipt
        self.created_block = receipt.block_number
        self.commitment = validation_commitment(manifest)
        state = run.client.project(project_id)
        if state.params.initial_model_cid != self.manifest_cid or state.params.validation_set_commitment != (
            self.commitment
        ):
            run.ledger.problems.append("the project on chain does not name the manifest and its validation commitment")
        return project_id, receipt

    def _deploy_verifier(self, run: DemoRun) -> tuple[str, Any]:
        """Set up the round circuit (cached) and deploy its verifier pair; returns (adapter, ProofConfig)."""
        from pocfl.manifest import ProofConfig
        from zk.onchain import deploy_round_verifier
        from zk.prover import CircuitShape, RoundCircuitSetup

        cfg, say = self.cfg, run.say
        shape = CircuitShape(slots=cfg.trainers, sketch_dim=cfg.sketch_dim)
        cache = cfg.zk_cache or run.work / "zk"
        say.stage(f"setting up the round circuit ({shape.key}, local test-only SRS) in {cache}")
        self.zk_setup = RoundCircuitSetup.build(shape, cache, progress=say.stage)
        say.stage("owner deploys the ezkl Halo2 verifier and the EzklRoundVerifier adapter")
        deployed = deploy_round_verifier(run.chain, run.accounts["owner"], self.zk_setup, run.work / "verifier")
        self.verifier = deployed.to_json()
        for tx_hash in deployed.tx_hashes:
            run.ledger.paid_hash("owner", tx_hash)
        return deployed.adapter, ProofConfig(shape.slots, shape.sketch_dim, shape.scale)

    def register(self, run: DemoRun, index: int, name: str) -> None:
        """The trainer loads its share of the data and registers; its client will train and submit."""
        from trainer_client import TrainerClient, load_private_data

        role = self.roles[index]
        run.say.stage(f"{name} ({role}) loads its data and registers, staking {STAKE / ETH:g} ETH")
        spec = self.cfg.data_spec(index)
        x, y = load_private_data(spec)
        run.register(name)
        address = run.accounts[name].address
        self.trainers.append(TrainerInfo(name, address, role, spec, int(y.shape[0]), len(set(y.tolist()))))
        self.clients.append(
            TrainerClient(
                run.on[name],
                run.project_id,
                x,
                y,
                seed=self.cfg.seed * 1000 + index,
                attack=None if role == HONEST else role,
                state_dir=run.work / "trainers",
                from_block=self.created_block,
            )
        )

    def open_rounds(self, run: DemoRun) -> None:
        """Start the aggregator node (its clock is the chain's; it never sleeps: the demo moves the clock)."""
        from aggregator.node import AggregatorNode

        self.node = AggregatorNode(
            run.on["aggregator"],
            run.project_id,
            keypair=self.key if self.cfg.encrypt else None,
            state_dir=run.work / "aggregator",
            from_block=self.created_block,
            clock=run.chain.now,
            sleep=lambda _s: None,
            zk_setup=self.zk_setup,
        )

    def play_round(self, run: DemoRun, round_: int) -> None:
        """Train and submit, close the window, aggregate and post; reconcile the round's credits."""
        from trainer_client import RoundStatus

        node, say, watch = self.node, run.say, run.watch
        assert node is not None
        say.round_started(round_, len(self.clients))
        t_start = time.perf_counter()
        s0, c0 = watch.snapshot()
        for client, info in zip(self.clients, self.trainers, strict=True):
            result = client.train_round(round_)
            if result.status is not RoundStatus.SUBMITTED:
                run.ledger.problems.append(f"round {round_}: {info.name} did not submit ({result.message})")
            else:
                run.ledger.paid_hash(info.name, result.tx_hash)
            say.trainer_done(round_, info.name, info.role, result.message)
        t_trained = time.perf_counter()
        s1, c1 = watch.snapshot()
        run.advance_to(node.state().submission_deadline)
        node.progress = lambda message, done, total: say.aggregating(round_, message, done, total)
        outcome = node.run_round(round_)
        t_done = time.perf_counter()
        s2, c2 = watch.snapshot()
        timings = {
            "train": (t_trained - t_start) - (s1 - s0) - (c1 - c0),
            "aggregate": (t_done - t_trained) - (s2 - s1) - (c2 - c1),
            "store": s2 - s0,
            "chain": c2 - c0,
            "total": t_done - t_start,
        }
        self.played.append(self._posted(run, round_, outcome, timings))
        say.round_done(self.played[-1])

    def _posted(self, run: DemoRun, r: int, outcome: RoundOutcome, timings: dict[str, float]) -> FlRound:
        """The round as posted: its report's scores against the contract's credits, its stored objects."""
        from pocfl.payouts import allocate

        ledger, per_round = run.ledger, run.per_round
        if outcome.status != "posted" or outcome.report is None:
            ledger.problems.append(f"round {r}: the aggregator's round ended {outcome.status}")
            return FlRound(r, outcome.status, 0.0, 0.0, 0.0, per_round, 0, per_round, (), "", "", "", "", timings)
        ledger.paid_hash("aggregator", outcome.tx_hash)
        report = outcome.report
        subs = report.submissions
        allocation = allocate(per_round, [s.score for s in subs], [s.outlier for s in subs])
        events, posted = self._post_events(run, r, outcome)
        credited_of = {str(e.args["trainer"]): int(e.args["amount"]) for e in events}
        entries = tuple(self._entry(s, credited_of.get(s.trainer, 0), allocation.shares[k]) for k, s in enumerate(subs))
        for s in subs:
            ledger.stored += [s.cid] if s.plaintext_cid is None else [s.cid, s.plaintext_cid]
        total = int(posted[0].args["credited"]) if posted else 0
        if len(posted) != 1:
            ledger.problems.append(f"round {r}: {len(posted)} RoundPosted events in the post transaction")
        proven = bool(posted[0].args["proven"]) if posted else False
        if proven != self.cfg.prove:
            ledger.problems.append(f"round {r}: posted with proven={proven}, the demo ran with prove={self.cfg.prove}")
        proof_info = report.config.get("proof") if isinstance(report.config, dict) else None
        if isinstance(proof_info, dict):
            ledger.stored.append(str(proof_info["cid"]))
        ledger.credit_round(r, entries, len(events), len(subs), total, allocation.credited)
        assert outcome.model_cid is not None and outcome.report_cid is not None
        ledger.stored += [outcome.model_cid, outcome.report_cid]
        return FlRound(
            round=r,
            outcome="posted",
            accuracy_before=report.accuracy_before,
            accuracy=report.accuracy,
            loss=report.loss,
            budget=per_round,
            credited=total,
            unallocated=int(posted[0].args["unallocated"]) if posted else per_round,
            entries=entries,
            model_cid=outcome.model_cid,
            report_cid=outcome.report_cid,
            tx_hash=outcome.tx_hash or "",
            shapley_method=report.shapley_method,
            timings=timings,
            proven=proven,
            prove_seconds=float(proof_info["prove_seconds"]) if isinstance(proof_info, dict) else None,
        )

    def _post_events(self, run: DemoRun, r: int, outcome: RoundOutcome) -> tuple[list[Any], list[Any]]:
        """The ``TrainerCredited`` and ``RoundPosted`` events of the round's post transaction."""
        client, block = run.client, outcome.block or 0
        credited = client.events("TrainerCredited", from_block=block, projectId=run.project_id, round=r)
        posted = client.events("RoundPosted", from_block=block, projectId=run.project_id)
        return (
            [e for e in credited if e.tx_hash == outcome.tx_hash],
            [e for e in posted if e.tx_hash == outcome.tx_hash],
        )

    def _entry(self, s: SubmissionEntry, credited: int, expected: int) -> FlEntry:
        """A report's submission with its credit and the credit the payout rule predicts."""
        info = {t.address: t for t in self.trainers}[s.trainer]
        return FlEntry(
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
            credited=credited,
            expected=expected,
        )

    def finish(self, run: DemoRun, settled: Settlement) -> FlDemoResult:
        """Audit the finished project (the third use of its public data), then the result."""
        from pocfl.audit import audit_project

        t_audit = time.perf_counter()
        run.say.stage("auditing: recomputing every round and payout from the chain and the store")
        audit = audit_project(run.on["owner"], run.project_id)
        run.ledger.problems += [f"audit: {d}" for d in audit.differences]
        timings = run.timings
        timings["audit"] = time.perf_counter() - t_audit
        timings["chain_requests"] = run.watch.chain_requests
        timings["chain_cached"] = run.watch.chain_cached
        assert self.manifest is not None
        return FlDemoResult(
            **run.project_fields(settled),
            config=self.cfg,
            trainers=tuple(self.trainers),
            rounds=tuple(self.played),
            timings=timings,
            manifest_cid=self.manifest_cid,
            initial_weights_cid=self.manifest.model.initial_weights_cid,
            validation_commitment="0x" + self.commitment.hex(),
            chain_methods={k: (int(v[0]), float(v[1])) for k, v in run.watch.methods.items()},
            audit_ok=audit.ok,
            audit_warnings=tuple(audit.warnings),
            verifier=self.verifier,
        )
