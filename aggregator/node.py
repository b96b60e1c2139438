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
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aggregator.round import RoundConfig, RoundDecision, decide_round
from aggregator.round_inputs import round_config, round_seeds
from pocfl.chain.types import ProjectState, ProjectStatus, RoundPost
from pocfl.errors import ChainError, ConfigError, PocflError
from pocfl.fsutil import PRIVATE, write_json_atomic
from pocfl.manifest import ProjectManifest
from pocfl.market import Market, SubmittedUpdate, report_hash
from pocfl.rounds.hyperparams import HyperParams
from pocfl.rounds.inputs import (
    PRIOR_ROUNDS,
    PostedRound,
    RoundInputError,
    ValidatedUpdate,
    accepted_vectors,
    accuracy_history,
    failed_rounds,
    global_model,
    load_manifest,
    load_validation,
    posted_report,
    posted_rounds,
    prior_updates,
    round_digest,
    round_hyperparams,
    validate_submission,
)
from pocfl.rounds.report import RoundReport, SubmissionEntry, bounded_reason
from pocfl.store import compute_cid
from pocfl.updates import EncryptionKeyPair, ModelSpec, encode_update
from pocfl.waiting import (
    Backoff,
    DeadlineTooCloseError,
    StatusLine,
    clock_lag_hint,
    hhmmss,
    is_transient,
    outage_line,
)

if TYPE_CHECKING:
    from zk.prover import RoundCircuitSetup

JOURNAL_FORMAT = "pocfl-aggregator-journal/1"
STAGES = ("decided", "stored", "posted")

Progress = Callable[[str, int, int], None]
"""``progress(message, done, total)``: what the node is doing (``total`` 0 when unknown)."""


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _silent(message: str, done: int, total: int) -> None:
    del message, done, total


@dataclass(frozen=True)
class RoundOutcome:
    """What :meth:`AggregatorNode.run_round` did for a round.

    Attributes
    ----------
    project_id, round
        Which round.
    status
        ``posted`` (this call posted it), ``already_posted`` (found posted on chain, by this node earlier or by a
        previous run), ``failed`` (the round was failed on chain) or ``missed`` (its aggregation window closed
        unposted).
    report
        The round report (None for ``failed`` and ``missed``).
    report_cid, model_cid
        Where the report and the new global model are stored.
    tx_hash, block
        The ``postRound`` transaction.
    credited
        Wei credited to trainers (None when unknown).
    resumed
        The post finished work journalled by an earlier run (the report was read back, not recomputed).
    """

    project_id: int
    round: int
    status: str
    report: RoundReport | None = None
    report_cid: str | None = None
    model_cid: str | None = None
    tx_hash: str | None = None
    block: int | None = None
    credited: int | None = None
    resumed: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (the report in full)."""
        doc = {k: v for k, v in asdict(self).items() if k != "report"}
        doc["report"] = json.loads(self.report.to_json()) if self.report is not None else None
        return doc


class Journal:
    """The node's per-project progress file (see the module docstring for its format).

    Parameters
    ----------
    path
        The JSON file; created on first write (atomically: temporary file, fsync, rename).
    chain_id, market, project_id
        Whose rounds it records; a file recorded for another chain or contract is refused.

    Raises
    ------
    ConfigError
        The file is unreadable or belongs to another deployment or project.
    """

    def __init__(self, path: Path, chain_id: int, market: str, project_id: int) -> None:
        self.path = path
        self.header = {"format": JOURNAL_FORMAT, "chain_id": chain_id, "market": market, "project_id": project_id}
        self.rounds: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                raw = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"aggregator journal {path} is unreadable ({exc}): move it away to start over"
                ) from exc
            mine = {k: raw.get(k) if isinstance(raw, dict) else None for k in self.header}
            if mine != self.header or not isinstance(raw.get("rounds"), dict):
                raise ConfigError(
                    f"aggregator journal {path} belongs to {mine}, not to {self.header}: use another --state-dir"
                )
            self.rounds = raw["rounds"]

    def get(self, round_: int) -> dict[str, Any]:
        """The round's entry (empty when nothing was recorded)."""
        return dict(self.rounds.get(str(round_), {}))

    def record(self, round_: int, stage: str, **fields: Any) -> None:
        """Move a round to ``stage``, merging ``fields`` into its entry, and write the file."""
        assert stage in STAGES, stage
        entry = self.rounds.setdefault(str(round_), {})
        entry.update(fields, stage=stage, updated_at=int(time.time()))
        # A unique temporary file, removed on failure (a fixed name was left behind and raced between nodes).
        write_json_atomic(self.path, {**self.header, "rounds": self.rounds}, mode=PRIVATE, sort_keys=True)


