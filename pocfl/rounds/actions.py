"""Round transactions and views for scripted rounds: what ``pocfl round submit|post|fetch|fail|show`` do.

Each function takes the command's connection (a :class:`~pocfl.connection.Connection`, or anything with its
:class:`Connected` methods), checks its inputs before it opens the chain
or the store, does one round action and returns a frozen result for the caller to render. Every CID these functions
put on chain names bytes the content store holds: files are stored and pinned first, and CIDs given directly are
refused unless the store has them. Messages name the command-line options the inputs came from (``--update``,
``--model-cid``, ...): the CLI is their reader.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pocfl.chain.types import ZERO_BYTES32, ProjectStatus, Receipt, RoundPost
from pocfl.cids import store_holds, stored_cid
from pocfl.errors import ConfigError, PocflError
from pocfl.market import MAX_PAYLOAD_SIZE, Market, SubmittedUpdate, report_cids, report_hash

if TYPE_CHECKING:
    from pocfl.chain.client import MarketplaceClient
    from pocfl.store import ContentStore
    from pocfl.updates import EncryptionKeyPair


class Connected(Protocol):
    """What the round actions use of a :class:`~pocfl.connection.Connection` (each part opened on first use)."""

    @property
    def from_block(self) -> int:
        """First block worth searching for marketplace events."""
        ...

    def market(self, signer: bool = True) -> MarketplaceClient:
        """The marketplace client (``signer``: with the signing account)."""
        ...

    def store(self) -> ContentStore:
        """The content store."""
        ...

    def store_market(self, signer: bool = True) -> Market:
        """The marketplace bound to the content store."""
        ...


def resolve_round(client: MarketplaceClient, project_id: int, round_: int | None) -> int:
    """``round_``, or the project's current round when it is None."""
    return round_ if round_ is not None else client.project(project_id).current_round


# ---------------------------------------------------------------------------------------------------------------
# submit
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateSubmission:
    """An update stored and submitted: where it is, what it commits to, and the transaction."""

    project_id: int
    round: int
    index: int
    trainer: str
    cid: str
    size: int
    encrypted: bool
    commitment: bytes
    commitment_computed: bool
    store: str
    receipt: Receipt


def check_update_file(data: bytes, path: Path, recipient: bytes | None, commitment: bytes | None) -> None:
    """Refuse an update file no aggregator could decode, or an envelope the options cannot submit.

    A plaintext must be a pocfl update (safetensors tagged ``pocfl.format``); an already encrypted envelope needs
    no ``--encrypt-to`` but a ``--commitment`` (the commitment binds the plaintext, which pocfl cannot see).

    Raises
    ------
    ConfigError
        An envelope with ``recipient`` set, or without ``commitment``.
    CorruptUpdateError
        A plaintext that is not a pocfl update file.
    """
    from pocfl.updates import FORMAT_NAME, CorruptUpdateError, is_encrypted, read_safetensors
    from pocfl.updates.format import FORMAT_KEY

    if is_encrypted(data):
        if recipient is not None:
            raise ConfigError(f"--update {path} is already encrypted: drop --encrypt-to")
        if commitment is None:
            raise ConfigError(
                f"--update {path} is an encrypted envelope, but the commitment binds the plaintext: submit "
                "the plaintext with --encrypt-to HEX, or give --commitment 0xHEX"
            )
        return
    try:
        _tensors, metadata = read_safetensors(data)
    except CorruptUpdateError as exc:
        raise CorruptUpdateError(f"--update {path} is not a pocfl update file: {exc}") from None
    if metadata.get(FORMAT_KEY) != FORMAT_NAME:
        raise CorruptUpdateError(
            f"--update {path} is a safetensors file but not a pocfl update (no pocfl.format={FORMAT_NAME} "
            "metadata): write it with pocfl.updates.encode_update"
        )


