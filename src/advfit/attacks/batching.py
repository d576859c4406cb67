"""Running a model or an attack over batches: traced forward passes and attack steps,
chunked library calls, progress logs."""

from __future__ import annotations

import logging
import time
import weakref
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
    """``attack(model, x, y=y, **params)`` as one traced TensorFlow function.

    Traced once per model, attack and parameters, and reused: tracing costs
    ~2 s, more than attacking 100 digits, and a snapshot sweep calls the
    same attack on every snapshot of one model object. Only for attacks that
    draw no random numbers inside the trace: a cached trace's random ops
    would not follow the job's seed (pgd draws its start outside).
    """
    import tensorflow as tf

    key = (attack, tuple(sorted(params.items())))
    steps = _STEPS.setdefault(model, {})
    if key not in steps:
        spec = (tf.TensorSpec([None, *model.input_shape[1:]], tf.float32),
                tf.TensorSpec([None], tf.int64))
        own = weakref.ref(model)  # the cache must not keep the model alive

        @tf.function(input_signature=spec, reduce_retracing=True)
        def step(x, y):
            return attack(own(), x, y=y, **params)

        steps[key] = step
    return steps[key]


_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def traced_forward(model):
    """``model(x, training=False)`` traced once for any batch size.

    ``model.predict`` builds a tf.data pipeline and a callback loop on every
    call: on the default run's ~2000 samples per snapshot that costs as much
    as the network itself (benchmarks/evaluation.py). The traced function
    reads the model's variables, so it stays valid when weights are loaded.
    """
    import tensorflow as tf

    # One trace per model object: it holds no randomness, and the snapshot
    # loops call it once per snapshot and set.
    if model not in _FORWARD:
        spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
        own = weakref.ref(model)  # the cache must not keep the model alive
        _FORWARD[model] = tf.function(lambda x: own()(x, training=False), input_signature=[spec])
    return _FORWARD[model]


_FORWARD: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def predict_logits(forward, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits of ``x`` in batches of ``batch_size`` (the same batches as predict)."""
    if len(x) == 0:  # convolutions refuse empty batches: shape (0, classes) from one image
        return forward(np.zeros((1, *x.shape[1:]), np.float32)).numpy()[:0]
    return np.concatenate([forward(x[i:i + batch_size]).numpy()
                           for i in range(0, len(x), batch_size)])
