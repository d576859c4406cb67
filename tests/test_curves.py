"""Robustness curves (issue 23): curves from minimal norms, their agreement with a
fixed-eps attack, and the rules end to end on a tiny digits run."""

from __future__ import annotations

import numpy as np
import pytest

from advfit.evaluation.curves import check_columns, curve_rows, minimal_norms

from conftest import run_snakemake

FAB = {"nb_iter": 20, "n_target_classes": 3}


def test_a_curve_from_norms_by_hand():
    # 0: misclassified clean; inf: no AE found; an AE of norm exactly eps counts at eps
    norms = np.array([0.0, 0.05, 0.1, 0.2, np.inf])
    rows = curve_rows(norms, [0.01, 0.05, 0.1, 0.15, 1.0])
    assert [r["robust_accuracy"] for r in rows] == [0.8, 0.6, 0.4, 0.4, 0.2]
    assert [r["n_robust"] for r in rows] == [4, 3, 2, 2, 1]
    assert all(r["n"] == 5 for r in rows)
    for r in rows:
        assert 0 <= r["wilson_low"] <= r["robust_accuracy"] <= r["wilson_high"] <= 1


def test_curves_never_rise_with_eps():
    rng = np.random.default_rng(0)
    norms = np.concatenate([np.zeros(5), rng.exponential(0.1, 90), np.full(5, np.inf)])
    grid = np.sort(rng.uniform(0.001, 0.5, 25))
    accuracy = [r["robust_accuracy"] for r in curve_rows(norms, grid)]
    assert np.all(np.diff(accuracy) <= 0)
    assert accuracy[0] <= 0.95 and accuracy[-1] >= 0.05  # the zeros and the infs


def test_nan_norms_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        curve_rows(np.array([0.1, np.nan]), [0.1])


def test_check_columns():
    norms = np.array([0.0, 0.05, 0.2, np.inf])
    checked = check_columns(norms, np.array([False, False, True, False]), "pgd", 0.1)
    assert checked == {"check_attack": "pgd", "check_eps": 0.1, "check_robust_accuracy": 0.25,
                       "curve_at_check_eps": 0.5}
    assert np.isnan(check_columns(norms, None, None, None)["check_eps"])


@pytest.mark.parametrize("attack", ["deepfool", "cw_l2"])
def test_l2_attacks_have_no_linf_minimal_norm(attack):
    with pytest.raises(ValueError, match="L2 attack"):
        minimal_norms(None, np.zeros((1, 8, 8, 1), np.float32), np.zeros(1, int), attack,
                      "inf", {}, 8)


@pytest.mark.parametrize("section,message", [
    ({"attack": "deepfool", "norm": "inf"}, "'robustness_curves.norm': deepfool is an L2 attack"),
    ({"eps_grid": [0.1, 0.05]}, "'robustness_curves.eps_grid': [0.1, 0.05] must be strictly"),
    ({"n_points": 5000}, "'robustness_curves.n_points': 5000 is larger than the test set"),
    ({"check_attack": "nope"}, "'robustness_curves.check_attack': unknown attack 'nope'"),
    ({"check_attack": "pgd", "norm": 2, "attack": "deepfool"},
     "attack 'pgd' bounds the inf norm, the curves use norm 2"),
    ({"params": {"nb_iter": 0}}, "config key 'robustness_curves.params.nb_iter'"),
])
def test_bad_curve_sections_are_refused_naming_the_key(default_config, section, message):
    from advfit.config import ConfigError, validate_config

    default_config["robustness_curves"] = {"eps_grid": [0.05, 0.1], "n_points": 50, **section}
    with pytest.raises(ConfigError) as caught:
        validate_config(default_config)
    assert message in str(caught.value)


@pytest.fixture(scope="module")
def lenet_points(trained_lenet, digits):
    """The trained LeNet's last snapshot and 80 test points, some misclassified."""
    from advfit.runtime.layout import snapshot_name

    model, _, snapshot_dir = trained_lenet
    model.load_weights(snapshot_dir / snapshot_name(3))
    x, y = digits.take(digits.official_test[:80])
    return model, x, y


