"""What every attack's output goes through: shape, dtype, range, NaN, success logging.

Built-in and plugin attacks alike end in :func:`finish`, so an attack never
fails silently and never hands broken images to the evaluation.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("advfit")

CLIP_MIN, CLIP_MAX = 0.0, 1.0


class BadOutput(RuntimeError):
    """An attack returned images that cannot be used (shape, dtype, NaN, range)."""


def labels_of(y) -> np.ndarray:
    return np.asarray(y, dtype=np.int64).reshape(-1)


def predict(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=1)


def finish(name: str, model, x: np.ndarray, x_adv, y: np.ndarray,
           y_target: np.ndarray | None) -> np.ndarray:
    """Check the output and log the success rate.

    Broken output (shape, a non-float dtype, NaN, outside [0, 1]) raises
    :class:`BadOutput`; an attack that fools nothing is logged as a warning
    (its parameters may be too weak). Returns float32 images clipped to [0, 1]
    (float rounding only).
    """
    x_adv = np.asarray(x_adv)
    if x_adv.shape != x.shape:
        raise BadOutput(f"{name}: returned shape {x_adv.shape}, expected {x.shape}")
    if not np.issubdtype(x_adv.dtype, np.floating):
        raise BadOutput(f"{name}: returned dtype {x_adv.dtype}, expected floating point "
                        f"images in [{CLIP_MIN}, {CLIP_MAX}]")
    if not np.all(np.isfinite(x_adv)):
        raise BadOutput(f"{name}: returned non-finite values")
    if x_adv.size and (x_adv.min() < CLIP_MIN - 1e-6 or x_adv.max() > CLIP_MAX + 1e-6):
        raise BadOutput(f"{name}: returned values outside [{CLIP_MIN}, {CLIP_MAX}]")
    x_adv = np.clip(x_adv, CLIP_MIN, CLIP_MAX).astype(np.float32)
    if len(x):
        predicted = predict(model, x_adv)
        if y_target is None:
            hits, what = predicted != y, "fooled"
        else:
            hits, what = predicted == y_target, "hit their target"
        unchanged = np.all((x_adv == x).reshape(len(x), -1), axis=1)
        log.info("%s: %d of %d AEs %s (%.3f); %d returned unchanged",
                 name, hits.sum(), len(x), what, hits.mean(), unchanged.sum())
        if not hits.any():
            log.warning("%s: no AE %s: are the attack's parameters too weak?", name, what)
    return x_adv
