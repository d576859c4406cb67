"""Readers of the on-disk formats real datasets come in.

Every reader returns ``{"x_train", "y_train", "x_test", "y_test"}`` with
float32 NHWC images in [0, 1] and int64 labels 0..C-1 (the invariants of
:func:`advfit.data.datasets.check_arrays`), plus ``"class_names"`` (a numpy
unicode array) when the files name their classes. Readers only parse: they
never download and never check checksums (that is :mod:`advfit.data.sources`), and
they refuse anything that is not exactly the layout they document, with a
message that names the file or array and what was expected against what was
found.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import pickle
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

log = logging.getLogger("advfit")

PathLike = str | os.PathLike


class FormatError(ValueError):
    """A file or array that is not in the layout its reader documents."""


def _to_unit_float(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 0..1, the scale every later step works in."""
    return images_uint8.astype(np.float32) / np.float32(255.0)


def check_label_range(where: str, labels: np.ndarray, first: int, last: int,
                      rule: str | None = None) -> None:
    """Refuse a label outside ``first..last``, naming ``where``, the first such value and position.

    A label past the class count would silently add classes (C = max + 1), and
    a stratified subset would fail on it with an error that names no file.
    """
    bad = np.flatnonzero((labels < first) | (labels > last))
    if not bad.size:
        return
    i = int(bad[0])
    more = f", and {bad.size - 1} more" if bad.size > 1 else ""
    raise FormatError(f"{where}: {rule or f'labels must be {first}..{last}'}, found "
                      f"{labels.min()}..{labels.max()} (label {labels[i]} at position {i}{more})")


def _split(x_train, y_train, x_test, y_test, class_names=None) -> dict[str, np.ndarray]:
    arrays = {"x_train": x_train, "y_train": y_train.astype(np.int64),
              "x_test": x_test, "y_test": y_test.astype(np.int64)}
    if class_names is not None:
        arrays["class_names"] = np.array([str(name) for name in class_names])
    return arrays


# --------------------------------------------------------------------------- IDX (MNIST)

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# IDX magic: two zero bytes, the element type (0x08 = unsigned byte), the number of dims.
IDX_IMAGES_MAGIC = 0x00000803  # 2051: uint8, 3 dims (count, rows, columns)
IDX_LABELS_MAGIC = 0x00000801  # 2049: uint8, 1 dim (count)
MNIST_N_CLASSES = 10  # MNIST digits and Fashion-MNIST's 10 kinds of clothing alike


def idx_path(folder: PathLike, name: str) -> Path:
    """The file ``name`` in ``folder``, or its decompressed twin (name without .gz).

    Some tools (torchvision among them) keep the decompressed files next to or
    instead of the ``.gz``; both hold the same bytes once decompressed.
    """
    folder = Path(folder)
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{folder}: missing {name} (or its decompressed {name.removesuffix('.gz')}); an "
        f"MNIST-layout folder holds {', '.join(MNIST_FILES.values())}")