def submit_update(
    conn: Connected,
    project_id: int,
    round_: int | None,
    *,
    update: tuple[Path, bytes] | None = None,
    cid: str | None = None,
    commitment: bytes | None = None,
    feature_commitment: bytes = ZERO_BYTES32,
    recipient: bytes | None = None,
) -> UpdateSubmission:
    """Trainer: store an update file (or check a stored CID) and submit its CID and commitment for a round.

    Parameters
    ----------
    conn
        Signs the submission; its store receives the file.
    project_id, round_
        The round (``None``: the current one).
    update
        The update file's path (for messages) and bytes: a plaintext pocfl update, or an encryption envelope
        (then ``commitment`` is required). Exactly one of ``update`` and ``cid``.
    cid
        An update object already in the store; needs ``commitment``.
    commitment
        The commitment to the plaintext; default with ``update``: computed for this chain, marketplace, project,
        round and sender.
    feature_commitment
        The commitment to the update's features (for proofs).
    recipient
        Encrypt ``update`` to this X25519 public key before storing it.
    """
    from pocfl.updates import encrypt_update, is_encrypted, update_commitment

    if update is not None:
        check_update_file(update[1], update[0], recipient, commitment)
    sm = conn.store_market()
    m = sm.client
    r = resolve_round(m, project_id, round_)
    commit = commitment
    if update is None:
        assert cid is not None and commit is not None
        stored = stored_cid(sm.store, cid, "--cid", "--update FILE")
        payload = sm.fetch(stored, max_size=MAX_PAYLOAD_SIZE)  # the whole object is there and intact
        receipt = m.submit(project_id, r, stored, commit, feature_commitment)
    else:
        plaintext = update[1]
        if commit is None:
            commit = update_commitment(
                plaintext, chain_id=m.chain.chain_id, market=m.address, project_id=project_id, round=r, trainer=m.sender
            )
        payload = encrypt_update(plaintext, recipient) if recipient is not None else plaintext
        stored, receipt = sm.submit_update(project_id, r, payload, commit, feature_commitment)
    return UpdateSubmission(
        project_id=project_id,
        round=r,
        index=int(receipt.event("UpdateSubmitted").args["index"]),
        trainer=m.sender,
        cid=stored,
        size=len(payload),
        encrypted=is_encrypted(payload),
        commitment=commit,
        commitment_computed=update is not None and commitment is None,
        store=sm.store.location,
        receipt=receipt,
    )


# ---------------------------------------------------------------------------------------------------------------
# post
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credit:
    """One ``TrainerCredited`` event of a posted round."""

    trainer: str
    score: int
    outlier: bool
    amount_wei: int


@dataclass(frozen=True)
class RoundPosting:
    """A round posted: what went on chain, the report's CID in the store, and what the contract credited."""

    project_id: int
    round: int
    post: RoundPost
    report_cid: str | None
    credited_wei: int
    unallocated_wei: int
    proven: bool
    finished: bool
    credits: tuple[Credit, ...]
    store: str
    receipt: Receipt


@dataclass(frozen=True)
class RoundResults:
    """What an aggregator posts for a round, as given (files are stored, CIDs and hashes checked first).

    Attributes
    ----------
    scores
        One score per submission, in submission order.
    outliers
        One flag per submission; ``None``: none flagged.
    model, model_cid
        The new global model: a file to store, or the CID of one in the store (exactly one).
    report, report_hash
        The round report: a file to store, or the hash of one in the store; neither: no report (zero hash).
    hyperparams_hash
        Hash of the next round's hyper-parameters.
    proof
        Proof bytes for the project's verifier.
    """

    scores: tuple[int, ...]
    outliers: tuple[bool, ...] | None = None
    model: Path | None = None
    model_cid: str | None = None
    report: Path | None = None
    report_hash: bytes | None = None
    hyperparams_hash: bytes = ZERO_BYTES32
    proof: bytes = b""


