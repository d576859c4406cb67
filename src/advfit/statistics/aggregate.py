"""Tidy tables over splits: the accuracy table, its summary, and the Lp table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from advfit.runtime.layout import eval_set_rank
from advfit.runtime.seeds import job_seed
from advfit.statistics.inference import bootstrap_mean_interval, holm, t_interval, welch_effect, wilson_interval

ACCURACY_COLUMNS = ["dataset", "model", "regime", "split", "epoch", "eval_set", "attack",
                    "n", "n_correct", "accuracy"]


def collect_accuracy(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One tidy table, rows in a fixed order so that reruns give identical files."""
    table = pd.concat(frames, ignore_index=True)[ACCURACY_COLUMNS]
    table = table.assign(_set=table["eval_set"].map(eval_set_rank))
    table = table.sort_values(["dataset", "model", "regime", "split", "epoch", "_set", "attack"])
    return table.drop(columns="_set").reset_index(drop=True)


def summarise_accuracy(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per-epoch mean and standard deviation (ddof 1) of accuracy over splits.

    For adversarial sets the attack success rate is 1 - accuracy, so its
    mean is 1 - the mean accuracy and its spread is the same. ``t_low`` and
    ``t_high`` bound the mean accuracy: a t-interval over the split means
    (each split one observation), at level ``confidence``.
    """
    keys = ["dataset", "model", "regime", "eval_set", "attack", "epoch"]
    grouped = table.groupby(keys, sort=False)["accuracy"]
    summary = (grouped.agg(n_splits="count", accuracy_mean="mean", accuracy_std="std")
               .reset_index())
    adversarial = summary["eval_set"] == "adversarial"
    summary["asr_mean"] = (1.0 - summary["accuracy_mean"]).where(adversarial)
    bounds = grouped.agg(lambda values: t_interval(values, confidence)).to_list()
    summary["t_low"] = [low for low, _ in bounds]
    summary["t_high"] = [high for _, high in bounds]
    summary["confidence"] = confidence
    return summary


def accuracy_intervals(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Within a split: the Wilson interval of each row's binomial count n_correct of n."""
    bounds = [wilson_interval(k, n, confidence) for k, n in zip(table.n_correct, table.n)]
    return table.assign(wilson_low=[low for low, _ in bounds],
                        wilson_high=[high for _, high in bounds], confidence=confidence)


def summarise_distances(per_ae: pd.DataFrame, confidence: float = 0.95, seed: int = 0,
                        n_resamples: int = 2000) -> pd.DataFrame:
    """Mean and standard deviation of L0, L2 and L-infinity per regime and attack.

    ``<norm>_mean_low``/``_high``: a percentile bootstrap interval of the mean
    over the AEs, seeded per group and norm so that reruns give the same bounds.
    """
    keys = ["dataset", "model", "regime", "attack", "l2_convention"]
    stats = per_ae.groupby(keys)[["l0", "l2", "linf"]].agg(["mean", "std"])
    stats.columns = [f"{norm}_{stat}" for norm, stat in stats.columns]
    counts = per_ae.groupby(keys).size().rename("n")
    out = pd.concat([counts, stats], axis=1)
    for norm in ("l0", "l2", "linf"):
        bounds = [bootstrap_mean_interval(group[norm], confidence,
                                          job_seed(seed, *values, norm), n_resamples)
                  for values, group in per_ae.groupby(keys)]
        out[f"{norm}_mean_low"] = [low for low, _ in bounds]
        out[f"{norm}_mean_high"] = [high for _, high in bounds]
    out["confidence"] = confidence
    out["bootstrap_resamples"] = n_resamples
    return out.reset_index()


def delta_table(table: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Per split: ACC(E) - ACC(M) of every evaluation set, E the last epoch, M the best.

    How much accuracy each set gains (or loses) from the best snapshot to the
    end of training (paper 000 Figs. 12, 15).
    """
    keys = ["dataset", "model", "regime", "split"]
    last = table.groupby(keys)["epoch"].transform("max")
    merged = table.merge(best[keys + ["best_epoch"]], on=keys)
    at_last = table[table.epoch == last].set_index(keys + ["eval_set", "attack"])["accuracy"]
    at_best = merged[merged.epoch == merged.best_epoch].set_index(
        keys + ["eval_set", "attack"])["accuracy"]
    out = pd.DataFrame({"accuracy_last": at_last, "accuracy_best": at_best}).reset_index()
    out["delta"] = out.accuracy_last - out.accuracy_best
    return out


def delta_tests(deltas: pd.DataFrame, confidence: float = 0.95,
                alternative: str = "two-sided") -> pd.DataFrame:
    """Welch's t-test of the test set's deltas against each adversarial set's, per regime.

    The statistic is that of adversarial minus test; ``alternative`` is
    scipy's (``greater``: the adversarial set gains more from M to E).
    Each row also carries the effect: the difference of mean deltas
    (adversarial - test) with its Welch interval, Cohen's d, the runs per
    sample Welch would need for power 0.8 at alpha 0.05 (``power_note`` says
    why when undefined), and ``p_holm``, Holm's adjustment of ``p_value``
    across the attacks x regimes of the run.    """
    from scipy import stats

    rows = []
    for (dataset, model, regime), group in deltas.groupby(["dataset", "model", "regime"]):
        test = group[group.eval_set == "test"].delta.dropna().to_numpy()
        for attack, adv in group[group.eval_set == "adversarial"].groupby("attack"):
            other = adv.delta.dropna().to_numpy()
            note = ""
            if min(len(test), len(other)) < 2:
                statistic = p_value = float("nan")
                note = "fewer than 2 splits"
            elif test.var() == 0 and other.var() == 0:
                statistic = p_value = float("nan")
                note = "zero variance in both samples"
            else:
                statistic, p_value = stats.ttest_ind(other, test, equal_var=False,
                                                     alternative=alternative)
            rows.append({"dataset": dataset, "model": model, "regime": regime, "attack": attack,
                         "test": "welch", "alternative": alternative, "n_test": len(test),
                         "n_adversarial": len(other),
                         "mean_delta_test": test.mean() if len(test) else float("nan"),
                         "mean_delta_adversarial": other.mean() if len(other) else float("nan"),
                         "statistic": float(statistic), "p_value": float(p_value), "note": note,
                         **_effect_columns(other, test, confidence)})
    out = pd.DataFrame(rows)
    if len(out):
        out["p_holm"] = holm(out.p_value.to_numpy())
    return out


def _effect_columns(adversarial: np.ndarray, test: np.ndarray, confidence: float) -> dict:
    effect = welch_effect(adversarial, test, confidence)
    return {"delta_difference": effect["difference"],
            "delta_difference_low": effect["difference_low"],
            "delta_difference_high": effect["difference_high"], "confidence": confidence,
            "cohens_d": effect["cohens_d"], "runs_needed": effect["runs_needed"],
            "power_note": effect["power_note"]}
