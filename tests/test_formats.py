"""Readers on the real files (MNIST, Fashion-MNIST, CIFAR-10) and on files written in the exact
layouts (IDX, CIFAR pickles, STL-10 binaries, npz, image folders), including broken ones."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from advfit.data import formats
from advfit.data.datasets import check_arrays
from advfit.data.formats import FormatError, UnsafePickleError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_DIR = SHARED / "mnist"
CIFAR_DIR = SHARED / "cifar-10-batches-py"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(),
                                 reason=f"real MNIST copy not found at {MNIST_DIR}")
needs_cifar = pytest.mark.skipif(not CIFAR_DIR.is_dir(),
                                 reason=f"real CIFAR-10 copy not found at {CIFAR_DIR}")


# --------------------------------------------------------------------------- MNIST, real files

@pytest.fixture(scope="module")
def mnist():
    if not MNIST_DIR.is_dir():
        pytest.skip(f"real MNIST copy not found at {MNIST_DIR}")
    return formats.read_mnist_idx(MNIST_DIR)


def test_mnist_shapes_labels_and_class_counts(mnist):
    check_arrays(mnist, "mnist")
    assert mnist["x_train"].shape == (60000, 28, 28, 1)
    assert mnist["x_test"].shape == (10000, 28, 28, 1)
    assert mnist["y_train"].dtype == np.int64
    assert mnist["y_train"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist["y_test"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(mnist["y_train"]).tolist() == [5923, 6742, 5958, 6131, 5842,
                                                     5421, 5918, 6265, 5851, 5949]
    assert np.bincount(mnist["y_test"]).tolist() == [980, 1135, 1032, 1010, 982,
                                                    892, 958, 1028, 974, 1009]
    assert mnist["x_train"].min() == 0.0 and mnist["x_train"].max() == 1.0
    assert mnist["x_train"].mean(dtype=np.float64) == pytest.approx(0.1307, abs=1e-4)
    assert "class_names" not in mnist  # IDX files do not name their classes


@needs_mnist
def test_truncated_real_gz_names_the_file(tmp_path):
    for name in formats.MNIST_FILES.values():
        os.symlink(MNIST_DIR / name, tmp_path / name)
    cut = tmp_path / "t10k-labels-idx1-ubyte.gz"
    cut.unlink()
    cut.write_bytes((MNIST_DIR / cut.name).read_bytes()[:3000])  # of 4542 bytes
    with pytest.raises(FormatError, match=r"t10k-labels-idx1-ubyte\.gz: truncated gzip file"):
        formats.read_mnist_idx(tmp_path)


# --------------------------------------------------------------------------- IDX, written here

def _idx_bytes(magic: int, dims: list[int], payload: bytes) -> bytes:
    return (magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + payload)


def _write_tiny_mnist(folder: Path, gz: bool = True, n_train: int = 3, n_test: int = 2) -> None:
    """n images of 4x5 pixels whose value at (r, c) is 10 * index + 5 * r + c."""
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = np.array([[[10 * i + 5 * r + c for c in range(5)] for r in range(4)]
                           for i in range(n)], dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8)
        for kind, magic, array in (("images-idx3", 2051, images), ("labels-idx1", 2049, labels)):
            data = _idx_bytes(magic, list(array.shape), array.tobytes())
            name = f"{part}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "decompressed"])
def test_idx_pixels_land_where_the_header_says(tmp_path, gz):
    _write_tiny_mnist(tmp_path, gz=gz)
    arrays = formats.read_mnist_idx(tmp_path)
    assert arrays["x_train"].shape == (3, 4, 5, 1) and arrays["x_test"].shape == (2, 4, 5, 1)
    assert arrays["x_train"][2, 3, 1, 0] * 255 == pytest.approx(10 * 2 + 5 * 3 + 1)
    assert arrays["y_train"].tolist() == [0, 1, 2]


def test_idx_size_that_disagrees_with_header(tmp_path):
    _write_tiny_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-7]))  # a valid gzip of too few bytes
    with pytest.raises(FormatError, match=r"train-images-idx3-ubyte\.gz: header says dims "
                                          r"\[3, 4, 5\], i\.e\. 76 bytes, but .* has 69"):
        formats.read_mnist_idx(tmp_path)


def test_idx_wrong_magic_names_expected_and_found(tmp_path):
    _write_tiny_mnist(tmp_path)
    # labels where the images should be
    shutil.copy(tmp_path / "train-labels-idx1-ubyte.gz", tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(FormatError, match="IDX magic number 2049, expected 2051"):
        formats.read_mnist_idx(tmp_path)


def test_idx_corrupt_gzip_and_missing_file(tmp_path):
    _write_tiny_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC in the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"t10k-images-idx3-ubyte\.gz: corrupt gzip file"):
        formats.read_mnist_idx(tmp_path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-images-idx3-ubyte.gz"):
        formats.read_mnist_idx(tmp_path)


def test_idx_image_and_label_counts_must_agree(tmp_path):
    _write_tiny_mnist(tmp_path)
    labels = _idx_bytes(2049, [2], bytes([0, 1]))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    with pytest.raises(FormatError, match="has 3 images but train-labels-idx1-ubyte.gz 2 labels"):
        formats.read_mnist_idx(tmp_path)


# --------------------------------------------------------------------------- Fashion-MNIST

@pytest.fixture(scope="module")
def fashion():
    if not FASHION_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST not found at {FASHION_DIR} "
                    f"(apt-get install dataset-fashion-mnist)")
    return formats.read_mnist_idx(FASHION_DIR)


def test_fashion_mnist_shapes_and_labels(fashion):
    check_arrays(fashion, "fashion_mnist")
    assert fashion["x_train"].shape == (60000, 28, 28, 1)
    assert fashion["x_test"].shape == (10000, 28, 28, 1)
    assert fashion["y_train"][:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert fashion["y_test"][:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(fashion["y_train"]).tolist() == [6000] * 10
    assert np.bincount(fashion["y_test"]).tolist() == [1000] * 10
    assert fashion["x_train"].mean(dtype=np.float64) == pytest.approx(0.2860, abs=1e-4)


# --------------------------------------------------------------------------- CIFAR-10, real files

@pytest.fixture(scope="module")
def cifar():
    if not CIFAR_DIR.is_dir():
        pytest.skip(f"real CIFAR-10 copy not found at {CIFAR_DIR}")
    return formats.read_cifar10(CIFAR_DIR)


def test_cifar10_labels_counts_and_channel_means(cifar):
    check_arrays(cifar, "cifar10")
    assert cifar["x_train"].shape == (50000, 32, 32, 3)
    assert cifar["x_test"].shape == (10000, 32, 32, 3)
    assert cifar["y_train"][:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert cifar["y_test"][:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert np.bincount(cifar["y_train"]).tolist() == [5000] * 10
    assert np.bincount(cifar["y_test"]).tolist() == [1000] * 10
    means = cifar["x_train"].mean(axis=(0, 1, 2), dtype=np.float64)
    np.testing.assert_allclose(means, [0.4914, 0.4822, 0.4465], atol=1e-3)
    assert cifar["class_names"].tolist() == list(formats.CIFAR10_CLASS_NAMES)


@needs_cifar
def test_cifar10_channel_planes_become_the_last_axis(cifar):
    raw = formats.restricted_load(CIFAR_DIR / "data_batch_1")[b"data"]
    # pixel (row 7, column 19) of image 123: red at 7*32+19, green 1024 later, blue 2048 later
    offset = 7 * 32 + 19
    expected = raw[123, [offset, 1024 + offset, 2048 + offset]] / 255
    np.testing.assert_allclose(cifar["x_train"][123, 7, 19], expected, rtol=1e-6)


@needs_cifar
def test_cifar10_truncated_batch(tmp_path):
    for name in (*formats.CIFAR10_TRAIN_BATCHES, formats.CIFAR10_TEST_BATCH):
        os.symlink(CIFAR_DIR / name, tmp_path / name)
    (tmp_path / "data_batch_1").unlink()
    (tmp_path / "data_batch_1").write_bytes((CIFAR_DIR / "data_batch_1").read_bytes()[:1_000_000])
    with pytest.raises(FormatError, match=r"data_batch_1: not a complete CIFAR pickle .* truncated"):
        formats.read_cifar10(tmp_path)


# --------------------------------------------------------------------------- CIFAR pickles, written here

class _Python2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it, like the canonical CIFAR files: byte strings as
    BINSTRING opcodes (Python 3 would route them through _codecs.encode instead)."""

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[bytes] = save_bytes


