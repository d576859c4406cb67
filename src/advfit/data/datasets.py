"""Datasets: loading into float32 NHWC images in [0, 1] with integer labels.

A prepared dataset is one ``.npz`` with the official train and test parts.
Every later step addresses samples by their index in the *pooled* array
(train part first, then test part), so that k-fold and shuffle splits are both
plain index sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    "mnist": DatasetInfo(60000, 10000, 10, (28, 28, 1)),
    "fashion_mnist": DatasetInfo(60000, 10000, 10, (28, 28, 1)),
    "cifar10": DatasetInfo(50000, 10000, 10, (32, 32, 3)),
    "stl10": DatasetInfo(5000, 8000, 10, (96, 96, 3)),
}
BUILT_IN = ("mnist", "fashion_mnist", "cifar10", "stl10")  # canonical files, checksums
USER = ("npz", "image_folder")
# An image folder without train/ and test/ is split once, with this fixed seed,
# so that its test part stays put whatever the run's seed (as for digits).
IMAGE_FOLDER_TEST_SEED = 20240502
SUBSET_SEED = 20240503


def dataset_info(spec: dict) -> DatasetInfo:
    """Sizes and shape of the dataset ``spec`` describes, read cheaply for user data.

    ``subset`` sizes replace the full ones. Raises FileNotFoundError or
    ValueError for a path that cannot be used: the labels of a local copy of a
    built-in dataset and of a user's npz are read and checked here, so that a
    bad label is refused by the configuration check, before any job runs.
    """
    name = spec["name"]
    if name in DATASETS:
        info = DATASETS[name]
        if name in BUILT_IN and spec.get("path"):
            _check_local_labels(name, spec["path"])
    elif name == "npz":
        info = _npz_info(spec["path"])
    else:
        info = _image_folder_info(spec)
    subset = spec.get("subset") or {}
    return DatasetInfo(min(subset.get("train", info.n_train), info.n_train),
                       min(subset.get("test", info.n_test), info.n_test),
                       info.n_classes, info.image_shape)


def _check_local_labels(name: str, path: str) -> None:
    """The label values of a local copy, where they lie in files small enough to read here.

    A copy used with ``verify: false`` (or its own sha256) is not the canonical
    one, so a label past the class count could reach training as an extra class;
    the label reader refuses it naming the file. CIFAR-10's labels sit inside
    its 180 MB of pickles: the reader checks them when the data is prepared.
    """
    from advfit.data import sources

    src = sources.source(name)
    if src.labels is not None:
        src.labels(sources.local_folder(src, path))


def _npz_info(path: str) -> DatasetInfo:
    from advfit.data.formats import user_npz_summary

    return DatasetInfo(*user_npz_summary(path))


def _image_folder_info(spec: dict) -> DatasetInfo:
    from advfit.data.formats import check_class_count, list_class_folders

    root = Path(spec["path"])
    size = int(spec["size"])
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, test = list_class_folders(root / "train"), list_class_folders(root / "test")
        n_train, n_test = (sum(map(len, part.values())) for part in (train, test))
        check_class_count(root, list(train))
        n_classes = len(train)
    else:
        if "test_fraction" not in spec:
            raise ValueError(f"{root} has no train/ and test/ folders: give dataset.test_fraction")
        classes = list_class_folders(root)
        check_class_count(root, list(classes))
        total = sum(map(len, classes.values()))
        n_test = sum(int(np.ceil(len(v) * spec["test_fraction"])) for v in classes.values())
        n_train, n_classes = total - n_test, len(classes)
    return DatasetInfo(n_train, n_test, n_classes, (size, size, 3))


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


def read_dataset(spec: dict, folder: str | None = None) -> dict[str, np.ndarray]:
    """Read the dataset ``spec`` names; ``folder`` is the verified copy of a built-in one."""
    from advfit.data import formats
    from advfit.data import sources

    name = spec["name"]
    if name == "digits":
        arrays = load_digits()
    elif name in BUILT_IN:
        arrays = sources.source(name).reader(folder)
    elif name == "npz":
        arrays = formats.read_user_npz(spec["path"])
    elif name == "image_folder":
        arrays = formats.read_image_folder(spec["path"], int(spec["size"]),
                                           spec.get("test_fraction"), IMAGE_FOLDER_TEST_SEED)
    else:
        raise ValueError(f"unknown dataset {name!r}; known: digits, {', '.join(BUILT_IN + USER)}")
    if name in DATASETS:  # before the subset: a stratified draw fails on a stray label unnamed
        for key in ("y_train", "y_test"):
            check_labels(arrays[key], f"{name}: {key}", DATASETS[name].n_classes)
    arrays = take_subset(arrays, spec.get("subset") or {})
    check_arrays(arrays, name)
    return arrays


def load_dataset(name: str) -> dict[str, np.ndarray]:
    """An embedded dataset by name (only digits needs no files)."""
    return read_dataset({"name": name})


def take_subset(arrays: dict[str, np.ndarray], subset: dict) -> dict[str, np.ndarray]:
    """A fixed, stratified subsample of the train and/or test part (for quick runs).

    Refused, naming ``dataset.subset.<part>``, when the subset cannot hold every
    class of its part (too small, or a class too rare to be drawn).
    """
    from sklearn.model_selection import train_test_split

    out = dict(arrays)
    for part in ("train", "test"):
        n = subset.get(part)
        y = arrays[f"y_{part}"]
        if n is None or n >= len(y):
            continue
        where = f"dataset.subset.{part}: {n} of the {len(y)} {part} images"
        try:
            keep, _ = train_test_split(np.arange(len(y)), train_size=int(n), stratify=y,
                                       random_state=SUBSET_SEED)
        except ValueError as error:  # e.g. fewer images asked for than there are classes
            raise ValueError(f"{where}: no stratified subset ({error})") from None
        lost = np.setdiff1d(y, y[keep])
        if lost.size:
            raise ValueError(f"{where} leave class(es) {lost.tolist()} without an image; "
                             f"ask for more images")
        keep.sort()
        out[f"x_{part}"], out[f"y_{part}"] = arrays[f"x_{part}"][keep], y[keep]
    return out


def check_labels(labels: np.ndarray, where: str, n_classes: int) -> None:
    """Integer labels 0..n_classes-1, or a ValueError naming ``where``, the value and position."""
    from advfit.data.formats import FormatError, check_label_range

    if labels.dtype.kind not in "iu":
        raise FormatError(f"{where}: labels must be integers, found dtype {labels.dtype}")
    check_label_range(where, labels, 0, n_classes - 1,
                      f"labels must be 0..{n_classes - 1} ({n_classes} classes)")


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


# ---------------------------------------------------------------- prepared file layout
# The prepared file stores images as uint8 with a scale s (x = u8 / s in float32),
# 4x smaller than float32, whenever that reproduces every float32 value exactly
# (8-bit sources: s = 255; digits: s = 16). Images that no scale reproduces
# (a user's float npz) stay float32, with scale 1. ``x_scale`` marks the layout:
# a file without it is the older float32 layout and is refused.
PREPARED_LAYOUT = 2
QUANTISATION_SCALES = (255, 16)
_CHUNK_ROWS = 1024  # rows quantised at a time: bounds the float64 temporaries


def decode_images(stored: np.ndarray, scale: float) -> np.ndarray:
    """Stored images -> float32 in [0, 1]: the values the readers produced, bit for bit."""
    if stored.dtype == np.float32:
        return stored
    out = stored.astype(np.float32)
    np.divide(out, np.float32(scale), out=out)  # same rounding as u8.astype(f32) / f32(s)
    return out


def _quantise(x: np.ndarray, scale: int) -> np.ndarray | None:
    """``x`` as uint8 with x == decode_images(u8, scale) bit for bit, or None."""
    out = np.empty(x.shape, dtype=np.uint8)
    for start in range(0, len(x), _CHUNK_ROWS):
        part = x[start:start + _CHUNK_ROWS]
        levels = np.rint(part.astype(np.float64) * scale)
        if levels.size and (levels.min() < 0 or levels.max() > 255):
            return None
        out[start:start + _CHUNK_ROWS] = levels
        back = decode_images(out[start:start + _CHUNK_ROWS], scale)
        if not np.array_equal(back.view(np.uint32), part.view(np.uint32)):
            return None
    return out


def prepared_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What ``prepare_dataset`` writes: the arrays with compact images and ``x_scale``.

    Consumes ``arrays``: each float32 part is popped once quantised, so that
    the full float32 images and their uint8 copy are not held together.
    Images that no scale reproduces exactly stay float32 (scale 1).
    """
    for scale in QUANTISATION_SCALES:
        train = _quantise(arrays["x_train"], scale)
        if train is None:
            continue
        del arrays["x_train"]
        test = _quantise(arrays["x_test"], scale)
        if test is not None:
            del arrays["x_test"]
            return {**arrays, "x_train": train, "x_test": test, "x_scale": np.float64(scale)}
        # the test part is off every grid: keep both as float32 (exact: train was verified)
        arrays["x_train"] = decode_images(train, scale)
        break
    return {**arrays, "x_scale": np.float64(1.0)}


