"""End to end: the white-box view and the transfer matrix on a tiny digits run,
their invariants, and a white-box job killed mid-sweep resuming to the same bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from advfit.runtime.io import read_table

from conftest import ROOT, run_snakemake, run_workflow_once

TINY = {
    "seed": 3,
    "dataset": {"name": "digits"},
    "model": {"name": "lenet5"},
    "splits": {"method": "kfold", "n_splits": 2},
    "regimes": {"overfit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 64,
                            "epochs": 5}},
    "best_snapshot": {"metric": "val_accuracy"},
    "attacks": {"fgsm": {"eps": 0.1},
                "pgd": {"eps": 0.1, "eps_iter": 0.025, "nb_iter": 10},
                # a plugin attack (examples/), white-box on every snapshot too
                "square": {"method": "plugin",
                           "function": str(ROOT / "examples" / "square_attack.py") + ":attack",
                           "params": {"eps": 0.1, "max_iter": 20}},
                # the ensemble: each snapshot's points go through APGD-CE, then APGD-T
                "autoattack": {"eps": 0.1, "version": "custom", "attacks": ["apgd_ce", "apgd_t"],
                               "nb_iter": 10, "n_target_classes": 2}},
    "attack_subset_size": 50,
    "snapshot_attacks": {"attacks": ["pgd", "fgsm", "square", "autoattack"], "n_points": 60},
    "transfer_matrix": {"attacks": ["fgsm"], "craft_epochs": [3]},
}
TABLES = ["whitebox.csv", "whitebox_summary.csv", "delta_tests_by_view.csv",
          "transfer_matrix.csv"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_workflow_once(tmp_path_factory, "views", TINY)


@pytest.mark.e2e
def test_whitebox_rows_hold_their_invariants(run):
    table = read_table(run / "results/tables/whitebox.csv")
    assert len(table) == 2 * 4 * 5  # splits x attacks x every snapshot
    assert (table.robust_accuracy <= table.clean_accuracy).all()
    assert ((table.robust_wilson_low <= table.robust_accuracy)
            & (table.robust_accuracy <= table.robust_wilson_high)).all()
    summary = read_table(run / "results/tables/whitebox_summary.csv")
    assert ((summary.robust_accuracy_t_low <= summary.robust_accuracy_mean + 1e-12)
            & (summary.robust_accuracy_mean <= summary.robust_accuracy_t_high + 1e-12)).all()
    assert (table.n_points == 60).all()
    for (split, epoch), rows in table.groupby(["split", "epoch"]):
        by_attack = rows.set_index("attack")
        # same points, same snapshot: the same clean accuracy for every attack
        assert by_attack.clean_accuracy["pgd"] == by_attack.clean_accuracy["fgsm"] == \
            by_attack.clean_accuracy["square"]
    # AutoAttack's point-wise worst case beats PGD-10 snapshot by snapshot
    by = table.set_index(["split", "epoch", "attack"]).robust_accuracy.unstack()
    assert (by["autoattack"] <= by["pgd"]).all()
    # cost: one gradient per point and step for PGD (10 steps, the attacked points);
    # none for the score-based square. The ensemble: at most the start and 10 steps of
    # APGD-CE, then of APGD-T for 2 targets, per point; where a point stays robust, every
    # run went all the way (a run stops early only once all its points are fooled)
    pgd = table[table.attack == "pgd"]
    assert (pgd.backward_passes == 10 * pgd.n_attacked).all()
    assert (table[table.attack == "square"].backward_passes == 0).all()
    ensemble = table[table.attack == "autoattack"]
    assert (ensemble.backward_per_point <= 33).all()
    robust = ensemble.n_attacked - ensemble.n_success
    held = robust > 0
    assert held.any()
    assert (ensemble.backward_passes[held]
            >= 11 * ensemble.n_attacked[held] + 22 * robust[held]).all()
    cost = read_table(run / "results/benchmarks/whitebox_cost.csv")
    assert len(cost) == len(table) and (cost.anchor == "pgd").all()
    assert (cost[cost.attack == "pgd"].seconds_ratio == 1.0).all()
    assert (cost.seconds > 0).all()
    assert np.allclose(cost.set_index(["split", "epoch", "attack"]).forward_passes_ratio
                       .unstack()["autoattack"],
                       by_cost(table, "autoattack") / by_cost(table, "pgd"))
    mean = table.groupby("attack").robust_accuracy.mean()
    assert mean["pgd"] <= mean["fgsm"]
    assert mean["pgd"] <= mean["square"]  # gradients beat 20 black-box queries
    assert table[table.attack == "square"].n_success.sum() > 0  # the plugin does attack
    assert table.linf_median[table.n_success > 0].max() <= 0.1 + 1e-6
    assert table.groupby("split").is_best.apply(lambda s: (s.astype(str) == "True").sum() == 4).all()


def by_cost(table, attack):
    return table[table.attack == attack].set_index(["split", "epoch"]).forward_passes


@pytest.mark.e2e
def test_transfer_matrix_agrees_with_the_adversarial_sets(run):
    matrix = read_table(run / "results/tables/transfer_matrix.csv")
    accuracy = read_table(run / "results/tables/accuracy.csv")
    best = read_table(run / "results/tables/best_snapshots.csv").set_index("split")["best_epoch"]
    diagonal = matrix[matrix.craft_epoch == matrix.eval_epoch]
    assert (diagonal.n_correct == 0).all() and (diagonal.n > 0).all()
    for split, m in best.items():
        crafted = set(matrix[matrix.split == split].craft_epoch)
        assert crafted == {1, 3, m, 5}
        row_m = matrix[(matrix.split == split) & (matrix.craft_epoch == m)]
        replayed = accuracy[(accuracy.split == split) & (accuracy.eval_set == "adversarial")
                            & (accuracy.attack == "fgsm")]
        assert row_m.set_index("eval_epoch")[["n", "n_correct"]].to_dict() == \
            replayed.set_index("epoch")[["n", "n_correct"]].to_dict()


@pytest.mark.e2e
def test_the_views_reach_the_report(run):
    done = run_snakemake(run, "--report", "results/report.html")
    assert done.returncode == 0, done.stderr[-3000:]
    html = (run / "results/report.html").read_text(errors="replace")
    for name in ("transfer_vs_whitebox.png", "transfer_matrix.png", "whitebox.csv",
                 "delta_tests_by_view.csv"):
        assert name in html, name


def _snakemake(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
            "--cores", "2", *args]


def _kill_when(workdir: Path, ready) -> None:
    proc = subprocess.Popen(_snakemake(workdir), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while not ready():
            assert proc.poll() is None, "the run ended before the kill"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for _ in range(100):
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


@pytest.mark.e2e
def test_a_killed_whitebox_sweep_resumes_to_the_same_tables(run):
    """The white-box jobs of the finished run are redone, killed mid-sweep and resumed."""
    import shutil

    reference = {t: (run / "results/tables" / t).read_bytes() for t in TABLES}
    for folder in run.glob("results/digits/lenet5/overfit/split*/whitebox"):
        shutil.rmtree(folder)
    for log in run.glob("results/logs/**/attack_snapshots_*.log"):
        log.unlink()
    for table in ("whitebox.csv", "whitebox_summary.csv", "delta_tests_by_view.csv"):
        (run / "results/tables" / table).unlink()
    # killed while the ensemble attacks a later snapshot (its first two are saved)
    chunks = "results/digits/lenet5/overfit/split*/whitebox/autoattack.partial/epoch_002.npz"
    _kill_when(run, lambda: list(run.glob(chunks)))
    left = list(run.glob("results/digits/lenet5/overfit/split*/whitebox/*.partial"))
    assert left, "the kill left no partial white-box sweep"
    for args in (["--unlock"], []):
        done = subprocess.run(_snakemake(run, *args), capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-4000:]
    logs = "".join(p.read_text() for p in run.glob("results/logs/**/attack_snapshots_*.log"))
    assert "read back from" in logs  # the resumed job reused what the killed one saved
    for table in TABLES:
        assert (run / "results/tables" / table).read_bytes() == reference[table], table
    assert not list(run.glob("results/**/*.partial"))