def _dump_python2(obj, path: Path) -> None:
    with open(path, "wb") as handle:
        _Python2Pickler(handle, protocol=2).dump(obj)


def _write_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    _dump_python2({b"batch_label": b"tiny", b"labels": labels, b"data": data}, path)


def test_cifar_batch_layout_written_here(tmp_path):
    data = np.zeros((2, 3072), dtype=np.uint8)
    data[1, 2 * 32 + 5] = 255            # red plane, row 2, column 5
    data[1, 1024 + 2 * 32 + 5] = 51      # green
    data[1, 2048 + 5 * 32 + 2] = 102     # blue at row 5, column 2 (transposed position)
    _write_batch(tmp_path / "b", data, [3, 7])
    images, labels = formats.read_cifar_batch(tmp_path / "b")
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [3, 7]
    assert images[1, 2, 5].tolist() == [255, 51, 0]
    assert images[1, 5, 2].tolist() == [0, 0, 102]


def test_cifar_batch_with_wrong_content(tmp_path):
    _write_batch(tmp_path / "b", np.zeros((2, 100), dtype=np.uint8), [0, 1])
    with pytest.raises(FormatError, match=r"b'data' must be uint8 \(N, 3072\), found uint8 \(2, 100\)"):
        formats.read_cifar_batch(tmp_path / "b")
    _write_batch(tmp_path / "b", np.zeros((2, 3072), dtype=np.uint8), [0, 10])
    with pytest.raises(FormatError, match="labels must be 0..9, found 0..10"):
        formats.read_cifar_batch(tmp_path / "b")