def _read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, decompressed when it is a gzip file (by magic, not by name)."""
    with open(path, "rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    if not compressed:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except EOFError as error:  # the deflate stream stops before its end marker
        raise FormatError(f"{path}: truncated gzip file ({error}); download it again") from None
    except (gzip.BadGzipFile, zlib.error) as error:  # bad header, data or CRC
        raise FormatError(f"{path}: corrupt gzip file ({error}); download it again") from None


def read_idx(path: PathLike, magic: int) -> np.ndarray:
    """One IDX file (gzipped or not) as a uint8 array of the dims its header gives."""
    path = Path(path)
    data = _read_maybe_gzip(path)
    n_dims = magic & 0xFF
    header_size = 4 + 4 * n_dims
    found_magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found_magic != magic:
        raise FormatError(f"{path}: IDX magic number {found_magic}, expected {magic} "
                          f"(2051 for images, 2049 for labels)")
    if len(data) < header_size:
        raise FormatError(f"{path}: {len(data)} bytes, too short for an IDX header "
                          f"({header_size} bytes expected)")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims)]
    expected = header_size + int(np.prod(dims))
    if len(data) != expected:
        raise FormatError(f"{path}: header says dims {dims}, i.e. {expected} bytes, but the "
                          f"(decompressed) file has {len(data)}: truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _read_idx_labels(folder: Path, part: str) -> tuple[Path, np.ndarray]:
    """The label file of ``part`` and its labels, checked to be 0..9."""
    labels_path = idx_path(folder, MNIST_FILES[f"{part}_labels"])
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    check_label_range(str(labels_path), labels, 0, MNIST_N_CLASSES - 1,
                      f"labels must be 0..{MNIST_N_CLASSES - 1} (an MNIST-layout dataset has "
                      f"{MNIST_N_CLASSES} classes)")
    return labels_path, labels


def read_mnist_labels(folder: PathLike) -> dict[str, np.ndarray]:
    """The train and test labels of an MNIST-layout folder, checked; reads only the 70 kB of labels.

    Cheap enough for the configuration check, which thus refuses a bad label
    before any job runs.
    """
    return {f"y_{part}": _read_idx_labels(Path(folder), part)[1] for part in ("train", "test")}


def _read_idx_part(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = idx_path(folder, MNIST_FILES[f"{part}_images"])
    labels_path, labels = _read_idx_labels(folder, part)
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    if len(images) != len(labels):
        raise FormatError(f"{folder}: {images_path.name} has {len(images)} images but "
                          f"{labels_path.name} {len(labels)} labels")
    return _to_unit_float(images)[..., np.newaxis], labels


def read_mnist_idx(folder: PathLike) -> dict[str, np.ndarray]:
    """MNIST or Fashion-MNIST from the four canonical IDX files (same layout).

    Returns 28x28x1 images (whatever the header's size) and the labels as stored,
    refused unless they are 0..9.
    """
    folder = Path(folder)
    x_train, y_train = _read_idx_part(folder, "train")
    x_test, y_test = _read_idx_part(folder, "test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise FormatError(f"{folder}: train images are {x_train.shape[1:3]}, "
                          f"test images {x_test.shape[1:3]}")
    return _split(x_train, y_train, x_test, y_test)


# --------------------------------------------------------------------------- CIFAR-10

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_META = "batches.meta"
CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")
CIFAR10_IMAGE_BYTES = 3 * 32 * 32


def _numpy_reconstructors() -> dict[tuple[str, str], object]:
    """The only globals the CIFAR pickles reference: numpy's array reconstruction.

    The canonical files were written by numpy 1 (``numpy.core``); numpy 2 moved
    the module to ``numpy._core``. Both names map to the same function, looked
    up here without importing the deprecated ``numpy.core`` shim.
    """
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that asks for a callable outside the allowed numpy reconstruction."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays, dicts, lists, bytes and numbers, nothing else.

    A pickle names the callables it wants run; an ordinary unpickler imports and
    calls whatever that is (``os.system`` included), so a dataset file from a
    mirror or a colleague could run code. This one resolves only the numpy
    array reconstruction the CIFAR batches need and refuses every other name.
    """

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = _numpy_reconstructors()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in self._allowed))
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: a dataset pickle may only reference "
                f"numpy's array reconstruction ({allowed})") from None


def restricted_load(path: PathLike):
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (Python 2 byte strings kept as bytes)."""
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            return RestrictedUnpickler(handle, encoding="bytes").load()
        except UnsafePickleError as error:
            raise UnsafePickleError(f"{path}: {error}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
                AttributeError) as error:
            # what a truncated or garbled pickle stream raises part-way
            raise FormatError(f"{path}: not a complete CIFAR pickle ({type(error).__name__}: "
                              f"{error}); truncated or corrupt") from None


def read_cifar_batch(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch: uint8 NHWC images and int64 labels 0..9."""
    path = Path(path)
    batch = restricted_load(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise FormatError(f"{path}: expected a dict with b'data' and b'labels', found {keys}")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != CIFAR10_IMAGE_BYTES:
        found = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise FormatError(f"{path}: b'data' must be uint8 (N, {CIFAR10_IMAGE_BYTES}), "
                          f"found {found}")
    labels = np.asarray(batch[b"labels"])
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise FormatError(f"{path}: b'labels' must be {len(data)} integers, "
                          f"found {labels.dtype} {labels.shape}")
    check_label_range(str(path), labels, 0, 9)
    # Rows are channel-first planes: 1024 red, 1024 green, 1024 blue, each row-major 32x32.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def _cifar_class_names(folder: Path) -> tuple[str, ...]:
    """The names in batches.meta when present, else the canonical names (the same ones)."""
    meta_path = folder / CIFAR10_META
    if not meta_path.is_file():
        return CIFAR10_CLASS_NAMES
    meta = restricted_load(meta_path)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise FormatError(f"{meta_path}: expected b'label_names' with 10 names, found {names!r}")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def read_cifar10(folder: PathLike) -> dict[str, np.ndarray]:
    """CIFAR-10 from ``cifar-10-batches-py/`` (the "python version"), with its class names."""
    folder = Path(folder)
    missing = [name for name in (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
               if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)}; a cifar-10-batches-py "
                                f"folder holds data_batch_1..5, test_batch and batches.meta")
    train = [read_cifar_batch(folder / name) for name in CIFAR10_TRAIN_BATCHES]
    x_test, y_test = read_cifar_batch(folder / CIFAR10_TEST_BATCH)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return _split(_to_unit_float(x_train), y_train, _to_unit_float(x_test), y_test,
                  _cifar_class_names(folder))


