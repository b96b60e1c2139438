"""The project manifest: what trainers and the aggregator must agree on before round 0.

The contract's ``initialModelCid`` names the manifest, a canonical JSON file in the content store. It fixes the
model architecture (so every update is decoded against the same :class:`~pocfl.updates.ModelSpec`), the CID of
the initial weights, the starting hyper-parameters, the aggregator's encryption key (trainers may seal updates
to it), the aggregation and scoring settings, how the validation set is built or where it is revealed, and the
input preprocessing every party applies to its features (:class:`Preprocessing`).
Because the CID is in the project's parameters, nobody can change any of this after creation.

Format versions: every manifest is ``pocfl-project/1``. Fields added later (``training.momentum``,
``validation.commitment``, ``preprocessing``) are optional and left out of the JSON when they hold their
defaults, so a manifest written before them keeps its bytes and its CID, and reads as before (no momentum, no
preprocessing). A reader older than these fields refuses a manifest that sets them with a named
:class:`ManifestError` (an unknown field), never by training on untransformed data.

``round 0`` trains from ``model.initial_weights_cid``; later rounds from the ``modelCid`` the contract holds.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from pocfl.errors import PocflError
from pocfl.untrusted import clip, load_document
from pocfl.updates import ModelSpec, UpdateFormatError

MANIFEST_FORMAT = "pocfl-project/1"

TRANSFORMS = ("none", "standardize")
"""Named input transforms a manifest may publish."""

MANIFEST_MAX_SIZE = 1 << 20
"""Largest manifest read (1 MiB)."""


class ManifestError(PocflError):
    """A manifest is malformed or inconsistent; the message names the field."""


@dataclass(frozen=True)
class ModelInfo:
    """The model: an MLP ``n_features -> hidden -> n_classes`` (:mod:`pocfl.ml.model`) and its initial weights."""

    n_features: int
    hidden: int
    n_classes: int
    initial_weights_cid: str
    arch: str = "mlp"

    def spec(self) -> ModelSpec:
        """The architecture every update of the project is decoded against."""
        return ModelSpec(
            [
                ("fc1.weight", (self.hidden, self.n_features), "F32"),
                ("fc1.bias", (self.hidden,), "F32"),
                ("fc2.weight", (self.n_classes, self.hidden), "F32"),
                ("fc2.bias", (self.n_classes,), "F32"),
            ],
            name=f"pocfl-{self.arch}",
        )


@dataclass(frozen=True)
class TrainingConfig:
    """Round-0 hyper-parameters of local training (later rounds use the ones the last round report fixed)."""

    learning_rate: float = 0.1
    local_epochs: int = 2
    batch_size: int = 32
    momentum: float = 0.0
    """SGD momentum of every round (the optimizer is SGD; 0 = plain SGD)."""


@dataclass(frozen=True)
class AggregationConfig:
    """Settings of the aggregator's round function (:func:`aggregator.round.decide_round`)."""

    sketch_dim: int = 64
    shapley_method: str = "auto"
    shapley_max_evaluations: int = 1024
    validation_metric: str = "neg_loss"


@dataclass(frozen=True)
class ProofConfig:
    """Zero-knowledge round proofs (``zk/``): the circuit shape every trainer's committed features must fit.

    With this set (and the project's ``verifier`` the ``EzklRoundVerifier`` of the same shape), each trainer posts
    ``featureCommitment = Poseidon(features)`` of ``[unit CountSketch (sketch_dim), ln ||update||]`` on the
    ``2**-scale`` grid, and every round's outlier flags and scores are proven over those commitments.
    """

    slots: int
    sketch_dim: int = 16
    scale: int = 13


@dataclass(frozen=True)
class ValidationInfo:
    """Where the owner's validation set comes from.

    ``recipe`` is a public, reproducible construction (e.g. ``sklearn-digits:seed=0:fraction=0.2`` for the demo);
    otherwise ``cid`` names the NPZ file the owner reveals (its sha256 is the on-chain
    ``validationSetCommitment``), and audits need it. A private validation set has neither: ``commitment`` is the
    sha256 (hex) of the NPZ file the owner keeps, which the aggregator is given as a file.
    """

    recipe: str | None = None
    cid: str | None = None
    commitment: str | None = None


