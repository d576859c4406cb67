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


def choose_sources(correct_index: np.ndarray, subset_size: int | str, seed: int) -> np.ndarray:
    """A seeded random subsample (sorted) of the correctly classified test samples.

    ``subset_size`` ``"all"`` (paper 002) attacks every one of them.
    """
    if subset_size == "all" or subset_size >= len(correct_index):
        return np.sort(correct_index)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(correct_index, size=subset_size, replace=False))


def target_labels(y: np.ndarray, n_classes: int, choice: str, seed: int) -> np.ndarray | None:
    """Target classes of a targeted attack: ``next`` (y + 1 mod C) or ``random`` (any other)."""
    if choice in (None, "none"):
        return None
    if choice == "next":
        return (y + 1) % n_classes
    if choice == "random":
        shift = np.random.default_rng(seed).integers(1, n_classes, size=len(y))
        return (y + shift) % n_classes
    raise ValueError(f"unknown target choice {choice!r}; known: none, random, next")


def attack_and_keep(model, x: np.ndarray, y: np.ndarray, method: str, params: dict, seed: int,
                    batch_size: int = 1024):
    """Run one attack; return the AEs, the best snapshot's predictions, the success
    mask (misclassified, or for a targeted attack classified as its target) and
    the targets (None when untargeted)."""
    params = dict(params)
    y_target = target_labels(y, int(model.output_shape[-1]), params.pop("target", "none"), seed)
    x_adv = run_attack(method, model, x, y, params, y_target=y_target)
    predicted = predict_labels(model, x_adv, batch_size)
    success = predicted != y if y_target is None else predicted == y_target
    return x_adv, predicted, success, y_target


def craft_adversarial_set(model, x_test: np.ndarray, y_test: np.ndarray, test_index: np.ndarray,
                          method: str, params: dict, subset_size: int | str, seed: int,
                          batch_size: int = 1024, source_seed: int | None = None
                          ) -> dict[str, np.ndarray]:
    """Attack the best snapshot ``model``; return the arrays of the adversarial set.

    ``test_index`` holds the pooled-data index of each test sample, so that
    every AE can be traced back to its original. ``source_seed`` (default
    ``seed``) draws the attacked samples: give every attack of a split x
    regime the same one, so that attacks are compared on the same samples.
    """
    predicted = predict_labels(model, x_test, batch_size)
    correct = np.flatnonzero(predicted == y_test)
    sources = choose_sources(correct, subset_size, seed if source_seed is None else source_seed)
    log.info("%s: attacking %d of %d correctly classified test samples",
             method, len(sources), len(correct))
    x_adv, adv_predicted, fooled, y_target = attack_and_keep(
        model, x_test[sources], y_test[sources], method, params, seed, batch_size)
    log.info("%s: %d of %d AEs fool the best snapshot (success rate %.3f)",
             method, int(fooled.sum()), len(sources), fooled.mean() if len(sources) else 0.0)
    arrays = {
        "x": x_adv[fooled].astype(np.float32),
        "y": y_test[sources][fooled],
        "source_index": test_index[sources][fooled],
        "predicted": adv_predicted[fooled],
        "n_tried": np.int64(len(sources)),
        "n_success": np.int64(fooled.sum()),
    }
    if y_target is not None:
        arrays["y_target"] = y_target[fooled]
    return arrays


def fail_subset_mask(predicted_at_best: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """Test samples the best snapshot misclassifies."""
    return predicted_at_best != y_test
