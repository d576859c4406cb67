"""splits.use: a run of some of the splits (Rice et al. train on one fold) gets the
right split in each file, goes through the statistics, and running more of the
splits later retrains none of those already done."""

from __future__ import annotations

import numpy as np
import pytest

from advfit.data.datasets import load_prepared
from advfit.data.splits import make_splits
from advfit.runtime.io import load_npz, read_table

from conftest import run_snakemake, run_workflow_once

TINY = {
    "seed": 5,
    "dataset": {"name": "digits"},
    "model": {"name": "lenet5"},
    "splits": {"method": "kfold", "n_splits": 3, "use": [2]},
    "regimes": {"normal": {"optimizer": "adam", "learning_rate": 0.001, "batch_size": 64,
                           "epochs": 3},
                "overfit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 16,
                            "epochs": 3}},
    "best_snapshot": {"metric": "val_accuracy"},
    "attacks": {"fgsm": {"eps": 0.1}},
    "attack_subset_size": 30,
    "knn": {"z": 3, "algorithm": "brute", "regime": "normal", "attacks": ["fgsm"]},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_workflow_once(tmp_path_factory, "split_use", TINY)


@pytest.mark.e2e
def test_only_the_used_split_runs_and_its_file_holds_that_split(run):
    expected = make_splits(load_prepared(run / "results/digits/data.npz"), "kfold", 3,
                           TINY["seed"], 0.2)
    for index in range(3):  # every split file is made, each the split of its name
        saved = load_npz(run / f"results/digits/splits/split{index}.npz")
        for part in ("train", "validation", "test"):
            assert np.array_equal(saved[part], expected[index][part]), (index, part)
    assert not (run / "results/digits/lenet5/normal/split0").exists()
    assert not (run / "results/digits/lenet5/overfit/split1").exists()
    accuracy = read_table(run / "results/tables/accuracy.csv")
    assert set(accuracy.split) == {2} and set(accuracy.regime) == {"normal", "overfit"}
    best = read_table(run / "results/tables/best_snapshots.csv")
    assert sorted(best.split) == [2, 2]
    # the statistics over one split: tables written, with one split counted
    tests = read_table(run / "results/tables/delta_tests.csv")
    assert len(tests) > 0
    assert set(read_table(run / "results/tables/knn_accuracy.csv").split) == {2}


@pytest.mark.e2e
def test_running_more_splits_later_retrains_none_already_done(run):
    config = {**TINY, "splits": {**TINY["splits"], "use": [0, 2]}}
    done = run_snakemake(run, "-n", "--quiet", "rules", config=config)
    assert done.returncode == 0, done.stderr[-3000:]
    planned = done.stdout + done.stderr
    assert "make_splits" not in planned  # the split files stay as they are
    # split 0's training is planned, split 2's is not: one train job per regime
    lines = [line.split() for line in planned.splitlines() if line.strip().startswith("train_")]
    assert lines and all(int(words[-1]) == 2 for words in lines), planned
