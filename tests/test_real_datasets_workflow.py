"""End to end on small real subsets of MNIST and CIFAR-10 from ../shared/data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from advfit.runtime.io import load_npz, read_table
from conftest import SHARED_DATA, run_snakemake

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not SHARED_DATA.is_dir(),
                       reason=f"real dataset copies not found at {SHARED_DATA}"),
]


def _config(dataset: dict) -> dict:
    return {
        "seed": 1,
        "dataset": dataset,
        "model": {"name": "lenet5"},
        "splits": {"method": "shuffle", "n_splits": 2},
        "regimes": {"overfit": {"optimizer": "adam", "learning_rate": 0.003,
                                "batch_size": 32, "epochs": 3}},
        "best_snapshot": {"metric": "test_accuracy"},
        "attacks": {"fgsm": {"eps": 0.05}},
        "attack_subset_size": 50,
    }


def _check_invariants(workdir, n_train, n_test):
    table = read_table(workdir / "results/tables/accuracy.csv")
    best = pd.read_csv(workdir / "results/tables/best_snapshots.csv")
    assert len(table) == 2 * 3 * 5  # splits x epochs x (train, val, test, fail, fgsm)
    for split, epoch in zip(best.split, best.best_epoch):
        rows = table[(table.split == split) & (table.epoch == epoch)]
        zero = rows[rows.eval_set.isin(["adversarial", "fail_subset"])]
        assert (zero.accuracy == 0).all() and (zero.n > 0).all()
    data = load_npz(next(workdir.glob("results/*/data.npz")))
    assert len(data["y_train"]) == n_train and len(data["y_test"]) == n_test
    return data


def test_mnist_subset_runs_end_to_end(tmp_path):
    spec = {"name": "mnist", "path": str(SHARED_DATA / "mnist"),
            "subset": {"train": 500, "test": 200}}
    done = run_snakemake(tmp_path, config=_config(spec))
    assert done.returncode == 0, done.stderr[-4000:]
    source = json.loads((tmp_path / "results/mnist/source.json").read_text())
    assert source["canonical"] is True
    assert source["sha256"]["train-images-idx3-ubyte.gz"].startswith("440fcabf73cc")
    data = _check_invariants(tmp_path, 500, 200)
    assert data["x_train"].shape[1:] == (28, 28, 1)
    # stratified subset: 500 of 60000 keeps every class with about 50 images
    assert np.bincount(data["y_train"]).min() >= 40


def test_cifar10_local_copy_is_refused_then_accepted_with_verify_false(tmp_path):
    spec = {"name": "cifar10", "path": str(SHARED_DATA / "cifar-10-batches-py"),
            "subset": {"train": 400, "test": 150}}
    refused = run_snakemake(tmp_path, config=_config(spec))
    assert refused.returncode != 0
    log = (tmp_path / "results/logs/cifar10/fetch_dataset.log").read_text()
    assert "checksum mismatch" in log and "verify: false" in log
    assert not (tmp_path / "results/cifar10/source.json").exists()
    assert not (tmp_path / "results/cifar10/data.npz").exists()

    done = run_snakemake(tmp_path, config=_config({**spec, "verify": False}))
    assert done.returncode == 0, done.stderr[-4000:]
    log = (tmp_path / "results/logs/cifar10/fetch_dataset.log").read_text()
    assert "WARNING" in log and "verify is false" in log
    source = json.loads((tmp_path / "results/cifar10/source.json").read_text())
    assert source["accepted"]["data_batch_1"] == "verify false"
    assert source["accepted"]["batches.meta"] == "canonical"
    data = _check_invariants(tmp_path, 400, 150)
    assert data["x_train"].shape[1:] == (32, 32, 3)
    assert list(data["class_names"][:2]) == ["airplane", "automobile"]
