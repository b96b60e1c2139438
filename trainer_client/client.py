"""The trainer client: one round of local training, stored and submitted on chain, and the loop over rounds.

:class:`TrainerClient` is the single code path behind ``pocfl train`` and the Flower ClientApp
(:mod:`trainer_client.flower_client`). For a round ``r``, :meth:`TrainerClient.train_round`:

1. checks the chain: the project is active, the account is registered, round ``r`` is the current round and its
   submission window is open; a round already submitted (seen in the ``UpdateSubmitted`` events or the local
   journal) is never submitted again, and a round whose window closed is skipped (``RoundStatus.LATE``);
2. reads the round's public inputs the way the aggregator does (:mod:`pocfl.rounds.inputs`): the project manifest
   (verified by its CID), the global model (the last posted ``modelCid`` before ``r``, else the manifest's initial
   weights, decoded as ``weights`` against the manifest's model spec) and the hyper-parameters (``manifest.training``
   for round 0, else the last posted report's ``next_hyperparams``, checked against the on-chain hash);
3. trains locally (:func:`pocfl.ml.training.local_train`, one epoch at a time so progress can be shown; seeded by
   ``(seed, round)``), applies the demo attack if one is set, and encodes the delta
   (``encode_update(spec.unflatten(delta), spec, kind="delta")``);
4. seals it to the manifest's ``aggregator_public_key`` when one is set, computes the commitment to the plaintext
   (:func:`pocfl.updates.update_commitment`), records the intent in the journal, and stores + submits it with
   :meth:`pocfl.market.Market.submit_update`.

Transient failures (an unreachable store or node) are retried with bounded exponential backoff; a retried submit
first looks on chain for an earlier attempt that did go through. :meth:`TrainerClient.run` loops: it waits for the
next round to open (by the chain's clock, :mod:`pocfl.waiting`), trains and submits, waits for the round to be posted
(or failed) and reports the outcome (own score, outlier flag, credit), until the project ends or ``rounds`` rounds
were taken part in. The loop outlasts outages (capped backoff, one line per state change) and says loudly when the
project moved past a round this trainer never took part in.

Attacks (demo and benchmark attackers only; :func:`parse_attack`): ``sign_flip``, ``scaling`` (x10), ``gaussian``
(pure N(0, 1) noise), ``free_rider`` (zero update), ``label_flip`` (labels ``c -> C-1-c`` before training),
``copycat`` (another trainer's readable plaintext from this round plus 1 % noise; a zero update when nothing is
readable, e.g. every update is sealed to the aggregator).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from pocfl.chain.contract_errors import AlreadySubmitted, SubmissionWindowClosed, WrongRound
from pocfl.chain.types import ZERO_BYTES32, EventRecord, ProjectState, ProjectStatus
from pocfl.errors import PocflError
from pocfl.fsutil import PRIVATE, write_json_atomic
from pocfl.manifest import ProjectManifest, ProofConfig
from pocfl.market import Market
from pocfl.ml.training import evaluate, local_train
from pocfl.rounds.hyperparams import HyperParams
from pocfl.rounds.inputs import (
    PostedRound,
    global_model,
    load_manifest,
    posted_report,
    round_hyperparams,
)
from pocfl.store import compute_cid
from pocfl.testing.attacks import Attack, copycat, flip_labels, free_rider, gaussian_noise, scaling, sign_flip
from pocfl.updates import decode_update, encode_update, encrypt_update, update_commitment
from pocfl.waiting import (
    Backoff,
    DeadlineTooCloseError,
    StatusLine,
    clock_lag_hint,
    hhmmss,
    is_transient,
    outage_line,
    retry_transient,
)
from trainer_client.self_check import PlaintextKeeper, check_treatment

Vector = NDArray[np.float32]
T = TypeVar("T")

JOURNAL_FORMAT = "pocfl-trainer-journal/1"
DEFAULT_RETRIES = 4
DEFAULT_BACKOFF = 0.5
MAX_BACKOFF = 8.0
COPYCAT_NOISE = 0.01
SCALING_FACTOR = 10.0
GAUSSIAN_SIGMA = 1.0

SUPPORTED_ATTACKS: tuple[Attack, ...] = (
    Attack.SIGN_FLIP,
    Attack.SCALING,
    Attack.GAUSSIAN_NOISE,
    Attack.FREE_RIDER,
    Attack.LABEL_FLIP,
    Attack.COPYCAT,
)
_ATTACK_ALIASES = {"gaussian": Attack.GAUSSIAN_NOISE, "zero": Attack.FREE_RIDER}


# --- errors ---------------------------------------------------------------------------------------------------


class TrainerError(PocflError):
    """A trainer cannot take part in a round; the message says why and what to do."""


class RoundNotOpenError(TrainerError):
    """The round has not opened yet (before the start time, too few trainers, or a later round)."""


class ProjectEndedError(TrainerError):
    """The project is finished or cancelled: there is nothing left to train."""


class NotATrainerError(TrainerError):
    """The signing account is not registered in the project."""


class DataMismatchError(TrainerError):
    """The local data does not fit the project's model (feature count or label range)."""


class UnknownAttackError(TrainerError, ValueError):
    """An attack name the trainer client does not implement."""