@dataclass
class _Prepared:
    """A round computed and encoded, ready to store and post."""

    updates: list[SubmittedUpdate]
    report: RoundReport
    report_bytes: bytes
    model_bytes: bytes
    reveals: list[bytes] = field(default_factory=list)
    decision: RoundDecision | None = None
    proof_blob: bytes = b""
    """``postRound``'s proof argument (empty for projects without a verifier)."""


@dataclass
class _ZkInputs:
    """A proven round's circuit inputs: per submission, its committed features and whether it was rejected."""

    setup: RoundCircuitSetup
    features: list[Any]
    rejected: list[bool]
    seed: bytes


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
        self.market = market
        self.client = market.client
        self.project_id = project_id
        self.keypair = keypair
        self.state_dir = Path(state_dir)
        self.validation_file = validation_file
        self.from_block = from_block
        self.clock = clock or self.client.chain.now
        self.sleep = sleep
        self.poll = poll
        self.progress = progress or _silent
        state = self.state()
        if state.status == ProjectStatus.NONE:
            raise ConfigError(f"project {project_id} does not exist on marketplace {self.client.address}")
        self.params = state.params
        self.manifest: ProjectManifest = load_manifest(market, state)
        self.spec: ModelSpec = self.manifest.model.spec()
        self.config: RoundConfig = config or round_config(self.manifest)
        self._validation: tuple[Any, Any] | None = None
        self.zk_setup = zk_setup
        if self.proven:
            proof = self.manifest.proof
            if proof is None:
                raise ConfigError(
                    f"project {project_id} has verifier {self.params.verifier} but its manifest has no `proof` "
                    "section: its rounds cannot be proven"
                )
            if zk_setup is not None and (zk_setup.shape.slots, zk_setup.shape.sketch_dim, zk_setup.shape.scale) != (
                proof.slots,
                proof.sketch_dim,
                proof.scale,
            ):
                raise ConfigError(f"the circuit setup {zk_setup.shape} does not match the manifest's proof {proof}")
        self.journal = Journal(
            self.state_dir / f"project-{project_id}.json", self.client.chain.chain_id, self.client.address, project_id
        )
        pub = self.manifest.aggregator_public_key
        if keypair is not None and pub is not None and keypair.public_key_hex.lower() != pub.lower().removeprefix("0x"):
            raise ConfigError(
                f"the decryption key's public key {keypair.public_key_hex} is not the project's aggregator key {pub}"
            )

    @property
    def proven(self) -> bool:
        """Whether the project has a verifier (every round must carry a proof)."""
        return int(self.params.verifier, 16) != 0

    # --- chain views ----------------------------------------------------------------------------------------

    def state(self) -> ProjectState:
        """The project's current on-chain state."""
        return self.client.project(self.project_id)

    def posted(self, round_: int) -> PostedRound | None:
        """The round's ``RoundPosted`` event, if it was posted."""
        for p in posted_rounds(self.market, self.project_id, from_block=self.from_block):
            if p.round == round_:
                return p
        return None

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
        done = self._settled(r, state)
        if done is not None:
            return done
        if r > state.current_round or state.status != ProjectStatus.ACTIVE:
            raise RoundInputError(
                f"project {self.project_id} round {r} is not open (current round {state.current_round}, "
                f"{state.status.name.lower()})"
            )
        state = self._wait_for_deadline(r, state, wait)
        done = self._settled(r, state)  # posted by another run while this one waited?
        if done is not None:
            return done
        if self.clock() >= state.aggregation_deadline:
            return RoundOutcome(self.project_id, r, "missed")
        entry = self.journal.get(r)
        prepared = self._resume(r, entry) if entry.get("stage") == "stored" else None
        resumed = prepared is not None
        if prepared is None:
            prepared = self._prepare(r, state)
        return self._store_and_post(r, prepared, resumed)

    def _settled(self, r: int, state: ProjectState) -> RoundOutcome | None:
        """The outcome of a round the chain already settled (posted or failed); None if it is still open."""
        if r == state.current_round and state.status == ProjectStatus.ACTIVE:
            return None
        posted = self.posted(r)
        if posted is not None:
            return self._already_posted(posted)
        if r in failed_rounds(self.market, self.project_id, from_block=self.from_block):
            return RoundOutcome(self.project_id, r, "failed")
        return None

    def _already_posted(self, posted: PostedRound) -> RoundOutcome:
        report_cid, report = posted_report(self.market, posted)
        entry = self.journal.get(posted.round)
        if entry.get("stage") != "posted" or entry.get("tx_hash") != posted.tx_hash:
            self.journal.record(
                posted.round,
                "posted",
                model_cid=posted.model_cid,
                report_cid=report_cid,
                report_hash=_hex(posted.report_hash),
                submissions=len(report.submissions),
                tx_hash=posted.tx_hash,
                block=posted.block,
                credited=posted.credited,
            )
        return RoundOutcome(
            self.project_id,
            posted.round,
            "already_posted",
            report=report,
            report_cid=report_cid,
            model_cid=posted.model_cid,
            tx_hash=posted.tx_hash,
            block=posted.block,
            credited=posted.credited,
        )

    def _wait_for_deadline(self, r: int, state: ProjectState, wait: bool) -> ProjectState:
        while True:
            now = self.clock()
            if now >= state.submission_deadline:
                return state
            if not wait:
                raise RoundInputError(
                    f"project {self.project_id} round {r}: submissions close at {state.submission_deadline} (now {now})"
                )
            self.progress(f"round {r}: waiting for submissions ({state.submission_deadline - now} s left)", 0, 0)
            self.sleep(min(self.poll, max(state.submission_deadline - now, 0.01)))
            state = self.state()

    def _submissions(self, r: int, state: ProjectState) -> list[SubmittedUpdate]:
        """The round's submissions, retried until the node's logs show as many as the contract counted."""
        for attempt in range(10):
            updates = self.market.submitted_updates(self.project_id, r, from_block=self.from_block)
            if len(updates) == state.submission_count and [u.index for u in updates] == list(range(len(updates))):
                return updates
            if attempt < 9:
                self.sleep(self.poll)
        raise RoundInputError(
            f"project {self.project_id} round {r}: the contract counts {state.submission_count} submissions, the "
            f"node's logs show {len(updates)} (a lagging or pruned node? pass an archive RPC)"
        )

    def _prepare(self, r: int, state: ProjectState) -> _Prepared:
        updates = self._submissions(r, state)
        validated: list[ValidatedUpdate] = []
        for i, u in enumerate(updates):
            self.progress(f"round {r}: validating updates", i, len(updates))
            validated.append(
                validate_submission(
                    self.market, u, self.project_id, r, self.spec, self.keypair, self.manifest.max_update_size
                )
            )
        self.progress(f"round {r}: validating updates", len(updates), len(updates))
        digest = round_digest(self.market, self.project_id, r, from_block=self.from_block)
        if digest != state.submissions_digest:
            raise RoundInputError(
                f"round {r}: the logs give submissions digest {_hex(digest)}, the contract holds "
                f"{_hex(state.submissions_digest)}"
            )
        seeds = round_seeds(self.market, self.project_id, r, digest=digest)
        model_in, global_vector = global_model(self.market, self.manifest, state, r, from_block=self.from_block)
        hyper = round_hyperparams(self.market, self.manifest, self.project_id, r, from_block=self.from_block)
        history = accuracy_history(self.market, self.project_id, r, from_block=self.from_block)
        priors = prior_updates(self.market, self.manifest, self.project_id, r, from_block=self.from_block)
        config, flags, zk = self.config, None, None
        if self.proven:
            validated, zk = self._committed_features(r, validated, model_in)
            flags = zk.setup.evaluate(zk.features, zk.rejected)
            config = replace(config, scoring=replace(config.scoring, scale=zk.setup.shape.score_unit))
        self.progress(f"round {r}: scoring {sum(v.accepted for v in validated)} accepted updates", 0, 0)
        decision = decide_round(
            global_vector,
            accepted_vectors(validated),
            validation=self.validation(),
            seeds=seeds,
            hyperparams=hyper,
            accuracy_history=history,
            prior_updates=priors,
            config=config,
            outlier_flags=flags,
        )
        proof_blob, proof_info = b"", None
        if zk is not None:
            proof_blob, proof_info = self._prove(r, zk, decision)
        model_bytes = encode_update(self.spec.unflatten(decision.new_global), self.spec, kind="weights")
        reveals = [v.plaintext for v in validated if v.plaintext is not None]
        report = build_report(
            project_id=self.project_id,
            round_=r,
            chain_id=self.client.chain.chain_id,
            market=self.client.address,
            digest=digest,
            model_in=model_in,
            model_out=compute_cid(model_bytes),
            seeds_shapley=seeds.shapley,
            seeds_sketch=seeds.sketch,
            hyperparams=hyper,
            decision=decision,
            validated=validated,
            config=config,
            extra_config={
                **({"proof": proof_info} if proof_info is not None else {}),
                "accuracy_history": list(history),
                "prior_update_rounds": [
                    p.round for p in posted_rounds(self.market, self.project_id, before=r, from_block=self.from_block)
                ][-PRIOR_ROUNDS:],
            },
        )
        report_bytes = report.to_json()
        self.journal.record(
            r,
            "decided",
            model_cid=report.model_out,
            report_cid=compute_cid(report_bytes),
            report_hash=_hex(report_hash(compute_cid(report_bytes))),
            submissions=len(updates),
        )
        return _Prepared(updates, report, report_bytes, model_bytes, reveals, decision, proof_blob)

    def _committed_features(
        self, r: int, validated: list[ValidatedUpdate], model_in: str
    ) -> tuple[list[ValidatedUpdate], _ZkInputs]:
        """Each accepted update's features, checked against its on-chain ``featureCommitment``.

        A mismatch (or no commitment) rejects the submission with a named reason: the circuit only sees committed
        features, so an update whose commitment does not describe it must not be aggregated.
        """
        from zk.commitment import committed_features
        from zk.decision import feature_seed

        if self.zk_setup is None:
            raise ConfigError(
                f"project {self.project_id} has a verifier: pass the circuit setup (`pocfl aggregate --zk-cache DIR`)"
            )
        shape = self.zk_setup.shape
        if len(validated) > shape.slots:
            raise RoundInputError(f"round {r}: {len(validated)} submissions exceed the circuit's {shape.slots} slots")
        seed = feature_seed(self.client.chain.chain_id, self.client.address, self.project_id, r, model_in)
        cf = committed_features(
            [v.vector for v in validated],
            [v.submitted.feature_commitment for v in validated],
            seed,
            dim=shape.sketch_dim,
            scale=shape.scale,
        )
        out = [
            v if why is None else replace(v, vector=None, reason=why)
            for v, why in zip(validated, cf.reasons, strict=True)
        ]
        return out, _ZkInputs(self.zk_setup, cf.features, cf.rejected, seed)

    def _prove(self, r: int, zk: _ZkInputs, decision: RoundDecision) -> tuple[bytes, dict[str, Any]]:
        """Prove the round's flags and scores; check the proof says exactly what will be posted; store it."""
        from zk.onchain import encode_round_proof

        self.progress(f"round {r}: proving (circuit {zk.setup.shape.key})", 0, 0)
        proof = zk.setup.prove(zk.features, zk.rejected, decision.scores)
        n = len(zk.features)
        if not proof.ok or proof.outliers[:n] != decision.outliers or proof.scores[:n] != decision.scores:
            raise RoundInputError(
                f"round {r}: the proof does not state the decision (ok={proof.ok}, proven outliers "
                f"{proof.outliers[:n]} vs {decision.outliers}, scores {proof.scores[:n]} vs {decision.scores})"
            )
        proof_cid = self.market.publish(json.dumps(proof.to_json(), sort_keys=True).encode())
        # The settings and verifying key let anyone rebuild the circuit (audit) and check the proof off chain.
        settings_cid = self.market.publish(zk.setup.settings_path.read_bytes())
        vk_cid = self.market.publish(zk.setup.vk_path.read_bytes())
        self.progress(f"round {r}: proved in {proof.prove_seconds:.1f} s", 1, 1)
        info = {
            "cid": proof_cid,
            "settings_cid": settings_cid,
            "vk_cid": vk_cid,
            "circuit": zk.setup.shape.key,
            "slots": zk.setup.shape.slots,
            "sketch_dim": zk.setup.shape.sketch_dim,
            "scale": zk.setup.shape.scale,
            "feature_seed": "0x" + zk.seed.hex(),
            "witness_hash": hex(proof.witness_hash),
            "prove_seconds": round(proof.prove_seconds, 3),
        }
        return encode_round_proof(proof), info

    def _resume(self, r: int, entry: dict[str, Any]) -> _Prepared | None:
        """Read back what an earlier run stored for the round; None if anything is missing or inconsistent."""
        try:
            report_bytes = self.market.fetch(str(entry["report_cid"]))
            model_bytes = self.market.fetch(str(entry["model_cid"]), self.spec.nbytes + (1 << 20))
            report = RoundReport.from_json(report_bytes)
        except (KeyError, PocflError):
            return None
        updates = self.market.submitted_updates(self.project_id, r, from_block=self.from_block)
        same = [(u.trainer, _hex(u.commitment), u.cid) for u in updates] == [
            (s.trainer, s.commitment, s.cid) for s in report.submissions
        ]
        if not same or report.round != r or report.model_out != entry["model_cid"]:
            return None
        proof_blob = b""
        proof_info = report.config.get("proof") if isinstance(report.config, dict) else None
        if self.proven:
            if not isinstance(proof_info, dict):
                return None
            from zk.onchain import load_round_proof

            try:
                proof_blob = load_round_proof(self.market.fetch(str(proof_info["cid"])))
            except (KeyError, ValueError, PocflError):
                return None
        self.progress(f"round {r}: resuming from the journal", 0, 0)
        return _Prepared(updates, report, report_bytes, model_bytes, proof_blob=proof_blob)

    def _store_and_post(self, r: int, prepared: _Prepared, resumed: bool) -> RoundOutcome:
        report, market = prepared.report, self.market
        self.progress(f"round {r}: storing model, report and revealed updates", 0, 0)
        for plaintext in prepared.reveals:
            market.publish(plaintext)
        model_cid = market.publish(prepared.model_bytes)
        report_cid = market.publish(prepared.report_bytes)
        self.journal.record(r, "stored", model_cid=model_cid, report_cid=report_cid)
        # Ask the chain first: a run that crashed after its transaction was mined must not post again.
        state = self.state()
        done = self._settled(r, state)
        if done is not None:
            return done
        hyper = HyperParams.from_json(report.next_hyperparams)
        self.progress(f"round {r}: posting", 0, 0)
        return self._post(r, prepared, report, hyper, market, report_cid, resumed)

    def _post(
        self,
        r: int,
        prepared: Any,
        report: RoundReport,
        hyper: HyperParams,
        market: Market,
        report_cid: str,
        resumed: bool,
    ) -> RoundOutcome:
        """Post a prepared round (see :meth:`run_round`)."""
        gas = None
        if prepared.proof_blob:
            from zk.onchain import POST_GAS  # explicit gas: eth-tester's estimate re-runs the pairing check

            gas = POST_GAS
        try:
            post, receipt = market.post_round(
                self.project_id,
                r,
                model=prepared.model_bytes,
                report=prepared.report_bytes,
                submissions=[u.submission for u in prepared.updates],
                scores=[s.score for s in report.submissions],
                outliers=[s.outlier for s in report.submissions],
                hyperparams_hash=hyper.hash(),
                proof=prepared.proof_blob,
                gas=gas,
            )
        except DeadlineTooCloseError as exc:  # nothing sent: the aggregation window closes too soon
            self.progress(f"round {r}: {exc}", 0, 0)
            return RoundOutcome(self.project_id, r, "missed")
        except ChainError:
            posted = self.posted(r)  # mined after all (a lost connection), or posted by another run meanwhile
            if posted is not None:
                return self._already_posted(posted)
            if self.clock() >= self.state().aggregation_deadline:
                return RoundOutcome(self.project_id, r, "missed")  # the window closed while the node worked
            raise
        credited = int(receipt.event("RoundPosted").args["credited"])
        self.journal.record(
            r,
            "posted",
            model_cid=post.model_cid,
            report_cid=report_cid,
            report_hash=_hex(post.report_hash),
            tx_hash=receipt.tx_hash,
            block=receipt.block_number,
            credited=credited,
        )
        self.progress(f"round {r}: posted", 1, 1)
        return RoundOutcome(
            self.project_id,
            r,
            "posted",
            report=report,
            report_cid=report_cid,
            model_cid=post.model_cid,
            tx_hash=receipt.tx_hash,
            block=receipt.block_number,
            credited=credited,
            resumed=resumed,
        )

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
            self.poll = poll
        limit = rounds if rounds is not None else (None if until_finished else 1)
        outcomes: list[RoundOutcome] = []
        status = StatusLine(lambda text: self.progress(text, 0, 0))
        backoff = Backoff(cap=max(self.poll, 0.5))  # capped at the poll: an outage's end is seen within one
        while limit is None or len(outcomes) < limit:
            try:
                outcome = self._follow_step(fail_overdue)
            except Exception as exc:  # an outage of the store or the chain is waited out; anything else is raised
                if not is_transient(exc):
                    raise
                status(*outage_line(exc))
                self.sleep(backoff.next())
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
        now, r = self.clock(), state.current_round
        if now < state.submission_deadline:
            self.progress(
                f"round {r}: waiting for submissions ({state.submission_deadline - now} s left, closes at "
                f"{hhmmss(state.submission_deadline)} by the chain's clock){clock_lag_hint(now)}",
                0,
                0,
            )
            self.sleep(min(self.poll, max(state.submission_deadline - now, 0.01)))
            return "waiting"
        outcome = self.run_round(r)
        if outcome.status == "missed" and fail_overdue:
            outcome = self._fail_overdue(r)
        return outcome

    def _fail_overdue(self, r: int) -> RoundOutcome:
        """Fail round ``r`` once its aggregation window closed by the chain's clock (a call before would revert)."""
        while True:
            state = self.state()
            if state.status != ProjectStatus.ACTIVE or state.current_round != r:
                return self._settled(r, state) or RoundOutcome(self.project_id, r, "failed")
            now = self.clock()
            if now >= state.aggregation_deadline:
                self.client.fail_round(self.project_id, r)
                return RoundOutcome(self.project_id, r, "failed")
            self.progress(
                f"round {r}: missed; failing it when its aggregation window closes at "
                f"{hhmmss(state.aggregation_deadline)}",
                0,
                0,
            )
            self.sleep(min(self.poll, max(state.aggregation_deadline - now, 0.01)))


