"""Tables of the two views of robustness: white-box per snapshot and the transfer matrix.

- :func:`summarise_whitebox`: per epoch, mean and sd over splits.
- :func:`view_deltas`: per split, ACC(E) - ACC(M) of the transfer view (the
  M-crafted adversarial set replayed), of the white-box view (robust accuracy
  of the snapshot attacked itself) and of the test set.
- :func:`view_delta_tests`: each view's deltas against the test set's, with
  Welch's and the paired t-test (the papers' test is Welch's).
- :func:`summarise_transfer`: the transfer matrix's mean over splits.
- :func:`whitebox_cost`: each white-box attack's cost per snapshot, and as a ratio
  to an anchor attack's on the same snapshot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

RUN_KEYS = ["dataset", "model", "regime", "split"]
VIEWS = ("transfer", "whitebox")


def summarise_whitebox(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per dataset, model, regime, attack and epoch: mean and sd (ddof 1) over splits,
    and the t-interval across splits of the robust accuracy's mean."""
    from advfit.statistics.inference import t_interval

    keys = ["dataset", "model", "regime", "attack", "epoch"]
    values = ["clean_accuracy", "robust_accuracy", "success_rate", "l2_median", "linf_median"]
    grouped = table.groupby(keys, sort=True)
    out = grouped.size().rename("n_splits").to_frame()
    for column in values:
        out[f"{column}_mean"] = grouped[column].mean()
        out[f"{column}_std"] = grouped[column].std()
    bounds = grouped["robust_accuracy"].apply(lambda v: t_interval(v, confidence))
    out["robust_accuracy_t_low"] = [b[0] for b in bounds]
    out["robust_accuracy_t_high"] = [b[1] for b in bounds]
    out["confidence"] = confidence
    return out.reset_index()


def view_deltas(accuracy: pd.DataFrame, whitebox: pd.DataFrame, best: pd.DataFrame
                ) -> pd.DataFrame:
    """Per split, regime and white-box attack: ACC(E) - ACC(M) of each view and of the test set.

    E is the split's last epoch, M its best epoch; the white-box table always
    holds both (they are always attacked).
    """
    marks = best[RUN_KEYS + ["best_epoch"]].copy()
    last = accuracy.groupby(RUN_KEYS)["epoch"].max().rename("last_epoch").reset_index()
    marks = marks.merge(last, on=RUN_KEYS)
    rows = []
    acc = accuracy.merge(marks, on=RUN_KEYS)
    wb = whitebox.merge(marks, on=RUN_KEYS)
    for attack in sorted(whitebox["attack"].unique()):
        sources = {
            "transfer": acc[(acc.eval_set == "adversarial") & (acc.attack == attack)],
            "whitebox": wb[wb.attack == attack].rename(columns={"robust_accuracy": "accuracy"}),
            "test": acc[acc.eval_set == "test"],
        }
        for view, frame in sources.items():
            at_best = frame[frame.epoch == frame.best_epoch].set_index(RUN_KEYS)["accuracy"]
            at_last = frame[frame.epoch == frame.last_epoch].set_index(RUN_KEYS)["accuracy"]
            both = pd.DataFrame({"accuracy_best": at_best, "accuracy_last": at_last})
            both = both.reset_index().assign(attack=attack, view=view)
            rows.append(both)
    out = pd.concat(rows, ignore_index=True)
    out["delta"] = out.accuracy_last - out.accuracy_best
    out = out.merge(marks, on=RUN_KEYS)
    columns = RUN_KEYS + ["attack", "view", "best_epoch", "last_epoch", "accuracy_best",
                          "accuracy_last", "delta"]
    return out[columns].sort_values(RUN_KEYS[:3] + ["attack", "view", "split"]).reset_index(
        drop=True)


def compare(kind: str, sample: np.ndarray, reference: np.ndarray, alternative: str
            ) -> tuple[float, float, str]:
    """(statistic, p, note) of Welch's or the paired t-test of ``sample`` minus
    ``reference``; NaN and the reason in words when it is undefined."""
    nan = float("nan")
    if len(sample) < 2 or len(reference) < 2:
        return nan, nan, f"fewer than 2 splits ({min(len(sample), len(reference))})"
    if kind == "welch":
        if np.ptp(sample) == 0 and np.ptp(reference) == 0:
            return nan, nan, "zero variance in both samples"
        result = stats.ttest_ind(sample, reference, equal_var=False, alternative=alternative)
    else:
        if np.ptp(sample - reference) == 0:
            return nan, nan, "zero variance of the paired differences"
        result = stats.ttest_rel(sample, reference, alternative=alternative)
    return float(result.statistic), float(result.pvalue), ""


def view_delta_tests(deltas: pd.DataFrame, alternative: str = "two-sided") -> pd.DataFrame:
    """Each view's per-split deltas against the test set's, Welch and paired, per regime and attack."""
    rows = []
    for (dataset, model, regime, attack), group in deltas.groupby(
            ["dataset", "model", "regime", "attack"], sort=True):
        test = group[group.view == "test"].set_index("split")["delta"].dropna()
        for view in VIEWS:
            sample = group[group.view == view].set_index("split")["delta"].dropna()
            splits = sorted(set(sample.index) & set(test.index))
            a, b = sample.loc[splits].to_numpy(), test.loc[splits].to_numpy()
            for kind in ("welch", "paired"):
                statistic, p_value, note = compare(kind, a, b, alternative)
                rows.append({"dataset": dataset, "model": model, "regime": regime,
                             "attack": attack, "view": view, "test": kind,
                             "alternative": alternative, "n_splits": len(splits),
                             "mean_delta_view": a.mean() if len(a) else float("nan"),
                             "mean_delta_test": b.mean() if len(b) else float("nan"),
                             "statistic": statistic, "p_value": p_value, "note": note})
    return pd.DataFrame(rows)


def summarise_transfer(table: pd.DataFrame) -> pd.DataFrame:
    """The transfer matrix's mean accuracy over splits, per craft and evaluation epoch."""
    keys = ["dataset", "model", "regime", "attack", "craft_epoch", "eval_epoch"]
    grouped = table.groupby(keys, sort=True)
    return grouped.agg(n_splits=("accuracy", "count"), accuracy_mean=("accuracy", "mean"),
                       n_mean=("n", "mean")).reset_index()


def whitebox_cost(timed: pd.DataFrame, anchor: str | None) -> pd.DataFrame:
    """Per run, attack and snapshot: image passes and seconds, and their ratios to the
    ``anchor`` attack's on the same snapshot (NaN without an anchor)."""
    keys = ["dataset", "model", "regime", "split", "epoch"]
    costs = ["forward_passes", "backward_passes", "seconds"]
    out = timed[keys + ["attack", "n_attacked"] + costs].copy()
    if anchor is not None and (out["attack"] == anchor).any():
        base = out[out["attack"] == anchor][keys + costs]
        out = out.merge(base, on=keys, how="left", suffixes=("", "_anchor"))
    else:
        for column in costs:
            out[f"{column}_anchor"] = np.nan
    for column in costs:
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"{column}_ratio"] = out[column] / out.pop(f"{column}_anchor")
    out.insert(len(keys) + 1, "anchor", anchor)
    return out.sort_values(keys[:-1] + ["attack", "epoch"]).reset_index(drop=True)