@dataclass(frozen=True)
class Preprocessing:
    """The input transform every trainer applies to its features and the aggregator to the validation set.

    Attributes
    ----------
    transform
        ``none`` (features as they are) or ``standardize`` (``(x_j - mean_j) / std_j`` per feature).
    mean, std
        The owner's per-feature statistics for ``standardize`` (computed on its validation set); None for ``none``.
    """

    transform: str = "none"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def check(self, n_features: int) -> None:
        """Raise :class:`ManifestError` unless the transform is known and its statistics fit ``n_features``."""
        if self.transform not in TRANSFORMS:
            raise ManifestError(f"preprocessing.transform {self.transform!r} is not one of {list(TRANSFORMS)}")
        if self.transform == "none":
            if self.mean is not None or self.std is not None:
                raise ManifestError("preprocessing: transform none takes no mean or std")
            return
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is None or len(values) != n_features:
                got = "none" if values is None else len(values)
                raise ManifestError(f"preprocessing.{name} needs {n_features} values (one per feature), got {got}")
            if not all(isinstance(v, float | int) and math.isfinite(v) for v in values):
                raise ManifestError(f"preprocessing.{name} holds a non-number, NaN or infinity")
        assert self.std is not None
        if min(self.std) <= 0:
            raise ManifestError("preprocessing.std: every value must be > 0")


@dataclass(frozen=True)
class ProjectManifest:
    """Everything fixed at project creation besides the on-chain parameters."""

    name: str
    model: ModelInfo
    training: TrainingConfig = field(default_factory=TrainingConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    validation: ValidationInfo = field(default_factory=ValidationInfo)
    aggregator_public_key: str | None = None
    max_update_size: int = 64 << 20
    proof: ProofConfig | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    format: str = MANIFEST_FORMAT

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace): the same manifest always has the same CID."""
        body = asdict(self)
        if body["proof"] is None:
            del body["proof"]  # manifests without proofs keep the bytes (and CIDs) they had before proofs existed
        # later optional fields likewise: left out at their defaults (see the module docstring)
        if self.preprocessing == Preprocessing():
            del body["preprocessing"]
        if self.training.momentum == 0.0:
            del body["training"]["momentum"]
        if self.validation.commitment is None:
            del body["validation"]["commitment"]
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ProjectManifest:
        """Parse and check a manifest.

        Raises
        ------
        ManifestError
            Not JSON, another format, or a missing or mistyped field.
        """
        raw = load_document(data, MANIFEST_FORMAT, "project manifest", ManifestError, max_size=MANIFEST_MAX_SIZE)
        try:
            manifest = cls(
                name=str(raw["name"]),
                model=ModelInfo(**raw["model"]),
                training=TrainingConfig(**raw.get("training", {})),
                aggregation=AggregationConfig(**raw.get("aggregation", {})),
                validation=ValidationInfo(**raw.get("validation", {})),
                aggregator_public_key=raw.get("aggregator_public_key"),
                max_update_size=int(raw.get("max_update_size", 64 << 20)),
                proof=None if raw.get("proof") is None else ProofConfig(**raw["proof"]),
                preprocessing=_preprocessing(raw.get("preprocessing", {})),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # int() of a string or of infinity
            raise ManifestError(f"the project manifest is missing or has a wrong field: {clip(str(exc), 200)}") from exc
        try:
            manifest.model.spec()  # shapes must make sense
        except UpdateFormatError as exc:
            raise ManifestError(f"the project manifest's model is invalid: {exc}") from exc
        momentum = manifest.training.momentum
        if not isinstance(momentum, float | int) or isinstance(momentum, bool) or not 0 <= momentum < 1:
            raise ManifestError(f"training.momentum must be a number in [0, 1), got {clip(repr(momentum), 40)}")
        manifest.preprocessing.check(manifest.model.n_features)
        return manifest


def _preprocessing(raw: object) -> Preprocessing:
    """The ``preprocessing`` object of a manifest's JSON (lists of statistics become tuples)."""
    if not isinstance(raw, dict):
        raise TypeError("preprocessing must be an object")
    stats = {k: None if raw.get(k) is None else tuple(raw[k]) for k in ("mean", "std")}
    return Preprocessing(transform=str(raw.get("transform", "none")), **stats)