def parse_attack(name: str | None) -> Attack | None:
    """The attack a name selects; None for no attack (``None``, ``""`` or ``"none"``).

    Raises
    ------
    UnknownAttackError
        A name that is not one of :data:`SUPPORTED_ATTACKS` (``gaussian`` is accepted for ``gaussian_noise``).
    """
    if name is None or not name.strip() or name.strip().lower() == "none":
        return None
    key = name.strip().lower().replace("-", "_")
    attack = _ATTACK_ALIASES.get(key)
    if attack is None:
        try:
            attack = Attack(key)
        except ValueError:
            attack = None
    if attack is None or attack not in SUPPORTED_ATTACKS:
        known = ", ".join(["gaussian" if a is Attack.GAUSSIAN_NOISE else a.value for a in SUPPORTED_ATTACKS])
        raise UnknownAttackError(f"unknown attack {name!r}; the trainer client implements: {known}")
    return attack


# --- results --------------------------------------------------------------------------------------------------


class RoundStatus(StrEnum):
    """What :meth:`TrainerClient.train_round` did."""

    SUBMITTED = "submitted"
    ALREADY_SUBMITTED = "already_submitted"
    LATE = "late"


@dataclass(frozen=True)
class RoundResult:
    """One round from the trainer's side.

    Attributes
    ----------
    project_id, round, trainer
        Which submission.
    status
        Submitted now, submitted before (never twice), or skipped because the window had closed.
    message
        One readable line about it.
    cid, commitment
        The stored object's CID (the encryption envelope when sealed) and the commitment to the plaintext; None
        when nothing was submitted.
    encrypted
        Whether the stored object is sealed to the aggregator (None when unknown: submitted by an earlier run).
    attack
        The attack applied, if any.
    model_cid
        The global model trained from.
    hyperparams
        The round's hyper-parameters.
    num_examples
        Local samples trained on.
    update_norm
        L2 norm of the submitted delta.
    local_accuracy, local_loss
        The trained model on the local data (before any attack).
    tx_hash, block
        The submit transaction.
    source
        Where a submission was found: ``"this run"``, ``"chain"`` or ``"journal"``.
    timings
        Seconds spent per step: ``fetch``, ``train``, ``submit``.
    plaintext
        The plaintext update file submitted by this run (kept for evidence, see :mod:`trainer_client.self_check`;
        never printed nor written to JSON).
    """

    project_id: int
    round: int
    trainer: str
    status: RoundStatus
    message: str
    cid: str | None = None
    commitment: bytes | None = None
    encrypted: bool | None = None
    attack: str | None = None
    model_cid: str | None = None
    hyperparams: HyperParams | None = None
    num_examples: int = 0
    update_norm: float | None = None
    local_accuracy: float | None = None
    local_loss: float | None = None
    tx_hash: str | None = None
    block: int | None = None
    source: str = "this run"
    timings: dict[str, float] = field(default_factory=dict)
    plaintext: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def submitted(self) -> bool:
        """Whether the round has this trainer's submission on chain (now or from before)."""
        return self.status is not RoundStatus.LATE

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (bytes as 0x hex, hyper-parameters as a dict)."""
        return {
            "project_id": self.project_id,
            "round": self.round,
            "trainer": self.trainer,
            "status": self.status.value,
            "message": self.message,
            "cid": self.cid,
            "commitment": None if self.commitment is None else "0x" + self.commitment.hex(),
            "encrypted": self.encrypted,
            "attack": self.attack,
            "model_cid": self.model_cid,
            "hyperparams": None if self.hyperparams is None else json.loads(self.hyperparams.to_json()),
            "num_examples": self.num_examples,
            "update_norm": self.update_norm,
            "local_accuracy": self.local_accuracy,
            "local_loss": self.local_loss,
            "tx_hash": self.tx_hash,
            "block": self.block,
            "source": self.source,
            "timings": dict(self.timings),
        }


@dataclass(frozen=True)
class RoundOutcome:
    """How a round ended for this trainer, once the aggregator posted it (or it failed).

    Attributes
    ----------
    project_id, round, trainer
        Which round.
    state
        ``posted``, ``failed`` or ``cancelled`` (the project ended without settling the round).
    submitted
        Whether the round's posted submissions include this trainer.
    score, outlier, credited_wei
        This trainer's posted score, outlier flag and credit for the round (None / 0 when not in the round).
    earned_wei
        Everything this trainer was credited in the project so far.
    claimable_wei
        The account's claimable credits over all projects (``credits``).
    model_cid
        The new global model (posted rounds).
    verdict, reason
        This trainer's entry in the round report (``scored``, ``outlier``, ``free_rider``, ``copy``, ``stale``,
        ``rejected``) and the rejection reason; None when the report could not be read.
    accuracy
        Validation accuracy of the new global model, from the report.
    complaint
        The trainer's own check of its treatment (:mod:`trainer_client.self_check`): one plain sentence when it
        was rejected, flagged or misreported; None otherwise.
    evidence
        The evidence file saved with a complaint (``pocfl audit --evidence FILE``).
    """

    project_id: int
    round: int
    trainer: str
    state: str
    submitted: bool
    score: int | None = None
    outlier: bool | None = None
    credited_wei: int = 0
    earned_wei: int = 0
    claimable_wei: int = 0
    model_cid: str | None = None
    verdict: str | None = None
    reason: str | None = None
    accuracy: float | None = None
    complaint: str | None = None
    evidence: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "project_id": self.project_id,
            "round": self.round,
            "trainer": self.trainer,
            "state": self.state,
            "submitted": self.submitted,
            "score": self.score,
            "outlier": self.outlier,
            "credited_wei": self.credited_wei,
            "earned_wei": self.earned_wei,
            "claimable_wei": self.claimable_wei,
            "model_cid": self.model_cid,
            "verdict": self.verdict,
            "reason": self.reason,
            "accuracy": self.accuracy,
            "complaint": self.complaint,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class RoundSummary:
    """A round of :meth:`TrainerClient.run`: what was submitted and, once settled, how it was scored."""

    result: RoundResult
    outcome: RoundOutcome | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "result": self.result.to_json(),
            "outcome": None if self.outcome is None else self.outcome.to_json(),
        }


# --- progress -------------------------------------------------------------------------------------------------


class TrainerReporter:
    """Receives progress from :class:`TrainerClient`; every method does nothing by default."""

    def waiting(self, text: str) -> None:
        """The client is waiting (for the start, the next round, a retry, the aggregator)."""

    def warning(self, text: str) -> None:
        """Something the trainer must not miss (a round the project moved past without it)."""
        self.waiting(text)

    def training(self, round_: int, epochs: int) -> None:
        """Local training of ``round_`` starts, ``epochs`` epochs."""

    def epoch(self, round_: int, epoch: int, epochs: int) -> None:
        """Epoch ``epoch`` (1-based) of ``epochs`` finished."""

    def trained(self, result: RoundResult) -> None:
        """The round was submitted, found already submitted, or skipped."""

    def settled(self, outcome: RoundOutcome) -> None:
        """The round was posted or failed."""


class TqdmReporter(TrainerReporter):
    """Library-friendly progress: a tqdm bar per round's epochs, one line per event on stderr."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._last = ""

    def waiting(self, text: str) -> None:
        """Print ``text`` once per change."""
        if text != self._last:
            self._last = text
            from tqdm import tqdm

            tqdm.write(text)

    def training(self, round_: int, epochs: int) -> None:
        """Open the epoch bar."""
        from tqdm import tqdm

        self._bar = tqdm(total=epochs, desc=f"round {round_}", unit="epoch", leave=False)

    def epoch(self, round_: int, epoch: int, epochs: int) -> None:
        """Advance the epoch bar."""
        if self._bar is not None:
            self._bar.update(1)
            if epoch == epochs:
                self._bar.close()
                self._bar = None

    def trained(self, result: RoundResult) -> None:
        """One line per round result."""
        from tqdm import tqdm

        tqdm.write(f"round {result.round}: {result.message}")

    def settled(self, outcome: RoundOutcome) -> None:
        """One line per settled round."""
        from tqdm import tqdm

        tqdm.write(describe_outcome(outcome))
        if outcome.complaint is not None:
            tqdm.write(f"WARNING: {outcome.complaint}")


