"""Per-example paired tests between two epochs of the same split x regime.

Every snapshot is evaluated on the very same samples, so whether a sample is
classified correctly at epoch a and at epoch b is a matched pair. McNemar's
exact test uses the discordant pairs of one split; the splits are combined by
pooling the discordant pairs (the exact, matched-pair-stratified CMH test)
and, for comparison, by Fisher's method on the per-split p-values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from advfit.statistics import inference as st
from advfit.runtime.layout import NO_ATTACK

PAIRED_SETS = ("test", "fail_subset", "adversarial")  # the sets the papers compare


def resolve_epoch(name, best_epoch: int, last_epoch: int) -> int:
    """``best`` is the split's epoch M, ``last`` its epoch E; a number is itself."""
    if name == "best":
        return int(best_epoch)
    if name == "last":
        return int(last_epoch)
    return int(name)


def pair_label(pair) -> str:
    return f"{pair[0]}-{pair[1]}"


def split_keys(correctness: dict) -> list[tuple[str, str, str]]:
    """(npz key, eval_set, attack) of every paired set in a correctness npz."""
    out = []
    for key in correctness:
        eval_set, _, attack = key.partition("__")
        if eval_set in PAIRED_SETS:
            out.append((key, eval_set, attack or NO_ATTACK))
    order = {name: i for i, name in enumerate(PAIRED_SETS)}
    return sorted(out, key=lambda k: (order[k[1]], k[2]))


def split_rows(correctness: dict, pairs, alternative: str = "two-sided",
               confidence: float = 0.95) -> list[dict]:
    """Exact McNemar rows of one split x regime, per paired set and epoch pair."""
    epochs = [int(e) for e in correctness["epochs"]]
    best, last = int(correctness["best_epoch"]), max(epochs)
    rows = []
    for pair in pairs:
        a, b = (resolve_epoch(p, best, last) for p in pair)
        for key, eval_set, attack in split_keys(correctness):
            matrix = correctness[key]
            correct_a, correct_b = matrix[epochs.index(a)], matrix[epochs.index(b)]
            gained, lost = st.discordant_counts(correct_a, correct_b)
            rows.append(_row(eval_set, attack, pair, a, b, matrix.shape[1],
                             int(correct_a.sum()), int(correct_b.sum()), gained, lost,
                             "mcnemar_exact", *st.mcnemar_exact(gained, lost, alternative),
                             alternative, confidence))
    return rows


def _row(eval_set, attack, pair, a, b, n, n_a, n_b, gained, lost, test, p, note, alternative,
         confidence) -> dict:
    ratio, low, high = st.paired_odds_ratio(gained, lost, confidence)
    return {"eval_set": eval_set, "attack": attack, "pair": pair_label(pair), "epoch_a": a,
            "epoch_b": b, "n": n, "n_correct_a": n_a, "n_correct_b": n_b, "gained": gained,
            "lost": lost, "test": test, "alternative": alternative, "p_value": p,
            "odds_ratio": ratio, "odds_ratio_low": low, "odds_ratio_high": high,
            "confidence": confidence, "note": note}


def combine_splits(per_split: pd.DataFrame, alternative: str = "two-sided",
                   confidence: float = 0.95) -> pd.DataFrame:
    """Per regime, set and pair: pooled exact McNemar and Fisher's combination over splits.

    ``p_holm`` adjusts the pooled tests' p-values (Holm) across every regime,
    attack and set of a pair: the family a reader scans at once.
    """
    keys = ["dataset", "model", "regime", "eval_set", "attack", "pair"]
    rows = []
    for values, group in per_split.groupby(keys, sort=False):
        tables = list(zip(group.gained, group.lost))
        gained, lost, p, note = st.pooled_mcnemar(tables, alternative)
        common = dict(zip(keys, values)) | {"split": "all", "epoch_a": np.nan,
                                            "epoch_b": np.nan}
        counts = (int(group.n.sum()), int(group.n_correct_a.sum()),
                  int(group.n_correct_b.sum()), gained, lost)
        pooled = _row(values[3], values[4], tuple(values[5].split("-", 1)), np.nan, np.nan,
                      *counts, "mcnemar_pooled_exact", p, note, alternative, confidence)
        fisher_p = st.fisher_combination(group.p_value)
        fisher = _row(values[3], values[4], tuple(values[5].split("-", 1)), np.nan, np.nan,
                      *counts, "fisher_combined", fisher_p,
                      "" if np.isfinite(fisher_p) else "no split has a defined p-value",
                      alternative, confidence)
        rows += [common | pooled, common | fisher]
    out = pd.DataFrame(rows)
    out["p_holm"] = np.nan
    if len(out):
        for _, group in out[out.test == "mcnemar_pooled_exact"].groupby("pair"):
            out.loc[group.index, "p_holm"] = st.holm(group.p_value)
    return out


def check_against_accuracy(correctness: dict, accuracy: pd.DataFrame) -> int:
    """Raise unless every epoch's count of correct samples matches ``accuracy`` (one run).

    Returns the number of (epoch, set) counts compared.
    """
    epochs = [int(e) for e in correctness["epochs"]]
    compared = 0
    for key in correctness:
        if key in ("epochs", "best_epoch", "meta"):
            continue
        eval_set, _, attack = key.partition("__")
        rows = accuracy[(accuracy.eval_set == eval_set)
                        & (accuracy.attack == (attack or NO_ATTACK))].set_index("epoch")
        counts = correctness[key].sum(axis=1)
        for epoch, count in zip(epochs, counts):
            if epoch not in rows.index or int(rows.at[epoch, "n_correct"]) != int(count):
                raise ValueError(f"per-example correctness of {key} at epoch {epoch} gives "
                                 f"{int(count)} correct, accuracy.csv says "
                                 f"{rows.n_correct.get(epoch, 'nothing')}")
            compared += 1
    return compared
