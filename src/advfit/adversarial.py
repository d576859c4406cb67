"""Adversarial sets and fail subsets, both built on the best snapshot.

adversarial set: AEs crafted from test samples that the best snapshot
classifies correctly, keeping only those that fool it.
fail subset: the test samples that the best snapshot misclassifies.
Both have accuracy exactly 0 at the best epoch by construction.
"""

from __future__ import annotations

import logging

import numpy as np

from .attacks import run_attack

log = logging.getLogger("advfit")


def predict_labels(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Arg-max class of the model's logits."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return np.argmax(logits, axis=1).astype(np.int64)


def choose_sources(correct_index: np.ndarray, subset_size: int, seed: int) -> np.ndarray:
    """A seeded random subsample (sorted) of the correctly classified test samples."""
    if subset_size >= len(correct_index):
        return np.sort(correct_index)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(correct_index, size=subset_size, replace=False))


def craft_adversarial_set(model, x_test: np.ndarray, y_test: np.ndarray, test_index: np.ndarray,
                          method: str, params: dict, subset_size: int, seed: int,
                          batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Attack the best snapshot ``model``; return the arrays of the adversarial set.

    ``test_index`` holds the pooled-data index of each test sample, so that
    every AE can be traced back to its original.
    """
    predicted = predict_labels(model, x_test, batch_size)
    correct = np.flatnonzero(predicted == y_test)
    sources = choose_sources(correct, subset_size, seed)
    log.info("%s: attacking %d of %d correctly classified test samples",
             method, len(sources), len(correct))
    x_adv = run_attack(method, model, x_test[sources], y_test[sources], params)
    adv_predicted = predict_labels(model, x_adv, batch_size)
    fooled = adv_predicted != y_test[sources]
    log.info("%s: %d of %d AEs fool the best snapshot (success rate %.3f)",
             method, int(fooled.sum()), len(sources), fooled.mean() if len(sources) else 0.0)
    return {
        "x": x_adv[fooled].astype(np.float32),
        "y": y_test[sources][fooled],
        "source_index": test_index[sources][fooled],
        "predicted": adv_predicted[fooled],
        "n_tried": np.int64(len(sources)),
        "n_success": np.int64(fooled.sum()),
    }


def fail_subset_mask(predicted_at_best: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """Test samples the best snapshot misclassifies."""
    return predicted_at_best != y_test
