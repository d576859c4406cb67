"""Bad data and labels are refused naming the file (and array), before any job runs.

Each case builds a broken file from real or tiny data and checks the message
of ``dataset_info`` (what the configuration check calls), of the reader (what
the prepare job calls), and for a few cases of ``snakemake --dry-run``.
"""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from numpy.lib import format as npy_format

from advfit.config import ConfigError, validate_config
from advfit.data import formats
from advfit.data.datasets import DATASETS, PooledData, dataset_info, read_dataset, take_subset
from advfit.data.formats import FormatError
from advfit.data.splits import make_splits

from conftest import ROOT, SHARED_DATA, run_snakemake

MNIST_DIR = SHARED_DATA / "mnist"
needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(),
                                 reason=f"real MNIST copy not found at {MNIST_DIR}")
UINT64_MAX = 2**64 - 1


def _mnist_with_label(tmp_path: Path, position: int, value: int) -> Path:
    """A copy of the real MNIST whose training label at ``position`` is ``value``."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in formats.MNIST_FILES.values():
        if "labels" not in name:
            (folder / name).symlink_to(MNIST_DIR / name)  # 55 MB of images, never changed
    shutil.copy(MNIST_DIR / "t10k-labels-idx1-ubyte.gz", folder)
    data = bytearray(gzip.decompress((MNIST_DIR / "train-labels-idx1-ubyte.gz").read_bytes()))
    data[8 + position] = value  # after the 8-byte header: magic, count
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(data)))
    return folder


def _npz(path: Path, **change) -> Path:
    """A valid tiny npz (3 classes, 6 train and 3 test 5x4 images) with ``change`` applied."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),
              "y_train": np.array([0, 1, 2, 0, 1, 2]),
              "x_test": rng.integers(0, 256, (3, 5, 4), dtype=np.uint8),
              "y_test": np.array([2, 1, 0])}
    arrays.update(change)
    np.savez(path, **arrays)
    return path


def _refused(spec: dict, pattern: str) -> str:
    """The message with which both the config check and the reader refuse ``spec``."""
    with pytest.raises((FormatError, OSError)) as at_config:
        dataset_info(spec)
    assert at_config.match(pattern)
    if spec["name"] in ("npz", "image_folder"):
        with pytest.raises((FormatError, OSError)) as at_read:
            read_dataset(spec)
        assert at_read.match(pattern)
    return str(at_config.value)


# --------------------------------------------------------------- 1, 6: labels past the class count

@needs_mnist
def test_an_mnist_label_of_200_is_refused_naming_file_value_and_position(tmp_path):
    folder = _mnist_with_label(tmp_path, position=7, value=200)
    spec = {"name": "mnist", "path": str(folder), "verify": False}
    labels = folder / "train-labels-idx1-ubyte.gz"
    pattern = (rf"{labels}: labels must be 0\.\.9 \(an MNIST-layout dataset has 10 classes\), "
               rf"found 0\.\.200 \(label 200 at position 7\)")
    with pytest.raises(FormatError, match=pattern):
        dataset_info(spec)  # what the config check calls: before any job
    with pytest.raises(FormatError, match=pattern):  # what the prepare job calls
        formats.read_mnist_idx(folder)
    # with a subset, the label check comes first, not scikit-learn's stratification error
    with pytest.raises(FormatError, match=pattern):
        read_dataset({**spec, "subset": {"train": 100}}, str(folder))


@needs_mnist
def test_the_real_mnist_copy_passes_the_label_check():
    assert dataset_info({"name": "mnist", "path": str(MNIST_DIR)}) == DATASETS["mnist"]
    labels = formats.read_mnist_labels(MNIST_DIR)
    assert np.bincount(labels["y_train"]).tolist()[:3] == [5923, 6742, 5958]


