"""A round's submission: whether it may be sent, the sealed update and its commitments, and sending it once.

:class:`Submitter` refuses a round that is over, not open, or already submitted (on chain or in the journal),
seals a delta into the bytes to store (:meth:`Submitter.seal`) and submits them with
:meth:`pocfl.market.Market.submit_update`, retrying transient failures; a retried submit first looks on chain for
an earlier attempt that did go through.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pocfl.chain.contract_errors import AlreadySubmitted, SubmissionWindowClosed, WrongRound
from pocfl.chain.types import ZERO_BYTES32, EventRecord, ProjectState, ProjectStatus
from pocfl.manifest import ProjectManifest, ProofConfig
from pocfl.store import compute_cid
from pocfl.updates import encode_update, encrypt_update, update_commitment
from pocfl.waiting import DeadlineTooCloseError, is_transient
from trainer_client.journal import Journal, journal_entry
from trainer_client.progress import TrainerReporter
from trainer_client.results import (
    NotATrainerError,
    ProjectEndedError,
    RoundNotOpenError,
    RoundResult,
    RoundStatus,
)
from trainer_client.view import MAX_BACKOFF, ProjectView

Vector = NDArray[np.float32]


@dataclass(frozen=True)
class SealedUpdate:
    """A delta ready to store and submit.

    Attributes
    ----------
    plaintext
        The update file (``kind="delta"``).
    payload
        What is stored: the plaintext, or its encryption envelope when the manifest names an aggregator key.
    commitment
        The commitment to the plaintext.
    features
        The Poseidon commitment to its features (proven projects; zero otherwise).
    encrypted
        Whether ``payload`` is sealed to the aggregator.
    """

    plaintext: bytes
    payload: bytes
    commitment: bytes
    features: bytes
    encrypted: bool


def check_active(project_id: int, state: ProjectState) -> None:
    """Raise :class:`ProjectEndedError` unless the project is active."""
    if state.status == ProjectStatus.NONE:
        raise ProjectEndedError(f"project {project_id} does not exist on this marketplace")
    if state.status != ProjectStatus.ACTIVE:
        raise ProjectEndedError(f"project {project_id} is {state.status.name.lower()}: nothing to train")


class Submitter:
    """Sends this trainer's update of a round at most once (see the module docstring).

    Parameters
    ----------
    view
        The chain as the trainer sees it.
    journal
        The trainer's submission journal.
    reporter
        Told about retried submits.
    """

    def __init__(self, view: ProjectView, journal: Journal, reporter: TrainerReporter) -> None:
        self.view, self.journal, self.reporter = view, journal, reporter

    def _result(self, round_: int, status: RoundStatus, message: str, **fields: Any) -> RoundResult:
        view = self.view
        return RoundResult(view.project_id, round_, view.address, status, message, **fields)

    def refusal(self, state: ProjectState, round_: int) -> RoundResult | None:
        """Why ``round_`` is not to be submitted now (already submitted, or late); None when it is.

        Raises
        ------
        ProjectEndedError, NotATrainerError, RoundNotOpenError
            The project is over, the account is not registered, or the round has not opened yet.
        """
        check_active(self.view.project_id, state)
        if not self.view.registered():
            raise NotATrainerError(
                f"{self.view.address} is not registered in project {self.view.project_id}: register before its start "
                f"(`pocfl register {self.view.project_id}`)"
            )
        return self.already_submitted(round_) or self.late(state, round_)

    def already_submitted(self, round_: int) -> RoundResult | None:
        """An ``ALREADY_SUBMITTED`` result when the chain or the journal has this round's submission."""
        event = self.view.submission(round_)
        entry = self.journal.entry(round_)
        if event is not None:
            cid, commitment = str(event.args["cid"]), bytes(event.args["commitment"])
            if entry is None or entry.get("status") != "submitted":
                self.journal.record(
                    round_, journal_entry("submitted", cid, commitment, event.tx_hash, event.block_number)
                )
            return self._result(
                round_,
                RoundStatus.ALREADY_SUBMITTED,
                f"already submitted {cid} in block {event.block_number}; not submitting again",
                cid=cid,
                commitment=commitment,
                encrypted=entry.get("encrypted") if entry else None,
                tx_hash=event.tx_hash,
                block=event.block_number,
                source="chain",
            )
        if entry is not None and entry.get("status") == "submitted":
            return self._result(
                round_,
                RoundStatus.ALREADY_SUBMITTED,
                f"the journal {self.journal.path} records a submission of {entry.get('cid')} that this chain "
                "does not show; not submitting again (move the journal away to override)",
                cid=entry.get("cid"),
                commitment=bytes.fromhex(str(entry["commitment"])[2:]) if entry.get("commitment") else None,
                tx_hash=entry.get("tx_hash"),
                source="journal",
            )
        return None

    def late(self, state: ProjectState, round_: int, *, after_training: bool = False) -> RoundResult | None:
        """A LATE result when ``round_``'s window has closed; raises when it has not opened yet."""
        check_active(self.view.project_id, state)
        now, pid = self.view.now(), self.view.project_id
        if round_ < state.current_round:
            why = f"round {round_} is over (the project is at round {state.current_round})"
        elif round_ > state.current_round:
            raise RoundNotOpenError(f"round {round_} has not opened: project {pid} is at round {state.current_round}")
        elif now < state.params.start_time:
            raise RoundNotOpenError(f"project {pid} starts at {state.params.start_time} (now {now})")
        elif state.trainer_count < state.params.min_trainers:
            raise RoundNotOpenError(
                f"project {pid} has {state.trainer_count} of the {state.params.min_trainers} trainers it needs to start"
            )
        elif now >= state.submission_deadline:
            why = f"round {round_}'s submission window closed at {state.submission_deadline} (now {now})"
        else:
            return None
        suffix = " while training" if after_training else ""
        return self._result(round_, RoundStatus.LATE, f"skipped: {why}{suffix}; nothing submitted")

    def seal(self, round_: int, delta: Vector, manifest: ProjectManifest, model_cid: str) -> SealedUpdate:
        """Encode ``delta``, seal it to the manifest's aggregator key (if any) and commit to it."""
        view, spec = self.view, manifest.model.spec()
        plaintext = encode_update(spec.unflatten(delta), spec, kind="delta")
        key = manifest.aggregator_public_key
        payload = encrypt_update(plaintext, key) if key is not None else plaintext
        commitment = update_commitment(
            plaintext,
            chain_id=view.chain_id,
            market=view.market_address,
            project_id=view.project_id,
            round=round_,
            trainer=view.address,
        )
        features = ZERO_BYTES32
        if manifest.proof is not None:
            features = self.feature_commitment(delta, manifest.proof, round_, model_cid)
        return SealedUpdate(plaintext, payload, commitment, features, key is not None)

    def feature_commitment(self, delta: Vector, proof: ProofConfig, round_: int, model_cid: str) -> bytes:
        """Poseidon commitment to this update's features (projects whose rounds are proven; see ``zk/``)."""
        from zk.commitment import feature_commitment
        from zk.decision import feature_seed, update_features

        view = self.view
        seed = feature_seed(view.chain_id, view.market_address, view.project_id, round_, model_cid)
        return feature_commitment(update_features(delta, seed, proof.sketch_dim, proof.scale), proof.scale)

    def base(self, round_: int, sealed: SealedUpdate, **fields: Any) -> RoundResult:
        """The ``SUBMITTED`` result of ``sealed`` before it is sent (``fields``: what training measured)."""
        return self._result(
            round_,
            RoundStatus.SUBMITTED,
            "",
            cid=compute_cid(sealed.payload),
            commitment=sealed.commitment,
            encrypted=sealed.encrypted,
            plaintext=sealed.plaintext,
            **fields,
        )

    def submit(self, round_: int, sealed: SealedUpdate, base: RoundResult) -> RoundResult:
        """Store and submit ``sealed`` (journalled first), retrying transient failures; ``base`` with the outcome."""
        cid, commitment, view = base.cid, sealed.commitment, self.view
        assert cid is not None
        self.journal.record(round_, journal_entry("pending", cid, commitment, None, None, encrypted=base.encrypted))
        delay = view.backoff
        for attempt in range(1, view.retries + 1):
            if attempt > 1:
                event = view.submission(round_)
                if event is not None:  # an earlier attempt went through after all
                    return self.found(round_, event, commitment, base)
            try:
                stored, receipt = view.market.submit_update(
                    view.project_id, round_, sealed.payload, commitment, feature_commitment=sealed.features
                )
            except AlreadySubmitted:
                event = view.submission(round_)
                if event is None:
                    raise
                return self.found(round_, event, commitment, base)
            except (SubmissionWindowClosed, WrongRound) as exc:
                message = f"skipped: the contract refused the submission as late ({exc.name}); nothing submitted"
                return replace(base, status=RoundStatus.LATE, message=message, cid=None, commitment=None)
            except DeadlineTooCloseError as exc:
                message = f"skipped: round {round_}'s submission window is about to close; {exc}"
                return replace(base, status=RoundStatus.LATE, message=message, cid=None, commitment=None)
            except Exception as exc:
                if attempt == view.retries or not is_transient(exc):
                    raise
                self.reporter.waiting(f"submit: {type(exc).__name__} ({exc}); retrying in {delay:.1f} s")
                view.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            entry = journal_entry(
                "submitted", stored, commitment, receipt.tx_hash, receipt.block_number, encrypted=base.encrypted
            )
            self.journal.record(round_, entry)
            sealed_note = " (sealed to the aggregator)" if base.encrypted else ""
            return replace(
                base,
                cid=stored,
                tx_hash=receipt.tx_hash,
                block=receipt.block_number,
                message=f"submitted {stored}{sealed_note} in block {receipt.block_number}",
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def found(self, round_: int, event: EventRecord, commitment: bytes, base: RoundResult) -> RoundResult:
        """``base`` completed from a submission found on chain (this run's, or another process's)."""
        cid, on_chain = str(event.args["cid"]), bytes(event.args["commitment"])
        self.journal.record(
            round_,
            journal_entry("submitted", cid, on_chain, event.tx_hash, event.block_number, encrypted=base.encrypted),
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