def load_prepared(path) -> "PooledData":
    """The prepared dataset at ``path``; refuses the older float32 layout."""
    from advfit.runtime.io import load_npz

    arrays = load_npz(path)
    if "x_scale" not in arrays:
        raise ValueError(
            f"{path} was prepared by an older advfit (float32 layout, without x_scale); "
            f"rebuild it: delete it, or run snakemake with --forcerun prepare_dataset")
    return PooledData(arrays)


class PooledData:
    """The train and test parts pooled into one array, addressed by index.

    Built from a reader's float32 arrays or from a prepared file's arrays
    (uint8 with ``x_scale``). Images stay in their stored form; ``take``
    decodes only the rows asked for, and ``x`` (all images as float32) is
    decoded on first use, so a job holds the float32 images it needs only.
    """

    def __init__(self, arrays: dict[str, np.ndarray]):
        self._stored = np.concatenate([arrays["x_train"], arrays["x_test"]])
        self._scale = float(arrays["x_scale"]) if "x_scale" in arrays else 1.0
        if self._stored.dtype not in (np.uint8, np.float32):
            raise ValueError(f"images stored as {self._stored.dtype}; expected uint8 or float32")
        self._x = None
        self.y = np.concatenate([arrays["y_train"], arrays["y_test"]]).astype(np.int64)
        self.n_train = len(arrays["y_train"])
        self.n_classes = int(self.y.max()) + 1

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self._stored.shape[1:])

    @property
    def x(self) -> np.ndarray:
        if self._x is None:
            self._x = decode_images(self._stored, self._scale)
        return self._x

    @property
    def official_train(self) -> np.ndarray:
        return np.arange(self.n_train)

    @property
    def official_test(self) -> np.ndarray:
        return np.arange(self.n_train, len(self.y))

    def images(self, index: np.ndarray) -> np.ndarray:
        """float32 images of the pooled ``index``, decoded from the stored rows only."""
        if self._x is not None:
            return self._x[index]
        return decode_images(self._stored[index], self._scale)

    def take(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.images(index), self.y[index]


def fetch_source_record(spec: dict, cache_dir: str) -> dict:
    """Obtain and verify the files of dataset ``spec``; return their provenance.

    Built-in datasets: the local copy under ``path`` checked against the
    canonical checksums, or the canonical files downloaded to ``cache_dir``.
    User datasets: the sha256 of the npz (checked if the config gives one), or
    the number of images in the folder.
    """
    from advfit.data import formats
    from advfit.data import sources

    name = spec["name"]
    if name in BUILT_IN:
        if spec.get("path"):
            copy = sources.resolve_local(name, spec["path"], spec.get("verify", True),
                                         spec.get("sha256"))
        else:
            copy = sources.fetch(name, cache_dir)
        return {"dataset": name, "folder": str(copy.folder.resolve()), "sha256": copy.sha256,
                "accepted": copy.accepted, "canonical": copy.canonical}
    if name == "npz":
        path = Path(spec["path"])
        if spec.get("sha256"):
            sources.verify_file(path, f"sha256:{spec['sha256']}",
                                "the expected sha256 is dataset.sha256 in the configuration")
        return {"dataset": name, "file": str(path.resolve()), "sha256": sources.file_sha256(path)}
    if name == "image_folder":
        root = Path(spec["path"])
        parts = ([root / "train", root / "test"] if (root / "train").is_dir() else [root])
        n_images = sum(len(files) for part in parts
                       for files in formats.list_class_folders(part).values())
        return {"dataset": name, "folder": str(root.resolve()), "n_images": n_images}
    raise ValueError(f"dataset {name!r} needs no fetching")