def test_an_stl10_label_past_10_is_refused_by_the_config_check(tmp_path):
    for part, labels in (("train", [1, 11]), ("test", [10])):
        images = np.zeros(len(labels) * formats.STL10_IMAGE_BYTES, np.uint8)
        images.tofile(tmp_path / f"{part}_X.bin")
        np.array(labels, dtype=np.uint8).tofile(tmp_path / f"{part}_y.bin")
    with pytest.raises(FormatError, match=rf"{tmp_path / 'train_y.bin'}: STL-10 labels are "
                                          rf"1\.\.10, found 1\.\.11 \(label 11 at position 1\)"):
        dataset_info({"name": "stl10", "path": str(tmp_path), "verify": False})


def test_a_negative_npz_label_with_a_subset_names_the_file(tmp_path):
    path = _npz(tmp_path / "mine.npz", y_train=np.array([0, 1, 2, -3, 1, 2, 0, 1]),
                x_train=np.zeros((8, 5, 4), np.uint8))
    _refused({"name": "npz", "path": str(path), "subset": {"train": 4}},
             rf"{path}: y_train: negative label -3 at position 3")


def test_a_subset_that_cannot_hold_every_class_names_its_key():
    y = np.array([0] * 98 + [1] * 2)
    arrays = {"x_train": np.zeros((100, 2, 2, 1), np.float32), "y_train": y,
              "x_test": np.zeros((2, 2, 2, 1), np.float32), "y_test": np.array([0, 1])}
    with pytest.raises(ValueError, match=r"dataset\.subset\.train: 10 of the 100 train images "
                                         r"leave class\(es\) \[1\] without an image"):
        take_subset(arrays, {"train": 10})
    with pytest.raises(ValueError, match=r"dataset\.subset\.train: 1 of the 100 .* no stratified"):
        take_subset(arrays, {"train": 1})


# --------------------------------------------------------------- 2: too few or missing classes

@pytest.mark.parametrize("change, pattern", [
    ({"y_train": np.zeros(6, int), "y_test": np.zeros(3, int)},
     r"y_train: every label is 0, a single class; a classifier needs at least 2 classes"),
    ({"y_train": np.array([0, 1, 3, 0, 1, 3]), "y_test": np.array([0, 1, 3])},
     r"y_train: classes \[2\] of 0\.\.3 have no training image"),
    ({"y_test": np.array([0, 1, 1])},
     r"y_test: classes \[2\] of 0\.\.2 have no test image"),
], ids=["single class", "class 2 missing", "class 2 not in test"])
def test_npz_classes_must_be_two_or_more_and_all_present(tmp_path, change, pattern):
    path = _npz(tmp_path / "mine.npz", **change)
    _refused({"name": "npz", "path": str(path)}, rf"{path}: {pattern}")


def test_a_single_class_folder_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "cat").mkdir()
    for i in range(4):
        Image.new("RGB", (4, 4), (i, 0, 0)).save(tmp_path / "cat" / f"{i}.png")
    _refused({"name": "image_folder", "path": str(tmp_path), "size": 4, "test_fraction": 0.5},
             rf"{tmp_path}: a single class folder \(cat\); a classifier needs at least 2")


def test_splits_without_a_class_in_training_are_refused_naming_it():
    y = np.array([0] * 6 + [1] * 6 + [2])  # class 2: one training image, held out by one fold
    data = PooledData({"x_train": np.zeros((13, 2, 2, 1), np.float32), "y_train": y,
                       "x_test": np.zeros((3, 2, 2, 1), np.float32), "y_test": np.array([0, 1, 0])})
    with pytest.warns(UserWarning, match="least populated class"), pytest.raises(
            ValueError, match=r"split \d: class\(es\) \[2\] have no image in its training part "
                              r"\(images of them that the splits draw from: 1\)"):
        make_splits(data, "kfold", 3, seed=0)
    # shuffles draw from all 16 images: scikit-learn refuses, and the rarest class is named
    with pytest.raises(ValueError, match=r"shuffle splits \(splits\.n_splits = 2\): .*too few.*"
                                         r"smallest classes 2: 1 image, "):
        make_splits(data, "shuffle", 2, seed=0)


