"""Choosing the best snapshot of a training history."""

from __future__ import annotations

import numpy as np

SELECTION_METRICS = ("val_accuracy", "test_accuracy")


def best_epoch(history, metric: str = "val_accuracy") -> int:
    """Epoch with the highest ``metric``; ties go to the earliest epoch."""
    if metric not in SELECTION_METRICS:
        raise ValueError(f"unknown selection metric {metric!r}; known: {SELECTION_METRICS}")
    values = history[metric].to_numpy(dtype=float)
    if len(values) == 0 or np.isnan(values).all():
        raise ValueError(f"history has no {metric} values")
    # nanargmax returns the first maximum: the earliest epoch wins a tie.
    return int(history["epoch"].to_numpy()[np.nanargmax(values)])
