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

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pocfl.chain.types import EventRecord, ProjectState
from pocfl.manifest import ProjectManifest
from pocfl.market import Market
from pocfl.ml.tabular import apply_preprocessing, scale_warning
from pocfl.rounds.inputs import global_model, load_manifest, round_hyperparams
from pocfl.testing.attacks import Attack
from pocfl.waiting import StatusLine

# The names that moved out of this module stay importable from it (``as``: an explicit re-export).
from trainer_client.attacks import SUPPORTED_ATTACKS as SUPPORTED_ATTACKS
from trainer_client.attacks import parse_attack as parse_attack
from trainer_client.journal import JOURNAL_FORMAT as JOURNAL_FORMAT
from trainer_client.journal import Journal as Journal
from trainer_client.local import LocalTrainer
from trainer_client.local import derive_seed as derive_seed
from trainer_client.loop import RoundLoop
from trainer_client.progress import TqdmReporter as TqdmReporter
from trainer_client.progress import TrainerReporter as TrainerReporter
from trainer_client.progress import describe_outcome as describe_outcome
from trainer_client.results import DataMismatchError as DataMismatchError
from trainer_client.results import NotATrainerError as NotATrainerError
from trainer_client.results import ProjectEndedError as ProjectEndedError
from trainer_client.results import RoundNotOpenError as RoundNotOpenError
from trainer_client.results import RoundOutcome as RoundOutcome
from trainer_client.results import RoundResult as RoundResult
from trainer_client.results import RoundStatus as RoundStatus
from trainer_client.results import RoundSummary as RoundSummary
from trainer_client.results import TrainerError as TrainerError
from trainer_client.results import UnknownAttackError as UnknownAttackError
from trainer_client.settlement import Settlement
from trainer_client.submission import Submitter
from trainer_client.view import ProjectView

