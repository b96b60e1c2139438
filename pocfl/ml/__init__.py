"""Shared machine-learning core: datasets, the model and its flat-vector format, local training."""

from pocfl.ml.data import (
    DatasetError,
    dirichlet_partition,
    load_csv,
    load_digits_split,
    load_image_folder,
    load_npz,
    subset,
)
from pocfl.ml.model import (
    MLP,
    ModelShapeError,
    ParamSpec,
    architecture_spec,
    flatten,
    initial_vector,
    load_vector,
    make_model,
    mlp_spec,
    unflatten,
)
from pocfl.ml.training import evaluate, local_train

__all__ = [
    "MLP",
    "DatasetError",
    "ModelShapeError",
    "ParamSpec",
    "architecture_spec",
    "dirichlet_partition",
    "evaluate",
    "flatten",
    "initial_vector",
    "load_csv",
    "load_digits_split",
    "load_image_folder",
    "load_npz",
    "load_vector",
    "local_train",
    "make_model",
    "mlp_spec",
    "subset",
    "unflatten",
]
