"""Adversarial sets and fail subsets, both built on the best snapshot.

adversarial set: AEs crafted from test samples that the best snapshot
classifies correctly, keeping only those that fool it.
fail subset: the test samples that the best snapshot misclassifies.
Both have accuracy exactly 0 at the best epoch by construction.
"""

from __future__ import annotations

import logging

import numpy as np

from advfit.attacks import AttackSpec, craft

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


def logit_margins(logits: np.ndarray, y: np.ndarray, y_target: np.ndarray | None = None
                  ) -> np.ndarray:
    """How far each AE is past the decision boundary, in logits.

    Untargeted: the best other class's logit minus the true class's (> 0 iff
    the true class loses). Targeted: the target's logit minus the best other
    class's (> 0 iff the target wins).
    """
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(logits))
    anchor = y if y_target is None else y_target
    others = logits.copy()
    others[rows, anchor] = -np.inf
    best_other = others.max(axis=1) if len(logits) else np.zeros(0)
    own = logits[rows, anchor]
    return best_other - own if y_target is None else own - best_other


def keep_fooling(forward, x_adv: np.ndarray, y: np.ndarray, y_target: np.ndarray | None = None,
                 batch_size: int = 1024, min_margin: float = 0.0):
    """Mask of the AEs that fool the snapshot behind ``forward`` as evaluation will see them.

    An AE whose margin is within rounding of 0 can change side when it is
    scored in another batch (other batch sizes and neighbours change the
    float32 reductions). evaluate_snapshots scores each adversarial set alone,
    in batches of ``batch_size`` from its first row, with this very traced
    forward pass; so the filter re-scores the kept AEs in that layout until
    every one of them has a margin above ``min_margin`` (a fixed point: at
    most a few passes). Returns the mask and the last pass's predictions.
    """
    from advfit.attacks.batching import predict_logits

    logits = predict_logits(forward, x_adv, batch_size)
    kept = logit_margins(logits, y, y_target) > min_margin
    predicted = np.argmax(logits, axis=1).astype(np.int64)
    while kept.any():
        index = np.flatnonzero(kept)
        logits = predict_logits(forward, x_adv[index], batch_size)
        predicted[index] = np.argmax(logits, axis=1)
        stable = logit_margins(logits, y[index], None if y_target is None else y_target[index])
        stable = stable > min_margin
        if stable.all():
            break
        log.info("%d AEs changed side when re-scored as the kept set: dropped", int((~stable).sum()))
        kept[index[~stable]] = False
    return kept, predicted


def attack_and_keep(model, x: np.ndarray, y: np.ndarray, attack: AttackSpec, seed: int,
                    batch_size: int = 1024, min_margin: float = 0.0):
    """Run one attack; return the AEs, the best snapshot's predictions, the kept mask
    (misclassified, or for a targeted attack classified as its target, by a
    logit margin above ``min_margin``, as evaluation will score them: see
    :func:`keep_fooling`) and the targets (None when untargeted)."""
    from advfit.attacks.batching import traced_forward

    y_target = target_labels(y, int(model.output_shape[-1]), attack.target, seed)
    # Filtered as stored (float32), so that the evaluation sees the same values.
    x_adv = np.asarray(craft(attack, model, x, y, seed=seed, y_target=y_target), np.float32)
    fooled, predicted = keep_fooling(traced_forward(model), x_adv, y, y_target, batch_size,
                                     min_margin)
    return x_adv, predicted, fooled, y_target


def craft_adversarial_set(model, x_test: np.ndarray, y_test: np.ndarray, test_index: np.ndarray,
                          attack: AttackSpec, subset_size: int | str, seed: int,
                          batch_size: int = 1024, source_seed: int | None = None,
                          min_margin: float = 0.0) -> dict[str, np.ndarray]:
    """Attack the best snapshot ``model``; return the arrays of the adversarial set.

    ``test_index`` holds the pooled-data index of each test sample, so that
    every AE can be traced back to its original. ``source_seed`` (default
    ``seed``) draws the attacked samples: give every attack of a split x
    regime the same one, so that attacks are compared on the same samples.
    ``batch_size`` must be the evaluation's batch size, so that the kept AEs
    fool the best snapshot in evaluate_snapshots too (accuracy exactly 0).
    """
    predicted = predict_labels(model, x_test, batch_size)
    correct = np.flatnonzero(predicted == y_test)
    sources = choose_sources(correct, subset_size, seed if source_seed is None else source_seed)
    log.info("%s: attacking %d of %d correctly classified test samples",
             attack.label, len(sources), len(correct))
    x_adv, adv_predicted, fooled, y_target = attack_and_keep(
        model, x_test[sources], y_test[sources], attack, seed, batch_size, min_margin)
    log.info("%s: %d of %d AEs fool the best snapshot with a logit margin above %g "
             "(success rate %.3f)", attack.label, int(fooled.sum()), len(sources), min_margin,
             fooled.mean() if len(sources) else 0.0)
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
