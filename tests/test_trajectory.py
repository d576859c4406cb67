"""The two views of robustness along training: white-box per snapshot, transfer matrix."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from advfit.evaluation import trajectory

from advfit.statistics import views


def test_chosen_epochs_always_hold_best_and_last():
    epochs = list(range(1, 11))
    assert trajectory.chosen_epochs("all", epochs, 4) == epochs
    assert trajectory.chosen_epochs({"every": 3}, epochs, 4) == [3, 4, 6, 9, 10]
    assert trajectory.chosen_epochs([2], epochs, 7) == [2, 7, 10]
    assert trajectory.chosen_epochs([], epochs, 7) == [7, 10]
    # A listed epoch past this run's E belongs to a longer regime: not this run's.
    assert trajectory.chosen_epochs([2, 12], epochs, 7) == [2, 7, 10]
    # One inside 1..E without its snapshot means the folder is not the run.
    with pytest.raises(ValueError, match=r"epochs \[5\] have no snapshot"):
        trajectory.chosen_epochs([5], [e for e in epochs if e != 5], 7)


def test_point_sample_is_seeded_sorted_and_bounded():
    index = np.arange(100, 200)
    a = trajectory.point_sample(index, 30, seed=5)
    assert np.array_equal(a, trajectory.point_sample(index, 30, seed=5))
    assert not np.array_equal(a, trajectory.point_sample(index, 30, seed=6))
    assert np.all(np.diff(a) > 0) and set(a) <= set(index)
    assert len(trajectory.point_sample(index, 500, seed=5)) == 100


def test_chunks_are_read_back_only_with_the_same_stamp(tmp_path):
    calls = []

    def compute(epoch):
        calls.append(epoch)
        return {"value": np.array([epoch * 1.5])}

    first = trajectory.chunked(tmp_path, [1, 2], compute, "a")
    again = trajectory.chunked(tmp_path, [1, 2, 3], compute, "a")
    assert calls == [1, 2, 3]  # 1 and 2 read back
    assert float(again[2]["value"][0]) == 3.0 == float(first[2]["value"][0])
    trajectory.chunked(tmp_path, [1], compute, "b")  # other parameters: recomputed
    assert calls == [1, 2, 3, 1]


@pytest.fixture(scope="module")
def snapshots(trained_lenet):
    from advfit.runtime.layout import list_snapshots

    model, _, snapshot_dir = trained_lenet
    return model, list_snapshots(snapshot_dir)


@pytest.fixture(scope="module")
def points(digits):
    index = trajectory.point_sample(digits.official_test, 120, seed=11)
    return digits.take(index)


def _whitebox(model, path, x, y, method, params, seed=0):
    import keras

    from advfit.attacks import run_attack

    keras.utils.set_random_seed(seed)
    model.load_weights(path)
    return trajectory.attack_snapshot(
        model, x, y, lambda a, b: run_attack(method, model, a, b, params), 1024, "channels")


def test_robust_accuracy_never_exceeds_clean_and_pgd_beats_fgsm(snapshots, points):
    model, paths = snapshots
    x, y = points
    eps = 0.1
    for epoch, path in paths.items():
        pgd = _whitebox(model, path, x, y, "pgd",
                        {"eps": eps, "eps_iter": eps / 4, "nb_iter": 10, "rand_init": True})
        fgsm = _whitebox(model, path, x, y, "fgsm", {"eps": eps})
        for result in (pgd, fgsm):
            assert np.all(result["robust"] <= result["clean"])  # point by point
            assert np.array_equal(result["success"], result["clean"] & ~result["robust"])
            assert np.all(np.isnan(result["l2"][~result["success"]]))
            assert np.all(result["linf"][result["success"]] <= eps + 1e-6)
        assert np.array_equal(pgd["clean"], fgsm["clean"])
        # The iterative attack finds at least as many AEs as the single step, on average.
        assert pgd["robust"].mean() <= fgsm["robust"].mean(), epoch
        row = trajectory.whitebox_row(epoch, pgd)
        assert row["robust_accuracy"] <= row["clean_accuracy"]
        from advfit.statistics.inference import wilson_interval
        assert (row["robust_wilson_low"], row["robust_wilson_high"]) == \
            wilson_interval(int(pgd["robust"].sum()), len(y), 0.95)
        assert row["n_success"] == row["n_attacked"] - int(pgd["robust"].sum())
    assert fgsm["success"].sum() > 10  # the attacks do something on this model


def test_minimal_perturbation_attacks_report_their_distances(snapshots, points):
    model, paths = snapshots
    x, y = points
    result = _whitebox(model, paths[3], x, y, "deepfool", {"max_iter": 50})
    row = trajectory.whitebox_row(3, result)
    assert row["success_rate"] > 0.9  # DeepFool reaches the boundary on almost every point
    assert 0 < row["l2_median"] < 3 and row["linf_median"] < row["l2_median"]
    assert math.isclose(row["l2_mean"], np.nanmean(result["l2"]))


def test_a_resumed_sweep_gives_the_same_numbers(snapshots, points, tmp_path):
    """Each snapshot's random start is seeded from the snapshot alone."""
    model, paths = snapshots
    x, y = points
    params = {"eps": 0.1, "eps_iter": 0.03, "nb_iter": 5, "rand_init": True}

    def compute(epoch):
        return _whitebox(model, paths[epoch], x, y, "pgd", params, seed=100 + epoch)

    whole = trajectory.chunked(tmp_path / "whole", [1, 2, 3], compute, "s")
    trajectory.chunked(tmp_path / "killed", [1], compute, "s")  # killed after epoch 1
    resumed = trajectory.chunked(tmp_path / "killed", [1, 2, 3], compute, "s")
    for epoch in (1, 2, 3):
        for key in whole[epoch]:
            assert np.array_equal(whole[epoch][key], resumed[epoch][key], equal_nan=True)