@pytest.mark.parametrize("norm,grid", [("inf", [0.05, 0.1, 0.2]), (2, [0.5, 1.0, 2.0])])
def test_fab_t_curve_equals_fixed_eps_fab_t(lenet_points, norm, grid):
    """Tolerance 0: both run the same FAB steps per target on the same points, and a
    fixed-eps FAB-T fools a point at eps iff some target's closest AE is within eps."""
    from advfit.attacks.fab import fab_t
    from advfit.evaluation.trajectory import attack_snapshot

    model, x, y = lenet_points
    norms = minimal_norms(model, x, y, "fab_t", norm, FAB, 256)
    curve = {r["eps"]: r["robust_accuracy"] for r in curve_rows(norms, grid)}
    for eps in grid:
        def run(xa, ya, eps=eps):
            return fab_t(model, xa, ya, eps=eps, norm=norm, **FAB)

        robust = attack_snapshot(model, x, y, run, 256, "channels")["robust"]
        assert curve[eps] == robust.mean(), eps
    assert 0 < curve[grid[0]] < 1  # a grid where the budget matters


def test_deepfool_norms(lenet_points):
    """DeepFool's AE norms: 0 where the clean point is wrong, finite where it fools."""
    from advfit.attacks.adversarial_sets import predict_labels

    model, x, y = lenet_points
    norms = minimal_norms(model, x, y, "deepfool", 2, {}, 256)
    correct = predict_labels(model, x) == y
    assert (norms[~correct] == 0).all() and (norms[correct] > 0).all()
    assert np.isfinite(norms[correct]).mean() > 0.9  # DeepFool nearly always crosses


# --- end to end ---------------------------------------------------------------------------

GRID = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3]
TINY = {
    "seed": 5,
    "dataset": {"name": "digits"},
    "model": {"name": "lenet5"},
    "splits": {"method": "kfold", "n_splits": 2},
    "regimes": {"overfit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 64,
                            "epochs": 3}},
    "best_snapshot": {"metric": "val_accuracy"},
    "attacks": {"fab_t": {"eps": 0.1, "norm": "inf", "nb_iter": 10, "n_target_classes": 3}},
    "robustness_curves": {"attack": "fab_t", "norm": "inf", "eps_grid": GRID,
                          "params": {"nb_iter": 10, "n_target_classes": 3},
                          "check_attack": "fab_t", "n_points": 40},
    "attack_subset_size": 20,
}
TARGETS = ["results/tables/whitebox_curves.csv", "results/figures/whitebox_curves.png",
           "results/figures/whitebox_curves.svg"]


@pytest.fixture(scope="module")
def curves_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("curves")
    done = run_snakemake(workdir, *TARGETS, config=TINY)
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir


@pytest.mark.e2e
def test_curves_table_and_figure(curves_run):
    from advfit.runtime.io import load_npz, read_table

    table = read_table(curves_run / "results/tables/whitebox_curves.csv")
    for column in ("dataset", "model", "regime", "split", "epoch", "is_best", "is_last",
                   "attack", "norm", "eps", "n", "robust_accuracy", "wilson_low",
                   "wilson_high", "check_attack", "check_eps", "check_robust_accuracy",
                   "curve_at_check_eps"):
        assert column in table, column
    assert len(table) == 2 * 3 * len(GRID)  # splits x snapshots (all) x eps
    assert (table.n == 40).all()
    assert table.robust_accuracy.between(0, 1).all()
    assert ((table.wilson_low <= table.robust_accuracy)
            & (table.robust_accuracy <= table.wilson_high)).all()
    for _, rows in table.groupby(["split", "epoch"]):
        assert np.all(np.diff(rows.sort_values("eps").robust_accuracy) <= 0)
    # the same FAB-T steps at the check's eps: the fixed-eps attack agrees exactly
    assert (table.check_attack == "fab_t").all() and (table.check_eps == 0.1).all()
    assert (table.curve_at_check_eps == table.check_robust_accuracy).all()
    at_check = table[table.eps == 0.1]
    assert (at_check.robust_accuracy == at_check.curve_at_check_eps).all()
    assert table.groupby("split").is_best.apply(lambda s: s.sum() == len(GRID)).all()
    arrays = load_npz(next(curves_run.glob("results/digits/lenet5/overfit/split0/curves.npz")))
    assert arrays["norms"].shape == (3, 40)
    for name in TARGETS[1:]:
        assert (curves_run / name).stat().st_size > 1000
    assert b"<dc:date>" not in (curves_run / TARGETS[2]).read_bytes()
    assert not list(curves_run.glob("results/**/*.partial"))