def describe_outcome(outcome: RoundOutcome) -> str:
    """One readable line: ``round 2 posted: score 12, not an outlier, +0.25 ETH (project total 0.5 ETH)``."""
    head = f"round {outcome.round} {outcome.state}"
    if outcome.state != "posted":
        return head + ("" if outcome.state == "cancelled" else " (no results; the round budget stays in escrow)")
    if not outcome.submitted:
        return head + ": this trainer is not in it"
    flag = "OUTLIER" if outcome.outlier else "not an outlier"
    verdict = f" [{outcome.verdict}]" if outcome.verdict not in (None, "scored", "outlier") else ""
    return (
        f"{head}: score {outcome.score}, {flag}{verdict}, +{_eth(outcome.credited_wei)} ETH "
        f"(project total {_eth(outcome.earned_wei)} ETH, claimable {_eth(outcome.claimable_wei)} ETH)"
    )


def _eth(wei: int) -> str:
    whole, frac = divmod(wei, 10**18)
    return f"{whole}.{frac:018d}".rstrip("0").rstrip(".")


# --- the journal ----------------------------------------------------------------------------------------------


class Journal:
    """The trainer's local record of its submissions: ``state_dir/trainer-<address>-<project>.json``.

    Entries are kept per deployment (``<chain id>:<market address>``) and round; each write replaces the file
    atomically. A round with a ``submitted`` entry is never submitted again, whatever the chain says.
    """

    def __init__(self, state_dir: Path | None, trainer: str, project_id: int, deployment: str) -> None:
        self.path = None if state_dir is None else Path(state_dir) / f"trainer-{trainer.lower()}-{project_id}.json"
        self.trainer = trainer
        self.project_id = project_id
        self.deployment = deployment

    def _load(self) -> dict[str, Any]:
        if self.path is None or not self.path.is_file():
            return {"format": JOURNAL_FORMAT, "trainer": self.trainer, "project_id": self.project_id, "deployments": {}}
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrainerError(f"journal {self.path} is unreadable ({exc}): fix or move it away") from exc
        if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT:
            raise TrainerError(f"journal {self.path} is not a {JOURNAL_FORMAT} file: fix or move it away")
        return data

    def entry(self, round_: int) -> dict[str, Any] | None:
        """The journal's entry for ``round_`` in this deployment, if any."""
        rounds = self._load()["deployments"].get(self.deployment, {})
        found = rounds.get(str(round_))
        return dict(found) if isinstance(found, dict) else None

    def record(self, round_: int, entry: Mapping[str, Any]) -> None:
        """Write (replace) the entry of ``round_``."""
        if self.path is None:
            return
        data = self._load()
        data["deployments"].setdefault(self.deployment, {})[str(round_)] = dict(entry)
        write_json_atomic(self.path, data, mode=PRIVATE, sort_keys=True)


# --- the client -----------------------------------------------------------------------------------------------