def test_transfer_row_at_m_reproduces_the_adversarial_set(snapshots, digits, trained_lenet):
    from advfit.attacks.adversarial_sets import craft_adversarial_set
    from advfit.attacks import AttackSpec
    from advfit.evaluation.snapshots import evaluate_split

    model, paths = snapshots
    _, _, snapshot_dir = trained_lenet
    x_test, y_test = digits.take(digits.official_test)
    sets = {}
    for epoch in (1, 3):
        model.load_weights(paths[epoch])
        sets[epoch] = craft_adversarial_set(model, x_test, y_test, digits.official_test,
                                            AttackSpec.from_config("fgsm", {"eps": 0.1}), 100,
                                            seed=2)
    rows = pd.DataFrame(trajectory.evaluate_sets(model, paths, sets, 1024))
    diagonal = rows[rows.craft_epoch == rows.eval_epoch]
    assert len(diagonal) == 2 and (diagonal.n_correct == 0).all() and (diagonal.n > 0).all()
    split = {"train": digits.official_train[:1000], "validation": digits.official_train[1000:],
             "test": digits.official_test}
    evaluated, _ = evaluate_split("lenet5", digits, split, snapshot_dir, 3, {"fgsm": sets[3]})
    replayed = {r["epoch"]: r["n_correct"] for r in evaluated if r["eval_set"] == "adversarial"}
    at_m = rows[rows.craft_epoch == 3].set_index("eval_epoch")["n_correct"].to_dict()
    assert at_m == replayed


# --- tables ------------------------------------------------------------------------------------

def _tables():
    """Two splits; M = 2 in split 0 and 1 in split 1; E = 3."""
    accuracy, whitebox = [], []
    test = {0: [0.5, 0.8, 0.7], 1: [0.9, 0.85, 0.8]}
    adversarial = {0: [0.2, 0.0, 0.3], 1: [0.0, 0.2, 0.4]}
    robust = {0: [0.1, 0.15, 0.1], 1: [0.3, 0.2, 0.2]}
    for split in (0, 1):
        for epoch in (1, 2, 3):
            key = {"dataset": "d", "model": "m", "regime": "r", "split": split, "epoch": epoch}
            accuracy.append({**key, "eval_set": "test", "attack": "none",
                             "accuracy": test[split][epoch - 1]})
            accuracy.append({**key, "eval_set": "adversarial", "attack": "pgd",
                             "accuracy": adversarial[split][epoch - 1]})
            whitebox.append({**key, "attack": "pgd", "robust_accuracy": robust[split][epoch - 1],
                             "clean_accuracy": test[split][epoch - 1], "success_rate": 0.5,
                             "l2_median": 1.0, "linf_median": 0.1})
    best = pd.DataFrame([{"dataset": "d", "model": "m", "regime": "r", "split": 0,
                          "best_epoch": 2},
                         {"dataset": "d", "model": "m", "regime": "r", "split": 1,
                          "best_epoch": 1}])
    return pd.DataFrame(accuracy), pd.DataFrame(whitebox), best