def post_round(conn: Connected, project_id: int, round_: int | None, results: RoundResults) -> RoundPosting:
    """Aggregator: store the new model and the round report, post scores and outlier flags.

    Raises
    ------
    ConfigError
        The scores or flags do not number one per submission.
    ObjectNotFoundError
        ``model_cid`` or ``report_hash`` names nothing in the store (checked before anything is stored or sent).
    """
    sm = conn.store_market()
    r = resolve_round(sm.client, project_id, round_)
    submissions = [u.submission for u in sm.submitted_updates(project_id, r, from_block=conn.from_block)]
    n = len(submissions)
    flags = results.outliers if results.outliers is not None else (False,) * n
    if len(results.scores) != n or len(flags) != n:
        raise ConfigError(
            f"round {r} of project {project_id} has {n} submissions but {len(results.scores)} scores and "
            f"{len(flags)} outlier flags: give one of each per submission, in submission order "
            f"(see `pocfl round show {project_id} {r}`)"
        )
    # Refuse CIDs and hashes the store lacks before storing anything or sending a transaction.
    model_ref = stored_cid(sm.store, results.model_cid, "--model-cid", "--model FILE") if results.model_cid else None
    digest = results.report_hash
    report_cid = stored_report(sm.store, digest) if digest is not None else None
    if results.model is not None and results.report is not None:
        round_post, receipt = sm.post_round(
            project_id,
            r,
            model=results.model,
            report=results.report,
            submissions=submissions,
            scores=results.scores,
            outliers=flags,
            hyperparams_hash=results.hyperparams_hash,
            proof=results.proof,
        )
        report_cid = report_cid_of(sm.store, round_post.report_hash)
    else:
        if results.report is not None:
            report_cid = sm.publish(results.report)
        assert model_ref is not None or results.model is not None
        round_post = RoundPost(
            model_cid=model_ref if model_ref is not None else sm.publish(_given(results.model)),
            submissions=tuple(submissions),
            scores=results.scores,
            outliers=flags,
            report_hash=report_hash(report_cid) if report_cid is not None else (digest or ZERO_BYTES32),
            hyperparams_hash=results.hyperparams_hash,
        )
        receipt = sm.client.post_round(project_id, r, round_post, results.proof)
    return _posting(project_id, r, round_post, report_cid, sm.store.location, receipt)


def _given(path: Path | None) -> Path:
    assert path is not None
    return path


def _posting(
    project_id: int, round_: int, post: RoundPost, report_cid: str | None, store: str, receipt: Receipt
) -> RoundPosting:
    """The result of a ``postRound`` transaction, read from its events."""
    posted = receipt.event("RoundPosted").args
    credits = tuple(
        Credit(str(e.args["trainer"]), int(e.args["score"]), bool(e.args["outlier"]), int(e.args["amount"]))
        for e in receipt.events
        if e.name == "TrainerCredited"
    )
    return RoundPosting(
        project_id=project_id,
        round=round_,
        post=post,
        report_cid=report_cid,
        credited_wei=int(posted["credited"]),
        unallocated_wei=int(posted["unallocated"]),
        proven=bool(posted["proven"]),
        finished=any(e.name == "ProjectFinished" for e in receipt.events),
        credits=credits,
        store=store,
        receipt=receipt,
    )


def report_cid_of(store: ContentStore, digest: bytes) -> str | None:
    """The CID under which the store holds the report with this hash (``None``: zero hash or not held)."""
    if digest == ZERO_BYTES32:
        return None
    return next((cid for cid in report_cids(digest) if store_holds(store, cid)), None)


def stored_report(store: ContentStore, digest: bytes) -> str | None:
    """Check a ``--report-hash`` names a report in the store; its CID (``None`` for the zero hash).

    Raises
    ------
    ObjectNotFoundError
        The store holds no report with this hash.
    """
    from pocfl.store import ObjectNotFoundError

    if digest == ZERO_BYTES32:
        return None
    cid = report_cid_of(store, digest)
    if cid is None:
        err = ObjectNotFoundError(report_cids(digest)[0], store.location)
        err.args = (
            f"--report-hash 0x{digest.hex()} names no report in the content store {store.location} (as "
            f"{' or '.join(report_cids(digest))}): store it first with `pocfl store put FILE` (same --ipfs), "
            "or pass --report FILE",
        )
        raise err
    return cid


# ---------------------------------------------------------------------------------------------------------------
# fetch
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchError:
    """Why a submission could not be fetched: the error's class name and message."""

    error: str
    message: str


