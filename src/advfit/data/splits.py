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
    if method == "kfold":
        return kfold_splits(data, n_splits, seed)
    if method == "shuffle":
        return shuffle_splits(data, n_splits, validation_fraction, seed)
    raise ValueError(f"unknown split method {method!r}")
