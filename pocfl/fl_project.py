"""Federated-learning projects: build a project manifest, commit to its validation set, create the project.

A training project names its :class:`~pocfl.manifest.ProjectManifest` by the contract's ``initialModelCid``
(the manifest in turn names the initial weights). This module is the one way the demo, the multi-process run
and ``pocfl project manifest`` / ``pocfl project create --manifest`` build such a project:

- :func:`make_manifest` stores the initial weights (:func:`pocfl.ml.model.initial_vector` for a seed, encoded as
  a ``weights`` update file against :meth:`ModelInfo.spec`) and returns the manifest with its canonical bytes;
- :func:`manifest_from_data` does the same for a project on the owner's own data: features and classes inferred
  from its validation set (CSV, NPZ or image folder), the set stored (or kept private, only its commitment
  published) and its standardisation statistics published as the manifest's ``preprocessing``;
- :func:`validation_commitment` is the 32 bytes that go on chain as ``validationSetCommitment``;
- :func:`create_fl_project` stores the manifest and creates the project with both. Callers go through
  :func:`pocfl.projects.create_project`, which checks the manifest against the store, the request and the
  project's verifier (:func:`pocfl.projects.check_proof_config`) first.

Validation commitment
    For a manifest with a public ``validation.recipe`` it is ``sha256(np.save(X) || np.save(y))``: the
    validation features (float32, C order) and labels (int64) the recipe builds, each serialised with
    ``numpy.save(..., allow_pickle=False)`` (NPY format, version chosen by numpy, 1.0 for these arrays) into one
    buffer, X first. Anyone can rebuild the recipe and check it. For a manifest whose ``validation.cid`` names a
    revealed NPZ file it is the sha256 of that file's bytes, which is what
    :func:`pocfl.rounds.inputs.load_validation` checks against the chain; a private set's manifest carries that
    sha256 itself (``validation.commitment``).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pocfl.chain.types import ZERO_BYTES32, ProjectParams, Receipt
from pocfl.manifest import (
    AggregationConfig,
    ManifestError,
    ModelInfo,
    Preprocessing,
    ProjectManifest,
    ProofConfig,
    TrainingConfig,
    ValidationInfo,
)
from pocfl.market import Market
from pocfl.store import ContentStore, MemoryStore
from pocfl.updates import encode_update

DIGITS_FEATURES = 64
DIGITS_CLASSES = 10
DEFAULT_VALIDATION_FRACTION = 0.2


def default_validation_recipe(seed: int, fraction: float = DEFAULT_VALIDATION_FRACTION) -> str:
    """The public validation recipe of a digits project: ``sklearn-digits:seed=S:fraction=F``.

    Trainers' ``digits:part=I:of=N:seed=S`` shares come from the training side of the same split, so no
    validation sample is in anyone's training data.
    """
    return f"sklearn-digits:seed={seed}:fraction={fraction:g}"


def _publish(store: ContentStore | Market, data: bytes) -> str:
    if isinstance(store, Market):
        return store.publish(data)
    cid = store.put_bytes(data)
    store.pin(cid)
    return cid


def initial_weights(
    seed: int, *, hidden: int, n_features: int = DIGITS_FEATURES, n_classes: int = DIGITS_CLASSES
) -> bytes:
    """The round-0 global model for ``seed`` as a pocfl ``weights`` file (deterministic bytes).

    Parameters
    ----------
    seed
        Seed of :func:`pocfl.ml.model.initial_vector`.
    hidden, n_features, n_classes
        The MLP's shape.
    """
    from pocfl.ml.model import initial_vector

    spec = ModelInfo(n_features=n_features, hidden=hidden, n_classes=n_classes, initial_weights_cid="").spec()
    vector = initial_vector(seed, n_features=n_features, hidden=hidden, n_classes=n_classes)
    return encode_update(spec.unflatten(vector), spec, kind="weights")


def make_manifest(
    name: str,
    *,
    seed: int,
    hidden: int,
    store: ContentStore | Market,
    aggregator_public_key: str | None = None,
    training: TrainingConfig | None = None,
    validation_recipe: str | None = None,
    aggregation: AggregationConfig | None = None,
    n_features: int = DIGITS_FEATURES,
    n_classes: int = DIGITS_CLASSES,
    proof: ProofConfig | None = None,
    validation: ValidationInfo | None = None,
    preprocessing: Preprocessing | None = None,
) -> tuple[ProjectManifest, bytes]:
    """Build a project manifest and store its initial weights.

    Parameters
    ----------
    name
        The project's name (free text).
    seed
        Seed of the initial weights; also the split seed of the default validation recipe.
    hidden
        Hidden width of the MLP.
    store
        Where the initial weights are stored and pinned (a content store, or a :class:`~pocfl.market.Market`).
    aggregator_public_key
        The aggregator's X25519 public key (hex); trainers seal their updates to it. None: plaintext updates.
    training
        Round-0 hyper-parameters (default :class:`TrainingConfig`'s).
    validation_recipe
        Public construction of the validation set; default ``sklearn-digits:seed=<seed>:fraction=0.2``.
    aggregation
        The aggregator's round settings (default :class:`AggregationConfig`'s).
    n_features, n_classes
        The model's input and output sizes (the digits data set's by default).
    proof
        Circuit shape when the project's rounds are proven (its ``verifier`` is an ``EzklRoundVerifier``).
    validation, preprocessing
        Instead of ``validation_recipe``: a stored or private validation set; the input transform (default
        ``none``). :func:`manifest_from_data` sets both.

    Returns
    -------
    manifest, manifest_bytes
        The manifest and its canonical JSON (:meth:`ProjectManifest.to_json`), whose CID is the project's
        ``initialModelCid``. The manifest itself is not stored (:func:`create_fl_project` does that).

    Raises
    ------
    ManifestError
        A non-positive width or seed below 0, both validation sources, or statistics not fitting ``n_features``.
    """
    if validation is not None and validation_recipe is not None:
        raise ManifestError("give either a validation recipe or a validation source, not both")
    if hidden < 1:
        raise ManifestError(f"model.hidden must be >= 1, got {hidden}")
    if seed < 0:
        raise ManifestError(f"seed must be >= 0, got {seed}")
    weights = initial_weights(seed, hidden=hidden, n_features=n_features, n_classes=n_classes)
    weights_cid = _publish(store, weights)
    key = aggregator_public_key.lower().removeprefix("0x") if aggregator_public_key else None
    manifest = ProjectManifest(
        name=name,
        model=ModelInfo(n_features=n_features, hidden=hidden, n_classes=n_classes, initial_weights_cid=weights_cid),
        training=training if training is not None else TrainingConfig(),
        aggregation=aggregation if aggregation is not None else AggregationConfig(),
        validation=validation or ValidationInfo(recipe=validation_recipe or default_validation_recipe(seed)),
        aggregator_public_key=key,
        proof=proof,
        preprocessing=preprocessing if preprocessing is not None else Preprocessing(),
    )
    manifest.preprocessing.check(n_features)
    return manifest, manifest.to_json()


@dataclass(frozen=True)
class DataManifest:
    """A manifest built from the owner's own validation data (:func:`manifest_from_data`).

    Attributes
    ----------
    manifest, manifest_bytes
        As :func:`make_manifest` returns them.
    validation_npz
        The validation set as the NPZ file (arrays ``X``, ``y``) whose sha256 is the on-chain commitment; stored
        under ``manifest.validation.cid`` unless private, and to be kept by the owner (the aggregator reads it).
    commitment
        ``sha256(validation_npz)``, the project's ``validationSetCommitment``.
    n_samples, n_present
        Validation samples, and how many of the classes occur in them.
    """

    manifest: ProjectManifest
    manifest_bytes: bytes
    validation_npz: bytes
    commitment: bytes
    n_samples: int
    n_present: int


def manifest_from_data(
    name: str,
    validation: str | Path,
    *,
    store: ContentStore | Market,
    seed: int = 0,
    hidden: int = 32,
    training: TrainingConfig | None = None,
    label_column: str | int | None = None,
    n_features: int | None = None,
    n_classes: int | None = None,
    transform: str = "standardize",
    private: bool = False,
    aggregator_public_key: str | None = None,
    aggregation: AggregationConfig | None = None,
    proof: ProofConfig | None = None,
) -> DataManifest:
    """The manifest of a project on the owner's own data: shape inferred from its validation set.

    Parameters
    ----------
    name
        The project's name.
    validation
        The owner's validation set: a ``.csv`` (numeric, label ``label`` or last unless ``label_column``, header
        optional), a ``.npz`` (``X``, ``y``) or an image folder (:func:`pocfl.ml.tabular.load_table`).
    store
        Where the initial weights (and, unless ``private``, the validation set) are stored and pinned.
    seed, hidden, training, aggregator_public_key, aggregation, proof
        As :func:`make_manifest`.
    label_column
        CSV only: the label column's header name or zero-based position.
    n_features, n_classes
        Checked against the data when given; inferred otherwise (features = columns, classes = max label + 1).
    transform
        ``standardize`` (the default: the validation set's per-feature mean and std are published) or ``none``.
    private
        Keep the validation set off the store: the manifest carries only its commitment.

    Raises
    ------
    DatasetError
        The file is missing or malformed, or holds fewer than two classes (:class:`~pocfl.ml.tabular.TableError`,
        :class:`~pocfl.ml.tabular.TooFewClassesError`).
    ManifestError
        ``n_features`` / ``n_classes`` contradict the data, or another :func:`make_manifest` error.
    """
    from pocfl.ml.tabular import fit_transform, infer_shape, load_table

    x, y = load_table(validation, label_column)
    inferred_classes, present = infer_shape(validation, y)
    if n_features is not None and n_features != x.shape[1]:
        raise ManifestError(f"--features {n_features}: the validation set has {x.shape[1]} features per sample")
    if n_classes is not None and n_classes < inferred_classes:
        raise ManifestError(f"--classes {n_classes}: the validation set has labels up to {inferred_classes - 1}")
    classes = n_classes if n_classes is not None else inferred_classes
    buffer = io.BytesIO()
    np.savez(buffer, X=x, y=y)
    npz = buffer.getvalue()
    commitment = hashlib.sha256(npz).digest()
    info = ValidationInfo(commitment=commitment.hex()) if private else ValidationInfo(cid=_publish(store, npz))
    manifest, data = make_manifest(
        name,
        seed=seed,
        hidden=hidden,
        store=store,
        aggregator_public_key=aggregator_public_key,
        training=training,
        aggregation=aggregation,
        n_features=int(x.shape[1]),
        n_classes=classes,
        proof=proof,
        validation=info,
        preprocessing=fit_transform(transform, x),
    )
    return DataManifest(manifest, data, npz, commitment, int(y.shape[0]), present)


@dataclass(frozen=True)
class ManifestRequest:
    """What ``pocfl project manifest`` asks for: the digits MLP with a recipe, or a model fitted to ``validation``.

    Fields as :func:`make_manifest` and :func:`manifest_from_data` take them; ``validation`` None builds the
    digits manifest, and then ``label_column``, ``n_features``, ``n_classes`` and ``private`` must be unset.
    """

    name: str
    seed: int = 0
    hidden: int = 32
    training: TrainingConfig = field(default_factory=TrainingConfig)
    aggregator_public_key: str | None = None
    proof: ProofConfig | None = None
    validation_recipe: str | None = None
    validation: Path | None = None
    label_column: str | None = None
    n_features: int | None = None
    n_classes: int | None = None
    transform: str = "standardize"
    private: bool = False


@dataclass(frozen=True)
class BuiltManifest:
    """A manifest :func:`build_manifest` made: its bytes, its validation commitment, and the own-data details."""

    manifest: ProjectManifest
    manifest_bytes: bytes
    commitment: bytes
    own: DataManifest | None


def build_manifest(request: ManifestRequest, store: ContentStore | Market) -> BuiltManifest:
    """Build (and store the parts of) the manifest ``request`` describes.

    Raises
    ------
    ManifestError
        Own-data settings without ``validation``, both a recipe and ``validation``, or a :func:`make_manifest` /
        :func:`manifest_from_data` error.
    DatasetError
        The validation file is missing or malformed.
    """
    r = request
    if r.validation is None:
        if (r.label_column, r.n_features, r.n_classes) != (None, None, None) or r.private:
            raise ManifestError("--label-column, --features, --classes and --private-validation need --validation")
        made, data = make_manifest(
            r.name,
            seed=r.seed,
            hidden=r.hidden,
            store=store,
            aggregator_public_key=r.aggregator_public_key,
            training=r.training,
            validation_recipe=r.validation_recipe,
            proof=r.proof,
        )
        return BuiltManifest(made, data, validation_commitment(made), None)
    if r.validation_recipe is not None:
        raise ManifestError("give either --validation FILE or --validation-recipe, not both")
    own = manifest_from_data(
        r.name,
        r.validation,
        store=store,
        seed=r.seed,
        hidden=r.hidden,
        training=r.training,
        label_column=r.label_column,
        n_features=r.n_features,
        n_classes=r.n_classes,
        transform=r.transform,
        private=r.private,
        aggregator_public_key=r.aggregator_public_key,
        proof=r.proof,
    )
    return BuiltManifest(own.manifest, own.manifest_bytes, own.commitment, own)


def validation_bytes(x: NDArray[np.floating], y: NDArray[np.integer]) -> bytes:
    """The canonical bytes of a validation set: ``np.save(X as float32) || np.save(y as int64)``."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(x, dtype=np.float32), allow_pickle=False)
    np.save(buffer, np.ascontiguousarray(y, dtype=np.int64), allow_pickle=False)
    return buffer.getvalue()


def validation_commitment(manifest: ProjectManifest, store: ContentStore | Market | None = None) -> bytes:
    """The 32-byte ``validationSetCommitment`` of a manifest (see the module docstring).

    Parameters
    ----------
    manifest
        The project manifest.
    store
        Needed only when the manifest names a revealed NPZ by ``validation.cid`` (its bytes are hashed).

    Raises
    ------
    ValidationSetError
        The recipe cannot be built.
    ManifestError
        Neither a recipe, a CID nor a commitment, a CID without a store to read it from, or a malformed
        commitment.
    """
    info = manifest.validation
    if info.recipe is not None:
        from pocfl.rounds.inputs import load_validation

        # a recipe reads nothing from the store; the commitment is to the data, before any preprocessing
        x, y = load_validation(manifest, MemoryStore(), raw=True)
        return hashlib.sha256(validation_bytes(x, y)).digest()
    if info.commitment is not None:
        try:
            digest = bytes.fromhex(info.commitment.removeprefix("0x"))
        except ValueError as exc:
            raise ManifestError(f"validation.commitment {info.commitment!r} is not hex") from exc
        if len(digest) != 32:
            raise ManifestError(f"validation.commitment must be 32 bytes, got {len(digest)}")
        return digest
    if info.cid is not None:
        if store is None:
            raise ManifestError(f"validation.cid {info.cid}: pass the store holding the validation set")
        backend = store.store if isinstance(store, Market) else store
        return hashlib.sha256(backend.get_bytes(info.cid, max_size=1 << 30)).digest()
    raise ManifestError(
        "the manifest has no validation.recipe, validation.cid or validation.commitment: nothing to commit to"
    )


def create_fl_project(
    market: Market, params: ProjectParams, budget: int, manifest: ProjectManifest
) -> tuple[int, Receipt]:
    """Store the manifest and create the project it describes.

    ``params.initial_model_cid`` is replaced by the manifest's CID and ``params.validation_set_commitment`` by
    :func:`validation_commitment` when it is zero (a non-zero one must equal it).

    Parameters
    ----------
    market
        The owner's market (its account pays the budget).
    params
        The on-chain parameters.
    budget
        Wei to escrow.
    manifest
        The manifest (its initial weights must already be in ``market.store``).

    Returns
    -------
    project_id, receipt
        The new project and the ``createProject`` receipt.

    Raises
    ------
    ManifestError
        The store lacks the initial weights, or ``params`` holds another validation commitment.
    """
    if not market.store.has(manifest.model.initial_weights_cid):
        raise ManifestError(
            f"model.initial_weights_cid {manifest.model.initial_weights_cid} is not in {market.store.location}: "
            "store the initial weights first (make_manifest does)"
        )
    commitment = validation_commitment(manifest, market)
    if params.validation_set_commitment not in (ZERO_BYTES32, commitment):
        raise ManifestError(
            f"validation_set_commitment 0x{params.validation_set_commitment.hex()} is not the manifest's "
            f"validation set's 0x{commitment.hex()}"
        )
    full = replace(params, validation_set_commitment=commitment)
    return market.create_project(full, budget, initial_model=manifest.to_json())


__all__ = [
    "DIGITS_CLASSES",
    "DIGITS_FEATURES",
    "BuiltManifest",
    "DataManifest",
    "ManifestRequest",
    "build_manifest",
    "create_fl_project",
    "default_validation_recipe",
    "initial_weights",
    "make_manifest",
    "manifest_from_data",
    "validation_bytes",
    "validation_commitment",
]
