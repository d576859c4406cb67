"""Datasets: loading into float32 NHWC images in [0, 1] with integer labels.

A prepared dataset is one ``.npz`` with the official train and test parts.
Every later step addresses samples by their index in the *pooled* array
(train part first, then test part), so that k-fold and shuffle splits are both
plain index sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Digits ships without a test set. We fix one, once and for all, so that it
# plays the role of an official test set: 360 images (20 %, 36 per class),
# stratified, drawn with this seed whatever the run's seed.
DIGITS_TEST_SIZE = 360
DIGITS_TEST_SEED = 20240501


@dataclass(frozen=True)
class DatasetInfo:
    """What validation needs to know before any data is loaded."""

    n_train: int
    n_test: int
    n_classes: int
    image_shape: tuple[int, int, int]


DATASETS = {
    "digits": DatasetInfo(n_train=1797 - DIGITS_TEST_SIZE, n_test=DIGITS_TEST_SIZE,
                          n_classes=10, image_shape=(8, 8, 1)),
}


def load_digits() -> dict[str, np.ndarray]:
    """scikit-learn's 8x8 digits (values 0..16) scaled to [0, 1], fixed test set."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.images.astype(np.float32) / np.float32(16.0))[..., np.newaxis]
    y = bunch.target.astype(np.int64)
    index = np.arange(len(y))
    train_index, test_index = train_test_split(
        index, test_size=DIGITS_TEST_SIZE, stratify=y, random_state=DIGITS_TEST_SEED
    )
    train_index.sort()
    test_index.sort()
    return {
        "x_train": x[train_index], "y_train": y[train_index],
        "x_test": x[test_index], "y_test": y[test_index],
    }


LOADERS = {"digits": load_digits}


def load_dataset(name: str) -> dict[str, np.ndarray]:
    try:
        loader = LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(LOADERS)}") from None
    arrays = loader()
    check_arrays(arrays, name)
    return arrays


def check_arrays(arrays: dict[str, np.ndarray], name: str) -> None:
    """The invariants every later step relies on."""
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.dtype != np.float32 or x.ndim != 4:
            raise ValueError(f"{name}: x_{part} must be float32 NHWC, got {x.dtype} {x.shape}")
        if len(x) != len(y):
            raise ValueError(f"{name}: x_{part} has {len(x)} rows, y_{part} {len(y)}")
        if x.min() < 0.0 or x.max() > 1.0:
            raise ValueError(f"{name}: x_{part} outside [0, 1]")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(f"{name}: train and test images differ in shape")


class PooledData:
    """The train and test parts pooled into one array, addressed by index."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.x = np.concatenate([arrays["x_train"], arrays["x_test"]])
        self.y = np.concatenate([arrays["y_train"], arrays["y_test"]]).astype(np.int64)
        self.n_train = len(arrays["y_train"])
        self.n_classes = int(self.y.max()) + 1

    @property
    def official_train(self) -> np.ndarray:
        return np.arange(self.n_train)

    @property
    def official_test(self) -> np.ndarray:
        return np.arange(self.n_train, len(self.y))

    def take(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x[index], self.y[index]