def test_view_deltas_are_last_minus_best_per_split():
    accuracy, whitebox, best = _tables()
    deltas = views.view_deltas(accuracy, whitebox, best).set_index(["view", "split"])["delta"]
    assert deltas[("transfer", 0)] == pytest.approx(0.3 - 0.0)
    assert deltas[("transfer", 1)] == pytest.approx(0.4 - 0.0)
    assert deltas[("whitebox", 0)] == pytest.approx(0.1 - 0.15)
    assert deltas[("whitebox", 1)] == pytest.approx(0.2 - 0.3)
    assert deltas[("test", 0)] == pytest.approx(0.7 - 0.8)


def test_view_delta_tests_match_scipy():
    from scipy import stats

    accuracy, whitebox, best = _tables()
    tests = views.view_delta_tests(views.view_deltas(accuracy, whitebox, best))
    row = tests[(tests.view == "transfer") & (tests.test == "welch")].iloc[0]
    expected = stats.ttest_ind([0.3, 0.4], [-0.1, -0.1], equal_var=False)
    assert row.p_value == pytest.approx(expected.pvalue) and row.n_splits == 2
    paired = tests[(tests.view == "whitebox") & (tests.test == "paired")].iloc[0]
    expected = stats.ttest_rel([-0.05, -0.1], [-0.1, -0.1])
    assert paired.p_value == pytest.approx(expected.pvalue)
    assert paired.alternative == "two-sided"
    assert set(tests.view) == {"transfer", "whitebox"}


def test_undefined_view_tests_say_why():
    nan_stat, nan_p, note = views.compare("welch", np.array([0.1]), np.array([0.2]), "two-sided")
    assert math.isnan(nan_p) and note == "fewer than 2 splits (1)"
    _, p, note = views.compare("paired", np.array([0.1, 0.2]), np.array([0.0, 0.1]), "two-sided")
    assert math.isnan(p) and note == "zero variance of the paired differences"


# --- configuration ---------------------------------------------------------------------------

BAD_VIEWS = [
    ({"snapshot_attacks": {"attacks": ["pgx"], "n_points": 10}}, "snapshot_attacks.attacks"),
    ({"snapshot_attacks": {"attacks": ["pgd"], "n_points": 361}}, "snapshot_attacks.n_points"),
    ({"snapshot_attacks": {"attacks": ["pgd"], "n_points": 0}}, "snapshot_attacks.n_points"),
    ({"snapshot_attacks": {"attacks": ["pgd"], "n_points": 10, "snapshots": [0, 3]}},
     "snapshot_attacks.snapshots"),
    ({"snapshot_attacks": {"attacks": ["pgd"], "n_points": 10, "snapshots": [26]}},
     "snapshot_attacks.snapshots"),  # past normal's 20 and overfit's 25 epochs
    ({"snapshot_attacks": {"attacks": ["pgd"], "n_points": 10, "snapshots": {"every": 0}}},
     "snapshot_attacks.snapshots"),
    ({"snapshot_attacks": {"attacks": ["pgd"]}}, "snapshot_attacks.n_points"),
    ({"transfer_matrix": {"attacks": ["deepfool"]}}, "transfer_matrix.attacks"),
    ({"transfer_matrix": {"craft_epochs": [30]}}, "transfer_matrix.craft_epochs"),
    ({"transfer_matrix": {"craft_epochs": "some"}}, "transfer_matrix.craft_epochs"),
]


@pytest.mark.parametrize("section,key", BAD_VIEWS, ids=[k for _, k in BAD_VIEWS])
def test_bad_view_configs_are_refused_naming_the_key(default_config, section, key):
    from advfit.config import ConfigError, validate_config

    default_config.update(section)
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert f"'{key}'" in str(error.value)


def test_view_defaults(default_config):
    from advfit.config import validate_config

    default_config.update({"snapshot_attacks": {"attacks": ["pgd"], "n_points": 10},
                           "transfer_matrix": {}})
    config = validate_config(default_config)
    assert config["snapshot_attacks"]["snapshots"] == "all"
    assert config["transfer_matrix"]["craft_epochs"] == []
