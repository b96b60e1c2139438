"""The shared model: a small MLP, and its exchange format as one flat float32 vector.

Updates travel between trainers and the aggregator as flat vectors; :func:`architecture_spec` fixes
the order (the ``state_dict`` order) so both sides flatten and unflatten identically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from pocfl.errors import PocflError

#: one parameter of a model: (state_dict key, shape, dtype name)
ParamSpec = tuple[str, tuple[int, ...], str]
Vector = NDArray[np.float32]

DIGITS_FEATURES = 64
DIGITS_CLASSES = 10
DEFAULT_HIDDEN = 32


class ModelShapeError(PocflError):
    """A vector or state dict does not fit the model architecture it is applied to."""


class MLP(nn.Module):
    """Two-layer perceptron ``features -> hidden (ReLU) -> classes``; 8x8 digits: 64 -> 32 -> 10.

    Parameters
    ----------
    n_features, hidden, n_classes
        Layer widths.
    """

    def __init__(
        self, n_features: int = DIGITS_FEATURES, hidden: int = DEFAULT_HIDDEN, n_classes: int = DIGITS_CLASSES
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_features, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the class logits of a batch ``(n, n_features)``."""
        return mlp_forward(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)


def mlp_forward(
    x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor
) -> torch.Tensor:
    """Logits of :class:`MLP` computed from explicit parameter tensors (``state_dict`` order).

    Training calls this directly on leaf tensors: without ``nn.Module`` hooks and an optimiser object
    a tiny step costs half as much, and the arithmetic is the same as ``MLP.forward``.
    """
    return nn.functional.linear(torch.relu(nn.functional.linear(x, w1, b1)), w2, b2)


def make_model(
    seed: int,
    *,
    n_features: int = DIGITS_FEATURES,
    hidden: int = DEFAULT_HIDDEN,
    n_classes: int = DIGITS_CLASSES,
) -> MLP:
    """Build an :class:`MLP` whose initial weights depend only on ``seed``.

    The global torch RNG is forked, so building a model neither depends on nor disturbs it.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(n_features, hidden, n_classes)


def initial_vector(
    seed: int,
    *,
    n_features: int = DIGITS_FEATURES,
    hidden: int = DEFAULT_HIDDEN,
    n_classes: int = DIGITS_CLASSES,
) -> Vector:
    """Flat initial parameters of :func:`make_model` for ``seed`` (the round-0 global model)."""
    return flatten(make_model(seed, n_features=n_features, hidden=hidden, n_classes=n_classes))


def hidden_width(dim: int, n_features: int, n_classes: int) -> int:
    """Recover the hidden width of an :class:`MLP` from its parameter count ``dim``.

    ``dim = hidden * (n_features + 1 + n_classes) + n_classes``.
    """
    hidden, rest = divmod(dim - n_classes, n_features + 1 + n_classes)
    if rest != 0 or hidden < 1:
        raise ModelShapeError(
            f"a vector of {dim} parameters is not an MLP with {n_features} inputs and {n_classes} classes"
        )
    return hidden


def mlp_spec(n_features: int, hidden: int, n_classes: int) -> list[ParamSpec]:
    """:func:`architecture_spec` of an :class:`MLP` of these widths, without building one."""
    return [
        ("fc1.weight", (hidden, n_features), "float32"),
        ("fc1.bias", (hidden,), "float32"),
        ("fc2.weight", (n_classes, hidden), "float32"),
        ("fc2.bias", (n_classes,), "float32"),
    ]


def architecture_spec(model: nn.Module | Mapping[str, torch.Tensor]) -> list[ParamSpec]:
    """List ``(name, shape, dtype)`` for every tensor of the model, in ``state_dict`` order."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    return [(name, tuple(int(s) for s in t.shape), str(t.dtype).removeprefix("torch.")) for name, t in state.items()]


def spec_size(spec: Sequence[ParamSpec]) -> int:
    """Number of scalars in a model with architecture ``spec``."""
    return sum(int(np.prod(shape, dtype=np.int64)) for _, shape, _ in spec)


def flatten(model: nn.Module | Mapping[str, torch.Tensor]) -> Vector:
    """Concatenate every tensor of the model, in ``state_dict`` order, into one float32 vector ``(d,)``."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    if not state:
        return np.zeros(0, dtype=np.float32)
    parts = [t.detach().to(torch.float32).reshape(-1).cpu().numpy() for t in state.values()]
    return np.concatenate(parts).astype(np.float32, copy=False)


def unflatten(vector: NDArray[np.floating], spec: Sequence[ParamSpec]) -> dict[str, torch.Tensor]:
    """Split a flat vector back into a state dict with the names, shapes and dtypes of ``spec``.

    Raises
    ------
    ModelShapeError
        The vector is not one-dimensional, has the wrong length, or holds NaN/infinity.
    """
    vec = np.asarray(vector)
    expected = spec_size(spec)
    if vec.ndim != 1 or vec.shape[0] != expected:
        raise ModelShapeError(f"vector of shape {vec.shape} does not fit the architecture ({expected} parameters)")
    if not np.all(np.isfinite(vec)):
        raise ModelShapeError("vector holds NaN or infinity")
    state: dict[str, torch.Tensor] = {}
    offset = 0
    for name, shape, dtype in spec:
        n = int(np.prod(shape, dtype=np.int64))
        chunk = np.array(vec[offset : offset + n], dtype=np.float32).reshape(shape)  # copy: own the memory
        state[name] = torch.from_numpy(chunk).to(getattr(torch, dtype))
        offset += n
    return state


def load_vector(model: nn.Module, vector: NDArray[np.floating]) -> None:
    """Overwrite the parameters of ``model`` in place with a flat vector in its ``state_dict`` order."""
    model.load_state_dict(unflatten(vector, architecture_spec(model)), strict=True)