# --------------------------------------------------------------------------- STL-10

STL10_FILES = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin")}
STL10_SIDE = 96
STL10_IMAGE_BYTES = 3 * STL10_SIDE * STL10_SIDE  # 27648
STL10_CLASS_NAMES_FILE = "class_names.txt"


def stl10_to_nhwc(raw: np.ndarray) -> np.ndarray:
    """STL-10's column-major images (channel, then column, then row) to NHWC.

    In the file the row index varies fastest, so reshaping C-order gives axes
    (image, channel, column, row); swapping to (image, row, column, channel)
    puts pixel (r, c) of channel k at [n, r, c, k].
    """
    return raw.reshape(-1, 3, STL10_SIDE, STL10_SIDE).transpose(0, 3, 2, 1)


def _read_stl10_labels(folder: Path, part: str) -> tuple[Path, np.ndarray]:
    """The images file of ``part`` and its labels 1..10 as stored; the images are not read."""
    images_name, labels_name = STL10_FILES[part]
    images_path, labels_path = folder / images_name, folder / labels_name
    for path in (images_path, labels_path):
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: missing {path.name}; an stl10_binary folder holds "
                                    f"train_X.bin, train_y.bin, test_X.bin, test_y.bin")
    size = images_path.stat().st_size
    if size == 0 or size % STL10_IMAGE_BYTES:
        raise FormatError(f"{images_path}: {size} bytes is not a whole number of "
                          f"{STL10_IMAGE_BYTES}-byte images (3x96x96 uint8): truncated or corrupt")
    n_images = size // STL10_IMAGE_BYTES
    labels = np.fromfile(labels_path, dtype=np.uint8)
    if len(labels) != n_images:
        raise FormatError(f"{labels_path}: {len(labels)} labels, but {images_path.name} holds "
                          f"{n_images} images: truncated or mismatched files")
    check_label_range(str(labels_path), labels, 1, 10, "STL-10 labels are 1..10")
    return images_path, labels


def read_stl10_labels(folder: PathLike) -> dict[str, np.ndarray]:
    """The train and test labels of ``stl10_binary/`` as 0..9, checked; reads 13 kB, not the images.

    Cheap enough for the configuration check (see :func:`read_mnist_labels`).
    """
    return {f"y_{part}": _read_stl10_labels(Path(folder), part)[1].astype(np.int64) - 1
            for part in ("train", "test")}


def _read_stl10_part(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels = _read_stl10_labels(folder, part)
    images = stl10_to_nhwc(np.fromfile(images_path, dtype=np.uint8))
    return _to_unit_float(images), labels.astype(np.int64) - 1


def read_stl10_binary(folder: PathLike) -> dict[str, np.ndarray]:
    """STL-10's labelled part from ``stl10_binary/`` (5000 train, 8000 test, 96x96x3).

    Labels 1..10 in the files become 0..9. The unlabelled images are not read.
    """
    folder = Path(folder)
    x_train, y_train = _read_stl10_part(folder, "train")
    x_test, y_test = _read_stl10_part(folder, "test")
    names_path = folder / STL10_CLASS_NAMES_FILE
    names = names_path.read_text().split() if names_path.is_file() else None
    if names is not None and len(names) != 10:
        raise FormatError(f"{names_path}: expected 10 class names, found {len(names)}")
    return _split(x_train, y_train, x_test, y_test, names)


# --------------------------------------------------------------------------- a user's npz

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPY_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0,
                      (2, 0): npy_format.read_array_header_2_0}
# Deflate shrinks data at most ~1032:1: an entry that claims more is corrupt or a zip bomb.
MAX_DEFLATE_RATIO = 1032


