"""Payout audit: recompute every posted round of a project from public data and compare with the chain.

``pocfl audit`` calls :func:`audit_project`. It trusts nothing but the chain's events and state and the bytes
their CIDs and hashes name (every read is verified by the content store), and reads the round inputs with the
same functions the aggregator node uses (:mod:`aggregator.inputs`), so an honest node and an auditor agree bit for
bit. For each round it checks:

1. **Report**: the object named by ``RoundPosted.reportHash`` is fetched by its CID (so its bytes are the ones the
   chain fixed), parses, and describes this round: project, round, chain, market, submissions digest, seeds,
   input and output models, hyper-parameters and their hash; its submission list equals the ``UpdateSubmitted``
   events (trainer, CID, commitment, order) and its scores and flags equal the ``TrainerCredited`` events.
2. **Submissions**: every update is fetched by CID, its commitment checked and decoded again. A sealed
   (encrypted) update is checked through the plaintext the aggregator revealed after the round
   (``plaintext_cid``): its commitment must hold. Without it the submission, and so the round, is
   *unverifiable* (said so, not counted as a mismatch unless ``strict``). Every posted rejection is judged
   again (:mod:`pocfl.audit_rejections`: other stores, trainers' evidence): disproved (a difference naming the
   round and the trainer), confirmed, or *unchecked* (listed in :attr:`AuditResult.unchecked`; a failure under
   ``strict``).
3. **Decision**: :func:`aggregator.round.decide_round` runs again with the seeds derived from the on-chain
   submissions digest (recomputed from the events as the contract does), the same global model,
   hyper-parameters, accuracy history, prior updates and validation set (the manifest's recipe, or a revealed
   file checked against ``validationSetCommitment``). Outlier flags, integer scores and statuses must be equal
   bit for bit; Shapley values, weights, ratios, accuracies and losses equal to float precision; the new model
   re-encoded must have the posted ``modelCid``; the next hyper-parameters must hash to ``hyperparamsHash``.
4. **Money**: :func:`pocfl.payouts.allocate` of the recomputed scores must give the ``TrainerCredited``
   amounts and the ``RoundPosted`` totals; the project's escrow must equal its budget less everything credited
   and withdrawn; for each trainer, credited (all projects) + stakes returned - claimed must equal its
   on-chain ``credits``.
5. **Proofs**: with a verifier the contract only accepts proven posts, so ``RoundPosted.proven`` must be set;
   without one the results are *unproven*, recomputed only.

Every difference is collected (an audit never stops at the first); :meth:`AuditResult.check` raises
:class:`AuditMismatchError` listing them all.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from eth_abi.abi import encode
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.crypto import keccak
from numpy.typing import NDArray
from web3 import Web3
from web3.contract.contract import ContractFunction

from aggregator import inputs
from aggregator.hyperparams import HyperParams
from aggregator.report import MAX_CID_BYTES, REPORT_MAX_SIZE, ReportError, RoundReport, SubmissionEntry, bounded_reason
from aggregator.round import RoundConfig, RoundDecision, RoundSeeds, decide_round
from pocfl.audit_rejections import AVAILABILITY_ERRORS, RejectionChecker
from pocfl.audit_rejections import error_name as _error_name
from pocfl.chain.client import MarketplaceClient
from pocfl.chain.reverts import decode_revert
from pocfl.chain.types import ZERO_ADDRESS, ZERO_BYTES32, EventRecord, ProjectState, ProjectStatus, jsonable
from pocfl.errors import ConfigError, PocflError
from pocfl.evidence import Evidence
from pocfl.manifest import ProjectManifest, ProofConfig
from pocfl.market import Market, SubmittedUpdate, report_cids
from pocfl.payouts import allocate
from pocfl.store import ContentStore, StoreError, StoreUnavailableError, compute_cid
from pocfl.untrusted import ELLIPSIS, QUOTE_LIMIT, clip, quote
from pocfl.updates import ModelSpec, decode_update, encode_update, verify_commitment

AUDIT_FORMAT = "pocfl-audit/1"

# Whether an object was available to the aggregator when it aggregated cannot be checked afterwards: a rejection
# for one of AVAILABILITY_ERRORS is disproved when the audit finds the object valid (pocfl.audit_rejections), and
# an auditor who cannot read an object the aggregator accepted cannot recompute the round.

MESSAGE_LIMIT = 1024
"""Most characters of one difference's message: untrusted values in it are quoted (at most ``QUOTE_LIMIT``
characters each), this caps the sentence too, so a report's content never grows the audit beyond a bound."""

VALUE_LIMIT = 4 * QUOTE_LIMIT
"""Most characters of a difference's ``posted`` or ``recomputed`` string (a JSON rendering, when it is not one)."""

FLOAT_RTOL = 1e-9
"""Relative tolerance of float fields (values, weights, ratios, accuracies, losses); ints and flags are exact."""

Vector = NDArray[np.float32]


class AuditMismatchError(PocflError):
    """The chain's records differ from the recomputation; ``differences`` lists every one.

    Parameters
    ----------
    project_id
        The audited project.
    differences
        Every difference found, in round order.
    result
        The whole audit (for reports written despite the failure).
    """

    def __init__(self, project_id: int, differences: Sequence[Difference], result: AuditResult | None = None):
        self.project_id = project_id
        self.differences = tuple(differences)
        self.result = result
        n = len(self.differences)
        lines = "\n".join(f"  - {d.message}" for d in self.differences)
        super().__init__(f"project {project_id}: {n} difference{'s' if n != 1 else ''} found by the audit:\n{lines}")


class WrongStoreError(ConfigError):
    """The content store holds none of the project's objects: probably the wrong ``--ipfs``; nothing was audited."""


@dataclass(frozen=True)
class Difference:
    """One thing the chain (or a posted artifact) says that the recomputation does not.

    Attributes
    ----------
    round
        The round (None for project-wide checks).
    field
        What differs: ``score``, ``outlier``, ``status``, ``credit``, ``model_cid``, ``report``, ``ledger``, ...
    message
        A precise sentence naming where, the posted and the recomputed value.
    index, trainer
        The submission, when the difference is about one.
    posted, recomputed
        The two values (JSON-able).
    """

    round: int | None
    field: str
    message: str
    index: int | None = None
    trainer: str | None = None
    posted: Any = None
    recomputed: Any = None

    def __str__(self) -> str:
        return self.message


@dataclass
class SubmissionAudit:
    """One submission of a posted round: what was posted and what the audit recomputed.

    Attributes
    ----------
    index, trainer, cid, commitment
        From ``UpdateSubmitted``.
    source
        How the audit read the update: ``plaintext`` (by CID), ``revealed`` (sealed; through the plaintext the
        aggregator revealed), ``evidence`` (a rejection disproved by the trainer's evidence), ``rejected`` (the
        audit rejects it too), ``unchecked`` (a rejection the audit can neither confirm nor disprove: listed in
        :attr:`AuditResult.unchecked`) or ``unverifiable``.
    note
        Why, for the last three.
    posted_score, posted_outlier, credited_wei
        From ``TrainerCredited``.
    report_status, report_reason
        From the round report.
    status, score, outlier, value, expected_wei
        Recomputed (None when the round could not be recomputed).
    """

    index: int
    trainer: str
    cid: str
    commitment: str
    source: str = "plaintext"
    note: str | None = None
    posted_score: int | None = None
    posted_outlier: bool | None = None
    credited_wei: int | None = None
    report_status: str | None = None
    report_reason: str | None = None
    status: str | None = None
    score: int | None = None
    outlier: bool | None = None
    value: float | None = None
    expected_wei: int | None = None


