"""Robustness metrics of every snapshot on one fixed sample of test points."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .metrics import run_metric, summary

log = logging.getLogger("advfit")


def metric_sample(test_index: np.ndarray, n_points: int, seed: int) -> np.ndarray:
    """A seeded sample of test points, sorted; the same for every snapshot."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.asarray(test_index), size=min(n_points, len(test_index)),
                              replace=False))


def metrics_by_epoch(model, snapshots: dict[int, Path], x: np.ndarray, y: np.ndarray,
                     metrics: dict[str, dict], seed: int) -> list[dict]:
    """Rows (epoch, metric, mean, std, n, n_total): each metric on each snapshot.

    CLEVER's sampling is seeded with the same seed for every snapshot, so that
    epochs differ by the weights alone.
    """
    rows = []
    for epoch in sorted(snapshots):
        model.load_weights(snapshots[epoch])
        for name, params in metrics.items():
            values = run_metric(name, model, x, y, params, seed=seed)
            rows.append({"epoch": epoch, "metric": name, **summary(values)})
        log.info("epoch %d: %s", epoch, ", ".join(f"{r['metric']}={r['mean']:.4g}"
                                                 for r in rows[-len(metrics):]))
    return rows