def _size(n_bytes: int) -> str:
    return f"{n_bytes:,} bytes" + (f" ({n_bytes / 2**30:,.1f} GiB)" if n_bytes >= 2**30 else "")


def _few(values: np.ndarray, limit: int = 10) -> str:
    """``[1, 2, 3]``, cut after ``limit`` values: a message stays readable."""
    shown = values[:limit].tolist()
    if len(values) <= limit:
        return str(shown)
    return str(shown)[:-1] + f", ... ({len(values)} in all)]"


def _not_an_npz(path: Path) -> FormatError:
    """Why ``path``, which is not a zip archive, is no npz; its first bytes hint at what it is."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(b"\x93NUMPY"):
        return FormatError(f"{path}: a single .npy array, not an npz; save the arrays together "
                           f"with numpy.savez(path, x_train=..., y_train=..., x_test=..., "
                           f"y_test=...)")
    return FormatError(f"{path}: not an npz file: an npz is a zip archive of .npy arrays (as "
                       f"numpy.savez writes), and this file is not a zip archive (it starts "
                       f"with {head!r})")


def _npy_header(path: Path, archive: zipfile.ZipFile,
                info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from one entry's .npy header, checked against the entry's size.

    np.load allocates what the header declares before reading a byte of data, so
    a header that lies (a terabyte declared) would end in a bare MemoryError.
    """
    key = info.filename.removesuffix(".npy")
    with archive.open(info) as member:
        try:
            version = npy_format.read_magic(member)
            if version not in NPY_HEADER_READERS:
                raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
            shape, _, dtype = NPY_HEADER_READERS[version](member)
        except ValueError as error:
            raise FormatError(f"{path}: array {key}: not a valid .npy header ({error})") from None
        header_size = member.tell()
    if dtype.hasobject:  # pickled: its size says nothing, and loading it could run code
        raise FormatError(f"{path}: array {key} holds Python objects (dtype {dtype}); arrays "
                          f"must be plain numbers: advfit reads npz files with "
                          f"allow_pickle=False and never unpickles")
    declared = header_size + math.prod(shape) * dtype.itemsize
    if declared != info.file_size:
        raise FormatError(f"{path}: array {key}: its header declares {dtype} {tuple(shape)}, "
                          f"i.e. {_size(declared)}, but the entry holds {_size(info.file_size)}: "
                          f"truncated or corrupt")
    if ((info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size)
            or (info.compress_type == zipfile.ZIP_DEFLATED
                and info.file_size > MAX_DEFLATE_RATIO * info.compress_size + 4096)):
        raise FormatError(f"{path}: array {key}: the zip entry claims {_size(info.file_size)} "
                          f"from {_size(info.compress_size)} of stored data: corrupt, or a zip "
                          f"bomb")
    return tuple(shape), dtype


