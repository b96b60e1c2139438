"""The marketplace as users drive it: bytes go through the content store, CIDs and hashes through the chain.

:class:`~pocfl.chain.client.MarketplaceClient` speaks to the contract only and passes strings through unchecked
(the contract tests need that). :class:`Market` wraps it with a :class:`~pocfl.store.ContentStore` so that every
CID written on chain names bytes the store already holds (it stores them first, and pins them), and every CID
or hash read from the chain comes back as bytes verified against it. The CLI, the demo, the trainer client and
the aggregator go through this class.

Round reports are not named by CID on chain: ``RoundPost.reportHash`` holds the sha2-256 digest of the report's
root block, i.e. the digest inside its CIDv1. The report's CID is that digest with the ``raw`` codec when the
report fits one 256 KiB chunk, else ``dag-pb``; :func:`report_cids` gives both candidates and
:meth:`Market.fetch_report` finds and verifies the one the store holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pocfl.chain.client import MarketplaceClient
from pocfl.chain.types import ZERO_BYTES32, EventRecord, ProjectParams, Receipt, RoundPost, Submission
from pocfl.store import ContentStore, ObjectNotFoundError, parse_cid
from pocfl.store.base import DEFAULT_MAX_SIZE
from pocfl.store.cid import DAG_PB, RAW, Cid
from pocfl.updates import (
    DEFAULT_MAX_UPDATE_SIZE,
    ENVELOPE_OVERHEAD,
    EncryptionKeyPair,
    decrypt_update,
    is_encrypted,
    verify_commitment,
)

MAX_PAYLOAD_SIZE = DEFAULT_MAX_UPDATE_SIZE + ENVELOPE_OVERHEAD
"""Largest stored update object read: the update format's cap plus an encryption envelope's overhead."""


@dataclass(frozen=True)
class SubmittedUpdate:
    """One ``UpdateSubmitted`` event: where the update is and what it committed to.

    Attributes
    ----------
    index
        Position in the round's submission order.
    trainer, cid, commitment, feature_commitment
        As submitted.
    block
        Block number of the submission.
    """

    index: int
    trainer: str
    cid: str
    commitment: bytes
    feature_commitment: bytes
    block: int

    @classmethod
    def from_event(cls, e: EventRecord) -> SubmittedUpdate:
        """Read an ``UpdateSubmitted`` event."""
        return cls(
            index=int(e.args["index"]),
            trainer=str(e.args["trainer"]),
            cid=str(e.args["cid"]),
            commitment=bytes(e.args["commitment"]),
            feature_commitment=bytes(e.args["featureCommitment"]),
            block=e.block_number,
        )

    @property
    def submission(self) -> Submission:
        """The (trainer, commitment, feature commitment) triple the aggregator echoes back in ``postRound``."""
        return Submission(self.trainer, self.commitment, self.feature_commitment)


@dataclass(frozen=True)
class OpenedUpdate:
    """A submission read back: the stored bytes, and the plaintext once decrypted and checked.

    Attributes
    ----------
    submitted
        The on-chain record.
    payload
        The stored bytes (verified against the CID): an encryption envelope or the plaintext.
    plaintext
        The update file, its commitment verified; None when it is encrypted and no key was given.
    encrypted
        Whether the payload is an encryption envelope.
    """

    submitted: SubmittedUpdate
    payload: bytes
    plaintext: bytes | None
    encrypted: bool


def report_hash(cid: str) -> bytes:
    """The ``reportHash`` posted on chain for a report stored under ``cid``: its root digest."""
    return parse_cid(cid).digest


def report_cids(digest: bytes) -> tuple[str, str]:
    """The two CIDs a report with this ``reportHash`` can have: single-chunk (raw) and multi-chunk (dag-pb)."""
    return str(Cid(1, RAW, digest)), str(Cid(1, DAG_PB, digest))


class Market:
    """A marketplace client bound to a content store.

    Parameters
    ----------
    client
        The contract client (its account signs).
    store
        Where update files, models and reports live.
    """

    def __init__(self, client: MarketplaceClient, store: ContentStore) -> None:
        self.client = client
        self.store = store

    # --- writes: store first, then put the CID on chain ---------------------------------------------------------

    def publish(self, data: bytes | Path) -> str:
        """Store and pin bytes or a file; return the CID to put on chain."""
        cid = self.store.put_file(data) if isinstance(data, Path) else self.store.put_bytes(data)
        self.store.pin(cid)
        return cid

    def require(self, cid: str) -> str:
        """Check that the store holds ``cid`` before it goes on chain; returns the canonical spelling.

        Raises
        ------
        InvalidCidError
            Not a CID pocfl can verify.
        ObjectNotFoundError
            The store does not hold it: put it first, or nobody could fetch what the chain points at.
        """
        canonical = str(parse_cid(cid))
        if not self.store.has(canonical):
            raise ObjectNotFoundError(canonical, f"{self.store.location} (store it before putting its CID on chain)")
        return canonical

    def create_project(
        self, params: ProjectParams, budget: int, initial_model: bytes | Path | None = None
    ) -> tuple[int, Receipt]:
        """Create a project; return its id and the receipt.

        ``initial_model`` (bytes or a file) is stored and its CID used; without it the CID in ``params`` must
        already be in the store.
        """
        cid = self.publish(initial_model) if initial_model is not None else self.require(params.initial_model_cid)
        return self.client.create_project(_replace_cid(params, cid), budget)

    def submit_update(
        self,
        project_id: int,
        round_: int,
        payload: bytes | Path,
        commitment: bytes,
        feature_commitment: bytes = ZERO_BYTES32,
    ) -> tuple[str, Receipt]:
        """Store an update file (possibly encrypted) and submit its CID with the commitment to its plaintext."""
        cid = self.publish(payload)
        return cid, self.client.submit(project_id, round_, cid, commitment, feature_commitment)

    def post_round(
        self,
        project_id: int,
        round_: int,
        *,
        model: bytes | Path,
        report: bytes | Path,
        submissions: Sequence[Submission],
        scores: Sequence[int],
        outliers: Sequence[bool],
        hyperparams_hash: bytes = ZERO_BYTES32,
        proof: bytes = b"",
        gas: int | None = None,
    ) -> tuple[RoundPost, Receipt]:
        """Store the new global model and the round report, then post the round with their CID and hash."""
        model_cid = self.publish(model)
        report_cid = self.publish(report)
        post = RoundPost(
            model_cid=model_cid,
            submissions=tuple(submissions),
            scores=tuple(scores),
            outliers=tuple(outliers),
            report_hash=report_hash(report_cid),
            hyperparams_hash=hyperparams_hash,
        )
        return post, self.client.post_round(project_id, round_, post, proof, gas=gas)

    # --- reads: chain gives the CID, the store gives verified bytes ---------------------------------------------

    def submitted_updates(self, project_id: int, round_: int, from_block: int = 0) -> list[SubmittedUpdate]:
        """The round's submissions with their CIDs, in submission order."""
        events = self.client.events("UpdateSubmitted", from_block=from_block, projectId=project_id, round=round_)
        updates = [SubmittedUpdate.from_event(e) for e in events]
        return sorted(updates, key=lambda u: u.index)

    def fetch(self, cid: str, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
        """Verified bytes of ``cid`` (see :meth:`ContentStore.get_bytes` for the errors)."""
        return self.store.get_bytes(cid, max_size=max_size)

    def open_update(
        self,
        update: SubmittedUpdate,
        project_id: int,
        round_: int,
        keypair: EncryptionKeyPair | None = None,
        max_size: int = MAX_PAYLOAD_SIZE,
    ) -> OpenedUpdate:
        """Fetch a submission (verified against its CID), decrypt it if it is sealed, verify its commitment.

        Raises
        ------
        StoreError
            The CID is missing, unverifiable or does not match (see :meth:`ContentStore.get_bytes`).
        UpdateFormatError
            ``WrongRecipientError`` / ``DecryptionError`` for a bad envelope, ``CommitmentMismatchError`` when the
            plaintext is not what the submitter committed to (e.g. a replay of another trainer's submission).
        """
        payload = self.fetch(update.cid, max_size)
        encrypted = is_encrypted(payload)
        plaintext: bytes | None = payload
        if encrypted:
            plaintext = decrypt_update(payload, keypair) if keypair is not None else None
        if plaintext is not None:
            self.verify_opening(plaintext, update, project_id, round_)
        return OpenedUpdate(update, payload, plaintext, encrypted)

    def verify_opening(self, plaintext: bytes, update: SubmittedUpdate, project_id: int, round_: int) -> None:
        """Check that ``plaintext`` opens ``update``'s on-chain commitment (bound to this chain and marketplace).

        Raises
        ------
        CommitmentMismatchError
            It does not: not the bytes the trainer committed to for this project and round.
        """
        verify_commitment(
            plaintext,
            update.commitment,
            chain_id=self.client.chain.chain_id,
            market=self.client.address,
            project_id=project_id,
            round=round_,
            trainer=update.trainer,
        )

    def fetch_model(self, project_id: int, max_size: int = DEFAULT_MAX_SIZE) -> tuple[str, bytes]:
        """The project's current global model: its CID on chain and its verified bytes."""
        cid = self.client.project(project_id).model_cid
        return cid, self.fetch(cid, max_size)

    def fetch_report(self, digest: bytes, max_size: int = DEFAULT_MAX_SIZE) -> tuple[str, bytes]:
        """The round report whose ``reportHash`` is ``digest``: its CID and verified bytes."""
        for cid in report_cids(digest):
            if self.store.has(cid) or self.store.quarantined(cid):  # a quarantined copy raises its true reason
                return cid, self.fetch(cid, max_size)
        raise ObjectNotFoundError(report_cids(digest)[0], self.store.location)


def _replace_cid(params: ProjectParams, cid: str) -> ProjectParams:
    return replace(params, initial_model_cid=cid)
