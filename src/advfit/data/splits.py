"""Splits: train / validation / test index sets over the pooled data.

``kfold``: stratified k-fold on the official training part; fold i is the
validation set of split i, the official test set is kept as test (paper 002).
``shuffle``: repeated stratified shuffles of all data keeping the official
train/test sizes (paper 000); a stratified fraction of each shuffled training
part is held out for validation (none with a fraction of 0, as in paper 000).
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit, train_test_split

from advfit.data.datasets import PooledData


def kfold_splits(data: PooledData, n_splits: int, seed: int) -> list[dict[str, np.ndarray]]:
    train_part = data.official_train
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [
        {"train": np.sort(train_part[fit]), "validation": np.sort(train_part[held]),
         "test": data.official_test}
        for fit, held in folds.split(train_part, data.y[train_part])
    ]


def shuffle_splits(
    data: PooledData, n_splits: int, validation_fraction: float, seed: int
) -> list[dict[str, np.ndarray]]:
    everything = np.arange(len(data.y))
    n_test = len(data.official_test)
    shuffles = StratifiedShuffleSplit(n_splits=n_splits, test_size=n_test, random_state=seed)
    splits = []
    for i, (rest, test) in enumerate(shuffles.split(everything, data.y)):
        if validation_fraction == 0:  # paper 000: no validation set, M chosen on test accuracy
            fit, held = rest, rest[:0]
        else:
            fit, held = train_test_split(
                rest, test_size=validation_fraction, stratify=data.y[rest], random_state=seed + i
            )
        splits.append({"train": np.sort(fit), "validation": np.sort(held), "test": np.sort(test)})
    return splits


def make_splits(data: PooledData, method: str, n_splits: int, seed: int,
                validation_fraction: float = 0.2) -> list[dict[str, np.ndarray]]:
    """The ``n_splits`` splits of ``method``; refused if any training part lacks a class."""
    if method not in ("kfold", "shuffle"):
        raise ValueError(f"unknown split method {method!r}")
    # k-fold draws from the official training part, shuffles from all the data
    pool = data.official_train if method == "kfold" else np.arange(len(data.y))
    try:
        if method == "kfold":
            splits = kfold_splits(data, n_splits, seed)
        else:
            splits = shuffle_splits(data, n_splits, validation_fraction, seed)
    except ValueError as error:  # scikit-learn's: a class too rare to stratify
        raise ValueError(f"{method} splits (splits.n_splits = {n_splits}): {error}; smallest "
                         f"classes {_smallest_classes(data, pool)}") from None
    check_every_class_trained(data, splits, pool)
    return splits


def _smallest_classes(data: PooledData, pool: np.ndarray, limit: int = 5) -> str:
    """``0: 1 image, 7: 3 images``: the rarest classes among ``pool``, the likely culprits."""
    counts = np.bincount(data.y[pool], minlength=int(data.y.max()) + 1)
    return ", ".join(f"{c}: {counts[c]} image{'s' if counts[c] != 1 else ''}"
                     for c in np.argsort(counts, kind="stable")[:limit].tolist())


def check_every_class_trained(data: PooledData, splits: list[dict[str, np.ndarray]],
                              pool: np.ndarray) -> None:
    """Each split's training part holds every class, or a ValueError naming split and class.

    ``pool``: the indices the splits draw from. Stratification does not promise
    it: k-fold puts a class with a single training image in one fold's
    validation set, and that split's model would never see the class
    (scikit-learn only warns).
    """
    n_classes = int(data.y.max()) + 1  # only ``y`` is needed: tests pass stand-ins for the data
    for i, split in enumerate(splits):
        absent = np.setdiff1d(np.arange(n_classes), data.y[split["train"]])
        if absent.size:
            counts = np.bincount(data.y[pool], minlength=n_classes)
            raise ValueError(
                f"split {i}: class(es) {absent.tolist()} have no image in its training part "
                f"(images of them that the splits draw from: "
                f"{', '.join(str(counts[c]) for c in absent.tolist())}); every class needs at "
                f"least 2, so that each split trains on it")