def npz_headers(path: PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each array in the npz at ``path``, from the .npy headers alone.

    Refuses, naming the file (and array): a file that is no zip archive, an
    entry that is no valid .npy, an array of Python objects, and an array whose
    header declares another size than its entry holds. Loads no array.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an npz file (a folder of class "
                                f"subfolders is dataset image_folder)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise _not_an_npz(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return {info.filename.removesuffix(".npy"): _npy_header(path, archive, info)
                    for info in archive.infolist() if info.filename.endswith(".npy")}
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise FormatError(f"{path}: corrupt npz (zip) file ({error})") from None


def _user_npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    headers = npz_headers(path)
    missing = [key for key in NPZ_KEYS if key not in headers]
    if missing:
        raise FormatError(f"{path}: missing array(s) {', '.join(missing)}; found "
                          f"{', '.join(headers) or 'none'} (need {', '.join(NPZ_KEYS)})")
    return headers


def _load_npz(path: Path, keys) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an npz whose headers were checked; errors name file and array."""
    arrays = {}
    with np.load(path, allow_pickle=False) as data:
        for key in keys:
            try:
                arrays[key] = data[key]
            except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as error:
                raise FormatError(f"{path}: array {key} cannot be read ({type(error).__name__}: "
                                  f"{error}); truncated or corrupt") from None
    return arrays


def _image_shape(name: str, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, ...]:
    """The NHWC shape of a user's image array of ``shape`` and ``dtype``, or a FormatError.

    Needs only the array's header, so the configuration check runs it too.
    """
    if len(shape) == 3:  # NHW: grayscale without a channel axis
        shape = (*shape, 1)
    if len(shape) != 4:
        raise FormatError(f"{name}: images must be NHW or NHWC, found {len(shape)} dims {shape}"
                          + ("; reshape flat rows to (N, H, W)" if len(shape) == 2 else ""))
    if shape[-1] > 4 and shape[1] in (1, 3):
        raise FormatError(f"{name}: shape {shape} looks channel-first (NCHW); "
                          f"transpose it to NHWC, e.g. x.transpose(0, 2, 3, 1)")
    if shape[0] == 0:
        raise FormatError(f"{name}: no images")
    if dtype != np.uint8 and dtype.kind != "f":
        raise FormatError(f"{name}: dtype {dtype} not accepted; give uint8 (0..255) "
                          f"or floats in [0, 1]")
    return shape


def _check_images(name: str, x: np.ndarray) -> np.ndarray:
    """A user's image array -> float32 NHWC in [0, 1], or a FormatError naming the problem."""
    x = x.reshape(_image_shape(name, x.shape, x.dtype))
    if x.dtype == np.uint8:
        return _to_unit_float(x)
    if not np.isfinite(x).all():
        raise FormatError(f"{name}: contains NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        raise FormatError(f"{name}: float values must lie in [0, 1], found {low:g}..{high:g}"
                          + ("; divide 0..255 data by 255" if high > 1.0 else ""))
    return x.astype(np.float32)


def _check_labels(name: str, y: np.ndarray, n_images: int) -> np.ndarray:
    """A user's label array of shape (N,), its dtype kept, or a FormatError naming the problem.

    The dtype is kept until the classes are checked: uint64 labels above 2**63
    would turn negative as int64.
    """
    if y.ndim == 2 and y.shape[1] == 1:  # Keras' load_data() gives (N, 1)
        y = y[:, 0]
    if y.ndim != 1:
        raise FormatError(f"{name}: labels must have shape (N,) or (N, 1), found {y.shape}"
                          + ("; one-hot labels: use y.argmax(axis=1)" if y.ndim == 2 else ""))
    if y.dtype.kind not in "iu":
        raise FormatError(f"{name}: labels must be integers 0..C-1, found dtype {y.dtype}")
    if len(y) != n_images:
        raise FormatError(f"{name}: {len(y)} labels for {n_images} images")
    negative = np.flatnonzero(y < 0)
    if negative.size:
        i = int(negative[0])
        raise FormatError(f"{name}: negative label {y[i]} at position {i}; labels must be 0..C-1")
    return y


def _check_classes(path: Path, y_train: np.ndarray, y_test: np.ndarray) -> int:
    """C = max(y_train) + 1, refused unless C >= 2 and each part holds every class 0..C-1.

    One stray huge label would otherwise make C huge (and surface later as an
    impossible number of splits); a single class gives accuracy 1.0 whatever
    is learnt; a class without training images cannot be learnt, and one
    without test images is left out of every test measure.
    """
    top = int(y_train.max())
    if top >= len(y_train):  # more classes than images: one of them has no image
        i = int(np.argmax(y_train))
        raise FormatError(f"{path}: y_train: label {top} at position {i} cannot be a class: "
                          f"labels must be 0..C-1 with every class present, and "
                          f"{len(y_train)} training images hold at most classes "
                          f"0..{len(y_train) - 1}")
    n_classes = top + 1
    if n_classes < 2:
        raise FormatError(f"{path}: y_train: every label is 0, a single class; a classifier "
                          f"needs at least 2 classes (with one, accuracy is 1.0 whatever it "
                          f"learns)")
    absent = np.flatnonzero(np.bincount(y_train.astype(np.int64), minlength=n_classes) == 0)
    if absent.size:
        raise FormatError(f"{path}: y_train: classes {_few(absent)} of 0..{n_classes - 1} have "
                          f"no training image; labels must be 0..C-1 with every class present")
    if int(y_test.max()) >= n_classes:
        i = int(np.argmax(y_test))
        raise FormatError(f"{path}: y_test has label {y_test[i]}, but y_train only has classes "
                          f"0..{n_classes - 1} (position {i} of y_test)")
    absent = np.setdiff1d(np.arange(n_classes), y_test)
    if absent.size:
        raise FormatError(f"{path}: y_test: classes {_few(absent)} of 0..{n_classes - 1} have "
                          f"no test image; the test part must hold every class of y_train")
    return n_classes


def _check_same_shape(path: Path, train: tuple[int, ...], test: tuple[int, ...]) -> None:
    if tuple(train) != tuple(test):
        raise FormatError(f"{path}: x_train images are {tuple(train)}, "
                          f"x_test images {tuple(test)}")


def _check_class_names(path: Path, shape: tuple[int, ...], dtype: np.dtype,
                       n_classes: int) -> None:
    if dtype.kind != "U" or tuple(shape) != (n_classes,):
        raise FormatError(f"{path}: class_names must be {n_classes} strings, "
                          f"found {dtype} {tuple(shape)}")


def user_npz_summary(path: PathLike) -> tuple[int, int, int, tuple[int, ...]]:
    """(n_train, n_test, n_classes, HWC image shape) of a user's npz, read cheaply.

    Runs every check of :func:`read_user_npz` that needs no image loaded (the
    .npy headers, the labels and classes), so that the configuration check
    refuses a bad file before any job; only pixel values are left to the reader.
    """
    path = Path(path)
    headers = _user_npz_headers(path)
    shapes = {part: _image_shape(f"{path}: x_{part}", *headers[f"x_{part}"])
              for part in ("train", "test")}
    loaded = _load_npz(path, ("y_train", "y_test"))
    y_train, y_test = (_check_labels(f"{path}: y_{part}", loaded[f"y_{part}"], shapes[part][0])
                       for part in ("train", "test"))
    _check_same_shape(path, shapes["train"][1:], shapes["test"][1:])
    n_classes = _check_classes(path, y_train, y_test)
    if "class_names" in headers:
        _check_class_names(path, *headers["class_names"], n_classes)
    return len(y_train), len(y_test), n_classes, shapes["train"][1:]


def read_user_npz(path: PathLike) -> dict[str, np.ndarray]:
    """A user's ``.npz`` with x_train, y_train, x_test, y_test (and optional class_names).

    Images: uint8 0..255 or floats in [0, 1], NHW or NHWC. Labels: integers
    0..C-1 with C = max(y_train) + 1 >= 2, every class present in both parts,
    no test label outside them. Never unpickles (object arrays are refused),
    and reads each array's header before loading it.
    """
    path = Path(path)
    headers = _user_npz_headers(path)
    raw = _load_npz(path, [key for key in (*NPZ_KEYS, "class_names") if key in headers])
    arrays = {}
    for part in ("train", "test"):
        arrays[f"x_{part}"] = _check_images(f"{path}: x_{part}", raw[f"x_{part}"])
        arrays[f"y_{part}"] = _check_labels(f"{path}: y_{part}", raw[f"y_{part}"],
                                            len(arrays[f"x_{part}"]))
    _check_same_shape(path, arrays["x_train"].shape[1:], arrays["x_test"].shape[1:])
    n_classes = _check_classes(path, arrays["y_train"], arrays["y_test"])
    arrays["y_train"], arrays["y_test"] = (arrays[f"y_{part}"].astype(np.int64)
                                           for part in ("train", "test"))
    if "class_names" in raw:
        names = raw["class_names"]
        _check_class_names(path, names.shape, names.dtype, n_classes)
        arrays["class_names"] = names
    return arrays


# --------------------------------------------------------------------------- image folders

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                            ".ppm", ".pgm"})
# Keras' image_dataset_from_directory resizes bilinearly by default; do the same.
RESIZE_FILTER = "BILINEAR"