@dataclass(frozen=True)
class FetchedUpdate:
    """One submission fetched (``ok``, written to ``file``) or not (``error``).

    ``size`` and ``encrypted`` are None until its bytes were read; ``commitment_verified`` once the plaintext was
    checked against the commitment (an encrypted update without a key is written as stored, unchecked).
    """

    index: int
    trainer: str
    cid: str
    commitment: bytes
    size: int | None
    encrypted: bool | None
    decrypted: bool
    commitment_verified: bool
    file: str | None
    ok: bool
    error: FetchError | None


@dataclass(frozen=True)
class FetchedRound:
    """A round's submissions fetched into ``out``, one row each in submission order."""

    project_id: int
    round: int
    out: Path
    store: str
    updates: tuple[FetchedUpdate, ...]

    @property
    def failed(self) -> int:
        """How many submissions could not be fetched or checked."""
        return sum(1 for u in self.updates if not u.ok)


def fetch_round(
    conn: Connected, project_id: int, round_: int | None, out_dir: Path, keypair: EncryptionKeyPair | None = None
) -> FetchedRound:
    """Fetch a round's updates into ``out_dir``, each verified against its CID and (once readable) its commitment.

    A file is written only once its bytes match the CID on chain and, for a plaintext or decrypted update, the
    commitment. One bad submission never stops the others: its row names the error.

    Raises
    ------
    ConfigError
        ``out_dir`` cannot be created.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out: cannot create {out_dir}: {exc.strerror or exc}") from None
    sm = conn.store_market(signer=False)
    r = resolve_round(sm.client, project_id, round_)
    updates = sm.submitted_updates(project_id, r, from_block=conn.from_block)
    rows = tuple(_fetch_one(sm, u, project_id, r, out_dir, keypair) for u in updates)
    return FetchedRound(project_id, r, out_dir, sm.store.location, rows)


def _fetch_one(
    sm: Market, u: SubmittedUpdate, project_id: int, round_: int, out_dir: Path, keypair: EncryptionKeyPair | None
) -> FetchedUpdate:
    """Fetch, decrypt and check one submission (never raises a pocfl error: the row holds it)."""
    from pocfl.store.base import atomic_file

    opened = None
    dest: Path | None = None
    error = None
    try:
        opened = sm.open_update(u, project_id, round_, keypair, max_size=MAX_PAYLOAD_SIZE)
        dest = out_dir / f"{u.index}-{u.trainer}.bin"
        with atomic_file(dest) as f:
            f.write(opened.plaintext if opened.plaintext is not None else opened.payload)
    except (PocflError, OSError) as exc:
        error = FetchError(type(exc).__name__, str(exc))
    return FetchedUpdate(
        index=u.index,
        trainer=u.trainer,
        cid=u.cid,
        commitment=u.commitment,
        size=len(opened.payload) if opened is not None else None,
        encrypted=opened.encrypted if opened is not None else None,
        decrypted=opened is not None and opened.encrypted and opened.plaintext is not None,
        commitment_verified=opened is not None and opened.plaintext is not None,
        file=str(dest) if error is None else None,
        ok=error is None,
        error=error,
    )


# ---------------------------------------------------------------------------------------------------------------
# fail
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundFailure:
    """A round marked failed; ``cancelled`` when that was the project's second failure in a row."""

    project_id: int
    round: int
    cancelled: bool
    status: str
    receipt: Receipt


def fail_round(conn: Connected, project_id: int, round_: int | None) -> RoundFailure:
    """Anyone: mark a round failed once its aggregation deadline passed without results."""
    m = conn.market()
    r = resolve_round(m, project_id, round_)
    receipt = m.fail_round(project_id, r)
    cancelled = any(e.name == "ProjectCancelled" for e in receipt.events)
    return RoundFailure(project_id, r, cancelled, m.project(project_id).status.name.lower(), receipt)


