"""Running an attack over batches: traced steps, chunked library calls, progress logs."""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

log = logging.getLogger("advfit")


def batched(fn: Callable, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
    """Run a traced attack step over fixed-size batches (bounded memory, one trace)."""
    out = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        out[start:stop] = fn(x[start:stop], y[start:stop]).numpy()
    return out


def in_chunks(name: str, generate: Callable, x: np.ndarray, y: np.ndarray | None,
              batch_size: int) -> np.ndarray:
    """Call ``generate(x, y)`` chunk by chunk, logging progress after each chunk.

    Long attacks (CW, DeepFool, HopSkipJump) report here instead of through
    ART's progress bars, which are switched off.
    """
    out = np.empty_like(x)
    start_time = time.perf_counter()
    for start in range(0, len(x), batch_size):
        stop = min(start + batch_size, len(x))
        out[start:stop] = generate(x[start:stop], None if y is None else y[start:stop])
        log.info("%s: %d/%d images done (%.1f s)", name, stop, len(x),
                 time.perf_counter() - start_time)
    return out


def traced(model, attack: Callable, **params):
    """``attack(model, x, y=y, **params)`` as one traced TensorFlow function."""
    import tensorflow as tf

    spec = (tf.TensorSpec([None, *model.input_shape[1:]], tf.float32),
            tf.TensorSpec([None], tf.int64))

    @tf.function(input_signature=spec, reduce_retracing=True)
    def step(x, y):
        return attack(model, x, y=y, **params)

    return step
