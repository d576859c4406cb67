"""Splits: disjoint, complete, stratified, reproducible."""

import numpy as np
import pytest

from advfit.data.datasets import DIGITS_TEST_SIZE, PooledData, load_dataset
from advfit.data.splits import make_splits


def _class_shares(y):
    return np.bincount(y, minlength=10) / len(y)


def test_digits_fixed_test_set(digits):
    test = digits.official_test
    assert len(test) == DIGITS_TEST_SIZE == 360
    # stratified: each class within one sample of its proportional share
    expected = np.bincount(digits.y) * 360 / 1797
    assert np.abs(np.bincount(digits.y[test]) - expected).max() < 1.0
    assert np.bincount(digits.y[test]).tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]
    again = PooledData(load_dataset("digits"))
    assert np.array_equal(again.x, digits.x)  # fixed whatever the run's seed
    assert digits.x.shape == (1797, 8, 8, 1) and digits.x.dtype == np.float32
    assert digits.x.min() == 0.0 and digits.x.max() == 1.0


def test_kfold_partitions_training_part_and_keeps_test(digits):
    splits = make_splits(digits, "kfold", 5, seed=3)
    train_part = set(digits.official_train)
    validation_union = np.concatenate([s["validation"] for s in splits])
    assert len(validation_union) == len(train_part)  # every training sample validates once
    assert set(validation_union) == train_part
    for split in splits:
        assert np.array_equal(split["test"], digits.official_test)
        assert not set(split["train"]) & set(split["validation"])
        assert set(split["train"]) | set(split["validation"]) == train_part
        assert len(split["validation"]) in (287, 288)
        shares = _class_shares(digits.y[split["validation"]])
        assert np.abs(shares - _class_shares(digits.y[digits.official_train])).max() < 0.01


def test_shuffle_keeps_official_sizes_and_stratifies(digits):
    splits = make_splits(digits, "shuffle", 4, seed=1, validation_fraction=0.25)
    tests = [set(s["test"]) for s in splits]
    for split in splits:
        parts = [set(split[k]) for k in ("train", "validation", "test")]
        assert sum(map(len, parts)) == len(digits.y)
        assert set().union(*parts) == set(range(len(digits.y)))
        assert len(split["test"]) == 360
        assert len(split["validation"]) == 360  # ceil(0.25 * 1437), scikit-learn rounds up
        assert np.abs(_class_shares(digits.y[split["test"]]) - _class_shares(digits.y)).max() < 0.01
    assert tests[0] != tests[1]  # the shuffles differ


def test_splits_are_reproducible_and_seed_dependent(digits):
    a = make_splits(digits, "kfold", 3, seed=0)
    b = make_splits(digits, "kfold", 3, seed=0)
    c = make_splits(digits, "kfold", 3, seed=1)
    assert all(np.array_equal(x["train"], y["train"]) for x, y in zip(a, b))
    assert not np.array_equal(a[0]["train"], c[0]["train"])


def test_unknown_method_is_refused(digits):
    with pytest.raises(ValueError, match="unknown split method"):
        make_splits(digits, "leave_one_out", 3, seed=0)
