"""Local training and evaluation on flat parameter vectors.

A trainer receives the global model as a flat vector, trains a copy on its own data and returns the
difference (its *update*); the aggregator evaluates candidate models the same way. Everything is
deterministic for a given seed: batch order comes from a NumPy generator, the model has no
randomness of its own (no dropout), and torch runs on one thread.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from pocfl.ml.model import DIGITS_CLASSES, Vector, hidden_width, mlp_forward, mlp_spec, unflatten


def _params_for(vector: NDArray[np.floating], n_features: int, n_classes: int) -> list[torch.Tensor]:
    """The MLP parameters ``vector`` encodes, as fresh tensors in ``state_dict`` order."""
    vec = np.asarray(vector, dtype=np.float32)
    if vec.ndim != 1:
        raise ValueError(f"the global vector must be one-dimensional, got shape {vec.shape}")
    spec = mlp_spec(n_features, hidden_width(vec.shape[0], n_features, n_classes), n_classes)
    return list(unflatten(vec, spec).values())


def _check_data(x: NDArray[np.floating], y: NDArray[np.integer], n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``(x, y)`` and return them as torch tensors."""
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need X (n, features) and y (n,), got {x.shape} and {y.shape}")
    if x.shape[0] == 0:
        raise ValueError("no samples")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y.astype(np.int64))


def local_train(
    global_vector: NDArray[np.floating],
    X: NDArray[np.floating],  # noqa: N803 (ML convention for a feature matrix)
    y: NDArray[np.integer],
    *,
    epochs: int = 1,
    lr: float = 0.1,
    batch_size: int = 32,
    seed: int = 0,
    momentum: float = 0.0,
    n_classes: int = DIGITS_CLASSES,
) -> Vector:
    """Train the global model on ``(X, y)`` with mini-batch SGD and return the update ``trained - global``.

    Parameters
    ----------
    global_vector
        Flat parameters of the current global :class:`~pocfl.ml.model.MLP` (its width is recovered
        from the length, ``X.shape[1]`` and ``n_classes``).
    X, y
        Local features ``(n, features)`` and integer labels ``(n,)`` in ``0..n_classes-1``.
    epochs, lr, batch_size, momentum
        SGD hyper-parameters; cross-entropy loss.
    seed
        Seed of the batch shuffling; same inputs and seed give a bit-identical update.
    n_classes
        Output width of the model.

    Returns
    -------
    numpy.ndarray
        float32 update vector, same length as ``global_vector``.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0 (got {epochs}, {batch_size}, {lr})")
    torch.set_num_threads(1)  # the machines are shared; one thread is also the deterministic choice
    xt, yt = _check_data(np.asarray(X), np.asarray(y), n_classes)
    start = np.asarray(global_vector, dtype=np.float32)
    params = [p.requires_grad_() for p in _params_for(start, xt.shape[1], n_classes)]
    # Plain SGD as torch.optim.SGD computes it (p -= lr * (g + momentum buffer)), written out so a
    # step is one autograd call: this loop runs for every trainer in every round of every benchmark.
    buffers: list[torch.Tensor] | None = None
    rng = np.random.default_rng(seed)
    n = xt.shape[0]
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(n))
        for begin in range(0, n, batch_size):
            batch = order[begin : begin + batch_size]
            loss = nn.functional.cross_entropy(mlp_forward(xt[batch], *params), yt[batch])
            grads = list(torch.autograd.grad(loss, params))
            with torch.no_grad():
                if momentum:
                    if buffers is None:
                        buffers = [g.clone() for g in grads]
                    else:
                        torch._foreach_mul_(buffers, momentum)
                        torch._foreach_add_(buffers, grads)
                    grads = buffers
                torch._foreach_add_(params, grads, alpha=-lr)
    trained = np.concatenate([p.detach().reshape(-1).numpy() for p in params])
    return (trained - start).astype(np.float32)


def evaluate(
    vector: NDArray[np.floating],
    X: NDArray[np.floating],  # noqa: N803
    y: NDArray[np.integer],
    *,
    n_classes: int = DIGITS_CLASSES,
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy loss of the model ``vector`` on ``(X, y)``.

    Returns
    -------
    accuracy, loss
        Accuracy in [0, 1] and the mean loss (natural log).
    """
    torch.set_num_threads(1)
    xt, yt = _check_data(np.asarray(X), np.asarray(y), n_classes)
    params = _params_for(vector, xt.shape[1], n_classes)
    with torch.no_grad():
        logits = mlp_forward(xt, *params)
        loss = float(nn.functional.cross_entropy(logits, yt))
        accuracy = float((logits.argmax(dim=1) == yt).double().mean())
    return accuracy, loss


def sample_losses(
    vector: NDArray[np.floating],
    X: NDArray[np.floating],  # noqa: N803
    y: NDArray[np.integer],
    *,
    n_classes: int = DIGITS_CLASSES,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-sample cross-entropy loss and correctness (1.0 or 0.0) of the model ``vector`` on ``(X, y)``.

    Their means are :func:`evaluate`'s loss and accuracy; the spread gives the validation noise of a
    comparison between two models (:func:`aggregator.round.gain_noise_floor`).
    """
    torch.set_num_threads(1)
    xt, yt = _check_data(np.asarray(X), np.asarray(y), n_classes)
    params = _params_for(vector, xt.shape[1], n_classes)
    with torch.no_grad():
        logits = mlp_forward(xt, *params)
        losses = nn.functional.cross_entropy(logits, yt, reduction="none").double().numpy()
        correct = (logits.argmax(dim=1) == yt).double().numpy()
    return np.asarray(losses, dtype=np.float64), np.asarray(correct, dtype=np.float64)
