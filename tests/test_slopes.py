"""Trend test of experiment KNN: slopes S_j = A_j / A_{j+2} and the two t-tests."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from advfit.statistics.slopes import SLOPE_COLUMNS, TEST_COLUMNS, slope, slope_analysis, slopes_table, t_test

KS = [1, 3, 5, 7]


def accuracy_table(curves: dict[tuple[str, str], list[list[float]]], dataset="mnist") -> pd.DataFrame:
    """Tidy accuracy rows from {(eval_set, attack): one [A_1, A_3, A_5, A_7] per split}."""
    rows = []
    for (eval_set, attack), per_split in curves.items():
        for split, accuracies in enumerate(per_split):
            for k, a in zip(KS, accuracies):
                rows.append({"dataset": dataset, "split": split, "k": k, "eval_set": eval_set,
                             "attack": attack, "n": 64, "accuracy": a})
    return pd.DataFrame(rows)


# Dyadic accuracies, so that every slope is exact in floating point.
HAND = {
    ("adversarial", "fgsm"): [[0.375, 0.125, 0.0625, 0.0],
                              [0.5, 0.125, 0.03125, 0.0],
                              [0.625, 0.125, 0.0625, 0.0]],
    ("fail_subset", "none"): [[0.5, 0.25, 0.125, 0.0],
                              [0.5, 0.25, 0.0625, 0.0],
                              [0.5, 0.25, 0.25, 0.0]],
    ("test", "none"): [[0.75, 0.75, 0.75, 0.5]] * 3,
}


def test_slope_values_and_non_finite_cases():
    assert slope(0.5, 0.25) == 2.0
    assert slope(0.5, 0.0) == math.inf
    assert math.isnan(slope(0.0, 0.0))
    assert math.isnan(slope(float("nan"), 0.5))
    assert slope(0.0, 0.5) == 0.0


def test_slopes_table_by_hand():
    slopes = slopes_table(accuracy_table(HAND))
    assert list(slopes.columns) == SLOPE_COLUMNS
    assert len(slopes) == 3 * 3 * 3  # sets x splits x j
    adv = slopes[slopes["eval_set"] == "adversarial"].set_index(["split", "j"])["slope"]
    assert [adv[(s, 1)] for s in range(3)] == [3.0, 4.0, 5.0]
    assert [adv[(s, 3)] for s in range(3)] == [2.0, 4.0, 2.0]
    assert all(adv[(s, 5)] == math.inf for s in range(3))
    fail = slopes[slopes["eval_set"] == "fail_subset"].set_index(["split", "j"])
    assert list(fail["slope"].loc[[(0, 1), (1, 3), (2, 3)]]) == [2.0, 4.0, 1.0]
    assert fail["is_infinite"].loc[[(s, 5) for s in range(3)]].all()
    test = slopes[slopes["eval_set"] == "test"]
    assert list(test["slope"].iloc[:3]) == [1.0, 1.0, 1.5]
    assert not test["is_infinite"].any() and not slopes["is_undefined"].any()
    # fixed order: eval sets, then split, then j
    assert list(slopes["eval_set"].unique()) == ["test", "fail_subset", "adversarial"]


def test_both_t_tests_by_hand_arithmetic():
    # j = 1: adversarial slopes 3, 4, 5 (mean 4, variance 1); fail subset 2, 2, 2.
    # Paired: differences 1, 2, 3, mean 2, sd 1: t = 2 / (1 / sqrt 3) = 2 sqrt 3, 2 df.
    # Welch: t = (4 - 2) / sqrt(1/3 + 0) = 2 sqrt 3, Welch-Satterthwaite df = 2.
    # With 2 df the two-sided p-value is 1 - |t| / sqrt(t^2 + 2) = 1 - sqrt(12/14).
    _, tests = slope_analysis(accuracy_table(HAND))
    assert list(tests.columns) == TEST_COLUMNS
    j1 = tests[tests["j"] == 1].set_index("test")
    t_hand = 2 * math.sqrt(3)
    p_hand = 1 - math.sqrt(12 / 14)  # 0.0741799...
    for kind in ("welch", "paired"):
        assert j1.loc[kind, "statistic"] == pytest.approx(t_hand, rel=1e-12)
        assert j1.loc[kind, "p_value"] == pytest.approx(p_hand, rel=1e-9)
        assert j1.loc[kind, "n"] == 3 and j1.loc[kind, "note"] == ""
    assert p_hand == pytest.approx(0.07418, abs=1e-5)


def test_infinite_slopes_give_nan_p_values_with_a_reason():
    _, tests = slope_analysis(accuracy_table(HAND))
    j5 = tests[tests["j"] == 5]
    assert len(j5) == 2 and set(j5["test"]) == {"welch", "paired"}
    assert j5["p_value"].isna().all() and j5["statistic"].isna().all()
    assert (j5["note"] == "infinite slope in 3 of 3 splits (adversarial 3, fail_subset 3): "
                          "t-test undefined").all()


def test_t_tests_against_scipy_on_random_accuracies():
    rng = np.random.default_rng(3)
    n_splits = 6
    adv = np.sort(rng.uniform(0.05, 0.6, size=(n_splits, 4)), axis=1)[:, ::-1]
    fail = np.sort(rng.uniform(0.05, 0.4, size=(n_splits, 4)), axis=1)[:, ::-1]
    table = accuracy_table({("adversarial", "pgd"): adv.tolist(), ("fail_subset", "none"): fail.tolist()})
    slopes, tests = slope_analysis(table)
    for i, j in enumerate([1, 3, 5]):
        # Independent computation: column i of A is A_j, column i + 1 is A_{j+2}.
        s_adv = adv[:, i] / adv[:, i + 1]
        s_fail = fail[:, i] / fail[:, i + 1]
        got = slopes[(slopes["eval_set"] == "adversarial") & (slopes["j"] == j)]["slope"]
        np.testing.assert_allclose(got, s_adv, rtol=1e-15)
        welch = stats.ttest_ind(s_adv, s_fail, equal_var=False)
        paired = stats.ttest_rel(s_adv, s_fail)
        row = tests[tests["j"] == j].set_index("test")
        assert row.loc["welch", "statistic"] == pytest.approx(welch.statistic, rel=1e-12)
        assert row.loc["welch", "p_value"] == pytest.approx(welch.pvalue, rel=1e-12)
        assert row.loc["paired", "statistic"] == pytest.approx(paired.statistic, rel=1e-12)
        assert row.loc["paired", "p_value"] == pytest.approx(paired.pvalue, rel=1e-12)
        assert (row["n"] == n_splits).all() and (row["note"] == "").all()
        assert (row["attack"] == "pgd").all() and (row["dataset"] == "mnist").all()


def test_undefined_slopes_and_zero_variance_are_reported():
    curves = {
        ("adversarial", "fgsm"): [[0.5, 0.25, 0.125, 0.0]] * 3,
        # split 1 of the fail subset has A_3 = A_5 = 0: S_3 = 0/0.
        ("fail_subset", "none"): [[0.5, 0.25, 0.125, 0.0], [0.5, 0.0, 0.0, 0.0], [0.5, 0.25, 0.25, 0.0]],
        ("adversarial", "pgd"): [[0.5, 0.25, 0.125, 0.0], [0.5, 0.25, 0.0625, 0.0], [0.5, 0.25, 0.25, 0.0]],
    }
    slopes, tests = slope_analysis(accuracy_table(curves))
    fail = slopes[slopes["eval_set"] == "fail_subset"].set_index(["split", "j"])
    assert fail.loc[(1, 3), "is_undefined"] and np.isnan(fail.loc[(1, 3), "slope"])
    assert fail.loc[(1, 1), "is_infinite"]  # A_1 = 0.5 > 0 = A_3
    fgsm = tests[tests["attack"] == "fgsm"].set_index(["j", "test"])
    assert np.isnan(fgsm.loc[(3, "welch"), "p_value"])
    assert fgsm.loc[(3, "welch"), "note"].startswith("undefined slope (0/0 or empty set) in 1 of 3 splits")
    assert fgsm.loc[(1, "paired"), "note"].startswith("infinite slope in 1 of 3 splits")
    # pgd's slopes equal the fail subset's at j = 1 except split 1 (inf): no test.
    # Constant samples: zero variance in both sets (Welch), of the differences (paired).
    assert t_test("welch", [2.0, 2.0], [1.0, 1.0])[2] == (
        "zero variance in both sets (mean difference 1): t-test undefined")
    assert np.isnan(t_test("welch", [2.0, 2.0], [1.0, 1.0])[1])
    statistic, p_value, note = t_test("paired", [2.0, 3.0], [1.0, 2.0])
    assert np.isnan(statistic) and np.isnan(p_value) and "paired differences (all 1)" in note
    assert t_test("paired", [2.0], [1.0])[2] == "fewer than 2 splits with both sets (1)"
    # One constant sample is fine for Welch's test.
    assert not np.isnan(t_test("welch", [2.0, 3.0, 5.0], [1.0, 1.0, 1.0])[1])


def test_missing_splits_are_named_and_duplicates_refused():
    table = accuracy_table({("adversarial", "fgsm"): [[0.5, 0.25, 0.125, 0.0625]] * 3,
                            ("fail_subset", "none"): [[0.5, 0.25, 0.0625, 0.03125]] * 2})
    _, tests = slope_analysis(table)
    assert (tests["n"] == 2).all()
    assert tests["note"].str.contains("1 splits lack one of the two sets").all()
    with pytest.raises(ValueError, match="several rows"):
        slopes_table(pd.concat([table, table.iloc[:1]]))
    with pytest.raises(ValueError, match="lacks columns"):
        slopes_table(table.drop(columns="k"))
