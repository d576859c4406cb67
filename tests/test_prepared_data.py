"""The compact prepared file: uint8 images with their scale, decoded bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from advfit.data.datasets import (PooledData, load_digits, load_prepared, prepared_arrays,
                                  read_dataset)
from advfit.runtime.io import save_npz

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _bits(x: np.ndarray) -> np.ndarray:
    assert x.dtype == np.float32
    return x.view(np.uint32)


def _round_trip(arrays: dict, tmp_path: Path, expected_scale: float) -> PooledData:
    """Write the prepared file, read it back, compare every image's bits with the reader's."""
    stored = prepared_arrays(dict(arrays))  # it consumes its argument
    assert stored["x_train"].dtype == np.uint8 and float(stored["x_scale"]) == expected_scale
    save_npz(tmp_path / "data.npz", **stored)
    data = load_prepared(tmp_path / "data.npz")
    fresh = PooledData(arrays)
    assert np.array_equal(_bits(data.x), _bits(fresh.x))
    index = np.array([len(fresh.y) - 1, 0, fresh.n_train, 7])
    assert np.array_equal(_bits(load_prepared(tmp_path / "data.npz").take(index)[0]),
                          _bits(fresh.x[index]))
    assert np.array_equal(data.y, fresh.y) and data.image_shape == fresh.x.shape[1:]
    # 4x smaller on disk than the float32 layout
    assert (tmp_path / "data.npz").stat().st_size < 0.3 * fresh.x.nbytes + 1e5
    return data


def test_digits_round_trip_is_bit_identical(tmp_path):
    data = _round_trip(load_digits(), tmp_path, 16.0)
    assert set(np.unique(data.x * 16)) <= set(range(17))


@pytest.mark.parametrize("name, folder", [("mnist", "mnist"), ("cifar10", "cifar-10-batches-py")])
def test_real_slices_round_trip_is_bit_identical(tmp_path, name, folder):
    if not (SHARED / folder).is_dir():
        pytest.skip(f"real {name} copy not found at {SHARED / folder}")
    arrays = read_dataset({"name": name, "subset": {"train": 3000, "test": 1000}},
                          str(SHARED / folder))
    _round_trip(arrays, tmp_path, 255.0)


@pytest.mark.parametrize("part", ["x_train", "x_test"])
def test_unquantisable_floats_stay_float32(tmp_path, part):
    arrays = load_digits()
    arrays[part] = arrays[part].copy()
    arrays[part][0, 0, 0, 0] = np.float32(0.1234567)  # on no 1/255 or 1/16 grid
    stored = prepared_arrays(dict(arrays))
    assert float(stored["x_scale"]) == 1.0
    assert stored["x_train"].dtype == stored["x_test"].dtype == np.float32
    save_npz(tmp_path / "data.npz", **stored)
    assert np.array_equal(_bits(load_prepared(tmp_path / "data.npz").x), _bits(PooledData(arrays).x))


def test_old_float32_layout_is_refused(tmp_path):
    save_npz(tmp_path / "data.npz", **load_digits())  # what advfit wrote before: no x_scale
    with pytest.raises(ValueError, match=r"older advfit.*--forcerun prepare_dataset"):
        load_prepared(tmp_path / "data.npz")