def _hidden(relative: Path) -> bool:
    """Hidden files and anything inside hidden folders (.git, .ipynb_checkpoints)."""
    return any(part.startswith(".") for part in relative.parts)


def list_class_folders(root: Path) -> dict[str, list[Path]]:
    """``{class name: sorted image files}`` for each (non-hidden) subfolder of ``root``.

    Files are found at any depth below the class folder; files whose suffix is
    not an image suffix (a README, a .DS_Store) are skipped.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not _hidden(Path(p.name)))
    if not classes:
        raise FormatError(f"{root}: no class subfolders; expected "
                          f"{root}/<class name>/<image files>")
    found = {}
    for name in classes:
        files = sorted(p for p in (root / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not _hidden(p.relative_to(root)))
        if not files:
            raise FormatError(f"{root / name}: no images (looked for "
                              f"{', '.join(sorted(IMAGE_SUFFIXES))})")
        found[name] = files
    return found


def check_class_count(root: Path, names: list[str]) -> None:
    """At least 2 class folders: with one, accuracy is 1.0 whatever a model learns."""
    if len(names) < 2:
        raise FormatError(f"{root}: a single class folder ({', '.join(names)}); a classifier "
                          f"needs at least 2 classes (with one, accuracy is 1.0 whatever it "
                          f"learns)")


def load_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 (size, size, 3) RGB, from any mode, resized (aspect not kept).

    An image of more than PIL's ``Image.MAX_IMAGE_PIXELS`` is refused as a
    possible decompression bomb (a small file that decodes to gigabytes).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL only warns up to twice its limit, then decodes the whole image anyway.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                rgb = image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise FormatError(f"{path}: refused as a possible decompression bomb, more pixels "
                          f"than PIL.Image.MAX_IMAGE_PIXELS ({Image.MAX_IMAGE_PIXELS}): {error} "
                          f"If the image is genuine, shrink it first (advfit resizes every "
                          f"image to {size}x{size} anyway)") from None
    except (UnidentifiedImageError, OSError) as error:
        raise FormatError(f"{path}: not a readable image ({error})") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), getattr(Image.Resampling, RESIZE_FILTER))
    return np.asarray(rgb, dtype=np.uint8)


def _load_images(paths: list[Path], size: int) -> np.ndarray:
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        images[i] = load_image(path, size)
    return _to_unit_float(images)


def _files_and_labels(classes: dict[str, list[Path]], names: list[str]):
    paths = [p for name in names for p in classes[name]]
    labels = np.array([i for i, name in enumerate(names) for _ in classes[name]], dtype=np.int64)
    return paths, labels


def _stratified_split(classes: dict[str, list[Path]], test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    too_small = [name for name, files in classes.items() if len(files) < 2]
    if too_small:
        raise FormatError(f"classes {too_small} have fewer than 2 images: a stratified split "
                          f"needs at least one training and one test image per class")
    paths, labels = _files_and_labels(classes, list(classes))
    try:
        train, test = train_test_split(np.arange(len(paths)), test_size=test_fraction,
                                       stratify=labels, random_state=seed)
    except ValueError as error:  # e.g. fewer test images than classes
        raise FormatError(f"cannot split {len(paths)} images of {len(classes)} classes with "
                          f"test_fraction {test_fraction}: {error}") from None
    # Keep file order inside each part, so the arrays do not depend on the split's internal order.
    train.sort()
    test.sort()
    return [paths[i] for i in train], labels[train], [paths[i] for i in test], labels[test]


def read_image_folder(root: PathLike, size: int, test_fraction: float | None = None,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """Images in class subfolders, resized to ``size`` x ``size`` RGB.

    Either ``root/train/<class>/...`` and ``root/test/<class>/...`` (the same
    classes in both), or ``root/<class>/...`` split into train and test,
    stratified by class, with ``test_fraction`` and ``seed``. Labels follow the
    sorted class names, returned as ``class_names``.
    """
    root = Path(root)
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    has_parts = (root / "train").is_dir() and (root / "test").is_dir()
    if has_parts:
        if test_fraction is not None:
            raise ValueError(f"{root} already has train/ and test/ folders; test_fraction "
                             f"({test_fraction}) applies only to a single folder of classes")
        train_classes = list_class_folders(root / "train")
        test_classes = list_class_folders(root / "test")
        if set(train_classes) != set(test_classes):
            only_train = sorted(set(train_classes) - set(test_classes))
            only_test = sorted(set(test_classes) - set(train_classes))
            raise FormatError(f"{root}: train/ and test/ have different classes: only in train "
                              f"{only_train}, only in test {only_test}")
        names = sorted(train_classes)
        check_class_count(root, names)
        train_paths, y_train = _files_and_labels(train_classes, names)
        test_paths, y_test = _files_and_labels(test_classes, names)
    else:
        if test_fraction is None or not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"{root} has no train/ and test/ folders, so its classes are split: "
                             f"test_fraction must be between 0 and 1, got {test_fraction}")
        classes = list_class_folders(root)
        names = sorted(classes)
        check_class_count(root, names)
        train_paths, y_train, test_paths, y_test = _stratified_split(
            classes, float(test_fraction), int(seed))
    log.info("%s: %d train and %d test images of %d classes, resized to %dx%d",
             root, len(train_paths), len(test_paths), len(names), size, size)
    return _split(_load_images(train_paths, size), y_train,
                  _load_images(test_paths, size), y_test, names)