# --------------------------------------------------------------- 3: a header that lies

def _npz_with_member(path: Path, key: str, header: dict, payload: bytes,
                     compression: int = zipfile.ZIP_STORED) -> Path:
    """A valid tiny npz whose ``key`` entry is replaced by ``header`` and ``payload``."""
    _npz(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != key}
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(f"{name}.npy", buffer.getvalue())
        buffer = io.BytesIO()
        npy_format.write_array_header_1_0(buffer, header)
        archive.writestr(f"{key}.npy", buffer.getvalue() + payload)
    return path


TERABYTE_HEADER = {"descr": "<f4", "fortran_order": False, "shape": (10**6, 500, 500)}


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED],
                         ids=["savez", "savez_compressed"])
def test_a_header_declaring_a_terabyte_is_refused_before_loading(tmp_path, compression):
    path = _npz_with_member(tmp_path / "huge.npz", "x_train", TERABYTE_HEADER,
                            bytes(4 * 6 * 5 * 4), compression)
    message = _refused({"name": "npz", "path": str(path)},
                       rf"{path}: array x_train: its header declares float32 "
                       rf"\(1000000, 500, 500\), i\.e\. 1,000,000,000,128 bytes \(931\.3 GiB\), "
                       rf"but the entry holds 608 bytes: truncated or corrupt")
    assert "MemoryError" not in message


def test_a_truncated_label_array_is_refused_naming_the_key(tmp_path):
    path = _npz_with_member(tmp_path / "cut.npz", "y_test",
                            {"descr": "<i8", "fortran_order": False, "shape": (3,)}, bytes(16))
    _refused({"name": "npz", "path": str(path)}, rf"{path}: array y_test: its header declares "
                                                 rf"int64 \(3,\), i\.e\. 152 bytes")


def test_an_entry_claiming_more_than_deflate_can_give_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, x_train=np.zeros((600, 5, 4), np.uint8),
                        y_train=np.arange(600) % 3, x_test=np.zeros((3, 5, 4), np.uint8),
                        y_test=np.arange(3))
    dataset_info({"name": "npz", "path": str(path)})  # a real ratio passes
    monkeypatch.setattr(formats, "MAX_DEFLATE_RATIO", 1)  # any compression now looks like a bomb
    with pytest.raises(FormatError, match=rf"{path}: array x_train: the zip entry claims "
                                          rf"12,128 bytes from \d+ bytes .*zip bomb"):
        dataset_info({"name": "npz", "path": str(path)})


# --------------------------------------------------------------- 4: a label of 2**64 - 1

def test_a_uint64_max_label_is_refused_at_the_labels_not_at_n_splits(tmp_path, default_config):
    y_train = np.array([0, 1, 2, UINT64_MAX, 1, 2], dtype=np.uint64)
    path = _npz(tmp_path / "mine.npz", y_train=y_train)
    _refused({"name": "npz", "path": str(path)},
             rf"{path}: y_train: label {UINT64_MAX} at position 3 cannot be a class: labels must "
             rf"be 0\.\.C-1 with every class present, and 6 training images hold at most "
             rf"classes 0\.\.5")
    default_config["dataset"] = {"name": "npz", "path": str(path)}
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert "'dataset.path'" in str(error.value) and "n_splits" not in str(error.value)


def test_a_uint64_max_test_label_is_refused_naming_its_position(tmp_path):
    path = _npz(tmp_path / "mine.npz", y_test=np.array([2, UINT64_MAX, 0], dtype=np.uint64))
    _refused({"name": "npz", "path": str(path)},
             rf"{path}: y_test has label {UINT64_MAX}, but y_train only has classes 0\.\.2 "
             rf"\(position 1 of y_test\)")


# --------------------------------------------------------------- 5: not an npz at all

