"""A round's public inputs, read from the chain and the content store (the node, the trainer, ``pocfl audit``).

Everything :func:`aggregator.round.decide_round` needs comes from here (its settings and seeds through
:mod:`aggregator.round_inputs`, which builds the decision's own types from these), so the node that posts a round
and the auditor that recomputes it read the same inputs the same way:

- the project manifest (:func:`load_manifest`) and what follows from it: the model spec and the validation set
  (:func:`load_validation`);
- the round's submissions, fetched, verified and decoded one by one (:func:`validate_submission`; every problem
  with an update becomes a rejection reason, never an exception);
- the round's starting global model (:func:`global_model`), submissions digest (:func:`round_digest`, from which
  :func:`aggregator.round_inputs.round_seeds` derives the seeds), hyper-parameters (:func:`round_hyperparams`),
  validation-accuracy history (:func:`accuracy_history`) and earlier aggregate deltas (:func:`prior_updates`),
  all derived from earlier ``RoundPosted`` events and the reports they name.

Rules the node and the auditor share:

- **global model of round r**: the ``modelCid`` of the last round posted before ``r``; the manifest's
  ``model.initial_weights_cid`` when none was (round 0, or every earlier round failed);
- **hyper-parameters of round r**: round 0 (or no round posted yet) from ``manifest.training``; else the
  ``next_hyperparams`` of the last posted round's report, checked against its on-chain ``hyperparamsHash``,
  with ``round`` set to ``r`` when rounds in between failed;
- **accuracy history**: the ``accuracy`` of the last :data:`HISTORY_ROUNDS` posted reports, oldest first;
- **prior updates**: ``model_out - model_in`` of the last :data:`PRIOR_ROUNDS` posted reports, oldest first.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from numpy.typing import NDArray

from pocfl.chain.types import ZERO_BYTES32, EventRecord, ProjectParams, ProjectState
from pocfl.errors import PocflError
from pocfl.manifest import MANIFEST_MAX_SIZE as MANIFEST_MAX_SIZE  # re-exported: the audit reads it here
from pocfl.manifest import ManifestError, ProjectManifest
from pocfl.market import Market, SubmittedUpdate
from pocfl.rounds.hyperparams import HyperParams
from pocfl.rounds.report import REPORT_MAX_SIZE as REPORT_MAX_SIZE  # re-exported, as before
from pocfl.rounds.report import ReportError, RoundReport, bounded_reason
from pocfl.store import ContentStore, StoreUnavailableError, compute_cid
from pocfl.updates import (
    ENVELOPE_OVERHEAD,
    EncryptionKeyPair,
    ModelSpec,
    decode_update,
    decrypt_update,
)

Vector = NDArray[np.float32]

HISTORY_ROUNDS = 10
"""How many posted rounds of validation accuracy feed the hyper-parameter rule."""

PRIOR_ROUNDS = 2
"""How many earlier aggregate deltas feed the stale-copy screening."""

VALIDATION_MAX_SIZE = 1 << 30
"""Largest revealed validation set read (1 GiB)."""

NO_KEY_REASON = "EncryptionError: encrypted to the aggregator; no key given"
"""Rejection reason of a sealed update when the node has no decryption key."""


class RoundInputError(PocflError):
    """A round's public inputs are missing or inconsistent (a bad report, manifest or model on chain)."""


class ValidationSetError(RoundInputError):
    """The validation set cannot be built, or its bytes do not match the on-chain ``validationSetCommitment``."""


# --- the manifest and what follows from it ------------------------------------------------------------------


def _store_of(market_or_store: Market | ContentStore) -> ContentStore:
    return market_or_store.store if isinstance(market_or_store, Market) else market_or_store


def _params_of(project: ProjectState | ProjectParams) -> ProjectParams:
    return project.params if isinstance(project, ProjectState) else project


