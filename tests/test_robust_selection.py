"""The best snapshot M by robust validation accuracy (best_snapshot.metric
val_robust_accuracy, Rice et al. 2020): the choice, the validation sample, the
config checks, and one tiny end-to-end run (with a killed job resuming)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advfit.config import ConfigError, validate_config
from advfit.data.datasets import dataset_info
from advfit.runtime.io import load_npz, read_table
from advfit.statistics.robust_selection import (best_robust_epoch, best_snapshot_problems,
                                                evaluated_epochs, robust_record,
                                                validation_points, validation_size)
from advfit.statistics.selection import best_epoch

from conftest import ROOT, run_workflow_once


def _table(robust, epochs=None):
    epochs = list(range(1, len(robust) + 1)) if epochs is None else epochs
    return pd.DataFrame({"epoch": epochs, "robust_accuracy": robust,
                         "clean_accuracy": [0.9] * len(robust), "attack": "pgd",
                         "n_points": 40, "every": 1})


# --- the choice -----------------------------------------------------------------------------

def test_the_highest_robust_accuracy_wins_and_ties_go_to_the_earliest_epoch():
    assert best_robust_epoch(_table([0.2, 0.5, 0.4, 0.5, 0.3])) == 2
    # rows in any order: still the earliest of the tied epochs
    shuffled = _table([0.5, 0.3, 0.5, 0.2, 0.4], epochs=[4, 5, 2, 1, 3])
    assert best_robust_epoch(shuffled) == 2
    # the same tie rule as the clean metrics
    history = pd.DataFrame({"epoch": [1, 2, 3, 4, 5], "val_accuracy": [0.2, 0.5, 0.4, 0.5, 0.3]})
    assert best_epoch(history, "val_accuracy") == 2


def test_with_every_k_only_the_evaluated_epochs_can_be_chosen():
    assert evaluated_epochs(range(1, 11), 3) == [3, 6, 9, 10]
    assert evaluated_epochs(range(1, 10), 3) == [3, 6, 9]
    assert evaluated_epochs(range(1, 6), 1) == [1, 2, 3, 4, 5]
    assert evaluated_epochs([1, 2], 5) == [2]  # the last epoch always
    robust = {1: 0.1, 2: 0.9, 3: 0.4, 4: 0.2, 5: 0.6, 6: 0.3, 7: 0.2}  # the peak at 2
    kept = evaluated_epochs(robust, 3)
    assert kept == [3, 6, 7]
    chosen = best_robust_epoch(_table([robust[e] for e in kept], epochs=kept))
    assert chosen == 3 and chosen in kept
    with pytest.raises(ValueError, match="at least 1"):
        evaluated_epochs(range(1, 4), 0)


def test_what_is_recorded_of_the_choice():
    table = _table([0.2, 0.6, 0.4])
    record = robust_record(table, best_robust_epoch(table))
    assert record == {"validation_attack": "pgd", "validation_n_points": 40,
                      "validation_every": 1, "validation_epochs_evaluated": 3,
                      "validation_robust_accuracy": 0.6, "validation_clean_accuracy": 0.9}


def test_an_empty_table_is_refused():
    with pytest.raises(ValueError, match="no rows"):
        best_robust_epoch(_table([]))


# --- the validation sample ------------------------------------------------------------------

def test_the_sample_is_validation_points_the_same_for_every_regime_and_epoch():
    validation = np.arange(100, 400, 3)
    points, seed = validation_points(validation, 40, 7, "digits", "1")
    assert len(points) == 40 and set(points) <= set(validation)
    assert (np.diff(points) > 0).all()
    # no regime, no epoch in the draw: the same call gives the same points
    again, seed_again = validation_points(validation, 40, 7, "digits", "1")
    assert seed == seed_again and (points == again).all()
    other, _ = validation_points(validation, 40, 7, "digits", "2")
    assert not (points == other).all()  # another split, another sample
    everything, _ = validation_points(validation, "all", 7, "digits", "1")
    assert (everything == validation).all()
    with pytest.raises(ValueError, match="validation part has 100 points"):
        validation_points(validation, 101, 7, "digits", "1")
    with pytest.raises(ValueError, match="no validation part"):
        validation_points(validation[:0], 10, 7, "digits", "1")


def test_the_validation_size_is_that_of_the_smallest_split(digits):
    from advfit.data.splits import make_splits

    info = dataset_info({"name": "digits"})
    for method, n_splits, fraction in (("kfold", 3, 0.2), ("kfold", 7, 0.2),
                                       ("shuffle", 2, 0.2), ("shuffle", 2, 0.1)):
        config = {"splits": {"method": method, "n_splits": n_splits,
                             "validation_fraction": fraction}}
        splits = make_splits(digits, method, n_splits, 0, fraction)
        assert validation_size(config, info) == min(len(s["validation"]) for s in splits)


# --- the config check -----------------------------------------------------------------------

@pytest.fixture()
def robust_config(default_config):
    config = copy.deepcopy(default_config)
    config["best_snapshot"] = {"metric": "val_robust_accuracy", "attack": "pgd"}
    return config


def test_a_robust_config_gets_its_defaults_and_a_clean_one_none(robust_config,
                                                                default_config):
    checked = validate_config(robust_config)
    assert checked["best_snapshot"] == {"metric": "val_robust_accuracy", "attack": "pgd",
                                        "n_points": "all", "every": 1}
    # the default run's section stays as written: no new keys, no new jobs
    assert validate_config(default_config)["best_snapshot"] == {"metric": "val_accuracy"}


# validation part of the default config: 1437 digits training images / 3 folds = 479
@pytest.mark.parametrize("section, splits, key", [
    ({"metric": "val_robust_accuracy"}, None, "'best_snapshot.attack'"),
    ({"metric": "val_robust_accuracy", "attack": "nope"}, None, "'best_snapshot.attack'"),
    ({"metric": "val_robust_accuracy", "attack": "pgd", "n_points": 0}, None,
     "'best_snapshot.n_points'"),
    ({"metric": "val_robust_accuracy", "attack": "pgd", "n_points": 480}, None,
     "'best_snapshot.n_points'"),
    ({"metric": "val_robust_accuracy", "attack": "pgd", "n_points": "many"}, None,
     "'best_snapshot.n_points'"),
    ({"metric": "val_robust_accuracy", "attack": "pgd", "every": 0}, None,
     "'best_snapshot.every'"),
    ({"metric": "val_robust_accuracy", "attack": "pgd", "every": 20}, None,
     "'best_snapshot.every'"),  # the normal regime's 20 epochs: only E left
    ({"metric": "val_accuracy", "attack": "pgd"}, None, "'best_snapshot.attack'"),
    ({"metric": "test_accuracy", "n_points": 50}, None, "'best_snapshot.n_points'"),
    ({"metric": "val_accuracy", "every": 2}, None, "'best_snapshot.every'"),
    ({"metric": "val_robust_accuracy", "attack": "pgd"},
     {"method": "shuffle", "n_splits": 2, "validation_fraction": 0},
     "'splits.validation_fraction'"),
    ({"metric": "val_robust_accuracy", "attack": "pgd", "n_points": 288},
     {"method": "shuffle", "n_splits": 2, "validation_fraction": 0.1},
     "'best_snapshot.n_points'"),  # ceil(0.1 x 1437) = 144
])
def test_bad_best_snapshot_keys_are_refused_naming_the_key(default_config, section, splits,
                                                          key):
    config = copy.deepcopy(default_config)
    config["best_snapshot"] = section
    if splits:
        config["splits"] = splits
        config.pop("knn", None)
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert f"config key {key}" in str(error.value), str(error.value)


def test_the_largest_sample_and_an_attack_without_eps(robust_config):
    robust_config["best_snapshot"]["n_points"] = 479  # the smallest of the 3 folds
    validate_config(robust_config)
    robust_config["attacks"]["deepfool"] = {"max_iter": 20}
    robust_config["best_snapshot"]["attack"] = "deepfool"
    with pytest.raises(ConfigError) as error:
        validate_config(robust_config)
    assert "config key 'best_snapshot.attack': attack 'deepfool' has no eps" in str(error.value)
    # a plugin's eps is among its params
    config = {"best_snapshot": {"metric": "val_robust_accuracy", "attack": "mine"},
              "attacks": {"mine": {"method": "plugin", "function": "f.py:attack",
                                   "params": {"eps": 0.1}}},
              "regimes": {"r": {"epochs": 3}}, "splits": {"method": "kfold", "n_splits": 3}}
    assert best_snapshot_problems(config, dataset_info({"name": "digits"})) == []


# --- end to end -----------------------------------------------------------------------------

TINY = {
    "seed": 3,
    "dataset": {"name": "digits"},
    "model": {"name": "lenet5"},
    "splits": {"method": "kfold", "n_splits": 2},
    "regimes": {"overfit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 64,
                            "epochs": 5}},
    "best_snapshot": {"metric": "val_robust_accuracy", "attack": "pgd", "n_points": 40,
                      "every": 2},
    "attacks": {"fgsm": {"eps": 0.1},
                "pgd": {"eps": 0.1, "eps_iter": 0.025, "nb_iter": 5}},
    "attack_subset_size": 40,
}
RUN = "results/digits/lenet5/overfit/split{}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_workflow_once(tmp_path_factory, "robust_selection", TINY)


@pytest.mark.e2e
def test_m_is_the_argmax_of_the_robust_validation_table(run):
    best = read_table(run / "results/tables/best_snapshots.csv").set_index("split")
    for split in (0, 1):
        folder = run / RUN.format(split)
        table = read_table(folder / "validation_robust.csv")
        assert list(table.epoch) == [2, 4, 5]  # every 2nd epoch and the last
        assert (table.n_points == 40).all() and (table.attack == "pgd").all()
        assert (table.robust_accuracy <= table.clean_accuracy).all()
        record = json.loads((folder / "best_snapshot.json").read_text())
        top = table.robust_accuracy.max()
        assert record["best_epoch"] == int(table.epoch[table.robust_accuracy == top].min())
        assert record["metric"] == "val_robust_accuracy"
        assert record["value"] == record["validation_robust_accuracy"] == top
        assert record["validation_attack"] == "pgd" and record["validation_n_points"] == 40
        assert record["validation_every"] == 2 and record["validation_epochs_evaluated"] == 3
        # the clean choice recorded beside it, from the training history
        history = pd.read_csv(folder / "history.csv")
        assert record["val_accuracy_best_epoch"] == best_epoch(history, "val_accuracy")
        assert best.loc[split, "best_epoch"] == record["best_epoch"]
        assert best.loc[split, "validation_attack"] == "pgd"
        # everything downstream uses that M: the adversarial sets are crafted on it
        for attack in TINY["attacks"]:
            crafted = load_npz(folder / f"adversarial/{attack}.npz")
            assert int(crafted["best_epoch"]) == record["best_epoch"]
    # the sample is validation points only: the job's log names their count, and the
    # points drawn for each split lie in its validation part, never its test part
    for split in (0, 1):
        parts = load_npz(run / f"results/digits/splits/split{split}.npz")
        points, _ = validation_points(parts["validation"], 40, TINY["seed"], "digits", str(split))
        assert set(points) <= set(parts["validation"]) and not set(points) & set(parts["test"])
        log = (run / f"results/logs/digits/lenet5/overfit/split{split}/"
                     "attack_validation_snapshots.log").read_text()
        assert "epochs [2, 4, 5] of 5, 40 validation points" in log
    assert not list(run.glob("results/**/*.partial"))


def _snakemake(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
            "--cores", "1", *args]


@pytest.mark.e2e
def test_a_killed_validation_job_resumes_to_the_same_table(run):
    target = RUN.format(0) + "/validation_robust.csv"
    reference = (run / target).read_bytes()
    (run / target).unlink()
    log = run / "results/logs/digits/lenet5/overfit/split0/attack_validation_snapshots.log"
    chunk = run / RUN.format(0) / "validation_robust.partial" / "epoch_002.npz"
    proc = subprocess.Popen(_snakemake(run, target), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not chunk.exists():
            assert proc.poll() is None, "the job ended before the kill"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(1)  # the warm interpreter's child stops once the job's process is gone
    assert chunk.exists() and not (run / target).exists()
    for args in (["--unlock"], [target]):
        done = subprocess.run(_snakemake(run, *args), capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert done.returncode == 0, done.stderr[-4000:]
    assert "epoch 2: read back from" in log.read_text()
    assert (run / target).read_bytes() == reference
    assert not chunk.parent.exists()