class _RunsCommand:
    """Unpickling an instance calls os.system(command): what a malicious dataset file would do."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _CallsGlobal:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("payload_global", ["os.system", "builtins.eval", "numpy.load"])
def test_restricted_unpickler_refuses_other_globals(tmp_path, payload_global):
    marker = tmp_path / "pwned"
    command = f"touch {marker}"
    payload = {
        "os.system": _RunsCommand(command),
        "builtins.eval": _CallsGlobal(eval, f"__import__('os').system({command!r})"),
        "numpy.load": _CallsGlobal(np.load, str(tmp_path / "x.npy")),
    }[payload_global]
    data = np.zeros((1, 3072), dtype=np.uint8)
    batch = tmp_path / "data_batch_1"
    _dump_python2({b"data": data, b"labels": [0], b"evil": payload}, batch)
    function = payload_global.split(".")[1]
    with pytest.raises(UnsafePickleError, match=rf"data_batch_1: refusing to load \w+\.{function}"):
        formats.read_cifar_batch(batch)
    assert not marker.exists()  # nothing ran
    # The plain unpickler would have run it: the test's payload is real.
    if payload_global == "os.system":
        with open(batch, "rb") as handle:
            pickle.load(handle, encoding="bytes")
        assert marker.exists()


# --------------------------------------------------------------------------- STL-10, written here

def _write_stl(folder: Path, n_train: int = 3, n_test: int = 2) -> dict[str, np.ndarray]:
    """Zeros except known values at known (image, row, column, channel), in the file's layout.

    Column-major per channel: byte n*27648 + channel*9216 + column*96 + row.
    """
    folder.mkdir(parents=True, exist_ok=True)
    pixels = {"train": [(1, 10, 20, 2, 200), (2, 95, 0, 0, 17)], "test": [(0, 3, 90, 1, 99)]}
    for part, n in (("train", n_train), ("test", n_test)):
        raw = np.zeros(n * formats.STL10_IMAGE_BYTES, dtype=np.uint8)
        for image, row, column, channel, value in pixels[part]:
            raw[image * 27648 + channel * 9216 + column * 96 + row] = value
        raw.tofile(folder / f"{part}_X.bin")
        np.arange(1, n + 1, dtype=np.uint8).tofile(folder / f"{part}_y.bin")  # labels 1..n
    return pixels


def test_stl10_pixel_lands_at_row_column_channel(tmp_path):
    pixels = _write_stl(tmp_path)
    (tmp_path / "class_names.txt").write_text("\n".join(
        ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]) + "\n")
    arrays = formats.read_stl10_binary(tmp_path)
    check_arrays(arrays, "stl10")
    assert arrays["x_train"].shape == (3, 96, 96, 3) and arrays["x_test"].shape == (2, 96, 96, 3)
    for part in ("train", "test"):
        x = arrays[f"x_{part}"]
        for image, row, column, channel, value in pixels[part]:
            assert x[image, row, column, channel] * 255 == pytest.approx(value)
        assert np.count_nonzero(x) == len(pixels[part])
    assert arrays["y_train"].tolist() == [0, 1, 2] and arrays["y_test"].tolist() == [0, 1]
    assert arrays["class_names"][7] == "monkey"


def test_stl10_broken_files(tmp_path):
    _write_stl(tmp_path)
    images = tmp_path / "train_X.bin"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(FormatError, match=r"train_X\.bin: 82844 bytes is not a whole number of "
                                          r"27648-byte images"):
        formats.read_stl10_binary(tmp_path)
    _write_stl(tmp_path, n_test=3)
    np.array([1, 2], dtype=np.uint8).tofile(tmp_path / "test_y.bin")
    with pytest.raises(FormatError, match=r"test_y\.bin: 2 labels, but test_X\.bin holds 3 images"):
        formats.read_stl10_binary(tmp_path)
    _write_stl(tmp_path)
    np.array([1, 11, 2], dtype=np.uint8).tofile(tmp_path / "train_y.bin")
    with pytest.raises(FormatError, match=r"train_y\.bin: STL-10 labels are 1\.\.10, found 1\.\.11"):
        formats.read_stl10_binary(tmp_path)


# --------------------------------------------------------------------------- a user's npz

def _npz(tmp_path, **arrays) -> Path:
    rng = np.random.default_rng(0)
    base = {"x_train": rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),
            "y_train": np.array([0, 1, 2, 0, 1, 2]),
            "x_test": rng.integers(0, 256, (3, 5, 4), dtype=np.uint8),
            "y_test": np.array([2, 1, 0])}
    base.update(arrays)
    path = tmp_path / "mine.npz"
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def test_npz_uint8_nhw_is_scaled_and_gets_a_channel(tmp_path):
    path = _npz(tmp_path, class_names=np.array(["a", "b", "c"]))
    arrays = formats.read_user_npz(path)
    check_arrays(arrays, "npz")
    raw = np.load(path)["x_train"]
    assert arrays["x_train"].shape == (6, 5, 4, 1) and arrays["x_train"].dtype == np.float32
    assert arrays["x_train"][4, 3, 2, 0] == np.float32(raw[4, 3, 2]) / np.float32(255)
    assert arrays["y_train"].dtype == np.int64 and arrays["class_names"].tolist() == ["a", "b", "c"]


def test_npz_float_nhwc_and_keras_style_labels(tmp_path):
    x = np.linspace(0, 1, 6 * 2 * 2 * 3).reshape(6, 2, 2, 3)
    path = _npz(tmp_path, x_train=x, x_test=x[:3], y_train=np.array([[0], [1], [2], [0], [1], [2]]))
    arrays = formats.read_user_npz(path)
    assert arrays["x_train"].dtype == np.float32 and arrays["x_train"].shape == (6, 2, 2, 3)
    assert arrays["y_train"].tolist() == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("change, message", [
    ({"x_train": np.full((6, 5, 4), 2.0)}, r"x_train: float values must lie in \[0, 1\], found 2\.\.2"),
    ({"x_train": np.zeros((6, 5, 4), dtype=np.int64)}, r"x_train: dtype int64 not accepted"),
    ({"x_test": np.zeros((3, 20))}, r"x_test: images must be NHW or NHWC, found 2 dims \(3, 20\)"),
    ({"x_train": np.zeros((6, 3, 8, 8))}, r"x_train: shape \(6, 3, 8, 8\) looks channel-first"),
    ({"x_test": np.zeros((3, 5, 4), dtype=np.float32) + np.nan}, r"x_test: contains NaN"),
    ({"y_train": np.array([0, 1, 2, 0, 1, 2.0])}, r"y_train: labels must be integers 0..C-1, found dtype float64"),
    ({"y_train": np.array([0, 1, 3, 0, 1, 3])}, r"y_train: classes \[2\] of 0..3 have no training image"),
    ({"y_train": np.array([0, 1, 2, 0, 1])}, r"y_train: 5 labels for 6 images"),
    ({"y_test": np.array([0, 1, 3])}, r"y_test has label 3, but y_train only has classes 0..2"),
    ({"y_test": np.array([0, -1, 2])}, r"y_test: negative label -1"),
    ({"x_test": np.zeros((3, 4, 4), dtype=np.uint8)}, r"x_train images are \(5, 4, 1\), x_test images \(4, 4, 1\)"),
    ({"y_test": None}, r"missing array\(s\) y_test"),
    ({"class_names": np.array(["a", "b"])}, r"class_names must be 3 strings"),
])
def test_npz_errors_name_the_array_and_the_problem(tmp_path, change, message):
    with pytest.raises(FormatError, match=message):
        formats.read_user_npz(_npz(tmp_path, **change))


def test_npz_object_arrays_are_refused(tmp_path):
    path = _npz(tmp_path, y_train=np.array([0, 1, 2, 0, 1, "2"], dtype=object))
    with pytest.raises(FormatError, match="allow_pickle"):
        formats.read_user_npz(path)


# --------------------------------------------------------------------------- image folders

COLOURS = {"cat": (255, 0, 0), "dog": (0, 0, 255), "owl": (0, 128, 0)}


def _write_images(folder: Path, per_class: int, sizes=((12, 9), (7, 7))) -> None:
    from PIL import Image

    for name, colour in COLOURS.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", sizes[i % len(sizes)], colour).save(folder / name / f"{i:02d}.png")
    (folder / "cat" / "README.txt").write_text("not an image")  # skipped
    (folder / "dog" / ".hidden").mkdir()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(folder / "dog" / ".hidden" / "x.png")  # skipped
    Image.new("L", (5, 5), 77).save(folder / "owl" / "gray.jpg")  # grayscale, one more owl


def test_image_folder_with_train_and_test(tmp_path):
    _write_images(tmp_path / "train", per_class=3)
    _write_images(tmp_path / "test", per_class=1)
    arrays = formats.read_image_folder(tmp_path, size=8)
    check_arrays(arrays, "image_folder")
    assert arrays["class_names"].tolist() == ["cat", "dog", "owl"]
    assert arrays["x_train"].shape == (10, 8, 8, 3) and arrays["x_test"].shape == (4, 8, 8, 3)
    assert arrays["y_train"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert arrays["y_test"].tolist() == [0, 1, 2, 2]
    # solid colours survive the resize; the grayscale owl (file order: 00.png, gray.jpg) is grey
    assert (arrays["x_train"][3] * 255).round().reshape(-1, 3).tolist() == [[0, 0, 255]] * 64
    assert (arrays["x_test"][3] * 255).round().reshape(-1, 3).tolist() == [[77, 77, 77]] * 64


def test_image_folder_split_is_stratified_and_seeded(tmp_path):
    _write_images(tmp_path, per_class=8)  # 8 cats, 8 dogs, 9 owls
    first = formats.read_image_folder(tmp_path, size=6, test_fraction=0.25, seed=1)
    assert np.bincount(first["y_test"]).tolist() == [2, 2, 3]  # ceil(0.25 * 25) = 7, stratified
    assert np.bincount(first["y_train"]).tolist() == [6, 6, 6]
    again = formats.read_image_folder(tmp_path, size=6, test_fraction=0.25, seed=1)
    np.testing.assert_array_equal(first["x_test"], again["x_test"])
    other = formats.read_image_folder(tmp_path, size=6, test_fraction=0.25, seed=2)
    assert np.bincount(other["y_test"]).tolist() == [2, 2, 3]


def test_image_folder_errors(tmp_path):
    from PIL import Image

    _write_images(tmp_path / "train", per_class=2)
    _write_images(tmp_path / "test", per_class=1)
    shutil.rmtree(tmp_path / "test" / "owl")
    Image.new("RGB", (3, 3)).save(tmp_path / "test" / "cat" / "x.png")
    (tmp_path / "test" / "eel").mkdir()
    Image.new("RGB", (3, 3)).save(tmp_path / "test" / "eel" / "x.png")
    with pytest.raises(FormatError, match=r"different classes: only in train \['owl'\], "
                                          r"only in test \['eel'\]"):
        formats.read_image_folder(tmp_path, size=8)
    with pytest.raises(ValueError, match="test_fraction .* applies only to a single folder"):
        formats.read_image_folder(tmp_path, size=8, test_fraction=0.2)
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(FormatError, match=r"train/empty: no images"):
        formats.list_class_folders(tmp_path / "train")
    with pytest.raises(ValueError, match="test_fraction must be between 0 and 1, got None"):
        formats.read_image_folder(tmp_path / "train", size=8)
    for name in ("bad.png", "bad2.png"):  # two, so that the stratified split can place them
        (tmp_path / "train" / "empty" / name).write_bytes(b"not a png")
    with pytest.raises(FormatError, match=r"bad2?\.png: not a readable image"):
        formats.read_image_folder(tmp_path / "train", size=8, test_fraction=0.5)
