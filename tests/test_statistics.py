"""advfit.statistics.inference and advfit.statistics.paired against scipy, statsmodels and hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from advfit.statistics import inference as st
from advfit.statistics.paired import check_against_accuracy, combine_splits, split_rows


def test_t_interval_matches_the_textbook_formula():
    values = [0.90, 0.92, 0.95]
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)  # t(0.975, 2) = 4.303
    assert st.t_interval(values) == pytest.approx((mean - half, mean + half))
    assert half == pytest.approx(4.3027 * 0.025166 / math.sqrt(3), rel=1e-3)
    assert st.t_interval([0.5, 0.5]) == (0.5, 0.5)
    assert all(math.isnan(v) for v in st.t_interval([0.5]))


def test_wilson_interval_matches_statsmodels_and_a_worked_example():
    from statsmodels.stats.proportion import proportion_confint

    for k, n in [(0, 10), (3, 10), (10, 10), (81, 263)]:
        assert st.wilson_interval(k, n) == pytest.approx(
            proportion_confint(k, n, alpha=0.05, method="wilson"), abs=1e-12)
    # Newcombe (1998), Table I, 81/263: Wilson 0.2553 to 0.3662
    low, high = st.wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert all(math.isnan(v) for v in st.wilson_interval(0, 0))


def test_intervals_cover_the_true_value_about_95_percent_of_2000_draws():
    """Seeded simulation; the tolerance 0.02 is > 4 binomial standard errors (0.0049)."""
    rng = np.random.default_rng(20260502)
    p, n, draws = 0.3, 60, 2000
    wilson = np.mean([lo <= p <= hi for lo, hi in
                      (st.wilson_interval(k, n) for k in rng.binomial(n, p, draws))])
    t = np.mean([lo <= 0.7 <= hi for lo, hi in
                 (st.t_interval(rng.normal(0.7, 0.05, 5)) for _ in range(draws))])
    assert abs(wilson - 0.95) < 0.02, wilson
    assert abs(t - 0.95) < 0.02, t


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    rng = np.random.default_rng(1)
    values = rng.exponential(2.0, 300)
    a = st.bootstrap_mean_interval(values, seed=7)
    assert a == st.bootstrap_mean_interval(values, seed=7)
    assert a != st.bootstrap_mean_interval(values, seed=8)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))  # normal approximation
    assert a[0] == pytest.approx(values.mean() - half, abs=0.05)
    assert a[1] == pytest.approx(values.mean() + half, abs=0.05)
    assert st.bootstrap_mean_interval(np.full(20, 0.1)) == (0.1, 0.1)


def test_mcnemar_exact_on_a_constructed_table():
    # correct at a / at b: 30 both, 2 gained (wrong at a, right at b), 9 lost, 5 neither
    a = np.array([1] * 30 + [0] * 2 + [1] * 9 + [0] * 5, bool)
    b = np.array([1] * 30 + [1] * 2 + [0] * 9 + [0] * 5, bool)
    gained, lost = st.discordant_counts(a, b)
    assert (gained, lost) == (2, 9)
    p, note = st.mcnemar_exact(gained, lost)
    # by hand: 2 * P(X <= 2), X ~ Bin(11, 1/2) = 2 * (1 + 11 + 55) / 2048
    assert p == pytest.approx(2 * 67 / 2048) and note == ""
    from statsmodels.stats.contingency_tables import mcnemar
    assert p == pytest.approx(mcnemar([[5, 2], [9, 30]], exact=True).pvalue)
    assert st.mcnemar_exact(2, 9, "greater")[0] == pytest.approx(
        stats.binom.sf(1, 11, 0.5))
    p, note = st.mcnemar_exact(0, 0)
    assert math.isnan(p) and "no discordant pairs" in note


def test_paired_odds_ratio_and_its_exact_interval():
    ratio, low, high = st.paired_odds_ratio(2, 9)
    assert ratio == pytest.approx(2 / 9)
    ci = stats.binomtest(2, 11).proportion_ci(method="exact")
    assert (low, high) == pytest.approx((ci.low / (1 - ci.low), ci.high / (1 - ci.high)))
    assert low < ratio < 1 < high  # p = 0.065 > 0.05: the interval holds 1
    assert st.paired_odds_ratio(5, 0)[0] == math.inf


def test_pooled_mcnemar_equals_cmh_stratified_by_matched_pair():
    """CMH over one stratum per (split, sample) pair = McNemar on the summed counts."""
    from statsmodels.stats.contingency_tables import StratifiedTable

    rng = np.random.default_rng(3)
    strata, tables = [], []
    for _ in range(3):  # three splits
        a = rng.random(80) < 0.6
        b = np.where(rng.random(80) < 0.3, ~a, a)
        tables.append(st.discordant_counts(a, b))
        for x, y in zip(a, b):  # stratum: rows epoch a/b, columns correct/wrong
            strata.append([[x, 1 - x], [y, 1 - y]])
    gained, lost, p, _ = st.pooled_mcnemar(tables)
    cmh = StratifiedTable(np.array(strata, float).transpose(1, 2, 0)).test_null_odds()
    assert cmh.statistic == pytest.approx((gained - lost) ** 2 / (gained + lost))
    assert p == pytest.approx(stats.binomtest(gained, gained + lost).pvalue)


def test_fisher_combination_and_holm():
    assert st.fisher_combination([0.01, 0.2, np.nan]) == pytest.approx(
        stats.chi2.sf(-2 * (math.log(0.01) + math.log(0.2)), 4))
    assert math.isnan(st.fisher_combination([np.nan]))
    # Holm by hand: sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 0.04)
    adjusted = st.holm([0.04, 0.01, np.nan, 0.03])
    assert adjusted[[1, 3, 0]] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[2])


def test_welch_effect_interval_and_runs_needed():
    from statsmodels.stats.power import TTestIndPower

    a, b = np.array([0.10, 0.25, 0.18, 0.30]), np.array([0.02, -0.01, 0.05, 0.03])
    effect = st.welch_effect(a, b)
    assert effect["difference"] == pytest.approx(a.mean() - b.mean())
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (effect["difference_low"], effect["difference_high"]) == pytest.approx(
        (ci.low, ci.high))
    d = (a.mean() - b.mean()) / math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    assert effect["cohens_d"] == pytest.approx(d)
    n = TTestIndPower().solve_power(effect_size=d, alpha=0.05, power=0.8)
    assert effect["runs_needed"] == math.ceil(n)
    # d = 0.5 needs 64 per group (Cohen 1988, Table 2.4.1)
    assert st.runs_needed(0.5)[0] == 64
    assert "zero" in st.runs_needed(0.0)[1]
    assert "zero variance" in st.welch_effect([0.1, 0.1], [0.2, 0.2])["power_note"]
    assert "fewer than 2" in st.welch_effect([0.1], [0.2, 0.3])["power_note"]


def _correctness(rng, epochs=(1, 2, 3), best=2):
    return {"epochs": np.array(epochs), "best_epoch": np.array(best),
            "test": rng.random((len(epochs), 50)) < 0.7,
            "fail_subset": rng.random((len(epochs), 6)) < 0.3,
            "adversarial__fgsm": rng.random((len(epochs), 20)) < 0.2,
            "train": rng.random((len(epochs), 90)) < 0.9}


def test_paired_rows_per_split_and_combined():
    rng = np.random.default_rng(5)
    runs = [_correctness(rng), _correctness(rng)]
    per_split = pd.concat([
        pd.DataFrame(split_rows(c, [("best", "last"), (1, 3)])).assign(
            dataset="d", model="m", regime="r", split=str(i)) for i, c in enumerate(runs)])
    assert set(per_split.eval_set) == {"test", "fail_subset", "adversarial"}  # not train
    row = per_split[(per_split.split == "0") & (per_split.eval_set == "adversarial")
                    & (per_split.pair == "best-last")].iloc[0]
    m = runs[0]["adversarial__fgsm"]
    assert (row.epoch_a, row.epoch_b) == (2, 3)
    assert (row.gained, row.lost) == st.discordant_counts(m[1], m[2])
    assert row.n_correct_a == m[1].sum() and row.n_correct_b == m[2].sum()
    combined = combine_splits(per_split)
    pooled = combined[(combined.test == "mcnemar_pooled_exact")
                      & (combined.eval_set == "adversarial") & (combined.pair == "best-last")]
    parts = per_split[(per_split.eval_set == "adversarial") & (per_split.pair == "best-last")]
    assert pooled.gained.item() == parts.gained.sum() and pooled.lost.item() == parts.lost.sum()
    assert pooled.split.item() == "all"
    holm = combined[combined.test == "mcnemar_pooled_exact"].groupby("pair").p_holm
    assert (holm.min() >= combined[combined.test == "mcnemar_pooled_exact"]
            .groupby("pair").p_value.min()).all()


def test_counts_are_checked_against_the_accuracy_table():
    rng = np.random.default_rng(6)
    c = _correctness(rng)
    rows = [{"epoch": e, "eval_set": key.partition("__")[0],
             "attack": key.partition("__")[2] or "none", "n_correct": int(c[key][i].sum())}
            for key in ("test", "fail_subset", "adversarial__fgsm", "train")
            for i, e in enumerate(c["epochs"])]
    table = pd.DataFrame(rows)
    assert check_against_accuracy(c, table) == 12
    table.loc[5, "n_correct"] += 1
    with pytest.raises(ValueError, match="accuracy.csv says"):
        check_against_accuracy(c, table)


def _accuracy_table():
    rows = []
    for split, (base, noise) in enumerate([(0.90, 0.00), (0.92, 0.02), (0.95, 0.01)]):
        for epoch in (1, 2):
            for eval_set, attack, n, acc in [("test", "none", 200, base + noise * epoch),
                                             ("adversarial", "fgsm", 40, 0.1 * epoch)]:
                k = round(acc * n)
                rows.append({"dataset": "d", "model": "m", "regime": "r", "split": split,
                             "epoch": epoch, "eval_set": eval_set, "attack": attack, "n": n,
                             "n_correct": k, "accuracy": k / n})
    return pd.DataFrame(rows)


def test_accuracy_summary_gains_t_columns_and_keeps_its_own():
    from advfit.statistics.aggregate import accuracy_intervals, summarise_accuracy

    table = _accuracy_table()
    summary = summarise_accuracy(table, 0.9)
    row = summary[(summary.eval_set == "test") & (summary.epoch == 1)].iloc[0]
    values = table[(table.eval_set == "test") & (table.epoch == 1)].accuracy
    assert row.accuracy_mean == pytest.approx(values.mean())
    assert (row.t_low, row.t_high) == pytest.approx(st.t_interval(values, 0.9))
    assert row.confidence == 0.9
    assert list(summary.columns[:9]) == ["dataset", "model", "regime", "eval_set", "attack",
                                         "epoch", "n_splits", "accuracy_mean", "accuracy_std"]
    wilson = accuracy_intervals(table)
    assert (wilson.wilson_low.iloc[0], wilson.wilson_high.iloc[0]) == pytest.approx(
        st.wilson_interval(table.n_correct.iloc[0], table.n.iloc[0]))
    assert (wilson.wilson_low <= wilson.accuracy).all() and (wilson.accuracy <= wilson.wilson_high).all()


def test_distance_summary_gets_seeded_bootstrap_bounds():
    from advfit.statistics.aggregate import summarise_distances

    rng = np.random.default_rng(2)
    per_ae = pd.DataFrame({"dataset": "d", "model": "m", "regime": "r",
                           "attack": ["fgsm"] * 50 + ["pgd"] * 50, "l2_convention": "channels",
                           "l0": rng.integers(1, 64, 100), "l2": rng.random(100),
                           "linf": 0.1})
    a, b = summarise_distances(per_ae, seed=3), summarise_distances(per_ae, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert (a.l2_mean_low < a.l2_mean).all() and (a.l2_mean < a.l2_mean_high).all()
    assert (a.linf_mean_low == 0.1).all() and (a.linf_mean_high == 0.1).all()


def test_delta_tests_carry_effect_power_and_holm():
    from advfit.statistics.aggregate import delta_tests

    deltas = pd.DataFrame({
        "dataset": "d", "model": "m", "regime": "r", "split": [0, 1, 2] * 3,
        "eval_set": ["test"] * 3 + ["adversarial"] * 6,
        "attack": ["none"] * 3 + ["fgsm"] * 3 + ["pgd"] * 3,
        "delta": [-0.02, -0.03, -0.01, 0.10, 0.15, 0.12, 0.01, -0.05, 0.02]})
    tests = delta_tests(deltas).set_index("attack")
    test = np.array([-0.02, -0.03, -0.01])
    fgsm = np.array([0.10, 0.15, 0.12])
    p = stats.ttest_ind(fgsm, test, equal_var=False).pvalue
    assert tests.at["fgsm", "p_value"] == pytest.approx(p)
    assert tests.at["fgsm", "delta_difference"] == pytest.approx(fgsm.mean() - test.mean())
    assert tests.at["fgsm", "delta_difference_low"] > 0
    expected = st.holm(tests.p_value.to_numpy())
    assert tests.p_holm.to_numpy() == pytest.approx(expected)
    assert tests.at["fgsm", "p_holm"] == pytest.approx(min(1, 2 * min(tests.p_value)))
    assert tests.at["fgsm", "runs_needed"] >= 2
