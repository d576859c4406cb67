"""Trend test of experiment KNN (paper 000 §4.1, Fig. 9).

Per split, the slope between accuracies at successive odd K is
S_j = A_j / A_{j+2} for j = 1, 3, ..., Z-2 (A_K: accuracy with K neighbours).
Per j, the adversarial set's slopes are tested against the fail subset's
slopes across splits, with two clearly named tests (the paper calls its test
a "paired Welch's t test", which is not one test):
- ``welch``: Welch's unequal-variance t-test (scipy ``ttest_ind``, equal_var=False);
- ``paired``: the paired t-test over splits (scipy ``ttest_rel``).
The statistic is that of adversarial minus fail subset.

Slopes that are not finite numbers are kept and reported, never dropped:
- A_{j+2} = 0 < A_j: S_j = +inf, ``is_infinite`` (the paper's S_5, since both
  sets have accuracy 0 at K = Z by construction);
- A_{j+2} = 0 = A_j: S_j = NaN, ``is_undefined`` (0/0: no trend to measure);
- an empty set (accuracy NaN): S_j = NaN, ``is_undefined``.
A t-test over slopes that include any of these cannot be computed: its
statistic and p-value are NaN and ``note`` says why. So is a test whose
samples have zero variance (t would be 0/0 or +-inf, p 1 or 0, neither a
meaningful test), or that has fewer than two splits.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from advfit.runtime.layout import ADVERSARIAL, FAIL_SUBSET, eval_set_rank

ACCURACY_REQUIRED = ["dataset", "split", "k", "eval_set", "attack", "n", "accuracy"]
SLOPE_KEYS = ["dataset", "split", "eval_set", "attack"]
SLOPE_COLUMNS = SLOPE_KEYS + ["j", "accuracy_j", "accuracy_j2", "slope", "is_infinite", "is_undefined"]
TEST_COLUMNS = ["dataset", "attack", "j", "test", "alternative", "statistic", "p_value", "n",
                "note"]
ALTERNATIVES = ("two-sided", "greater", "less")
TESTS = ("welch", "paired")


def slope(a_j: float, a_j2: float) -> float:
    """A_j / A_{j+2}: +inf when only A_{j+2} is 0, NaN for 0/0 or a missing accuracy."""
    if math.isnan(a_j) or math.isnan(a_j2):
        return float("nan")
    if a_j2 > 0:
        return a_j / a_j2
    return float("inf") if a_j > 0 else float("nan")


def _check_accuracy(accuracy: pd.DataFrame) -> None:
    missing = [c for c in ACCURACY_REQUIRED if c not in accuracy.columns]
    if missing:
        raise ValueError(f"accuracy table lacks columns {missing}")
    duplicated = accuracy.duplicated(SLOPE_KEYS + ["k"])
    if duplicated.any():
        first = accuracy.loc[duplicated, SLOPE_KEYS + ["k"]].iloc[0].to_dict()
        raise ValueError(f"accuracy table has several rows for {first}: "
                         "one (dataset, split, eval_set, attack, k) each")


def slopes_table(accuracy: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, split, eval_set, attack, j): the slope S_j and its flags.

    ``accuracy`` is tidy: (dataset, split, k, eval_set, attack, n, accuracy),
    attack "none" for non-adversarial sets. Slopes are taken for every j with
    both j and j+2 among the K of the group.
    """
    _check_accuracy(accuracy)
    rows = []
    # dropna=False: a missing key must not make a group vanish silently.
    for keys, group in accuracy.groupby(SLOPE_KEYS, sort=False, dropna=False):
        by_k = dict(zip(group["k"].astype(int), group["accuracy"].astype(float)))
        for j in sorted(by_k):
            if j + 2 not in by_k:
                continue
            s = slope(by_k[j], by_k[j + 2])
            rows.append({**dict(zip(SLOPE_KEYS, keys)), "j": j, "accuracy_j": by_k[j],
                         "accuracy_j2": by_k[j + 2], "slope": s, "is_infinite": math.isinf(s),
                         "is_undefined": math.isnan(s)})
    table = pd.DataFrame(rows, columns=SLOPE_COLUMNS)
    # A fixed row order, so that reruns give identical files.
    order = table["eval_set"].map(eval_set_rank)
    table = table.assign(_set=order).sort_values(["dataset", "_set", "attack", "split", "j"])
    return table.drop(columns="_set").reset_index(drop=True)