# ---------------------------------------------------------------------------------------------------------------
# show
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmissionView:
    """One submission of a round as the chain recorded it; score, flag and credit once the round is posted."""

    index: int
    trainer: str
    cid: str
    stored: bool | None
    commitment: bytes
    feature_commitment: bytes
    score: int | None = None
    outlier: bool | None = None
    credited_wei: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The row of ``round show --json`` (score, outlier and credit only once credited)."""
        row: dict[str, Any] = {
            "index": self.index,
            "trainer": self.trainer,
            "cid": self.cid,
            "stored": self.stored,
            "commitment": self.commitment,
            "feature_commitment": self.feature_commitment,
        }
        if self.score is not None:
            row.update(score=self.score, outlier=self.outlier, credited_wei=self.credited_wei)
        return row


@dataclass(frozen=True)
class PostedView:
    """A posted round's results as ``RoundPosted`` recorded them, and whether the store holds model and report.

    ``report_stored`` is None for the zero hash (no report posted).
    """

    model_cid: str
    model_stored: bool | None
    report_hash: bytes
    report_cid: str | None
    report_stored: bool | None
    hyperparams_hash: bytes
    credited_wei: int
    unallocated_wei: int
    proven: bool


@dataclass(frozen=True)
class RoundView:
    """A round: its state (posted, failed, open, not reached), submissions, results once posted, who failed it."""

    project_id: int
    round: int
    state: str
    submissions: tuple[SubmissionView, ...]
    posted: PostedView | None
    failed_by: str | None

    def to_json(self) -> dict[str, Any]:
        """The ``round show --json`` document."""
        document: dict[str, Any] = {
            "project_id": self.project_id,
            "round": self.round,
            "state": self.state,
            "submissions": [sub.to_json() for sub in self.submissions],
        }
        if self.posted is not None:
            document.update(asdict(self.posted))
        if self.failed_by is not None:
            document["failed_by"] = self.failed_by
        return document


def show_round(conn: Connected, project_id: int, round_: int | None) -> RoundView:
    """A round as the chain recorded it, with whether the store holds each CID (``None``: cannot tell).

    Raises
    ------
    ConfigError
        The project has no such round.
    """
    m = conn.market(signer=False)
    store = conn.store()
    st = m.project(project_id)
    r = round_ if round_ is not None else st.current_round
    if r >= st.params.num_rounds:
        raise ConfigError(f"project {project_id} has rounds 0 to {st.params.num_rounds - 1}, not {r}")

    def events(name: str) -> list[Any]:
        return m.events(name, from_block=conn.from_block, projectId=project_id, round=r)

    subs = sorted(events("UpdateSubmitted"), key=lambda e: int(e.args["index"]))
    posted, failed = events("RoundPosted"), events("RoundFailed")
    # postRound emits one TrainerCredited per submission, in submission order.
    credited = dict(enumerate(events("TrainerCredited")))
    if posted:
        state = "posted"
    elif failed:
        state = "failed"
    elif r == st.current_round and st.status == ProjectStatus.ACTIVE:
        state = "open"
    else:
        state = "not reached"
    rows = tuple(_submission_view(store, e, credited.get(int(e.args["index"]))) for e in subs)
    return RoundView(
        project_id=project_id,
        round=r,
        state=state,
        submissions=rows,
        posted=_posted_view(store, posted[0].args) if posted else None,
        failed_by=str(failed[0].args["caller"]) if failed else None,
    )


def _submission_view(store: ContentStore, e: Any, credit: Any | None) -> SubmissionView:
    view = SubmissionView(
        index=int(e.args["index"]),
        trainer=str(e.args["trainer"]),
        cid=e.args["cid"],
        stored=store_holds(store, str(e.args["cid"])),
        commitment=e.args["commitment"],
        feature_commitment=e.args["featureCommitment"],
    )
    if credit is None:
        return view
    a = credit.args
    return replace(view, score=int(a["score"]), outlier=bool(a["outlier"]), credited_wei=int(a["amount"]))


def _posted_view(store: ContentStore, a: Any) -> PostedView:
    """The posted results in a ``RoundPosted`` event's arguments ``a``."""
    report_cid = report_cid_of(store, bytes(a["reportHash"]))
    return PostedView(
        model_cid=a["modelCid"],
        model_stored=store_holds(store, str(a["modelCid"])),
        report_hash=a["reportHash"],
        report_cid=report_cid,
        report_stored=report_cid is not None if bytes(a["reportHash"]) != ZERO_BYTES32 else None,
        hyperparams_hash=a["hyperparamsHash"],
        credited_wei=int(a["credited"]),
        unallocated_wei=int(a["unallocated"]),
        proven=bool(a["proven"]),
    )