def build_report(
    *,
    project_id: int,
    round_: int,
    chain_id: int,
    market: str,
    digest: bytes,
    model_in: str,
    model_out: str,
    seeds_shapley: bytes,
    seeds_sketch: bytes,
    hyperparams: HyperParams,
    decision: RoundDecision,
    validated: Sequence[ValidatedUpdate],
    config: RoundConfig,
    extra_config: dict[str, Any] | None = None,
) -> RoundReport:
    """The round report of a decision (every per-submission field in submission order).

    ``plaintext_cid`` is the CID of each decrypted plaintext (revealed by the node before it posts: the
    submission window is closed by then); ``config`` holds :class:`RoundConfig` as a dict plus
    ``extra_config`` (the node adds the accuracy history and the rounds whose deltas fed the screening).
    """
    entries = tuple(
        SubmissionEntry(
            index=v.submitted.index,
            trainer=v.submitted.trainer,
            cid=v.submitted.cid,
            commitment=_hex(v.submitted.commitment),
            status=decision.statuses[i],
            reason=None if v.reason is None else bounded_reason(v.reason),  # whoever made it: bounded here
            outlier=decision.outliers[i],
            score=decision.scores[i],
            value=decision.values[i],
            weight=decision.weights[i],
            ratio=decision.ratios[i],
            encrypted=v.encrypted,
            plaintext_cid=compute_cid(v.plaintext) if v.plaintext is not None else None,
        )
        for i, v in enumerate(validated)
    )
    nxt = decision.next_hyperparams
    return RoundReport(
        project_id=project_id,
        round=round_,
        chain_id=chain_id,
        market=market,
        submissions_digest=_hex(digest),
        model_in=model_in,
        model_out=model_out,
        shapley_seed=_hex(seeds_shapley),
        sketch_seed=_hex(seeds_sketch),
        hyperparams=hyperparams.to_json(),
        next_hyperparams=nxt.to_json(),
        next_hyperparams_hash=_hex(nxt.hash()),
        accuracy_before=decision.accuracy_before,
        loss_before=decision.loss_before,
        accuracy=decision.accuracy,
        loss=decision.loss,
        shapley_method=decision.shapley_method,
        shapley_evaluations=decision.shapley_evaluations,
        submissions=entries,
        config={**asdict(config), **(extra_config or {})},
    )


def round_post_of(report: RoundReport, updates: Sequence[SubmittedUpdate], report_cid: str) -> RoundPost:
    """The :class:`RoundPost` a report stands for (what the node posts, for checks and audits)."""
    return RoundPost(
        model_cid=report.model_out,
        submissions=tuple(u.submission for u in updates),
        scores=tuple(s.score for s in report.submissions),
        outliers=tuple(s.outlier for s in report.submissions),
        report_hash=report_hash(report_cid),
        hyperparams_hash=HyperParams.from_json(report.next_hyperparams).hash(),
    )


__all__ = [
    "JOURNAL_FORMAT",
    "AggregatorNode",
    "Journal",
    "RoundOutcome",
    "build_report",
    "round_post_of",
]