DEFAULT_RETRIES = 4
DEFAULT_BACKOFF = 0.5


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
        self.project_id = project_id
        self.X = x_arr
        self.y = y_arr
        self.seed = seed
        self.attack = attack if isinstance(attack, Attack) else parse_attack(attack)
        self.reporter = reporter or TrainerReporter()
        status = StatusLine(self.reporter.waiting)  # one line per state change, across retries and the loop
        self.view = ProjectView(
            market, project_id, from_block=from_block, retries=retries, backoff=backoff, sleep=sleep, status=status
        )
        self.address = self.view.address
        self.chain_id = self.view.chain_id
        self.market_address = self.view.market_address
        self.journal = Journal(state_dir, self.address, project_id, f"{self.chain_id}:{self.market_address}")
        self.evidence_dir = None if state_dir is None else Path(state_dir) / "evidence"
        self.local = LocalTrainer(x_arr, y_arr, seed, self.attack, self.view, self.reporter)
        self.submitter = Submitter(self.view, self.journal, self.reporter)
        self.settlement = Settlement(self.view, self.attack, self.manifest, self.evidence_dir)
        self._manifest: ProjectManifest | None = None

    @property
    def market(self) -> Market:
        """The marketplace the client reads and submits through (replaceable: every collaborator uses this one)."""
        return self.view.market

    @market.setter
    def market(self, market: Market) -> None:
        self.view.market = market

    @property
    def sleep(self) -> Callable[[float], None]:
        """How the client waits between polls and retries (tests replace it)."""
        return self.view.sleep

    @sleep.setter
    def sleep(self, sleep: Callable[[float], None]) -> None:
        self.view.sleep = sleep

    @property
    def from_block(self) -> int:
        """First block of the project's events: its ``ProjectCreated`` block (looked up once), else ``from_block``."""
        return self.view.from_block

    # --- chain views --------------------------------------------------------------------------------------

    def now(self) -> int:
        """The chain's time: its latest block's timestamp, the time the contract's checks see in calls."""
        return self.view.now()

    def project(self) -> ProjectState:
        """The project's live state."""
        return self.view.project()

    def manifest(self) -> ProjectManifest:
        """The project manifest (fetched once, verified against its CID), after checking the data fits it.

        Raises
        ------
        DataMismatchError
            The local features or labels do not fit the manifest's model.
        """
        if self._manifest is None:
            state = self.project()
            manifest = self.view.retry("fetch the project manifest", lambda: load_manifest(self.market, state))
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
            self._preprocess(manifest)
            self._manifest = manifest
        return self._manifest

    def _preprocess(self, manifest: ProjectManifest) -> None:
        """Apply the manifest's input transform to the local features, warning when their scale is off."""
        warning = scale_warning(manifest.preprocessing, self.X)
        if warning is not None:
            self.reporter.warning(f"WARNING: {warning}")
        if manifest.preprocessing.transform != "none":
            self.local.X = apply_preprocessing(manifest.preprocessing, self.X)
        self.local.momentum = manifest.training.momentum

    def submission(self, round_: int) -> EventRecord | None:
        """The ``UpdateSubmitted`` event of this trainer in ``round_``, if the chain has one."""
        return self.view.submission(round_)

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
        refused = self.submitter.refusal(state, round_)
        if refused is not None:
            return refused

        t0 = time.perf_counter()
        manifest, retry, start_block = self.manifest(), self.view.retry, self.from_block
        model_cid, start = retry(
            "fetch the global model", lambda: global_model(self.market, manifest, state, round_, from_block=start_block)
        )
        hyper = retry(
            "read the round's hyper-parameters",
            lambda: round_hyperparams(self.market, manifest, self.project_id, round_, from_block=start_block),
        )
        t1 = time.perf_counter()
        delta, accuracy, loss = self.local.train(round_, start, hyper, manifest.model.n_classes)
        delta = self.local.attacked(round_, delta, manifest)
        sealed = self.submitter.seal(round_, delta, manifest, model_cid)
        t2 = time.perf_counter()
        base = self.submitter.base(
            round_,
            sealed,
            attack=None if self.attack is None else self.attack.value,
            model_cid=model_cid,
            hyperparams=hyper,
            num_examples=int(self.y.shape[0]),
            update_norm=float(np.linalg.norm(delta.astype(np.float64))),
            local_accuracy=accuracy,
            local_loss=loss,
        )
        late = self.submitter.late(self.project(), round_, after_training=True)
        if late is not None:
            return replace(base, status=RoundStatus.LATE, message=late.message, cid=None, commitment=None)
        if self.settlement.keeper is not None:  # evidence for the trainer's own check, even after a restart
            self.settlement.keeper.keep(round_, sealed.plaintext)
        result = self.submitter.submit(round_, sealed, base)
        timings = {"fetch": t1 - t0, "train": t2 - t1, "submit": time.perf_counter() - t2}
        return replace(result, timings=timings)

    # --- settlement and the loop ----------------------------------------------------------------------------

    def outcome(self, round_: int, state: ProjectState | None = None) -> RoundOutcome | None:
        """How ``round_`` ended for this trainer; None while it is still open or aggregating."""
        return self.settlement.outcome(round_, state or self.project())

    def check_treatment(self, result: RoundResult, outcome: RoundOutcome) -> RoundOutcome:
        """``outcome`` with this trainer's own check of a posted round (see :mod:`trainer_client.self_check`).

        Skipped for demo attackers (they know why they were flagged) and for rounds without a known submission.
        """
        return self.settlement.check_treatment(result, outcome)

    def earned(self) -> int:
        """Wei credited to this trainer in the project so far (all posted rounds)."""
        return self.settlement.earned()

    def history(self, state: ProjectState | None = None) -> list[RoundSummary]:
        """Every round this trainer submitted in the project, from the chain, each with how it ended.

        What ``pocfl train`` shows for a project that ended before it looked (a rerun after the end), instead of
        an empty table: the rounds submitted, their status, score and credit.
        """
        state = state or self.project()
        events = self.view.events("read submissions", "UpdateSubmitted", trainer=self.address)
        summaries = []
        for r in sorted({int(e.args["round"]) for e in events}):
            found = self.submitter.already_submitted(r)
            if found is None:
                continue
            result = replace(found, message=f"submitted {found.cid} in block {found.block}")
            summaries.append(RoundSummary(result, self.settlement.outcome(r, state)))
        return summaries

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
        return RoundLoop(self, self.view, self.reporter).run(rounds, poll, max_wait)