@dataclass
class RoundAudit:
    """One round of the project.

    Attributes
    ----------
    round
        The round number.
    state
        ``posted``, ``failed``, ``open`` (current round, not settled yet), ``future`` or ``not played`` (the
        project ended first).
    verdict
        ``verified`` (recomputed, equal), ``unchecked`` (recomputed and equal, but a posted rejection could be
        neither confirmed nor disproved: see :attr:`AuditResult.unchecked`), ``mismatch``, ``unverifiable``
        (could not be recomputed: see ``notes``), or the state for rounds that were not posted.
    proven
        ``RoundPosted.proven`` (None when not posted).
    model_in, model_cid, report_cid, report_hash, hyperparams_hash, submissions_digest
        The round's inputs and posted outputs.
    accuracy_before, accuracy, loss
        Validation metrics of the global model before and after the round (recomputed; as reported when the round
        could not be recomputed).
    credited_wei, unallocated_wei
        From ``RoundPosted``.
    shapley_method
        The estimator that ran.
    unverifiable
        Why the round could not be recomputed (None when it was, or when it is not posted).
    submissions
        Per submission.
    notes
        Everything the audit could not check, and why.
    """

    round: int
    state: str
    verdict: str
    proven: bool | None = None
    model_in: str | None = None
    model_cid: str | None = None
    report_cid: str | None = None
    report_hash: str | None = None
    hyperparams_hash: str | None = None
    submissions_digest: str | None = None
    accuracy_before: float | None = None
    accuracy: float | None = None
    loss: float | None = None
    credited_wei: int = 0
    unallocated_wei: int = 0
    shapley_method: str | None = None
    unverifiable: str | None = None
    submissions: list[SubmissionAudit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class TrainerAudit:
    """One trainer's payouts.

    Attributes
    ----------
    trainer
        The address.
    rounds
        Rounds it submitted to (posted rounds only).
    total_score
        Sum of its posted scores.
    outliers
        How many of its posted submissions were flagged as outliers.
    credited_wei
        Credited by this project (``TrainerCredited``).
    expected_wei
        What the recomputation credits it (posted amounts for rounds that could not be recomputed).
    credited_elsewhere_wei
        Credited by other projects plus stakes credited back, all projects (claims are per account).
    claimed_wei
        Withdrawn with ``claim``/``claimTo``, all projects.
    pending_wei
        Its on-chain ``credits``: still claimable.
    """

    trainer: str
    rounds: int = 0
    total_score: int = 0
    outliers: int = 0
    credited_wei: int = 0
    expected_wei: int = 0
    credited_elsewhere_wei: int = 0
    claimed_wei: int = 0
    pending_wei: int = 0


@dataclass
class AuditResult:
    """A project's audit: every round, every trainer, every difference.

    Attributes
    ----------
    project_id, chain_id, market
        What was audited.
    owner, aggregator, verifier, status, budget, round_budget, num_rounds, escrow, withdrawn_wei
        The project's on-chain facts.
    manifest_cid, manifest_name
        The manifest (the project's ``initialModelCid``).
    validation
        Where the validation set came from.
    proofs
        ``verifier`` (rounds proven on chain) or ``none`` (results unproven, recomputed only).
    rounds, trainers
        Per round and per trainer.
    differences
        Every mismatch found.
    warnings
        Everything the audit could not check.
    unchecked
        Every posted rejection the audit could neither confirm nor disprove (a sealed update never revealed, an
        object nobody can read): one line each, naming the round and the trainer. ``strict`` fails on them.
    evidence
        What each trainer evidence file showed (``--evidence``), including invalid ones.
    store
        The content store read.
    """

    project_id: int
    chain_id: int
    market: str
    owner: str
    aggregator: str
    verifier: str
    status: str
    budget: int
    round_budget: int
    num_rounds: int
    escrow: int
    withdrawn_wei: int = 0
    manifest_cid: str = ""
    manifest_name: str | None = None
    validation: str | None = None
    proofs: str = "none"
    store: str = ""
    rounds: list[RoundAudit] = field(default_factory=list)
    trainers: list[TrainerAudit] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no difference was found."""
        return not self.differences

    @property
    def unverifiable_rounds(self) -> list[int]:
        """Posted rounds that could not be recomputed."""
        return [r.round for r in self.rounds if r.verdict == "unverifiable"]

    def check(self) -> AuditResult:
        """Return self, or raise :class:`AuditMismatchError` listing every difference."""
        if self.differences:
            raise AuditMismatchError(self.project_id, self.differences, self)
        return self

    def to_json(self) -> dict[str, Any]:
        """The audit as a JSON document (wei as exact integers, bytes as 0x-hex)."""
        doc: dict[str, Any] = {"format": AUDIT_FORMAT, "ok": self.ok}
        doc.update(jsonable(asdict(self)))
        doc["unverifiable_rounds"] = self.unverifiable_rounds
        return doc


# --- helpers --------------------------------------------------------------------------------------------------


def short(address: str) -> str:
    """``0x1234…abcd``."""
    return f"{address[:6]}…{address[-4:]}" if len(address) == 42 else address


def _text(exc: BaseException) -> str:
    """An error's message in one of ours: errors about input may carry its text, so it is clipped (ASCII)."""
    return clip(str(exc), MESSAGE_LIMIT // 2)


def _cap(sentence: str) -> str:
    """One of our sentences cut to :data:`MESSAGE_LIMIT` characters; untrusted parts are quoted before this."""
    return sentence if len(sentence) <= MESSAGE_LIMIT else sentence[: MESSAGE_LIMIT - len(ELLIPSIS)] + ELLIPSIS


def _bounded_value(value: Any) -> Any:
    """``jsonable(value)``, with a long or non-ASCII string, or a large list or dict, as a bounded rendering.

    Posted values come from reports and events (aggregator- and trainer-controlled): a difference keeps them
    for the audit's JSON, so they are bounded like its messages.
    """
    value = jsonable(value)
    if isinstance(value, str):
        return clip(value, VALUE_LIMIT)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 256:
        return quote(value, VALUE_LIMIT)  # a JSON integer may have thousands of digits; chain values fit 256 bits
    if isinstance(value, list | dict) and len(json.dumps(value)) > VALUE_LIMIT:
        return quote(value, VALUE_LIMIT)
    return value


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _same_hex(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower().removeprefix("0x") == b.lower().removeprefix("0x")


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=FLOAT_RTOL, abs_tol=FLOAT_RTOL)


def round_start_digest(chain_id: int, market: str, project_id: int, round_: int) -> bytes:
    """The contract's ``_roundSeed``: ``keccak256(abi.encode(chainId, market, projectId, round))``."""
    return keccak(
        encode(
            ["uint256", "address", "uint256", "uint32"],
            [chain_id, Web3.to_checksum_address(market), project_id, round_],
        )
    )


def submissions_digest(
    chain_id: int, market: str, project_id: int, round_: int, subs: Iterable[SubmittedUpdate]
) -> bytes:
    """The round's submissions digest as the contract folds it: a keccak hash chain over the submissions.

    ``d_0 = round_start_digest(...)``; ``d_{i+1} = keccak256(abi.encode(d_i, trainer, commitment,
    featureCommitment))``.
    """
    digest = round_start_digest(chain_id, market, project_id, round_)
    for s in subs:
        digest = keccak(
            encode(
                ["bytes32", "address", "bytes32", "bytes32"],
                [digest, Web3.to_checksum_address(s.trainer), s.commitment, s.feature_commitment],
            )
        )
    return digest


# --- the audit ------------------------------------------------------------------------------------------------


def audit_project(
    market: Market,
    project_id: int,
    *,
    validation_file: Path | None = None,
    from_block: int = 0,
    strict: bool = False,
    progress: Callable[[str], None] | None = None,
    extra_stores: Sequence[ContentStore] = (),
    evidence: Sequence[Evidence] = (),
) -> AuditResult:
    """Audit a project: recompute every posted round and compare with the chain.

    Parameters
    ----------
    market
        The marketplace (no signing account needed) and the content store to read artifacts from.
    project_id
        The project.
    validation_file
        The owner's revealed validation set (NPZ), for projects whose manifest has no public recipe; checked
        against the on-chain ``validationSetCommitment`` (and the manifest's validation CID, if any).
    from_block
        First block to search for events (the marketplace's deployment block).
    strict
        Count rounds that cannot be recomputed and rejections that cannot be checked (a sealed update never
        revealed, an unreadable object) as differences instead of warnings.
    progress
        Called with a short text before each slow step.
    extra_stores
        Further stores where the audit looks for rejected updates the main store lacks.
    evidence
        Trainers' evidence (:func:`pocfl.evidence.load_evidence`): plaintexts that may disprove a rejection.

    Returns
    -------
    AuditResult
        Every round and trainer, and every difference (call :meth:`AuditResult.check` to raise on any).

    Raises
    ------
    ConfigError
        No such project.
    WrongStoreError
        The store holds none of the project's objects (nothing was audited; no report should be written).
    ValidationSetError
        ``validation_file`` is unreadable or does not match the on-chain commitment.
    StoreUnavailableError, ChainError
        The store or the chain could not be reached (transient: nothing was decided).
    """
    snapshot = Market(EventSnapshotClient(market.client, from_block), market.store)
    checker = RejectionChecker(snapshot, project_id, extra_stores, evidence)
    return _Auditor(
        snapshot, project_id, validation_file, from_block, strict, progress or (lambda _text: None), checker
    ).run()


class EventSnapshotClient(MarketplaceClient):
    """A read-only marketplace client whose events come from one log scan, pinned at one block.

    The audit and the round-input helpers of :mod:`aggregator.inputs` ask for the same events many times (every
    round re-reads ``RoundPosted``); a node scans its logs for each query. This client reads every marketplace
    log from ``from_block`` to the block that was latest when it was created, once (on first use), decodes them,
    and answers :meth:`events` from that list; view calls (project state, credits) run at that same block. Fast,
    and one consistent snapshot: a claim mined during the audit cannot make the ledger look wrong.

    Parameters
    ----------
    client
        The marketplace to read.
    from_block
        First block of the scan (the deployment block); queries starting earlier go to the node.
    """

    def __init__(self, client: MarketplaceClient, from_block: int = 0) -> None:
        super().__init__(client.chain, client.address, None)
        self.from_block = from_block
        self.to_block = int(self.w3.eth.block_number)
        self._records: list[EventRecord] | None = None

    def call(self, fn: ContractFunction) -> Any:
        """Run a view function at the snapshot's block, so state and events describe the same moment."""
        try:
            return fn.call(block_identifier=self.to_block)
        except Exception as exc:
            decoded = decode_revert(exc)
            if decoded is not None:
                raise decoded from None
            raise

    def _scan(self) -> list[EventRecord]:
        if self._records is None:
            by_topic = {
                bytes(event_abi_to_log_topic(item)): str(item["name"])
                for item in self.contract.abi
                if item["type"] == "event"
            }
            records = []
            logs = self.w3.eth.get_logs(
                {"address": self.address, "fromBlock": self.from_block, "toBlock": self.to_block}
            )
            for log in logs:
                topics = log.get("topics") or []
                name = by_topic.get(bytes(topics[0])) if topics else None
                if name is not None:
                    records.append(self._record(self.contract.events[name]().process_log(log)))
            records.sort(key=lambda r: (r.block_number, r.log_index))
            self._records = records
        return self._records

    def events(
        self, name: str, from_block: int = 0, to_block: int | str = "latest", **filters: Any
    ) -> list[EventRecord]:
        """As :meth:`MarketplaceClient.events`, up to the snapshot's block, from the one scan."""
        if from_block < self.from_block:
            return super().events(name, from_block, self.to_block if to_block == "latest" else to_block, **filters)
        last = self.to_block if to_block == "latest" or not isinstance(to_block, int) else to_block
        wanted = {k: _normal(v) for k, v in filters.items()}
        return [
            e
            for e in self._scan()
            if e.name == name
            and from_block <= e.block_number <= last
            and all(_normal(e.args.get(k)) == v for k, v in wanted.items())
        ]


def _normal(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(("0x", "0X")):
        return value.lower()
    if isinstance(value, bytes):
        return value.hex()
    return value


class _Auditor:
    """The state of one audit run (see :func:`audit_project`)."""

    def __init__(
        self,
        market: Market,
        project_id: int,
        validation_file: Path | None,
        from_block: int,
        strict: bool,
        progress: Callable[[str], None],
        checker: RejectionChecker,
    ) -> None:
        self.market = market
        self.client = market.client
        self.project_id = project_id
        self.validation_file = validation_file
        self.from_block = from_block  # moves to the project's creation block for the project's own events
        self.origin_block = from_block  # account-wide events (other projects' credits, claims) start here
        self.strict = strict
        self.checker = checker  # re-checks posted rejections (extra stores, trainers' evidence)
        self.unchecked: list[str] = []
        self.progress = progress
        self.chain_id = self.client.chain.chain_id
        self.address = self.client.address
        self.differences: list[Difference] = []
        self.warnings: list[str] = []
        # Compiled round circuits (no keys), keyed and verified by the settings' hash, in the user's own cache
        # (zk.cache: <state dir>/zk by default; never a shared temp folder another user could plant a circuit in).
        self.zk_cache: Path | None = None
        self._private_zk: Path | None = None

    # --- bookkeeping ----------------------------------------------------------------------------------------

    def diff(
        self,
        round_: int | None,
        field_: str,
        message: str,
        *,
        index: int | None = None,
        trainer: str | None = None,
        posted: Any = None,
        recomputed: Any = None,
    ) -> None:
        where = f"round {round_}" if round_ is not None else f"project {self.project_id}"
        if index is not None:
            where += f", submission {index}" + (f" ({short(trainer)})" if trainer else "")
        self.differences.append(
            Difference(
                round_,
                field_,
                _cap(f"{where}: {message}"),
                index,
                trainer,
                _bounded_value(posted),
                _bounded_value(recomputed),
            )
        )

    def events(self, name: str, **filters: Any) -> list[EventRecord]:
        return self.client.events(name, from_block=self.from_block, **filters)

    # --- the run --------------------------------------------------------------------------------------------

    def run(self) -> AuditResult:
        pid = self.project_id
        self.progress(f"reading project {pid}'s events")
        state = self.client.project(pid)
        if state.status is ProjectStatus.NONE:
            raise ConfigError(
                f"there is no project {pid} on the marketplace {self.address} (chain {self.chain_id}): "
                "check the id (`pocfl project list`), --rpc and the deployment"
            )
        created = self.events("ProjectCreated", projectId=pid)
        if created:
            self.from_block = max(self.from_block, created[0].block_number)
        params = state.params
        result = AuditResult(
            project_id=pid,
            chain_id=self.chain_id,
            market=self.address,
            owner=state.owner,
            aggregator=params.aggregator,
            verifier=params.verifier,
            status=state.status.name.lower(),
            budget=state.budget,
            round_budget=state.round_budget,
            num_rounds=params.num_rounds,
            escrow=state.escrow,
            manifest_cid=params.initial_model_cid,
            proofs="none" if int(params.verifier, 16) == 0 else "verifier",
            store=self.market.store.location,
        )
        self._check_created(created, state)
        self._check_store(state)

        manifest = None
        validation = None
        try:
            manifest = inputs.load_manifest(self.market, state)
            result.manifest_name = clip(manifest.name, VALUE_LIMIT)  # the owner's text
        except PocflError as exc:
            self.diff(None, "manifest", f"manifest {params.initial_model_cid}: {type(exc).__name__}: {_text(exc)}")
        if manifest is not None:
            self.progress("loading the validation set")
            try:
                validation = inputs.load_validation(
                    manifest, self.market, self.validation_file, commitment=params.validation_set_commitment
                )
                result.validation = (
                    f"file {self.validation_file}"
                    if self.validation_file is not None
                    else (
                        f"recipe {quote(manifest.validation.recipe)}"
                        if manifest.validation.recipe is not None
                        else f"cid {quote(manifest.validation.cid)}"
                    )
                )
            except PocflError as exc:
                if self.validation_file is not None:
                    raise  # the auditor's own file is wrong: say so rather than audit without it
                self.warnings.append(
                    f"no validation set, rounds cannot be recomputed: {type(exc).__name__}: {_text(exc)}"
                )

        submitted: dict[int, list[SubmittedUpdate]] = {}
        digests_seen: dict[int, bytes] = {}  # the digest the round's last submission left on chain
        for e in self.events("UpdateSubmitted", projectId=pid):
            r = int(e.args["round"])
            submitted.setdefault(r, []).append(_submitted(e))
            digests_seen[r] = bytes(e.args["submissionsDigest"])  # events come in chain order
        posted = {int(e.args["round"]): e for e in self.events("RoundPosted", projectId=pid)}
        failed = {int(e.args["round"]) for e in self.events("RoundFailed", projectId=pid)}
        credits: dict[int, list[EventRecord]] = {}
        for e in self.events("TrainerCredited", projectId=pid):
            credits.setdefault(int(e.args["round"]), []).append(e)

        for r in range(params.num_rounds):
            subs = sorted(submitted.get(r, []), key=lambda u: u.index)
            if r in posted:
                self.progress(f"round {r}: checking and recomputing {len(subs)} submissions")
                audit = self._posted_round(
                    r, state, subs, digests_seen.get(r), posted[r], credits.get(r, []), manifest, validation
                )
            elif r in failed:
                audit = RoundAudit(r, "failed", "failed", notes=["the aggregator missed its window: nobody credited"])
                if credits.get(r):
                    self.diff(r, "credit", "the round failed but TrainerCredited events exist for it")
            elif state.status is ProjectStatus.ACTIVE and r == state.current_round:
                audit = RoundAudit(r, "open", "open", notes=[f"{len(subs)} submissions so far; not settled yet"])
            elif state.status is ProjectStatus.ACTIVE and r > state.current_round:
                audit = RoundAudit(r, "future", "future")
            else:
                audit = RoundAudit(r, "not played", "not played")
            if audit.verdict == "unverifiable" and self.strict:
                self.diff(r, "unverifiable", f"cannot be recomputed: {audit.unverifiable}")
            result.rounds.append(audit)

        self.progress("reconciling credits, claims and escrow")
        result.withdrawn_wei = self._check_escrow(state, result.rounds)
        result.trainers = self._trainers(result.rounds)
        result.differences = self.differences
        result.warnings = self.warnings
        result.unchecked = self.unchecked
        result.evidence = self.checker.findings + self.checker.unused()
        return result

    def _check_store(self, state: ProjectState) -> None:
        """Refuse a store that holds none of the project's objects: every round would look wrong, none is."""
        cids = [state.params.initial_model_cid]
        for e in self.events("RoundPosted", projectId=self.project_id)[:STORE_PROBE_ROUNDS]:
            cids += [str(e.args["modelCid"]), *report_cids(bytes(e.args["reportHash"]))]
        if not _holds_any(self.market.store, cids) and not _fetches(self.market.store, cids[0]):
            raise WrongStoreError(
                f"the store at {self.market.store.location} has none of project {self.project_id}'s objects (its "
                f"manifest {state.params.initial_model_cid}, posted models and reports): wrong --ipfs? Nothing was "
                "audited and no report was written"
            )

    def _check_created(self, created: list[EventRecord], state: ProjectState) -> None:
        if len(created) != 1:
            self.diff(None, "events", f"expected one ProjectCreated event, found {len(created)}")
            return
        args = created[0].args
        if int(args["budget"]) != state.budget:
            self.diff(
                None,
                "budget",
                f"ProjectCreated escrowed {args['budget']} wei, the project's budget is {state.budget} wei",
                posted=int(args["budget"]),
                recomputed=state.budget,
            )
        if state.round_budget != state.budget // max(state.params.num_rounds, 1):
            self.diff(
                None,
                "round_budget",
                f"round budget {state.round_budget} wei, budget // numRounds = "
                f"{state.budget // max(state.params.num_rounds, 1)} wei",
            )

    # --- one posted round ----------------------------------------------------------------------------------

    def _posted_round(
        self,
        r: int,
        state: ProjectState,
        subs: list[SubmittedUpdate],
        last_digest: bytes | None,
        posted: EventRecord,
        credited: list[EventRecord],
        manifest: ProjectManifest | None,
        validation: tuple[NDArray[np.float32], NDArray[np.int64]] | None,
    ) -> RoundAudit:
        pid = self.project_id
        n_diffs = len(self.differences)
        args = posted.args
        audit = RoundAudit(
            round=r,
            state="posted",
            verdict="verified",
            proven=bool(args["proven"]),
            model_cid=str(args["modelCid"]),
            report_hash=_hex(args["reportHash"]),
            hyperparams_hash=_hex(args["hyperparamsHash"]),
            credited_wei=int(args["credited"]),
            unallocated_wei=int(args["unallocated"]),
        )
        audit.submissions = [SubmissionAudit(u.index, u.trainer, u.cid, _hex(u.commitment)) for u in subs]

        # -- the submissions digest, as the contract folds it
        digest = submissions_digest(self.chain_id, self.address, pid, r, subs)
        audit.submissions_digest = _hex(digest)
        if [u.index for u in subs] != list(range(len(subs))):
            self.diff(r, "events", f"UpdateSubmitted indices are {[u.index for u in subs]}, not 0..{len(subs) - 1}")
        if last_digest is not None and last_digest != digest:
            self.diff(
                r,
                "digest",
                f"the last UpdateSubmitted carries digest {_hex(last_digest)}, the events fold to {_hex(digest)}",
            )

        # -- the credits the contract made from the posted scores
        self._check_posted_credits(r, state, subs, credited, audit)

        # -- proofs
        if state.params.verifier.lower() != ZERO_ADDRESS:
            if not audit.proven:
                self.diff(r, "proof", "the project has a verifier but RoundPosted says the round is not proven")
        else:
            audit.notes.append("no verifier: the results are unproven (recomputed only)")

        # -- the report
        report = None
        if bytes(args["reportHash"]) == ZERO_BYTES32:
            self.diff(r, "report", "no report posted (zero reportHash): the round cannot be recomputed")
        else:
            try:
                audit.report_cid, data = self.market.fetch_report(bytes(args["reportHash"]), max_size=REPORT_MAX_SIZE)
                report = RoundReport.from_json(data)
            except ReportError as exc:
                self.diff(r, "report", f"report {audit.report_cid}: {_text(exc)}")
            except StoreUnavailableError:
                raise  # transient: nothing can be concluded, try again
            except PocflError as exc:
                cid = audit.report_cid or " or ".join(report_cids(bytes(args["reportHash"])))
                self.diff(
                    r,
                    "report",
                    f"the report with reportHash {audit.report_hash} ({cid}) cannot be read verified: "
                    f"{type(exc).__name__}: {_text(exc)}",
                )
        if report is None:
            self._finish(audit, n_diffs, "no verified report")
            return audit
        self._check_report(r, report, audit, subs, credited, digest)
        audit.accuracy_before, audit.accuracy, audit.loss = report.accuracy_before, report.accuracy, report.loss
        audit.shapley_method = report.shapley_method  # as reported, until recomputed
        for s, entry in zip(audit.submissions, report.submissions, strict=False):
            # Kept for the audit's JSON and tables: bounded like the report's own honest fields.
            s.report_status = clip(entry.status, QUOTE_LIMIT)
            s.report_reason = None if entry.reason is None else bounded_reason(entry.reason)
        if len(report.submissions) != len(subs):
            self._finish(audit, n_diffs, "the report's submissions differ from the chain's")
            return audit
        if manifest is None or validation is None:
            self._finish(audit, n_diffs, "no manifest or validation set")
            return audit

        # -- recompute
        try:
            why = self._recompute(r, state, subs, report, audit, manifest, validation, digest)
        except StoreUnavailableError:
            raise
        except PocflError as exc:
            self._finish(audit, n_diffs, f"inputs unavailable: {type(exc).__name__}: {_text(exc)}")
            return audit
        self._finish(audit, n_diffs, why)
        return audit

    def _finish(self, audit: RoundAudit, n_diffs: int, why: str | None) -> None:
        """Set the round's verdict; ``why`` says why it was not recomputed (None: it was)."""
        why = None if why is None else _cap(why)
        if len(self.differences) > n_diffs:
            audit.verdict = "mismatch"
        elif why is None and any(s.source == "unchecked" for s in audit.submissions):
            audit.verdict = "unchecked"  # recomputed and equal, but some rejections could not be checked
        elif why is not None:
            audit.verdict = "unverifiable"
            audit.unverifiable = why
            self.warnings.append(_cap(f"round {audit.round}: not recomputed: {why}"))
        if why is not None:
            audit.notes.append(_cap(f"not recomputed: {why}"))
            for s in audit.submissions:  # expected = posted where nothing could be recomputed
                s.expected_wei = s.credited_wei

    def _check_posted_credits(
        self,
        r: int,
        state: ProjectState,
        subs: list[SubmittedUpdate],
        credited: list[EventRecord],
        audit: RoundAudit,
    ) -> None:
        if len(credited) != len(subs):
            self.diff(r, "credit", f"{len(credited)} TrainerCredited events for {len(subs)} submissions")
        for s, e in zip(audit.submissions, credited, strict=False):
            s.posted_score = int(e.args["score"])
            s.posted_outlier = bool(e.args["outlier"])
            s.credited_wei = int(e.args["amount"])
            if str(e.args["trainer"]).lower() != s.trainer.lower():
                self.diff(
                    r,
                    "credit",
                    f"TrainerCredited #{s.index} names {e.args['trainer']}, the submission is {s.trainer}",
                    index=s.index,
                    trainer=s.trainer,
                )
        scores = [s.posted_score or 0 for s in audit.submissions]
        flags = [bool(s.posted_outlier) for s in audit.submissions]
        alloc = allocate(state.round_budget, scores, flags)
        for s, share in zip(audit.submissions, alloc.shares, strict=True):
            if s.credited_wei is not None and s.credited_wei != share:
                self.diff(
                    r,
                    "credit",
                    f"credited {s.credited_wei} wei for posted score {s.posted_score}, the payout rule gives {share}",
                    index=s.index,
                    trainer=s.trainer,
                    posted=s.credited_wei,
                    recomputed=share,
                )
        if (audit.credited_wei, audit.unallocated_wei) != (alloc.credited, alloc.unallocated):
            self.diff(
                r,
                "credit",
                f"RoundPosted credited {audit.credited_wei} and left {audit.unallocated_wei} wei; the payout rule "
                f"credits {alloc.credited} and leaves {alloc.unallocated}",
            )

    def _check_report(
        self,
        r: int,
        report: RoundReport,
        audit: RoundAudit,
        subs: list[SubmittedUpdate],
        credited: list[EventRecord],
        digest: bytes,
    ) -> None:
        audit.model_in = report.model_in
        cid = audit.report_cid
        header: list[tuple[str, object, object]] = [
            ("project_id", report.project_id, self.project_id),
            ("round", report.round, r),
            ("chain_id", report.chain_id, self.chain_id),
        ]
        for name, got, want in header:
            if got != want:
                self.diff(
                    r, "report", f"report {cid} says {name} {quote(got)}, the chain {want}", posted=got, recomputed=want
                )
        if str(report.market).lower() != self.address.lower():
            self.diff(r, "report", f"report {cid} names market {quote(report.market)}, audited {self.address}")
        if not _same_hex(report.submissions_digest, _hex(digest)):
            self.diff(
                r,
                "digest",
                f"report {cid} has submissions digest {quote(report.submissions_digest)}, the chain's events fold to "
                f"{_hex(digest)}",
                posted=report.submissions_digest,
                recomputed=_hex(digest),
            )
        if report.model_out != audit.model_cid:
            self.diff(
                r,
                "model_cid",
                f"report {cid} names new model {quote(report.model_out)}, RoundPosted {quote(audit.model_cid)}",
                posted=audit.model_cid,
                recomputed=report.model_out,
            )
        if not _same_hex(report.next_hyperparams_hash, audit.hyperparams_hash):
            self.diff(
                r,
                "hyperparams_hash",
                f"report {cid} has next_hyperparams_hash {quote(report.next_hyperparams_hash)}, RoundPosted "
                f"{audit.hyperparams_hash}",
            )
        try:
            next_hash = _hex(HyperParams.from_json(report.next_hyperparams).hash())
            if not _same_hex(next_hash, audit.hyperparams_hash):
                self.diff(
                    r,
                    "hyperparams_hash",
                    f"report {cid}'s next_hyperparams hash to {next_hash}, RoundPosted has {audit.hyperparams_hash}",
                    posted=audit.hyperparams_hash,
                    recomputed=next_hash,
                )
        except (ValueError, TypeError) as exc:
            self.diff(
                r, "hyperparams", f"report {cid}: next_hyperparams {quote(report.next_hyperparams)}: {quote(str(exc))}"
            )
        if len(report.submissions) != len(subs):
            self.diff(
                r,
                "submissions",
                f"report {cid} lists {len(report.submissions)} submissions, the chain has {len(subs)}",
                posted=len(subs),
                recomputed=len(report.submissions),
            )
        for i, (entry, u) in enumerate(zip(report.submissions, subs, strict=False)):
            fields: tuple[tuple[str, object, object], ...] = (
                ("index", entry.index, u.index),
                ("trainer", str(entry.trainer).lower(), u.trainer.lower()),
                ("cid", entry.cid, u.cid),
                ("commitment", str(entry.commitment).lower().removeprefix("0x"), u.commitment.hex()),
            )
            for name, got, want in fields:
                if got != want:
                    self.diff(
                        r,
                        "submissions",
                        f"report {cid} lists {name} {quote(got)}, UpdateSubmitted has {quote(want)}",
                        index=i,
                        trainer=u.trainer,
                        posted=want,
                        recomputed=got,
                    )
        for entry, s in zip(report.submissions, audit.submissions, strict=False):
            if s.posted_score is not None and (entry.score, entry.outlier) != (s.posted_score, s.posted_outlier):
                self.diff(
                    r,
                    "report",
                    f"report {cid} records score {quote(entry.score)} and outlier {quote(entry.outlier)}, "
                    "the chain credited "
                    f"score {s.posted_score} and outlier {s.posted_outlier}",
                    index=s.index,
                    trainer=s.trainer,
                )

    # --- recomputation ----------------------------------------------------------------------------------------

    def _recompute(
        self,
        r: int,
        state: ProjectState,
        subs: list[SubmittedUpdate],
        report: RoundReport,
        audit: RoundAudit,
        manifest: ProjectManifest,
        validation: tuple[NDArray[np.float32], NDArray[np.int64]],
        digest: bytes,
    ) -> str | None:
        """Recompute the round and compare; returns why it could not be recomputed (None when it was)."""
        pid = self.project_id
        spec = manifest.model.spec()
        model_in, global_vector = inputs.global_model(self.market, manifest, state, r, from_block=self.from_block)
        if report.model_in != model_in:
            self.diff(
                r,
                "model_in",
                f"report {audit.report_cid} starts from model {quote(report.model_in)}, the chain's global model "
                f"of the round is {model_in}",
                posted=report.model_in,
                recomputed=model_in,
            )
        audit.model_in = model_in
        hyper = inputs.round_hyperparams(self.market, manifest, pid, r, from_block=self.from_block)
        if report.hyperparams != hyper.to_json():
            self.diff(
                r,
                "hyperparams",
                f"report {audit.report_cid} says the round trained with {quote(report.hyperparams)}, the rule gives "
                f"{hyper.to_json()}",
                posted=report.hyperparams,
                recomputed=hyper.to_json(),
            )
        history = inputs.accuracy_history(self.market, pid, r, from_block=self.from_block)
        prior = inputs.prior_updates(self.market, manifest, pid, r, from_block=self.from_block)
        config = inputs.round_config(manifest)
        proof_cfg = manifest.proof if int(state.params.verifier, 16) != 0 else None
        if proof_cfg is not None:
            # Proven rounds post scores on the circuit's fixed-point grid.
            config = replace(config, scoring=replace(config.scoring, scale=1 << proof_cfg.scale))
        self._check_config(r, report, audit, config, history)
        seeds = RoundSeeds.derive(self.chain_id, self.address, pid, r, digest)
        for name, got, want in (
            ("shapley_seed", report.shapley_seed, seeds.shapley),
            ("sketch_seed", report.sketch_seed, seeds.sketch),
        ):
            if not _same_hex(got, _hex(want)):
                self.diff(r, "seeds", f"report {audit.report_cid} has {name} {quote(got)}, derived {_hex(want)}")

        vectors: list[Vector | None] = []
        unverifiable: list[str] = []
        for u, entry, s in zip(subs, report.submissions, audit.submissions, strict=True):
            vector = self._read_submission(r, u, entry, s, spec, manifest.max_update_size, proven=proof_cfg is not None)
            if s.source == "unverifiable":
                unverifiable.append(f"submission {u.index} ({short(u.trainer)}): {s.note}")
            vectors.append(vector)
        if unverifiable:
            return "; ".join(unverifiable)

        flags: list[bool] | None = None
        if proof_cfg is not None:
            vectors, flags = self._proven_flags(r, subs, vectors, model_in, proof_cfg, audit, report)
        decision = decide_round(
            global_vector,
            vectors,
            validation=validation,
            seeds=seeds,
            hyperparams=hyper,
            accuracy_history=history,
            prior_updates=prior,
            config=config,
            outlier_flags=flags,
        )
        audit.accuracy_before, audit.accuracy, audit.loss = decision.accuracy_before, decision.accuracy, decision.loss
        audit.shapley_method = decision.shapley_method
        self._compare_decision(r, report, audit, decision, state)

        # the new global model, re-encoded
        model_cid = encode_model_cid(decision.new_global, spec)
        if model_cid != audit.model_cid:
            self.diff(
                r,
                "model_cid",
                f"posted model {audit.model_cid}, the recomputed model encodes to {model_cid}",
                posted=audit.model_cid,
                recomputed=model_cid,
            )
        elif audit.model_cid is not None and not self._readable(audit.model_cid):
            self.warnings.append(
                f"round {r}: the posted model {audit.model_cid} is not in the store {self.market.store.location}"
            )
        next_hash = _hex(decision.next_hyperparams.hash())
        if not _same_hex(next_hash, audit.hyperparams_hash):
            self.diff(
                r,
                "hyperparams_hash",
                f"posted hyperparamsHash {audit.hyperparams_hash}, recomputed {next_hash} "
                f"({decision.next_hyperparams.to_json()})",
                posted=audit.hyperparams_hash,
                recomputed=next_hash,
            )
        return None

    def _proven_flags(
        self,
        r: int,
        subs: list[SubmittedUpdate],
        vectors: list[Vector | None],
        model_in: str,
        proof_cfg: ProofConfig,
        audit: RoundAudit,
        report: RoundReport,
    ) -> tuple[list[Vector | None], list[bool]]:
        """A proven round: the committed features (checked against each update) and the circuit's decision on them.

        The contract verified that the posted flags and scores are the circuit's function of the on-chain feature
        commitments; what it cannot see is whether each commitment describes its update, which is checked here.
        The flags are recomputed with the circuit itself (compiled from the code with the settings the report
        names, evaluated by ezkl: bit-exact), or with its float reference when those settings are not available.
        """
        from zk.commitment import committed_features
        from zk.decision import decide_features, feature_seed, pad_slots

        seed = feature_seed(self.chain_id, self.address, self.project_id, r, model_in)
        cf = committed_features(
            vectors, [u.feature_commitment for u in subs], seed, dim=proof_cfg.sketch_dim, scale=proof_cfg.scale
        )
        for u, entry, why in zip(subs, report.submissions, cf.reasons, strict=True):
            posted_mismatch = entry.status == "rejected" and _error_name(entry.reason) == FEATURE_MISMATCH
            if why is not None and not posted_mismatch:
                self.diff(
                    r,
                    "status",
                    f"the update does not match its featureCommitment but the aggregator did not reject it for that "
                    f"(status {entry.status})",
                    index=u.index,
                    trainer=u.trainer,
                    posted=entry.status,
                    recomputed="rejected",
                )
            elif posted_mismatch and why is None and vectors[u.index] is not None:
                self.diff(
                    r,
                    "status",
                    f"the aggregator rejected the update for {FEATURE_MISMATCH}, but it matches its featureCommitment",
                    index=u.index,
                    trainer=u.trainer,
                    posted=entry.reason,
                    recomputed="accepted",
                )
            elif why is not None:
                audit.notes.append(f"submission {u.index} ({short(u.trainer)}): {why}")
        n, k = len(subs), proof_cfg.slots
        if n > k:
            self.diff(r, "proof", f"{n} submissions exceed the circuit's {k} slots")
            return vectors, [True] * n
        feats, rej, scores = pad_slots(cf.features, cf.rejected, [0.0] * n, slots=k, dim=proof_cfg.sketch_dim)
        decision = decide_features(feats, rej, scores, dim=proof_cfg.sketch_dim)
        kept = [None if rej else v for v, rej in zip(vectors, cf.rejected, strict=True)]
        flags = list(decision.outliers[:n])
        circuit = self._round_circuit(r, report.config.get("proof"), proof_cfg)
        if circuit is not None:
            exact = list(circuit.evaluate(cf.features, cf.rejected))
            if exact != flags:
                audit.notes.append(
                    f"the circuit's flags {exact} differ from its float reference {flags} at a threshold; "
                    "the circuit's are the ones proven"
                )
            flags = exact
        return kept, flags

    def _round_circuit(self, r: int, info: Any, proof_cfg: ProofConfig) -> Any:
        """The round circuit compiled with the settings the report names (None, with a warning, when unavailable)."""
        from zk.prover import CircuitShape, ProverError

        if not isinstance(info, dict) or "settings_cid" not in info:
            self.warnings.append(f"round {r}: the report names no circuit settings; flags recomputed in float")
            return None
        try:
            settings = self.market.fetch(str(info["settings_cid"]))
            shape = CircuitShape(proof_cfg.slots, proof_cfg.sketch_dim, proof_cfg.scale)
            return self._compiled_circuit(r, shape, settings)
        except (PocflError, ProverError, OSError, ValueError) as exc:
            self.warnings.append(
                f"round {r}: cannot rebuild the circuit ({quote(str(exc))}); flags recomputed in float"
            )
            return None

    def _compiled_circuit(self, r: int, shape: Any, settings: bytes) -> Any:
        """Compile (or reuse from the cache) the circuit; an unsafe cache folder falls back to a private one."""
        import shutil
        import weakref

        from zk.cache import UnsafeCacheError, default_cache_dir
        from zk.prover import RoundCircuitSetup

        try:
            return RoundCircuitSetup.compiled_only(shape, settings, self.zk_cache or default_cache_dir())
        except UnsafeCacheError as exc:
            self.warnings.append(f"round {r}: {exc}; compiling the circuit in a private temporary folder instead")
            if self._private_zk is None:
                self._private_zk = Path(tempfile.mkdtemp(prefix="pocfl-zk-"))  # 0700, this user's
                weakref.finalize(self, shutil.rmtree, self._private_zk, ignore_errors=True)
            self.zk_cache = self._private_zk
            return RoundCircuitSetup.compiled_only(shape, settings, self.zk_cache)

    def _check_config(
        self, r: int, report: RoundReport, audit: RoundAudit, config: RoundConfig, history: Sequence[float]
    ) -> None:
        """The settings the report says the round ran with must be the manifest's (and the history the rule's)."""
        expected: dict[str, Any] = json.loads(json.dumps(asdict(config)))
        for key, want in expected.items():
            got = report.config.get(key)
            if got != want:
                self.diff(
                    r,
                    "config",
                    f"report {audit.report_cid} ran with {key}={quote(got)}, the manifest fixes {json.dumps(want)}",
                    posted=got,
                    recomputed=want,
                )
        if "accuracy_history" in report.config and report.config["accuracy_history"] != list(history):
            self.diff(
                r,
                "config",
                f"report {audit.report_cid} used accuracy history {quote(report.config['accuracy_history'])}, "
                f"the posted reports give {list(history)}",
            )

    def _readable(self, cid: str) -> bool:
        try:
            return bool(self.market.store.has(cid))
        except PocflError:
            return False

    def _read_submission(
        self,
        r: int,
        u: SubmittedUpdate,
        entry: SubmissionEntry,
        s: SubmissionAudit,
        spec: ModelSpec,
        max_size: int,
        *,
        proven: bool = False,
    ) -> Vector | None:
        """The update as the recomputation uses it; sets ``s.source`` and ``s.note``, records differences.

        On a proven project a ``FeatureCommitmentMismatch`` rejection is checked later, against the features
        (:meth:`_proven_flags`), so a valid update rejected for it is returned here without a difference.
        """
        v = inputs.validate_submission(self.market, u, self.project_id, r, spec, None, max_size)
        vector, reason, encrypted = v.vector, v.reason, v.encrypted
        posted_rejected = entry.status == "rejected"
        posted_name = _error_name(entry.reason) if posted_rejected else None
        if encrypted != entry.encrypted and _error_name(reason) not in AVAILABILITY_ERRORS:
            self.diff(
                r,
                "encrypted",
                f"the report says encrypted={quote(entry.encrypted)}, the stored update is "
                f"{'an encryption envelope' if encrypted else 'plaintext'}",
                index=u.index,
                trainer=u.trainer,
            )
        mine = _error_name(reason)
        sealed_unrevealed = encrypted and reason == inputs.NO_KEY_REASON and entry.plaintext_cid is None
        if posted_rejected and (sealed_unrevealed or posted_name in AVAILABILITY_ERRORS or mine in AVAILABILITY_ERRORS):
            return self._recheck_rejection(r, u, entry, s, v, spec, max_size, proven=proven)
        if sealed_unrevealed:
            return self._sealed_accepted(r, u, s, spec, max_size)
        if encrypted and reason == inputs.NO_KEY_REASON:
            assert entry.plaintext_cid is not None
            vector, reason = self._read_revealed(r, u, entry.plaintext_cid, s, spec, max_size)
            if s.source == "unverifiable":
                return None
            mine = _error_name(reason)
        if vector is None and mine in AVAILABILITY_ERRORS:
            s.source = "unverifiable"
            s.note = f"cannot be read here ({reason}) but the aggregator accepted it"
            return None
        if vector is None:
            s.source = "rejected"
            s.note = reason
            if not posted_rejected:
                self.diff(
                    r,
                    "status",
                    f"the aggregator accepted the update (status {quote(entry.status)}), "
                    f"the audit rejects it: {reason}",
                    index=u.index,
                    trainer=u.trainer,
                    posted=entry.status,
                    recomputed="rejected",
                )
            elif posted_name != mine:
                self.diff(
                    r,
                    "status",
                    f"rejected for {posted_name}, the audit rejects it for {reason}",
                    index=u.index,
                    trainer=u.trainer,
                    posted=entry.reason,
                    recomputed=reason,
                )
            return None
        if posted_rejected and not (proven and posted_name == FEATURE_MISMATCH):
            self.diff(
                r,
                "status",
                f"the aggregator rejected trainer {u.trainer}'s update, the audit accepts it: {quote(entry.reason)}",
                index=u.index,
                trainer=u.trainer,
                posted=entry.reason,
                recomputed="accepted",
            )
        return vector

    def _recheck_rejection(
        self,
        r: int,
        u: SubmittedUpdate,
        entry: SubmissionEntry,
        s: SubmissionAudit,
        first: inputs.ValidatedUpdate,
        spec: ModelSpec,
        max_size: int,
        *,
        proven: bool,
    ) -> Vector | None:
        """A rejection the audited store alone cannot judge: see :class:`~pocfl.audit_rejections.RejectionChecker`."""
        check = self.checker.check(r, u, entry, first, spec, max_size)
        s.note = check.note
        if proven and _error_name(entry.reason) == FEATURE_MISMATCH and check.vector is not None:
            s.source = "plaintext"
            return check.vector  # judged against its featureCommitment by _proven_flags
        if check.verdict == "confirmed":
            s.source = "rejected"
            return None
        if check.verdict == "unchecked":
            s.source = "unchecked"
            self.unchecked.append(f"round {r}, submission {u.index} (trainer {u.trainer}): {check.note}")
            if self.strict:
                self.diff(
                    r, "unchecked", f"rejection cannot be checked: {check.note}", index=u.index, trainer=u.trainer
                )
            return None
        s.source = "evidence" if first.encrypted or check.vector is None else "plaintext"
        self.diff(
            r,
            "status",
            f"false rejection: {check.note}",
            index=u.index,
            trainer=u.trainer,
            posted=entry.reason,
            recomputed="accepted" if check.vector is not None else "rejected",
        )
        return check.vector

    def _sealed_accepted(
        self, r: int, u: SubmittedUpdate, s: SubmissionAudit, spec: ModelSpec, max_size: int
    ) -> Vector | None:
        """A sealed update the aggregator kept but never revealed: recomputable only through trainer evidence."""
        ev = self.checker.evidence_for(r, u)
        if ev is not None:
            opened = self.checker.open_evidence(r, u, ev, spec, max_size)
            if opened.vector is not None:
                s.source, s.note = "evidence", f"sealed, not revealed; read through the evidence {ev.where()}"
                return opened.vector
            self.warnings.append(f"round {r}, submission {u.index}: evidence {ev.where()} not used: {opened.reason}")
        s.source = "unverifiable"
        s.note = "sealed to the aggregator and its plaintext was not revealed (no plaintext_cid)"
        return None

    def _read_revealed(
        self, r: int, u: SubmittedUpdate, cid: str, s: SubmissionAudit, spec: ModelSpec, max_size: int
    ) -> tuple[Vector | None, str | None]:
        """A sealed update read through the plaintext the aggregator revealed: fetched, commitment checked, decoded.

        Returns the vector or the rejection reason; ``s.source`` becomes ``revealed``, or ``unverifiable`` when the
        plaintext cannot be read.
        """
        try:
            plaintext = self.market.fetch(cid, max_size)
        except StoreUnavailableError:
            raise
        except StoreError as exc:
            s.source = "unverifiable"
            s.note = (
                f"sealed; its revealed plaintext {clip(cid, MAX_CID_BYTES)} cannot be read: "
                f"{inputs.rejection_reason(exc)}"
            )
            return None, None
        s.source = "revealed"
        s.note = f"plaintext {clip(cid, MAX_CID_BYTES)}"  # from the report: an honest CID comes back unchanged
        try:
            verify_commitment(
                plaintext,
                u.commitment,
                chain_id=self.chain_id,
                market=self.address,
                project_id=self.project_id,
                round=r,
                trainer=u.trainer,
            )
            return decode_update(plaintext, spec, kind="delta", max_size=max_size).vector(), None
        except PocflError as exc:
            return None, inputs.rejection_reason(exc)

    def _compare_decision(
        self, r: int, report: RoundReport, audit: RoundAudit, decision: RoundDecision, state: ProjectState
    ) -> None:
        expected = allocate(state.round_budget, decision.scores, decision.outliers)
        for i, (s, entry) in enumerate(zip(audit.submissions, report.submissions, strict=True)):
            s.status, s.score, s.outlier = decision.statuses[i], decision.scores[i], decision.outliers[i]
            s.value, s.expected_wei = decision.values[i], expected.shares[i]
            where: dict[str, Any] = {"index": s.index, "trainer": s.trainer}
            if s.posted_outlier is not None and s.posted_outlier != s.outlier:
                self.diff(
                    r,
                    "outlier",
                    f"posted outlier flag {_flag(s.posted_outlier)}, recomputed {_flag(s.outlier)}",
                    posted=s.posted_outlier,
                    recomputed=s.outlier,
                    **where,
                )
            if s.posted_score is not None and s.posted_score != s.score:
                self.diff(
                    r,
                    "score",
                    f"posted score {s.posted_score}, recomputed {s.score}",
                    posted=s.posted_score,
                    recomputed=s.score,
                    **where,
                )
            if entry.status != s.status:
                self.diff(
                    r,
                    "status",
                    f"report status {quote(entry.status)}, recomputed {s.status}",
                    posted=entry.status,
                    recomputed=s.status,
                    **where,
                )
            for name, got, want in (
                ("value", entry.value, decision.values[i]),
                ("weight", entry.weight, decision.weights[i]),
                ("ratio", entry.ratio, decision.ratios[i]),
            ):
                if not _close(float(got), float(want)):
                    self.diff(
                        r,
                        name,
                        f"report {name} {quote(got)}, recomputed {want!r}",
                        posted=got,
                        recomputed=want,
                        **where,
                    )
            if s.credited_wei is not None and s.credited_wei != s.expected_wei:
                self.diff(
                    r,
                    "credit",
                    f"credited {s.credited_wei} wei, recomputed {s.expected_wei} wei",
                    posted=s.credited_wei,
                    recomputed=s.expected_wei,
                    **where,
                )
        for name, got, want in (
            ("accuracy_before", report.accuracy_before, decision.accuracy_before),
            ("loss_before", report.loss_before, decision.loss_before),
            ("accuracy", report.accuracy, decision.accuracy),
            ("loss", report.loss, decision.loss),
        ):
            if not _close(float(got), float(want)):
                self.diff(r, name, f"report {name} {quote(got)}, recomputed {want!r}", posted=got, recomputed=want)
        if (
            report.shapley_method != decision.shapley_method
            or report.shapley_evaluations != decision.shapley_evaluations
        ):
            self.diff(
                r,
                "shapley",
                f"report says {quote(report.shapley_method)} with {quote(report.shapley_evaluations)} evaluations, "
                "recomputed "
                f"{decision.shapley_method} with {decision.shapley_evaluations}",
            )
        if report.next_hyperparams != decision.next_hyperparams.to_json():
            self.diff(
                r,
                "hyperparams",
                f"report next_hyperparams {quote(report.next_hyperparams)}, "
                f"recomputed {decision.next_hyperparams.to_json()}",
                posted=report.next_hyperparams,
                recomputed=decision.next_hyperparams.to_json(),
            )

    # --- money ------------------------------------------------------------------------------------------------

    def _check_escrow(self, state: ProjectState, rounds: list[RoundAudit]) -> int:
        pid = self.project_id
        withdrawn = sum(int(e.args["amount"]) for e in self.events("RemainingWithdrawn", projectId=pid))
        credited = sum(r.credited_wei for r in rounds)
        expected = state.budget - credited - withdrawn
        if state.escrow != expected:
            self.diff(
                None,
                "escrow",
                f"escrow on chain {state.escrow} wei; budget {state.budget} - credited {credited} - withdrawn "
                f"{withdrawn} = {expected} wei",
                posted=state.escrow,
                recomputed=expected,
            )
        return withdrawn

    def _trainers(self, rounds: list[RoundAudit]) -> list[TrainerAudit]:
        trainers: dict[str, TrainerAudit] = {}
        for ra in rounds:
            for s in ra.submissions:
                checksummed = str(Web3.to_checksum_address(s.trainer))
                t = trainers.setdefault(checksummed, TrainerAudit(checksummed))
                t.rounds += 1
                t.total_score += s.posted_score or 0
                t.outliers += int(bool(s.posted_outlier))
                t.credited_wei += s.credited_wei or 0
                t.expected_wei += s.expected_wei if s.expected_wei is not None else (s.credited_wei or 0)
        # Credits are per account across projects: one scan of each event type, from the marketplace's start.
        credited_all: dict[str, int] = {}
        refunds: dict[str, int] = {}
        claimed: dict[str, int] = {}
        for name, key, amount, sums in (
            ("TrainerCredited", "trainer", "amount", credited_all),
            ("TrainerLeft", "trainer", "stakeCredited", refunds),
            ("StakeReleased", "trainer", "amount", refunds),
            ("Claimed", "account", "amount", claimed),
        ):
            for e in self.client.events(name, from_block=self.origin_block):
                who = str(Web3.to_checksum_address(str(e.args[key])))
                if who in trainers:
                    sums[who] = sums.get(who, 0) + int(e.args[amount])
        for address, t in trainers.items():
            total, back = credited_all.get(address, 0), refunds.get(address, 0)
            t.credited_elsewhere_wei = total - t.credited_wei + back
            t.claimed_wei = claimed.get(address, 0)
            t.pending_wei = self.client.credits(address)
            if total + back - t.claimed_wei != t.pending_wei:
                self.diff(
                    None,
                    "ledger",
                    f"trainer {address}: credited {total} + stakes returned {back} - claimed {t.claimed_wei} = "
                    f"{total + back - t.claimed_wei} wei, but its on-chain credits are {t.pending_wei} wei",
                    trainer=address,
                    posted=t.pending_wei,
                    recomputed=total + back - t.claimed_wei,
                )
        return sorted(trainers.values(), key=lambda t: (-t.credited_wei, t.trainer))


STORE_PROBE_ROUNDS = 20
"""Posted rounds whose model and report are probed to tell a wrong store from a few missing objects."""


def _holds_any(store: ContentStore, cids: Sequence[str]) -> bool:
    for cid in cids:
        try:
            if store.has(cid):
                return True
        except StoreUnavailableError:
            raise  # transient: nothing can be concluded
        except PocflError:
            continue  # a malformed CID on chain says nothing about the store
    return False


def _fetches(store: ContentStore, cid: str) -> bool:
    # ``has`` asks a node for its local blocks only; a networked IPFS node may still find the object elsewhere.
    try:
        store.get_bytes(cid, max_size=inputs.MANIFEST_MAX_SIZE)
        return True
    except StoreUnavailableError:
        raise
    except PocflError:
        return False


FEATURE_MISMATCH = "FeatureCommitmentMismatch"
"""Rejection reason of an update that does not match its on-chain ``featureCommitment`` (proven projects)."""


def _flag(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _submitted(e: EventRecord) -> SubmittedUpdate:
    return SubmittedUpdate(
        index=int(e.args["index"]),
        trainer=str(e.args["trainer"]),
        cid=str(e.args["cid"]),
        commitment=bytes(e.args["commitment"]),
        feature_commitment=bytes(e.args["featureCommitment"]),
        block=e.block_number,
    )


def encode_model_cid(vector: NDArray[np.floating], spec: ModelSpec) -> str:
    """The CID of a global model ``vector`` written as the node writes it: a ``weights`` update file."""
    return compute_cid(encode_update(spec.unflatten(np.asarray(vector, dtype=np.float32)), spec, kind="weights"))
