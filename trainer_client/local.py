"""Local training of one round on the trainer's private data, then the demo attack if one is set."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pocfl.errors import PocflError
from pocfl.manifest import ProjectManifest
from pocfl.ml.training import evaluate, local_train
from pocfl.rounds.hyperparams import HyperParams
from pocfl.testing.attacks import Attack, flip_labels
from pocfl.updates import decode_update
from trainer_client.attacks import attacked
from trainer_client.progress import TrainerReporter
from trainer_client.view import ProjectView

Vector = NDArray[np.float32]

_TRAIN, _ATTACK = 1, 2


def derive_seed(seed: int, round_: int, purpose: int) -> int:
    """A 32-bit seed for ``(seed, round, purpose)``: the same inputs always give the same training run."""
    return int(np.random.SeedSequence([seed, round_, purpose]).generate_state(1, dtype=np.uint32)[0])


class LocalTrainer:
    """Trains the round's global model on the private data and applies the attack (demo attackers only).

    Parameters
    ----------
    X, y
        The private data, float32 features and int64 labels (checked by the caller); ``X`` is replaced by its
        preprocessed form once the manifest is read.
    seed
        Seed of training and of randomised attacks (combined with the round number).
    attack
        The attack; None for an honest trainer.
    view
        The chain (the copycat reads the other trainers' submissions).
    reporter
        Told about each epoch.
    """

    def __init__(
        self,
        X: NDArray[np.float32],  # noqa: N803 (ML convention for a feature matrix)
        y: NDArray[np.int64],
        seed: int,
        attack: Attack | None,
        view: ProjectView,
        reporter: TrainerReporter,
    ) -> None:
        self.X, self.y, self.seed, self.attack = X, y, seed, attack
        self.view, self.reporter = view, reporter
        self.momentum = 0.0  # the manifest's training.momentum, set once the manifest is read

    def train(self, round_: int, start: Vector, hyper: HyperParams, n_classes: int) -> tuple[Vector, float, float]:
        """The delta of ``hyper.local_epochs`` epochs from ``start``; the trained model's local accuracy and loss.

        The reporter hears each epoch's loss and accuracy on the local data (the last epoch's are returned).
        """
        y = self.y
        if self.attack is Attack.LABEL_FLIP:
            y = flip_labels(y, n_classes).astype(np.int64)
        epochs = hyper.local_epochs
        self.reporter.training(round_, epochs)
        current = start.astype(np.float32, copy=True)
        for epoch in range(epochs):
            step = local_train(
                current,
                self.X,
                y,
                epochs=1,
                lr=hyper.learning_rate,
                batch_size=hyper.batch_size,
                seed=derive_seed(self.seed, round_, _TRAIN * 1000 + epoch),
                momentum=self.momentum,
                n_classes=n_classes,
            )
            current = (current + step).astype(np.float32)
            # on the true labels (a label-flip attacker's own view of its model): one forward pass an epoch
            accuracy, loss = evaluate(current, self.X, self.y, n_classes=n_classes)
            self.reporter.epoch(round_, epoch + 1, epochs, loss=loss, accuracy=accuracy)
        if epochs == 0:
            accuracy, loss = evaluate(current, self.X, self.y, n_classes=n_classes)
        return (current - start).astype(np.float32), accuracy, loss

    def attacked(self, round_: int, delta: Vector, manifest: ProjectManifest) -> Vector:
        """``delta`` as the attack changes it (unchanged for honest trainers)."""
        return attacked(
            self.attack,
            delta,
            derive_seed(self.seed, round_, _ATTACK),
            lambda: self.readable_update(round_, manifest),
            lambda text: self.reporter.waiting(f"round {round_}: {text}"),
        )

    def readable_update(self, round_: int, manifest: ProjectManifest) -> Vector | None:
        """Another trainer's plaintext delta of this round (the copycat's victim), if any is readable."""
        view, market = self.view, self.view.market
        spec = manifest.model.spec()
        others = [
            u
            for u in view.retry(
                "read submissions",
                lambda: market.submitted_updates(view.project_id, round_, from_block=view.from_block),
            )
            if u.trainer.lower() != view.address.lower()
        ]
        for update in others:
            try:
                opened = market.open_update(update, view.project_id, round_)
                if opened.plaintext is None:
                    continue
                return decode_update(opened.plaintext, spec, kind="delta", max_size=manifest.max_update_size).vector()
            except PocflError:  # unreachable, unverifiable or not a valid delta: try the next one
                continue
        return None