def derive_seed(seed: int, round_: int, purpose: int) -> int:
    """A 32-bit seed for ``(seed, round, purpose)``: the same inputs always give the same training run."""
    return int(np.random.SeedSequence([seed, round_, purpose]).generate_state(1, dtype=np.uint32)[0])


_TRAIN, _ATTACK = 1, 2


class TrainerClient:
    """A trainer taking part in one project: trains on its private data and submits through store and chain.

    Parameters
    ----------
    market
        The marketplace bound to the content store; its client signs as the trainer.
    project_id
        The project.
    X, y
        The private data: float32 features ``(n, n_features)`` and int64 labels in ``0..n_classes-1``.
    seed
        Seed of local training and of randomised attacks (combined with the round number).
    attack
        Demo / benchmark attacker behaviour (see :func:`parse_attack`); None for an honest trainer.
    state_dir
        Folder of the submission journal; None keeps no journal (the chain check alone prevents double submits).
    reporter
        Receives progress; default silent.
    from_block
        First block to search for the project's creation (the deployment block); later searches start at the
        project's ``ProjectCreated`` block.
    retries, backoff
        Attempts for transient failures and the first delay between them (doubling, at most 8 s).
    sleep
        Waits between polls and retries (tests pass a fake).
    """

    def __init__(
        self,
        market: Market,
        project_id: int,
        X: NDArray[np.floating],  # noqa: N803 (ML convention for a feature matrix)
        y: NDArray[np.integer],
        *,
        seed: int = 0,
        attack: str | Attack | None = None,
        state_dir: Path | None = None,
        reporter: TrainerReporter | None = None,
        from_block: int = 0,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # own, writable, contiguous copies only where needed (torch refuses read-only arrays)
        x_arr = np.require(X, dtype=np.float32, requirements=["C", "W"])
        y_arr = np.require(y, dtype=np.int64, requirements=["C", "W"])
        if x_arr.ndim != 2 or y_arr.ndim != 1 or x_arr.shape[0] != y_arr.shape[0] or x_arr.shape[0] == 0:
            raise DataMismatchError(f"need X (n, features) and y (n,) with n > 0, got {x_arr.shape} and {y_arr.shape}")
        if seed < 0:
            raise TrainerError(f"seed must be >= 0, got {seed}")
        if retries < 1 or backoff < 0:
            raise TrainerError(f"need retries >= 1 and backoff >= 0, got {retries} and {backoff}")
        self.market = market
        self.project_id = project_id
        self.X = x_arr
        self.y = y_arr
        self.seed = seed
        self.attack = attack if isinstance(attack, Attack) else parse_attack(attack)
        self.reporter = reporter or TrainerReporter()
        self._search_from = from_block
        self._project_block: int | None = None
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._status = StatusLine(self.reporter.waiting)  # one line per state change, across retries and the loop
        self.address = market.client.sender
        self.chain_id = market.client.chain.chain_id
        self.market_address = market.client.address
        self.journal = Journal(state_dir, self.address, project_id, f"{self.chain_id}:{self.market_address}")
        self.evidence_dir = None if state_dir is None else Path(state_dir) / "evidence"
        self._keeper: PlaintextKeeper | None = None
        if self.evidence_dir is not None:
            self._keeper = PlaintextKeeper(self.evidence_dir / "pending", market, project_id)
        self._manifest: ProjectManifest | None = None

    @property
    def from_block(self) -> int:
        """First block of the project's events: its ``ProjectCreated`` block (looked up once), else ``from_block``."""
        if self._project_block is None:
            created = self._retry(
                "find the project",
                lambda: self.market.client.events(
                    "ProjectCreated", from_block=self._search_from, projectId=self.project_id
                ),
            )
            if not created:
                return self._search_from  # not created (yet): look again next time
            self._project_block = created[0].block_number
        return self._project_block

    # --- chain views --------------------------------------------------------------------------------------

    def now(self) -> int:
        """The chain's time: its latest block's timestamp, the time the contract's checks see in calls."""
        return self._retry("read the chain time", self.market.client.chain.now)

    def project(self) -> ProjectState:
        """The project's live state."""
        return self._retry("read the project", lambda: self.market.client.project(self.project_id))

    def manifest(self) -> ProjectManifest:
        """The project manifest (fetched once, verified against its CID), after checking the data fits it.

        Raises
        ------
        DataMismatchError
            The local features or labels do not fit the manifest's model.
        """
        if self._manifest is None:
            state = self.project()
            manifest = self._retry("fetch the project manifest", lambda: load_manifest(self.market, state))
            model = manifest.model
            if self.X.shape[1] != model.n_features:
                raise DataMismatchError(
                    f"the data has {self.X.shape[1]} features per sample, project {self.project_id}'s model takes "
                    f"{model.n_features}"
                )
            if int(self.y.min()) < 0 or int(self.y.max()) >= model.n_classes:
                raise DataMismatchError(
                    f"labels span {int(self.y.min())}..{int(self.y.max())}, project {self.project_id}'s model has "
                    f"classes 0..{model.n_classes - 1}"
                )
            self._manifest = manifest
        return self._manifest

    def submission(self, round_: int) -> EventRecord | None:
        """The ``UpdateSubmitted`` event of this trainer in ``round_``, if the chain has one."""
        events = self._retry(
            "read submissions",
            lambda: self.market.client.events(
                "UpdateSubmitted",
                from_block=self.from_block,
                projectId=self.project_id,
                round=round_,
                trainer=self.address,
            ),
        )
        return events[0] if events else None

    # --- one round ----------------------------------------------------------------------------------------

    def train_round(self, round_: int) -> RoundResult:
        """Train, store and submit this trainer's update for ``round_`` (at most once).

        Returns
        -------
        RoundResult
            ``SUBMITTED``; ``ALREADY_SUBMITTED`` when the chain or the journal already has this round's
            submission (nothing is sent); ``LATE`` when the round's submission window closed (nothing is sent).

        Raises
        ------
        ProjectEndedError, NotATrainerError, RoundNotOpenError
            The project is over, the account is not registered, or the round has not opened yet.
        DataMismatchError
            The data does not fit the project's model.
        PocflError
            A bad manifest, model or report (named errors of the store, update format and aggregator inputs),
            or a transient failure that outlasted the retries.
        """
        state = self.project()
        self._check_active(state)
        if not self._retry(
            "read the trainer", lambda: self.market.client.trainer(self.project_id, self.address)
        ).registered:
            raise NotATrainerError(
                f"{self.address} is not registered in project {self.project_id}: register before its start "
                f"(`pocfl register {self.project_id}`)"
            )
        earlier = self._already_submitted(round_)
        if earlier is not None:
            return earlier
        late = self._late(state, round_)
        if late is not None:
            return late

        t0 = time.perf_counter()
        manifest = self.manifest()
        spec = manifest.model.spec()
        model_cid, start = self._retry(
            "fetch the global model",
            lambda: global_model(self.market, manifest, state, round_, from_block=self.from_block),
        )
        hyper = self._retry(
            "read the round's hyper-parameters",
            lambda: round_hyperparams(self.market, manifest, self.project_id, round_, from_block=self.from_block),
        )
        t1 = time.perf_counter()
        delta, accuracy, loss = self._train(round_, start, hyper, manifest.model.n_classes)
        delta = self._attack(round_, delta, manifest)
        plaintext = encode_update(spec.unflatten(delta), spec, kind="delta")
        key = manifest.aggregator_public_key
        sealed = key is not None
        payload = encrypt_update(plaintext, key) if key is not None else plaintext
        commitment = update_commitment(
            plaintext,
            chain_id=self.chain_id,
            market=self.market_address,
            project_id=self.project_id,
            round=round_,
            trainer=self.address,
        )
        features = ZERO_BYTES32
        if manifest.proof is not None:
            features = self._feature_commitment(delta, manifest.proof, round_, model_cid)
        t2 = time.perf_counter()
        base = RoundResult(
            project_id=self.project_id,
            round=round_,
            trainer=self.address,
            status=RoundStatus.SUBMITTED,
            message="",
            cid=compute_cid(payload),
            commitment=commitment,
            encrypted=sealed,
            attack=None if self.attack is None else self.attack.value,
            model_cid=model_cid,
            hyperparams=hyper,
            num_examples=int(self.y.shape[0]),
            update_norm=float(np.linalg.norm(delta.astype(np.float64))),
            local_accuracy=accuracy,
            local_loss=loss,
            plaintext=plaintext,
        )
        late = self._late(self.project(), round_, after_training=True)
        if late is not None:
            return replace(base, status=RoundStatus.LATE, message=late.message, cid=None, commitment=None)
        if self._keeper is not None:
            self._keeper.keep(round_, plaintext)  # evidence for the trainer's own check, even after a restart
        result = self._submit(round_, payload, commitment, base, features)
        timings = {"fetch": t1 - t0, "train": t2 - t1, "submit": time.perf_counter() - t2}
        return replace(result, timings=timings)

    def _check_active(self, state: ProjectState) -> None:
        if state.status == ProjectStatus.NONE:
            raise ProjectEndedError(f"project {self.project_id} does not exist on this marketplace")
        if state.status != ProjectStatus.ACTIVE:
            raise ProjectEndedError(f"project {self.project_id} is {state.status.name.lower()}: nothing to train")

    def _already_submitted(self, round_: int) -> RoundResult | None:
        event = self.submission(round_)
        entry = self.journal.entry(round_)
        if event is not None:
            cid, commitment = str(event.args["cid"]), bytes(event.args["commitment"])
            if entry is None or entry.get("status") != "submitted":
                self.journal.record(
                    round_, _journal_entry("submitted", cid, commitment, event.tx_hash, event.block_number)
                )
            return RoundResult(
                project_id=self.project_id,
                round=round_,
                trainer=self.address,
                status=RoundStatus.ALREADY_SUBMITTED,
                message=f"already submitted {cid} in block {event.block_number}; not submitting again",
                cid=cid,
                commitment=commitment,
                encrypted=entry.get("encrypted") if entry else None,
                tx_hash=event.tx_hash,
                block=event.block_number,
                source="chain",
            )
        if entry is not None and entry.get("status") == "submitted":
            return RoundResult(
                project_id=self.project_id,
                round=round_,
                trainer=self.address,
                status=RoundStatus.ALREADY_SUBMITTED,
                message=(
                    f"the journal {self.journal.path} records a submission of {entry.get('cid')} that this chain "
                    "does not show; not submitting again (move the journal away to override)"
                ),
                cid=entry.get("cid"),
                commitment=bytes.fromhex(str(entry["commitment"])[2:]) if entry.get("commitment") else None,
                tx_hash=entry.get("tx_hash"),
                source="journal",
            )
        return None

    def _late(self, state: ProjectState, round_: int, *, after_training: bool = False) -> RoundResult | None:
        """A LATE result when ``round_``'s window has closed; raises when it has not opened yet."""
        self._check_active(state)
        now = self.now()
        if round_ < state.current_round:
            why = f"round {round_} is over (the project is at round {state.current_round})"
        elif round_ > state.current_round:
            raise RoundNotOpenError(
                f"round {round_} has not opened: project {self.project_id} is at round {state.current_round}"
            )
        elif now < state.params.start_time:
            raise RoundNotOpenError(f"project {self.project_id} starts at {state.params.start_time} (now {now})")
        elif state.trainer_count < state.params.min_trainers:
            raise RoundNotOpenError(
                f"project {self.project_id} has {state.trainer_count} of the {state.params.min_trainers} trainers "
                "it needs to start"
            )
        elif now >= state.submission_deadline:
            why = f"round {round_}'s submission window closed at {state.submission_deadline} (now {now})"
        else:
            return None
        suffix = " while training" if after_training else ""
        return RoundResult(
            project_id=self.project_id,
            round=round_,
            trainer=self.address,
            status=RoundStatus.LATE,
            message=f"skipped: {why}{suffix}; nothing submitted",
        )

    def _train(self, round_: int, start: Vector, hyper: HyperParams, n_classes: int) -> tuple[Vector, float, float]:
        y = self.y
        if self.attack is Attack.LABEL_FLIP:
            y = flip_labels(y, n_classes).astype(np.int64)
        epochs = hyper.local_epochs
        self.reporter.training(round_, epochs)
        current = start.astype(np.float32, copy=True)
        for epoch in range(epochs):
            step = local_train(
                current,
                self.X,
                y,
                epochs=1,
                lr=hyper.learning_rate,
                batch_size=hyper.batch_size,
                seed=derive_seed(self.seed, round_, _TRAIN * 1000 + epoch),
                n_classes=n_classes,
            )
            current = (current + step).astype(np.float32)
            self.reporter.epoch(round_, epoch + 1, epochs)
        accuracy, loss = evaluate(current, self.X, self.y, n_classes=n_classes)
        return (current - start).astype(np.float32), accuracy, loss

    def _attack(self, round_: int, delta: Vector, manifest: ProjectManifest) -> Vector:
        attack = self.attack
        if attack is None or attack is Attack.LABEL_FLIP:
            return delta
        seed = derive_seed(self.seed, round_, _ATTACK)
        rows = delta[None, :].astype(np.float64)
        if attack is Attack.SIGN_FLIP:
            out = sign_flip(rows, [0])
        elif attack is Attack.SCALING:
            out = scaling(rows, [0], factor=SCALING_FACTOR)
        elif attack is Attack.GAUSSIAN_NOISE:
            out = gaussian_noise(rows, [0], sigma=GAUSSIAN_SIGMA, seed=seed)
        elif attack is Attack.FREE_RIDER:
            out = free_rider(rows, [0])
        else:  # COPYCAT
            victim = self._readable_update(round_, manifest)
            if victim is None:
                self.reporter.waiting(f"round {round_}: no readable update to copy; sending a zero update")
                out = free_rider(rows, [0])
            else:
                out = copycat(
                    np.stack([victim.astype(np.float64), rows[0]]), [1], relative_noise=COPYCAT_NOISE, seed=seed
                )[1:]
        return np.asarray(out[0], dtype=np.float32)

    def _readable_update(self, round_: int, manifest: ProjectManifest) -> Vector | None:
        """Another trainer's plaintext delta of this round (the copycat's victim), if any is readable."""
        spec = manifest.model.spec()
        others = [
            u
            for u in self._retry(
                "read submissions",
                lambda: self.market.submitted_updates(self.project_id, round_, from_block=self.from_block),
            )
            if u.trainer.lower() != self.address.lower()
        ]
        for update in others:
            try:
                opened = self.market.open_update(update, self.project_id, round_)
                if opened.plaintext is None:
                    continue
                return decode_update(opened.plaintext, spec, kind="delta", max_size=manifest.max_update_size).vector()
            except PocflError:  # unreachable, unverifiable or not a valid delta: try the next one
                continue
        return None

    def _feature_commitment(self, delta: Any, proof: ProofConfig, round_: int, model_cid: str) -> bytes:
        """Poseidon commitment to this update's features (projects whose rounds are proven; see ``zk/``)."""
        from zk.commitment import feature_commitment
        from zk.decision import feature_seed, update_features

        seed = feature_seed(self.chain_id, self.market_address, self.project_id, round_, model_cid)
        return feature_commitment(update_features(delta, seed, proof.sketch_dim, proof.scale), proof.scale)

    def _submit(
        self, round_: int, payload: bytes, commitment: bytes, base: RoundResult, features: bytes = ZERO_BYTES32
    ) -> RoundResult:
        cid = base.cid
        assert cid is not None
        self.journal.record(round_, _journal_entry("pending", cid, commitment, None, None, encrypted=base.encrypted))
        delay = self.backoff
        for attempt in range(1, self.retries + 1):
            if attempt > 1:
                event = self.submission(round_)
                if event is not None:  # an earlier attempt went through after all
                    return self._found(round_, event, commitment, base)
            try:
                stored, receipt = self.market.submit_update(
                    self.project_id, round_, payload, commitment, feature_commitment=features
                )
            except AlreadySubmitted:
                event = self.submission(round_)
                if event is None:
                    raise
                return self._found(round_, event, commitment, base)
            except (SubmissionWindowClosed, WrongRound) as exc:
                message = f"skipped: the contract refused the submission as late ({exc.name}); nothing submitted"
                return replace(base, status=RoundStatus.LATE, message=message, cid=None, commitment=None)
            except DeadlineTooCloseError as exc:
                message = f"skipped: round {round_}'s submission window is about to close; {exc}"
                return replace(base, status=RoundStatus.LATE, message=message, cid=None, commitment=None)
            except Exception as exc:
                if attempt == self.retries or not is_transient(exc):
                    raise
                self.reporter.waiting(f"submit: {type(exc).__name__} ({exc}); retrying in {delay:.1f} s")
                self._sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            self.journal.record(
                round_,
                _journal_entry(
                    "submitted", stored, commitment, receipt.tx_hash, receipt.block_number, encrypted=base.encrypted
                ),
            )
            sealed = " (sealed to the aggregator)" if base.encrypted else ""
            return replace(
                base,
                cid=stored,
                tx_hash=receipt.tx_hash,
                block=receipt.block_number,
                message=f"submitted {stored}{sealed} in block {receipt.block_number}",
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _found(self, round_: int, event: EventRecord, commitment: bytes, base: RoundResult) -> RoundResult:
        cid, on_chain = str(event.args["cid"]), bytes(event.args["commitment"])
        self.journal.record(
            round_,
            _journal_entry("submitted", cid, on_chain, event.tx_hash, event.block_number, encrypted=base.encrypted),
        )
        ours = on_chain == commitment
        return replace(
            base,
            status=RoundStatus.SUBMITTED if ours else RoundStatus.ALREADY_SUBMITTED,
            cid=cid,
            commitment=on_chain,
            tx_hash=event.tx_hash,
            block=event.block_number,
            source="this run" if ours else "chain",
            message=f"submitted {cid} in block {event.block_number}"
            + ("" if ours else " by another process of this trainer; not submitting again"),
        )

    # --- retries --------------------------------------------------------------------------------------------

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn``; retry transient failures with exponential backoff, up to ``retries`` attempts."""
        return retry_transient(
            what,
            fn,
            sleep=self._sleep,
            status=self._status,
            backoff=Backoff(self.backoff, max(MAX_BACKOFF, self.backoff)),
            attempts=self.retries,
        )

    # --- settlement and the loop ----------------------------------------------------------------------------

    def outcome(self, round_: int, state: ProjectState | None = None) -> RoundOutcome | None:
        """How ``round_`` ended for this trainer; None while it is still open or aggregating."""
        state = state or self.project()
        if state.status == ProjectStatus.ACTIVE and state.current_round <= round_:
            return None
        client = self.market.client
        posted = self._retry(
            "read the round's results",
            lambda: client.events("RoundPosted", from_block=self.from_block, projectId=self.project_id, round=round_),
        )
        credited_events = self._credited()
        earned = sum(int(e.args["amount"]) for e in credited_events)
        claimable = self._retry("read credits", lambda: client.credits(self.address))
        mine = [e for e in credited_events if int(e.args["round"]) == round_]
        if not posted:
            failed = self._retry(
                "read the round's results",
                lambda: client.events(
                    "RoundFailed", from_block=self.from_block, projectId=self.project_id, round=round_
                ),
            )
            return RoundOutcome(
                project_id=self.project_id,
                round=round_,
                trainer=self.address,
                state="failed" if failed else "cancelled",
                submitted=self.submission(round_) is not None,
                earned_wei=earned,
                claimable_wei=claimable,
            )
        event = posted[0]
        verdict, reason, accuracy = self._report_entry(round_, event)
        return RoundOutcome(
            project_id=self.project_id,
            round=round_,
            trainer=self.address,
            state="posted",
            submitted=bool(mine),
            score=int(mine[0].args["score"]) if mine else None,
            outlier=bool(mine[0].args["outlier"]) if mine else None,
            credited_wei=sum(int(e.args["amount"]) for e in mine),
            earned_wei=earned,
            claimable_wei=claimable,
            model_cid=str(event.args["modelCid"]),
            verdict=verdict,
            reason=reason,
            accuracy=accuracy,
        )

    def check_treatment(self, result: RoundResult, outcome: RoundOutcome) -> RoundOutcome:
        """``outcome`` with this trainer's own check of a posted round (see :mod:`trainer_client.self_check`).

        Skipped for demo attackers (they know why they were flagged) and for rounds without a known submission.
        """
        if outcome.state != "posted" or self.attack is not None or result.cid is None or result.commitment is None:
            return outcome
        cid, commitment = result.cid, result.commitment
        plaintext = result.plaintext
        if plaintext is None and self._keeper is not None:
            plaintext = self._keeper.kept(result.round, commitment, self.manifest().max_update_size)
        events = self._retry(
            "read the round's results",
            lambda: self.market.client.events(
                "RoundPosted", from_block=self.from_block, projectId=self.project_id, round=result.round
            ),
        )
        if not events:
            return outcome
        found = check_treatment(
            self.market,
            self.project_id,
            result.round,
            events[0],
            cid=cid,
            commitment=commitment,
            encrypted=result.encrypted,
            plaintext=plaintext,
            evidence_dir=self.evidence_dir,
        )
        if self._keeper is not None:
            self._keeper.forget(result.round)
        evidence = None if found.evidence is None else str(found.evidence)
        return replace(outcome, complaint=found.complaint, evidence=evidence)

    def _credited(self) -> list[EventRecord]:
        return self._retry(
            "read credits",
            lambda: self.market.client.events(
                "TrainerCredited", from_block=self.from_block, projectId=self.project_id, trainer=self.address
            ),
        )

    def earned(self) -> int:
        """Wei credited to this trainer in the project so far (all posted rounds)."""
        return sum(int(e.args["amount"]) for e in self._credited())

    def _report_entry(self, round_: int, event: EventRecord) -> tuple[str | None, str | None, float | None]:
        posted = PostedRound.from_event(event)
        try:
            _, report = self._retry("fetch the round report", lambda: posted_report(self.market, posted))
        except PocflError:
            return None, None, None
        for entry in report.submissions:
            if entry.trainer.lower() == self.address.lower():
                return entry.status, entry.reason, report.accuracy
        return None, None, report.accuracy

    def run(self, rounds: int | None = None, *, poll: float = 5.0, max_wait: float | None = None) -> list[RoundSummary]:
        """Take part in the project round after round until it ends (or ``rounds`` rounds were submitted).

        Each round: wait until it opens by the chain's clock, :meth:`train_round`, then wait until the aggregator
        posts it (or it fails) and report the :class:`RoundOutcome`. A round whose window already closed is reported
        as skipped, and a round the project moved past while this trainer was not looking is a warning. Outages of
        the store or the chain are waited out (capped backoff, one line per change); other errors are raised.

        Parameters
        ----------
        rounds
            Stop after submitting this many rounds (and seeing them settled); None: until the project ends.
        poll
            Seconds between looks at the chain while waiting.
        max_wait
            Give up (:class:`TrainerError`) after waiting this many seconds with nothing changing; None: never.

        Returns
        -------
        list of RoundSummary
            One per round handled, in order.
        """
        if rounds is not None and rounds < 1:
            raise TrainerError(f"rounds must be >= 1, got {rounds}")
        loop = _Loop(rounds)
        status = self._status
        first = max(self.backoff, 0.1)
        backoff = Backoff(first, cap=max(poll, first))  # capped at the poll: an outage's end is seen within one
        waited = 0.0
        while True:
            try:
                step, text = self._step(loop)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                status(*outage_line(exc))
                self._sleep(backoff.next())
                continue
            if status.key is not None and status.key.startswith("outage"):
                status("recovered", "the outage is over; carrying on")
            backoff.reset()
            if step == "done":
                return loop.summaries
            if step == "progress":
                status.clear()
                waited = 0.0
                continue
            status(text, text)
            if max_wait is not None and waited >= max_wait:
                raise TrainerError(f"nothing happened in project {self.project_id} for {waited:.0f} s; giving up")
            self._sleep(poll)
            waited += poll

    def _step(self, loop: _Loop) -> tuple[str, str]:
        """One look at the project: ``("done", "")``, ``("progress", "")`` or ``("wait", what is awaited)``."""
        self.manifest()  # fail early on a bad manifest or data that does not fit the model
        state = self.project()
        if loop.pending is not None:
            outcome = self.outcome(loop.pending.round, state)
            if outcome is None:
                return "wait", f"round {loop.pending.round}: waiting for the aggregator to post the results"
            outcome = self.check_treatment(loop.pending, outcome)
            self.reporter.settled(outcome)
            loop.summaries.append(RoundSummary(loop.pending, outcome))
            loop.pending = None
            return ("done" if loop.rounds is not None and loop.submitted >= loop.rounds else "progress"), ""
        if state.status != ProjectStatus.ACTIVE:
            self.reporter.waiting(f"project {self.project_id} is {state.status.name.lower()}")
            return "done", ""
        now, r = self.now(), state.current_round
        if loop.expected is None:
            loop.expected = r
        if now < state.params.start_time:
            start = state.params.start_time
            return "wait", f"project {self.project_id} starts at {hhmmss(start)} by the chain's clock" + clock_lag_hint(
                now
            )
        if state.trainer_count < state.params.min_trainers:
            return "wait", (
                f"project {self.project_id}: {state.trainer_count} of {state.params.min_trainers} trainers "
                "registered; waiting for more (or a cancellation)"
            )
        if r in loop.handled:
            return "wait", f"waiting for round {r + 1} to open"
        if r > loop.expected:
            missed = f"round {loop.expected}" if r == loop.expected + 1 else f"rounds {loop.expected}..{r - 1}"
            self.reporter.warning(
                f"WARNING: project {self.project_id} is at round {r}: {missed} passed without this trainer "
                "(nothing was submitted for it)"
            )
        result = self.train_round(r)
        loop.handled.add(r)
        loop.expected = r + 1
        self.reporter.trained(result)
        if result.submitted:
            loop.submitted += 1
            loop.pending = result
        else:
            loop.summaries.append(RoundSummary(result, None))
        return "progress", ""


@dataclass
class _Loop:
    """What :meth:`TrainerClient.run` carries from one look at the project to the next."""

    rounds: int | None
    summaries: list[RoundSummary] = field(default_factory=list)
    handled: set[int] = field(default_factory=set)
    pending: RoundResult | None = None
    submitted: int = 0
    expected: int | None = None  # the next round this trainer expects to take part in


def _journal_entry(
    status: str, cid: str, commitment: bytes, tx_hash: str | None, block: int | None, *, encrypted: bool | None = None
) -> dict[str, Any]:
    return {
        "status": status,
        "cid": cid,
        "commitment": "0x" + commitment.hex(),
        "tx_hash": tx_hash,
        "block": block,
        "encrypted": encrypted,
        "at": int(time.time()),
    }
