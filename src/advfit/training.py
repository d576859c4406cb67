"""Training one split x regime from scratch, with a snapshot after every epoch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .io import atomic_path

log = logging.getLogger("advfit")

OPTIMIZERS = ("adam", "sgd", "rmsprop")
HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "test_loss", "test_accuracy"]


def snapshot_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.weights.h5"


def make_optimizer(regime: dict):
    import keras

    name, lr = regime["optimizer"], float(regime["learning_rate"])
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=float(regime.get("momentum", 0.0)))
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr)
    raise ValueError(f"unknown optimizer {name!r}; known: {OPTIMIZERS}")


def compile_model(model, regime: dict) -> None:
    import keras

    model.compile(
        optimizer=make_optimizer(regime),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def _snapshot_callback(snapshot_dir: Path, test: tuple[np.ndarray, np.ndarray], batch_size: int):
    import keras

    class Snapshot(keras.callbacks.Callback):
        """Save the weights and score the test set at the end of every epoch."""

        def on_epoch_end(self, epoch, logs=None):
            loss, accuracy = self.model.evaluate(*test, batch_size=batch_size, verbose=0)
            logs["test_loss"], logs["test_accuracy"] = loss, accuracy
            target = snapshot_dir / snapshot_name(epoch + 1)
            with atomic_path(target, suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
            log.info("epoch %d: %s", epoch + 1,
                     ", ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())))

    return Snapshot()


def train_regime(model, regime: dict, train, validation, test, snapshot_dir: Path,
                 eval_batch_size: int = 1024):
    """Train ``model`` for ``regime['epochs']`` epochs; return the history as a DataFrame.

    ``train``, ``validation`` and ``test`` are ``(x, y)`` pairs. Shuffling is
    driven by the global seed set in :func:`advfit.runtime.configure`.
    """
    import pandas as pd

    snapshot_dir = Path(snapshot_dir)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    compile_model(model, regime)
    fit = model.fit(
        *train,
        validation_data=validation,
        epochs=int(regime["epochs"]),
        batch_size=int(regime["batch_size"]),
        shuffle=True,
        verbose=0,
        callbacks=[_snapshot_callback(snapshot_dir, test, eval_batch_size)],
    )
    history = pd.DataFrame(fit.history).rename(
        columns={"loss": "train_loss", "accuracy": "train_accuracy"}
    )
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    return history[HISTORY_COLUMNS]
