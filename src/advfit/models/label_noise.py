"""The labels a regime trains on: the run's ``train_labels.npz``.

A regime's ``label_noise`` replaces a seeded fraction of the training split's
labels by other classes. The labels are made once per split x regime, by rule
``make_training_labels``, and written with the true labels and the record of
how they were made; training and evaluation both read that file
(:func:`load_training_labels`), which checks that it belongs to the split.
"""

from __future__ import annotations

import numpy as np

from advfit.runtime.io import array_to_meta, load_npz, meta_to_array, save_npz, versions
from advfit.runtime.seeds import job_seed

FORMAT = 1


def noisy_labels(y, fraction: float, n_classes: int, seed: int) -> np.ndarray:
    """``y`` with exactly ``round(fraction * len(y))`` labels replaced by another class.

    Symmetric label noise (Zhang et al. 2017; Arpit et al. 2017), the regime
    key ``label_noise``: the flipped positions are a seeded sample without
    replacement, and each flipped label becomes one of the other
    ``n_classes - 1`` classes, uniformly. Pure: the same arguments always give
    the same labels; ``fraction`` 0 returns an unchanged copy.
    """
    y = np.asarray(y)
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"label_noise must be in [0, 1), got {fraction}")
    out = y.copy()
    n_flip = int(round(fraction * len(y)))
    if n_flip == 0:
        return out
    if n_classes < 2:
        raise ValueError("label noise needs at least 2 classes")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels outside 0..{n_classes - 1}")
    rng = np.random.default_rng(int(seed))
    where = np.sort(rng.choice(len(y), size=n_flip, replace=False))
    shift = rng.integers(1, n_classes, size=n_flip)  # never 0: always another class
    out[where] = ((y[where].astype(np.int64) + shift) % n_classes).astype(y.dtype)
    return out


def training_labels(y, regime: dict, n_classes: int, seed: int) -> tuple[np.ndarray, dict]:
    """The labels ``regime`` trains on, and the record of how they were made.

    ``y`` are the training split's true labels and ``seed`` the job's seed
    (from the run's seed, dataset, model, regime and split). Without
    ``label_noise`` (or with 0) the labels are ``y`` unchanged. The record
    (``fraction``, ``seed``, ``n_flipped``, ``n``) goes into the run's
    ``train_labels.npz`` with the labels (:func:`save_training_labels`).
    """
    fraction = float(regime.get("label_noise", 0.0))
    noise_seed = job_seed(seed, "label_noise")
    labels = noisy_labels(y, fraction, n_classes, noise_seed)
    record = {"fraction": fraction, "seed": noise_seed,
              "n_flipped": int(np.count_nonzero(labels != np.asarray(y))), "n": int(len(labels))}
    return labels, record


def save_training_labels(path, y_true, source_index, regime: dict, n_classes: int,
                         seed: int) -> dict:
    """Make the labels ``regime`` trains on (:func:`training_labels`) and write them, with
    the true labels, the dataset indices of the training split and the record, atomically.
    Returns the record."""
    y_true, source_index = np.asarray(y_true), np.asarray(source_index)
    if len(y_true) != len(source_index):
        raise ValueError(f"{len(y_true)} labels for {len(source_index)} training indices")
    labels, record = training_labels(y_true, regime, n_classes, seed)
    record = {"format": FORMAT, **record, "n_classes": int(n_classes), "versions": versions()}
    save_npz(path, y=labels, y_true=y_true, source_index=source_index,
             meta=meta_to_array(record))
    return record


def load_training_labels(path, source_index, y_true) -> tuple[np.ndarray, dict]:
    """The labels of a ``train_labels.npz`` and its record, after checking that the file
    belongs to this training split (same indices, same true labels) and is whole."""
    stored = load_npz(path)
    record = array_to_meta(stored["meta"])
    problems = []
    if record.get("format") != FORMAT:
        problems.append(f"format {record.get('format')} (expected {FORMAT})")
    if not np.array_equal(stored["source_index"], np.asarray(source_index)):
        problems.append("its training indices are not this split's")
    elif not np.array_equal(stored["y_true"], np.asarray(y_true)):
        problems.append("its true labels are not the dataset's")
    elif np.count_nonzero(stored["y"] != stored["y_true"]) != record.get("n_flipped"):
        problems.append(f"{np.count_nonzero(stored['y'] != stored['y_true'])} labels differ, "
                        f"the record says {record.get('n_flipped')}")
    if problems:
        raise ValueError(f"training labels {path} do not belong to this run: "
                         + "; ".join(problems) + " (delete the file to remake it)")
    return stored["y"], record