def _untestable(adversarial: np.ndarray, fail: np.ndarray) -> str:
    """Why a t-test between the two slope samples cannot be computed ('' if it can)."""
    n = len(adversarial)
    if n < 2:
        return f"fewer than 2 splits with both sets ({n})"
    n_inf = int(np.isinf(adversarial).sum()), int(np.isinf(fail).sum())
    if sum(n_inf):
        splits = int((np.isinf(adversarial) | np.isinf(fail)).sum())
        return (f"infinite slope in {splits} of {n} splits (adversarial {n_inf[0]}, "
                f"fail_subset {n_inf[1]}): t-test undefined")
    n_nan = int(np.isnan(adversarial).sum()), int(np.isnan(fail).sum())
    if sum(n_nan):
        splits = int((np.isnan(adversarial) | np.isnan(fail)).sum())
        return (f"undefined slope (0/0 or empty set) in {splits} of {n} splits "
                f"(adversarial {n_nan[0]}, fail_subset {n_nan[1]}): t-test undefined")
    return ""


@contextlib.contextmanager
def _exactly_constant_is_fine(*samples):
    """Silence scipy's 'precision loss' warning for a sample that is exactly constant.

    Its variance is exactly 0 then, not a victim of cancellation, and Welch's
    test is well defined as long as the other sample varies. Nearly constant
    samples still warn.
    """
    if any(np.ptp(s) == 0 for s in samples):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
            yield
    else:
        yield


def t_test(kind: str, adversarial, fail, alternative: str = "two-sided"
           ) -> tuple[float, float, str]:
    """(statistic, p-value, note) of one test; NaN and a reason when it cannot be computed.

    ``adversarial`` and ``fail`` are slope samples aligned by split;
    ``alternative`` is scipy's (``greater``: adversarial slopes larger).
    """
    if kind not in TESTS:
        raise ValueError(f"unknown test {kind!r}; known: {TESTS}")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; known: {ALTERNATIVES}")
    adversarial = np.asarray(adversarial, dtype=float)
    fail = np.asarray(fail, dtype=float)
    if len(adversarial) != len(fail):
        raise ValueError("the two slope samples must be aligned by split")
    nan = float("nan")
    reason = _untestable(adversarial, fail)
    if reason:
        return nan, nan, reason
    if kind == "welch":
        if np.ptp(adversarial) == 0 and np.ptp(fail) == 0:
            difference = adversarial[0] - fail[0]
            return nan, nan, (f"zero variance in both sets (mean difference {difference:.6g}): "
                              "t-test undefined")
        with _exactly_constant_is_fine(adversarial, fail):
            result = stats.ttest_ind(adversarial, fail, equal_var=False,
                                     alternative=alternative)
    else:
        difference = adversarial - fail
        if np.ptp(difference) == 0:
            return nan, nan, (f"zero variance of the paired differences (all {difference[0]:.6g}): "
                              "t-test undefined")
        result = stats.ttest_rel(adversarial, fail, alternative=alternative)
    return float(result.statistic), float(result.pvalue), ""


def trend_tests(slopes: pd.DataFrame, alternative: str = "two-sided") -> pd.DataFrame:
    """Welch's and the paired t-test of adversarial vs fail-subset slopes, per dataset, attack, j.

    Splits are aligned (inner join on split); ``n`` is the number of splits
    in the test, and the note says when a split lacks one of the two sets.
    """
    rows = []
    for dataset, per_dataset in slopes.groupby("dataset", sort=True):
        fail = per_dataset[per_dataset["eval_set"] == FAIL_SUBSET]
        adversarial = per_dataset[per_dataset["eval_set"] == ADVERSARIAL]
        for (attack, j), adv in adversarial.groupby(["attack", "j"], sort=True):
            ref = fail[fail["j"] == j]
            paired = adv.merge(ref, on="split", suffixes=("_adv", "_fail"))
            unpaired = len(adv) + len(ref) - 2 * len(paired)
            for kind in TESTS:
                statistic, p_value, note = t_test(kind, paired["slope_adv"], paired["slope_fail"],
                                                  alternative)
                if unpaired:
                    note = "; ".join(filter(None, [note, f"{unpaired} splits lack one of the two sets"]))
                rows.append({"dataset": dataset, "attack": attack, "j": int(j), "test": kind,
                             "alternative": alternative, "statistic": statistic, "p_value": p_value, "n": len(paired),
                             "note": note})
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def slope_analysis(accuracy: pd.DataFrame, alternative: str = "two-sided"
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The slopes table and the tests table of a tidy accuracy table."""
    slopes = slopes_table(accuracy)
    return slopes, trend_tests(slopes, alternative)