def test_a_text_file_is_not_an_npz(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("x_train,y_train\n0,1\n")
    _refused({"name": "npz", "path": str(path)},
             rf"{path}: not an npz file: an npz is a zip archive of \.npy arrays .* not a "
             rf"zip archive \(it starts with b'x_train,y_train")


def test_a_single_npy_is_not_an_npz(tmp_path):
    path = tmp_path / "data.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.arange(3))
    _refused({"name": "npz", "path": str(path)}, rf"{path}: a single \.npy array, not an npz")


def test_object_arrays_are_refused_from_the_header(tmp_path):
    path = _npz(tmp_path / "mine.npz", y_test=np.array([2, "1", 0], dtype=object))
    _refused({"name": "npz", "path": str(path)},
             rf"{path}: array y_test holds Python objects \(dtype object\).*allow_pickle=False")


# --------------------------------------------------------------- 7: decompression bombs

def _png_declaring(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares ``width`` x ``height`` gray pixels; the data is a stub."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray, no interlace
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _two_classes(root: Path) -> None:
    from PIL import Image

    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(root / name / f"{i}.png")


def test_a_png_declaring_50000_squared_pixels_is_refused_naming_it(tmp_path):
    _two_classes(tmp_path)
    bomb = tmp_path / "dog" / "bomb.png"
    _png_declaring(bomb, 50000, 50000)
    with pytest.raises(FormatError, match=rf"{bomb}: refused as a possible decompression bomb, "
                                          rf".*Image size \(2500000000 pixels\) exceeds limit"):
        formats.read_image_folder(tmp_path, 8, 0.5, seed=0)


@pytest.mark.parametrize("side", [40, 64], ids=["warning zone", "error zone"])
def test_pil_bomb_warnings_are_errors_too(tmp_path, monkeypatch, side):
    from PIL import Image

    _two_classes(tmp_path)
    big = tmp_path / "cat" / "big.png"
    Image.new("RGB", (side, side)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL warns above 1000, fails above 2000
    with pytest.raises(FormatError, match=rf"{big}: refused as a possible decompression bomb, "
                                          rf"more pixels than PIL\.Image\.MAX_IMAGE_PIXELS "
                                          rf"\(1000\): Image size \({side * side} pixels\)"):
        formats.read_image_folder(tmp_path, 8, 0.5, seed=0)


# --------------------------------------------------------------- the workflow: before any job

def _dry_run_refuses(workdir: Path, dataset: dict, *named: str) -> str:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["dataset"] = dataset
    workdir.mkdir()
    done = run_snakemake(workdir, "--dry-run", config=config)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-2000:]
    for text in ("'dataset.path'", *named):
        assert text in output, (text, output[-2000:])
    assert "Job stats" not in output and "rule " not in output
    assert not (workdir / "results").exists()
    return output


@pytest.mark.e2e
@needs_mnist
def test_a_bad_mnist_label_stops_the_workflow_before_any_job(tmp_path):
    folder = _mnist_with_label(tmp_path, position=7, value=200)
    _dry_run_refuses(tmp_path / "run", {"name": "mnist", "path": str(folder), "verify": False,
                                        "subset": {"train": 600, "test": 200}},
                     str(folder / "train-labels-idx1-ubyte.gz"), "label 200 at position 7")


@pytest.mark.e2e
def test_a_bad_npz_stops_the_workflow_before_any_job(tmp_path):
    path = _npz_with_member(tmp_path / "huge.npz", "x_train", TERABYTE_HEADER, bytes(8))
    _dry_run_refuses(tmp_path / "huge", {"name": "npz", "path": str(path)},
                     f"{path}: array x_train: its header declares float32")
    path = _npz(tmp_path / "wide.npz", y_train=np.array([0, 1, 2, UINT64_MAX, 1, 2], np.uint64))
    output = _dry_run_refuses(tmp_path / "wide", {"name": "npz", "path": str(path)},
                              f"{path}: y_train: label {UINT64_MAX} at position 3")
    assert "n_splits" not in output
