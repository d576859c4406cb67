"""Robustness metrics of every snapshot on one fixed sample of test points."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from advfit.evaluation.metrics import run_metric, summary
from advfit.runtime.seeds import job_seed
from advfit.statistics.inference import t_interval

log = logging.getLogger("advfit")


def metric_sample(test_index: np.ndarray, n_points: int, seed: int) -> np.ndarray:
    """A seeded sample of test points, sorted; the same for every snapshot."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.asarray(test_index), size=min(n_points, len(test_index)),
                              replace=False))


def metrics_by_epoch(model, snapshots: dict[int, Path], x: np.ndarray, y: np.ndarray,
                     metrics: dict[str, dict], seed: int, clever_repeats: int = 1,
                     confidence: float = 0.95) -> list[dict]:
    """Rows (epoch, metric, mean, std, n, n_total, repeats, ...): each metric on each snapshot.

    CLEVER's sampling is seeded with the same seed for every snapshot, so that
    epochs differ by the weights alone. With ``clever_repeats`` R > 1 CLEVER
    is estimated R times (seeds :func:`repeat_seeds`, the first one ``seed``):
    ``mean``/``std``/``n`` then describe each point's average over the repeats,
    and ``repeat_std``/``repeat_low``/``repeat_high`` the spread of the R repeat
    means (sd, ddof 1, and the t-interval at ``confidence``). R = 1 gives
    exactly the single draw of before, with empty spread columns.
    """
    rows = []
    for epoch in sorted(snapshots):
        model.load_weights(snapshots[epoch])
        for name, params in metrics.items():
            repeats = clever_repeats if name in RANDOM_METRICS else 1
            draws = [run_metric(name, model, x, y, params, seed=s)
                     for s in repeat_seeds(seed, repeats)]
            rows.append({"epoch": epoch, "metric": name, **summary(_point_means(draws)),
                         **repeat_spread(draws, confidence)})
        log.info("epoch %d: %s", epoch, ", ".join(f"{r['metric']}={r['mean']:.4g}"
                                                 for r in rows[-len(metrics):]))
    return rows


RANDOM_METRICS = ("clever_u",)  # the metrics whose value depends on the seed


def repeat_seeds(seed: int, repeats: int) -> list[int]:
    """``seed`` itself (today's single draw), then seeds derived from it."""
    return [seed] + [job_seed(seed, "clever_repeat", r) for r in range(1, repeats)]


def _point_means(draws: list[np.ndarray]) -> np.ndarray:
    if len(draws) == 1:
        return np.asarray(draws[0], dtype=np.float64)
    stacked = np.stack([np.asarray(d, dtype=np.float64) for d in draws])
    # A point whose estimate is undefined in some repeat stays undefined.
    return stacked.mean(axis=0)


def repeat_spread(draws: list[np.ndarray], confidence: float = 0.95) -> dict:
    """Spread over repeats of the per-repeat mean (finite values only)."""
    means = [summary(d)["mean"] for d in draws]
    low, high = t_interval(means, confidence)
    sd = float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")
    return {"repeats": len(draws), "repeat_std": sd, "repeat_low": low, "repeat_high": high}