def load_manifest(market_or_store: Market | ContentStore, project: ProjectState | ProjectParams) -> ProjectManifest:
    """The project's manifest: the object named by its ``initialModelCid``, verified and parsed.

    Parameters
    ----------
    market_or_store
        Where to read it.
    project
        The project's state (``MarketplaceClient.project``) or its parameters.

    Raises
    ------
    StoreError
        The store does not hold it or hands back other bytes.
    ManifestError
        It is not a valid manifest.
    """
    cid = _params_of(project).initial_model_cid
    data = _store_of(market_or_store).get_bytes(cid, max_size=MANIFEST_MAX_SIZE)
    try:
        return ProjectManifest.from_json(data)
    except ManifestError as exc:
        raise ManifestError(f"{cid}: {exc}") from exc


def parse_recipe(recipe: str) -> tuple[str, dict[str, str]]:
    """Split ``name:key=value:key=value`` into the name and its arguments.

    Raises
    ------
    ValidationSetError
        A part is not ``key=value``.
    """
    name, *parts = recipe.strip().split(":")
    args: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValidationSetError(f"validation recipe {recipe!r}: {part!r} is not key=value")
        args[key.strip()] = value.strip()
    return name.strip(), args


def _from_recipe(recipe: str) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    from pocfl.ml.data import load_digits_split

    name, args = parse_recipe(recipe)
    if name != "sklearn-digits":
        raise ValidationSetError(f"validation recipe {recipe!r}: unknown data set {name!r} (known: sklearn-digits)")
    unknown = sorted(set(args) - {"seed", "fraction"})
    if unknown:
        raise ValidationSetError(f"validation recipe {recipe!r}: unknown argument(s) {unknown} (seed, fraction)")
    try:
        seed, fraction = int(args.get("seed", "0")), float(args.get("fraction", "0.2"))
        _, _, x_val, y_val = load_digits_split(seed, fraction)
    except ValueError as exc:
        raise ValidationSetError(f"validation recipe {recipe!r}: {exc}") from exc
    return x_val, y_val


def _from_npz_bytes(data: bytes, what: str) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    from pocfl.ml.data import DatasetError, load_npz

    with tempfile.TemporaryDirectory(prefix="pocfl-validation-") as tmp:
        path = Path(tmp) / "validation.npz"
        path.write_bytes(data)
        try:
            return load_npz(path)
        except DatasetError as exc:
            raise ValidationSetError(f"validation set {what}: {exc.reason}") from exc


