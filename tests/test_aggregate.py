"""Summaries over splits and the delta analysis, on hand-made tables."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from advfit.statistics.aggregate import delta_table, delta_tests, summarise_accuracy, summarise_distances


def _table():
    rows = []
    # two splits, three epochs; best epochs 2 and 1
    acc = {("test", "none"): {0: [0.5, 0.8, 0.7], 1: [0.6, 0.7, 0.9]},
           ("adversarial", "fgsm"): {0: [0.3, 0.0, 0.4], 1: [0.0, 0.2, 0.6]}}
    for (eval_set, attack), splits in acc.items():
        for split, values in splits.items():
            for epoch, value in enumerate(values, start=1):
                rows.append({"dataset": "d", "model": "m", "regime": "r", "split": split,
                             "epoch": epoch, "eval_set": eval_set, "attack": attack,
                             "n": 10, "n_correct": int(round(value * 10)), "accuracy": value})
    best = pd.DataFrame({"dataset": "d", "model": "m", "regime": "r", "split": [0, 1],
                         "best_epoch": [2, 1]})
    return pd.DataFrame(rows), best


def test_summary_mean_and_sample_std():
    table, _ = _table()
    summary = summarise_accuracy(table)
    row = summary[(summary.eval_set == "test") & (summary.epoch == 3)].iloc[0]
    assert row.accuracy_mean == pytest.approx(0.8)
    assert row.accuracy_std == pytest.approx(np.std([0.7, 0.9], ddof=1))
    adv = summary[(summary.eval_set == "adversarial") & (summary.epoch == 1)].iloc[0]
    assert adv.asr_mean == pytest.approx(1 - 0.15)
    assert np.isnan(summary[summary.eval_set == "test"].asr_mean).all()


def test_deltas_and_welch_test():
    table, best = _table()
    deltas = delta_table(table, best).set_index(["split", "eval_set"])
    assert deltas.loc[(0, "test"), "delta"] == pytest.approx(0.7 - 0.8)
    assert deltas.loc[(1, "test"), "delta"] == pytest.approx(0.9 - 0.6)
    assert deltas.loc[(0, "adversarial"), "delta"] == pytest.approx(0.4 - 0.0)
    assert deltas.loc[(1, "adversarial"), "delta"] == pytest.approx(0.6 - 0.0)
    tests = delta_tests(delta_table(table, best))
    expected = stats.ttest_ind([0.4, 0.6], [-0.1, 0.3], equal_var=False)
    assert tests.iloc[0].p_value == pytest.approx(expected.pvalue)
    assert tests.iloc[0].statistic == pytest.approx(expected.statistic)
    assert tests.iloc[0].mean_delta_adversarial == pytest.approx(0.5)


def test_distance_summary():
    per_ae = pd.DataFrame({"dataset": "d", "model": "m", "regime": "r", "attack": ["a"] * 3,
                           "l2_convention": "channels", "l0": [1, 2, 3], "l2": [0.1, 0.2, 0.6],
                           "linf": [0.1, 0.1, 0.1]})
    row = summarise_distances(per_ae).iloc[0]
    assert row.n == 3 and row.l0_mean == 2 and row.l0_std == pytest.approx(1.0)
    assert row.l2_mean == pytest.approx(0.3) and row.linf_std == 0
