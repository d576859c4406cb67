"""End to end: every attack and every robustness metric from config, on tiny digits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from advfit.runtime.io import array_to_meta, load_npz, read_table
from conftest import run_workflow_once

ATTACKS = {
    "fgsm": {"eps": 0.2},
    "pgd": {"eps": 0.2, "eps_iter": 0.05, "nb_iter": 5},
    "bim": {"eps": 0.2, "eps_iter": 0.05, "nb_iter": 5},
    "fgsm_art": {"eps": 0.2},
    "pgd_art": {"eps": 0.2, "eps_iter": 0.05, "nb_iter": 5},
    "cw_l2": {"max_iter": 30, "binary_search_steps": 3},
    "deepfool": {"max_iter": 50},
    "hopskipjump": {"max_iter": 3, "max_eval": 200, "init_eval": 20},
    "fgsm_next": {"method": "fgsm", "eps": 0.3, "target": "next"},
}
CONFIG = {
    "seed": 3,
    "dataset": {"name": "digits"},
    "model": {"name": "lenet5"},
    "splits": {"method": "kfold", "n_splits": 2},
    "regimes": {"overfit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 64,
                            "epochs": 2}},
    "best_snapshot": {"metric": "val_accuracy"},
    "attacks": ATTACKS,
    "attack_subset_size": 24,
    "robustness_metrics": {"n_points": 6, "metrics": {
        "clever_u": {"nb_batches": 20, "batch_size": 5, "radius": 2.0},
        "loss_sensitivity": {},
        "empirical_robustness": {"eps": 0.3, "eps_step": 0.05}}},
}

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_workflow_once(tmp_path_factory, "attacks", CONFIG)


def test_every_attack_produced_a_working_adversarial_set(run):
    sets = pd.read_csv(run / "results/tables/adversarial_sets.csv")
    assert set(sets.attack) == set(ATTACKS)
    rates = sets.groupby("attack").success_rate.mean()
    # thresholds a broken (identity) attack cannot pass
    for attack in ("pgd", "bim", "pgd_art", "cw_l2", "deepfool"):
        assert rates[attack] >= 0.8, (attack, rates[attack])
    assert rates["hopskipjump"] >= 0.5 and rates["fgsm"] > 0.3 and rates["fgsm_next"] > 0
    assert rates["fgsm"] == rates["fgsm_art"]  # the two FGSM backends agree
    for split in (0, 1):
        adv = load_npz(run / f"results/digits/lenet5/overfit/split{split}/adversarial/fgsm_next.npz")
        assert np.array_equal(adv["predicted"], adv["y_target"])
        assert np.array_equal(adv["y_target"], (adv["y"] + 1) % 10)
        meta = array_to_meta(load_npz(
            run / f"results/digits/lenet5/overfit/split{split}/adversarial/deepfool.npz")["meta"])
        assert meta["params"]["max_iter"] == 50 and meta["params"]["nb_grads"] is None


def test_minimal_attacks_are_smaller_than_fgsm(run):
    summary = pd.read_csv(run / "results/tables/distances_summary.csv").set_index("attack")
    assert summary.loc["cw_l2", "l2_mean"] < summary.loc["fgsm", "l2_mean"]
    assert summary.loc["deepfool", "l2_mean"] < summary.loc["fgsm", "l2_mean"]
    assert summary.loc["fgsm", "linf_mean"] == pytest.approx(0.2, abs=1e-6)


def test_accuracy_zero_at_best_epoch_for_every_attack(run):
    table = read_table(run / "results/tables/accuracy.csv")
    best = pd.read_csv(run / "results/tables/best_snapshots.csv")
    for split, epoch in zip(best.split, best.best_epoch):
        rows = table[(table.split == split) & (table.epoch == epoch)
                     & (table.eval_set == "adversarial") & (table.n > 0)]
        assert len(rows) >= 8 and (rows.accuracy == 0).all()


def test_robustness_metrics_table_and_figure(run):
    metrics = pd.read_csv(run / "results/tables/robustness_metrics.csv")
    assert set(metrics.metric) == {"clever_u", "loss_sensitivity", "empirical_robustness"}
    assert len(metrics) == 2 * 2 * 3  # splits x epochs x metrics
    assert (metrics["n_total"] == 6).all()
    finite = metrics.dropna(subset=["mean"])
    assert (finite["mean"] > 0).all() and np.isfinite(finite["mean"]).all()
    clever = metrics[metrics.metric == "clever_u"]
    assert (clever["mean"] <= 2.0).all() and clever["mean"].notna().all()
    assert (run / "results/figures/robustness_metrics.png").stat().st_size > 10_000