def load_validation(
    manifest: ProjectManifest,
    store: ContentStore | Market,
    validation_file: Path | None = None,
    *,
    commitment: bytes = ZERO_BYTES32,
    raw: bool = False,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The owner's validation set ``(X, y)``, after the manifest's preprocessing (the arrays models are scored on).

    Sources, in order: ``validation_file`` (an NPZ with arrays ``X`` and ``y``), the manifest's public
    ``validation.recipe`` (``sklearn-digits:seed=S:fraction=F`` is the validation part of
    :func:`pocfl.ml.data.load_digits_split`), the NPZ the manifest's ``validation.cid`` names.

    Parameters
    ----------
    manifest
        The project manifest.
    store
        Where ``validation.cid`` is read.
    validation_file
        A local copy of the revealed validation set.
    commitment
        The on-chain ``validationSetCommitment`` (``params.validation_set_commitment``): when non-zero, the NPZ
        bytes (file or stored object) must hash to it with sha256. The manifest's ``validation.cid``, when set,
        must also name the file's bytes.
    raw
        Skip the manifest's ``preprocessing`` (the commitment is to the raw data).

    Raises
    ------
    ValidationSetError
        No source, an unknown recipe, an unreadable NPZ, bytes that do not match the commitment or CID, or data
        the preprocessing statistics do not fit.
    StoreError
        ``validation.cid`` cannot be read.
    """
    x, y = _raw_validation(manifest, store, validation_file, commitment)
    if raw or manifest.preprocessing.transform == "none":
        return x, y
    from pocfl.ml.tabular import apply_preprocessing

    try:
        return apply_preprocessing(manifest.preprocessing, x), y
    except PocflError as exc:
        raise ValidationSetError(f"validation set: {exc}") from exc


def _raw_validation(
    manifest: ProjectManifest, store: ContentStore | Market, validation_file: Path | None, commitment: bytes
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    info = manifest.validation
    data: bytes | None = None
    what = ""
    if validation_file is not None:
        try:
            data = Path(validation_file).read_bytes()
        except OSError as exc:
            raise ValidationSetError(f"validation file {validation_file}: {exc.strerror or exc}") from exc
        what = str(validation_file)
        if info.cid is not None and compute_cid(data) != info.cid:
            raise ValidationSetError(
                f"validation file {validation_file} has CID {compute_cid(data)}, the manifest names {info.cid}"
            )
    elif info.recipe is not None:
        return _from_recipe(info.recipe)
    elif info.cid is not None:
        data = _store_of(store).get_bytes(info.cid, max_size=VALIDATION_MAX_SIZE)
        what = info.cid
    else:
        private = " (it is private: the owner holds the file)" if info.commitment is not None else ""
        raise ValidationSetError(
            "the manifest has no validation recipe and no validation CID: pass the revealed validation set "
            f"(--validation FILE){private}"
        )
    if commitment != ZERO_BYTES32:
        digest = hashlib.sha256(data).digest()
        if digest != commitment:
            raise ValidationSetError(
                f"validation set {what} has sha256 0x{digest.hex()}, the on-chain validationSetCommitment is "
                f"0x{commitment.hex()}"
            )
    return _from_npz_bytes(data, what)


# --- submissions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ValidatedUpdate:
    """One submission after fetching, decryption, commitment check and decoding.

    Attributes
    ----------
    submitted
        The on-chain record.
    vector
        The decoded delta as a flat float32 vector in spec order; None when rejected.
    reason
        Why it was rejected (``"ErrorClass: message"``); None when accepted.
    encrypted
        Whether the stored payload is an encryption envelope.
    plaintext
        The decrypted update file of an encrypted submission (to reveal after the round), else None.
    """

    submitted: SubmittedUpdate
    vector: Vector | None
    reason: str | None
    encrypted: bool
    plaintext: bytes | None

    @property
    def accepted(self) -> bool:
        """Whether the update passed every check."""
        return self.vector is not None


def rejection_reason(exc: BaseException) -> str:
    """``"ErrorClass: message"``, the form rejection reasons take in round reports, bounded (:func:`bounded_reason`)."""
    return bounded_reason(f"{type(exc).__name__}: {exc}")


def validate_submission(
    market: Market,
    update: SubmittedUpdate,
    project_id: int,
    round_: int,
    spec: ModelSpec,
    keypair: EncryptionKeyPair | None = None,
    max_size: int = 64 << 20,
) -> ValidatedUpdate:
    """Fetch, verify and decode one submission; every problem becomes a rejection reason.

    Steps: fetch by CID (the store verifies the bytes), decrypt a sealed envelope with ``keypair``, check the
    commitment against the plaintext and the submitter's address, decode against ``spec`` as a ``delta`` (size,
    format, architecture, shapes, dtypes, finiteness), flatten.

    Parameters
    ----------
    market
        Chain client and store.
    update
        The ``UpdateSubmitted`` record.
    project_id, round_
        The submission's context (for the commitment).
    spec
        The project's model spec.
    keypair
        The aggregator's decryption key; a sealed update without it is rejected.
    max_size
        Size cap of the plaintext update file (the manifest's ``max_update_size``).

    Raises
    ------
    StoreUnavailableError
        The store could not be reached: transient, so not the submitter's fault; retry later.
    """
    encrypted = False
    plaintext: bytes | None = None
    try:
        opened = market.open_update(update, project_id, round_, None, max_size + ENVELOPE_OVERHEAD)
        encrypted = opened.encrypted
        if encrypted:
            if keypair is None:
                return ValidatedUpdate(update, None, NO_KEY_REASON, True, None)
            plaintext = decrypt_update(opened.payload, keypair)
            market.verify_opening(plaintext, update, project_id, round_)
        body = plaintext if encrypted else opened.plaintext
        assert body is not None
        decoded = decode_update(body, spec, kind="delta", max_size=max_size)
        vector = spec.flatten(decoded.tensors)
    except StoreUnavailableError:
        raise
    except PocflError as exc:
        return ValidatedUpdate(update, None, rejection_reason(exc), encrypted, plaintext)
    return ValidatedUpdate(update, vector, None, encrypted, plaintext)


# --- earlier rounds -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostedRound:
    """A ``RoundPosted`` event.

    Attributes
    ----------
    round
        The round.
    model_cid
        The new global model.
    report_hash, hyperparams_hash
        As posted.
    block, tx_hash
        Where.
    credited
        Wei credited to the round's trainers.
    """

    round: int
    model_cid: str
    report_hash: bytes
    hyperparams_hash: bytes
    block: int
    tx_hash: str
    credited: int = 0

    @classmethod
    def from_event(cls, e: EventRecord) -> PostedRound:
        """The round a ``RoundPosted`` event records."""
        return cls(
            round=int(e.args["round"]),
            model_cid=str(e.args["modelCid"]),
            report_hash=bytes(e.args["reportHash"]),
            hyperparams_hash=bytes(e.args["hyperparamsHash"]),
            block=e.block_number,
            tx_hash=e.tx_hash,
            credited=int(e.args["credited"]),
        )


def posted_rounds(
    market: Market, project_id: int, *, before: int | None = None, from_block: int = 0
) -> list[PostedRound]:
    """The project's posted rounds (optionally only those before round ``before``), oldest first."""
    events = market.client.events("RoundPosted", from_block=from_block, projectId=project_id)
    posted = [PostedRound.from_event(e) for e in events]
    posted.sort(key=lambda p: p.round)
    return [p for p in posted if before is None or p.round < before]


def failed_rounds(market: Market, project_id: int, *, from_block: int = 0) -> list[int]:
    """Rounds of the project that were failed (``RoundFailed``), in order."""
    return sorted(
        int(e.args["round"]) for e in market.client.events("RoundFailed", from_block=from_block, projectId=project_id)
    )


def posted_report(market: Market, posted: PostedRound) -> tuple[str, RoundReport]:
    """The report a posted round names: its CID and parsed contents, checked against the event.

    Raises
    ------
    RoundInputError
        The report is malformed, or is not the one of that round (project, round, model, hyper-parameters).
    StoreError
        The store does not hold it.
    """
    cid, data = market.fetch_report(posted.report_hash, max_size=REPORT_MAX_SIZE)
    try:
        report = RoundReport.from_json(data)
        hyper = HyperParams.from_json(report.next_hyperparams)
    except (ReportError, ValueError, TypeError) as exc:
        raise RoundInputError(f"round {posted.round} report {cid}: {exc}") from exc
    if report.round != posted.round or report.model_out != posted.model_cid:
        raise RoundInputError(
            f"round {posted.round} report {cid} describes round {report.round} with model {report.model_out}, "
            f"but the chain posted model {posted.model_cid}"
        )
    if hyper.hash() != posted.hyperparams_hash:
        raise RoundInputError(
            f"round {posted.round} report {cid}: next_hyperparams hash to 0x{hyper.hash().hex()}, the chain "
            f"holds 0x{posted.hyperparams_hash.hex()}"
        )
    return cid, report


def _decode_model(market: Market, cid: str, spec: ModelSpec, max_size: int) -> Vector:
    try:
        return decode_update(market.fetch(cid, max_size), spec, kind="weights", max_size=max_size).vector()
    except (StoreUnavailableError, ManifestError):
        raise
    except PocflError as exc:
        raise RoundInputError(f"global model {cid}: {rejection_reason(exc)}") from exc


def _model_size_cap(spec: ModelSpec) -> int:
    return spec.nbytes + (1 << 20)


def global_model(
    market: Market,
    manifest: ProjectManifest,
    project: ProjectState | int,
    round_: int | None = None,
    *,
    from_block: int = 0,
) -> tuple[str, Vector]:
    """The global model a round starts from: its CID and flat weights.

    The ``modelCid`` of the last round posted before ``round_``; the manifest's initial weights when none was.

    Parameters
    ----------
    market
        Chain client and store.
    manifest
        The project manifest.
    project
        The project (state or id).
    round_
        The round; default the project's current round.
    from_block
        First block to search for events.

    Raises
    ------
    RoundInputError
        The model is not a valid ``weights`` file of the project's architecture.
    """
    state = market.client.project(project) if isinstance(project, int) else project
    r = state.current_round if round_ is None else round_
    posted = posted_rounds(market, state.project_id, before=r, from_block=from_block)
    cid = posted[-1].model_cid if posted else manifest.model.initial_weights_cid
    spec = manifest.model.spec()
    return cid, _decode_model(market, cid, spec, _model_size_cap(spec))


def initial_hyperparams(manifest: ProjectManifest, round_: int = 0) -> HyperParams:
    """The manifest's training settings as the hyper-parameters of ``round_``."""
    t = manifest.training
    return HyperParams(
        round=round_, learning_rate=t.learning_rate, local_epochs=t.local_epochs, batch_size=t.batch_size
    )


def round_hyperparams(
    market: Market, manifest: ProjectManifest, project_id: int, round_: int, *, from_block: int = 0
) -> HyperParams:
    """The hyper-parameters trainers use in ``round_`` (see the module docstring for the rule).

    Raises
    ------
    RoundInputError
        The last posted round's report is malformed or does not match its on-chain hashes.
    """
    posted = posted_rounds(market, project_id, before=round_, from_block=from_block)
    if not posted:
        return initial_hyperparams(manifest, round_)
    _, report = posted_report(market, posted[-1])
    hyper = HyperParams.from_json(report.next_hyperparams)
    return hyper if hyper.round == round_ else replace(hyper, round=round_)


def accuracy_history(
    market: Market, project_id: int, round_: int, *, from_block: int = 0, limit: int = HISTORY_ROUNDS
) -> list[float]:
    """Validation accuracy after each of the last ``limit`` rounds posted before ``round_``, oldest first."""
    posted = posted_rounds(market, project_id, before=round_, from_block=from_block)[-limit:] if limit > 0 else []
    return [posted_report(market, p)[1].accuracy for p in posted]


def prior_updates(
    market: Market,
    manifest: ProjectManifest,
    project_id: int,
    round_: int,
    *,
    from_block: int = 0,
    limit: int = PRIOR_ROUNDS,
) -> list[Vector]:
    """Aggregate deltas (``model_out - model_in``) of the last ``limit`` rounds posted before ``round_``.

    Raises
    ------
    RoundInputError
        A report or a model it names is malformed.
    """
    posted = posted_rounds(market, project_id, before=round_, from_block=from_block)[-limit:] if limit > 0 else []
    spec = manifest.model.spec()
    cap = _model_size_cap(spec)
    deltas: list[Vector] = []
    for p in posted:
        _, report = posted_report(market, p)
        before = _decode_model(market, report.model_in, spec, cap)
        after = _decode_model(market, report.model_out, spec, cap)
        deltas.append((after - before).astype(np.float32))
    return deltas


# --- digests ----------------------------------------------------------------------------------------------------


def round_start_digest(chain_id: int, market: str, project_id: int, round_: int) -> bytes:
    """The digest a round's hash chain starts from (the contract's ``_roundSeed``).

    ``keccak256(abi.encode(chainId, market, projectId, round))``; ``market`` in any valid spelling.
    """
    return keccak(
        encode(
            ["uint256", "address", "uint256", "uint32"],
            [chain_id, to_checksum_address(market), project_id, round_],
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
                [digest, to_checksum_address(s.trainer), s.commitment, s.feature_commitment],
            )
        )
    return digest


def round_digest(market: Market, project_id: int, round_: int, *, from_block: int = 0) -> bytes:
    """The round's final submissions digest: the one the last ``UpdateSubmitted`` carries, or the start digest."""
    events = market.client.events("UpdateSubmitted", from_block=from_block, projectId=project_id, round=round_)
    if events:
        last = max(events, key=lambda e: int(e.args["index"]))
        return bytes(last.args["submissionsDigest"])
    return round_start_digest(market.client.chain.chain_id, market.client.address, project_id, round_)


def accepted_vectors(validated: Sequence[ValidatedUpdate]) -> list[Vector | None]:
    """The ``updates`` argument of :func:`~aggregator.round.decide_round`: each accepted vector, None if rejected."""
    return [v.vector for v in validated]
