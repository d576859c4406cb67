"""Fast untargeted CLEVER (Weng et al. 2018), advfit's own implementation.

Same estimator as ``art.metrics.clever_u`` (which ``metrics.clever_u`` runs
with ``backend: art``), computed differently:

* per point, ``pool_factor x batch_size`` points are drawn uniformly in the
  ball of ``radius`` around it (clipped to [0, 1]) *once*, and reused for every
  target class (ART draws a fresh pool per target class);
* the dual norms of grad(z_pred - z_j) at every pool point, for all classes j
  at once, come from one traced Jacobian over a large batch (pools of several
  points together), not from two gradient calls per class and per 10 points;
* the ``nb_batches`` batch maxima are drawn from the pool with one set of
  indices shared by all classes, and each class's maxima are fitted with the
  reverse Weibull as ART does: ``scipy.stats.weibull_min.fit`` on the negated
  maxima, initial shape ``c_init``, optimiser ``scipy.optimize.fmin``; the
  fitted location is -L, and the class's score is min(margin / L, radius);
* a diverged fit (``metrics.fit_diverged``: L more than 100 x the largest
  gradient norm sampled in the ball) is refitted on fresh batch maxima of the
  same pool, up to ``metrics.FIT_RETRIES`` times, else the point is NaN.

A point's score depends on the model, the point and ``seed`` only.
"""

from __future__ import annotations

import logging
import time
import weakref

import numpy as np
from scipy.special import xlogy

log = logging.getLogger("advfit")

# Gradient entries (pool points x classes x input size) handled per traced call:
# ~64 M floats keeps one call's Jacobian near 256 MB.
JACOBIAN_BUDGET = 64 * 2**20


def dual_order(norm):
    """The dual norm's order q, 1/p + 1/q = 1 (what a Lipschitz bound in L_p needs)."""
    return {1: np.inf, 2: 2, np.inf: 1}[norm]


def ball_noise(rng: np.random.Generator, n: int, dim: int, radius: float, norm) -> np.ndarray:
    """``n`` points drawn uniformly in the L_``norm`` ball of ``radius`` in R^dim (float64)."""
    if norm == np.inf:
        return rng.uniform(-radius, radius, size=(n, dim))
    if norm == 2:
        direction = rng.standard_normal((n, dim))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        return direction * (radius * rng.random((n, 1)) ** (1.0 / dim))
    if norm == 1:
        # Uniform on the simplex (normalised exponentials), random signs, radial U^(1/d).
        weights = rng.exponential(size=(n, dim))
        weights /= weights.sum(axis=1, keepdims=True)
        signs = rng.choice((-1.0, 1.0), size=(n, dim))
        return signs * weights * (radius * rng.random((n, 1)) ** (1.0 / dim))
    raise ValueError(f"CLEVER norm {norm!r} not supported; known: 1, 2, inf")


# One traced function per model and norm, reused across calls: a metric job
# scores every snapshot with the same model object (weights reloaded).
_TRACED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _margin_norms_fn(model, n_classes: int, order):
    """A traced function: (pool, pred) -> dual norms of grad(z_pred - z_j), shape (N, C)."""
    per_model = _TRACED.setdefault(model, {})
    if (n_classes, order) not in per_model:
        per_model[(n_classes, order)] = _trace_margin_norms(model, n_classes, order)
    return per_model[(n_classes, order)]


def _trace_margin_norms(model, n_classes: int, order):
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def margin_norms(pool, pred):
        with tf.GradientTape() as tape:
            tape.watch(pool)
            logits = model(pool, training=False)
        jacobian = tape.batch_jacobian(logits, pool)  # (N, C, *shape)
        jacobian = tf.reshape(jacobian, (tf.shape(pool)[0], n_classes, -1))
        own = tf.gather(jacobian, pred, axis=1, batch_dims=1)[:, tf.newaxis]
        diff = own - jacobian
        if order == 2:
            return tf.norm(diff, axis=2)
        if order == 1:
            return tf.reduce_sum(tf.abs(diff), axis=2)
        return tf.reduce_max(tf.abs(diff), axis=2)

    return margin_norms


def weibull_location(maxima: np.ndarray, c_init: float) -> float:
    """The location ART takes: ``weibull_min.fit(-maxima, c_init, optimizer=fmin)[1]``.

    Same starting point and the same Nelder-Mead run as SciPy's fit, with the
    penalised negative log-likelihood written out for this one distribution
    (SciPy's generic one spends most of its time checking arguments): the
    same operations in the same order, so the same value at every step and
    the same location (``test_clever`` checks it bit for bit against SciPy).
    """
    from scipy import special
    from scipy.optimize import fmin

    data = -np.asarray(maxima, dtype=np.float64).ravel()
    if not np.isfinite(data).all():
        raise ValueError("CLEVER: non-finite gradient norms")
    # scipy.stats.weibull_min.fit's start for a given shape guess (method of moments)
    c = c_init
    scale = np.sqrt(np.var(data) / (special.gamma(1 + 2 / c) - special.gamma(1 + 1 / c) ** 2))
    loc = np.mean(data) - scale * special.gamma(1 + 1 / c)
    shape, loc, scale = fmin(_weibull_min_nnlf, (c, loc, scale), args=(data,), disp=0)
    if not (shape > 0 and scale > 0):
        return float("nan")  # SciPy raises FitError here; the caller refits
    return float(loc)


_PENALTY = np.log(np.finfo(float).max) * 100  # SciPy's per-point penalty outside the support


def _weibull_min_nnlf(theta: np.ndarray, data: np.ndarray) -> float:
    """SciPy's ``weibull_min._penalized_nnlf(theta, data)``, the same floating-point steps."""
    c, loc, scale = theta[0], theta[-2], theta[-1]
    if not c > 0 or scale <= 0:
        return np.inf
    x = (data - loc) / scale
    n_log_scale = len(x) * np.log(scale)
    inside = x >= 0.0  # the support [0, inf]; NaN falls outside, as in SciPy
    n_bad = 0
    if not inside.all():
        x = x[inside]
        n_bad = len(data) - len(x)
    logff = np.log(c) + xlogy(c - 1, x) - pow(x, c)
    finite = np.isfinite(logff)
    if n_bad or not finite.all():
        n_bad += np.sum(~finite, axis=0)
        return -np.sum(logff[finite], axis=0) + n_bad * _PENALTY + n_log_scale
    return -np.sum(logff, axis=0) + n_log_scale


def weibull_location_scipy(maxima: np.ndarray, c_init: float) -> float:
    """ART's own call, for comparison: ``weibull_min.fit(-maxima, c_init, optimizer=fmin)``."""
    from scipy.optimize import fmin
    from scipy.stats import weibull_min

    _, loc, _ = weibull_min.fit(-np.asarray(maxima, dtype=np.float64), c_init, optimizer=fmin)
    return float(loc)


def target_score(norms: np.ndarray, margin: float, *, nb_batches: int, batch_size: int,
                 radius: float, c_init: float, rng: np.random.Generator) -> tuple[float, int]:
    """CLEVER score of one point for one target class from its pool's gradient norms.

    Batch maxima are redrawn (fresh indices from ``rng``) when the fit diverged,
    at most ``FIT_RETRIES`` times; returns the score (NaN if every try
    diverged) and the number of diverged fits.
    """
    from advfit.evaluation.metrics import FIT_RETRIES, fit_diverged

    reference = float(norms.max())
    n_diverged = 0
    for _ in range(FIT_RETRIES + 1):
        index = rng.integers(0, len(norms), size=(nb_batches, batch_size))
        loc = weibull_location(norms[index].max(axis=1), c_init)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = float(min(-margin / loc, radius)) if loc != 0 else radius
        if not fit_diverged(score, margin, reference, radius):
            return score, n_diverged
        n_diverged += 1
    return float("nan"), n_diverged


def clever_u_fast(model, x: np.ndarray, *, nb_batches: int = 500, batch_size: int = 10,
                  radius: float = 5.0, norm=2, pool_factor: int = 10, c_init: float = 1.0,
                  seed: int = 0, only_class: int | None = None) -> np.ndarray:
    """Untargeted CLEVER score of every point of ``x`` (float64, one per point).

    ``only_class`` scores against that one class only (the minimum over one
    class): a deliberately incomplete variant, for tests that the full minimum
    matters. Points whose prediction is ``only_class`` get NaN.
    """
    from advfit.evaluation.metrics import _norm

    norm = _norm(norm)
    x = np.asarray(x, dtype=np.float32)
    n_classes = int(model.output_shape[-1])
    shape, dim = x.shape[1:], int(np.prod(x.shape[1:]))
    n_pool = int(pool_factor) * int(batch_size)
    margin_norms = _margin_norms_fn(model, n_classes, dual_order(norm))
    logits = model.predict(x, batch_size=1024, verbose=0) if len(x) else np.zeros((0, n_classes))
    preds = np.argmax(logits, axis=1)
    chunk = max(1, JACOBIAN_BUDGET // (n_pool * n_classes * dim))
    scores = np.full(len(x), np.nan)
    start, n_diverged = time.perf_counter(), 0
    for first in range(0, len(x), chunk):
        points = range(first, min(first + chunk, len(x)))
        # Each point's own generator: its score does not depend on the others.
        rngs = {i: np.random.default_rng([int(seed) % 2**32, 0xC1E7E4]) for i in points}
        pools = np.concatenate([
            np.clip(x[i] + ball_noise(rngs[i], n_pool, dim, radius, norm)
                    .reshape(n_pool, *shape).astype(np.float32), 0.0, 1.0)
            for i in points]).astype(np.float32)
        pred = np.repeat(preds[list(points)], n_pool).astype(np.int32)
        norms = np.asarray(margin_norms(pools, pred)).reshape(len(points), n_pool, n_classes)
        for k, i in enumerate(points):
            targets = ([only_class] if only_class is not None else range(n_classes))
            point_scores = []
            for j in targets:
                if j == preds[i]:
                    continue
                margin = float(logits[i, preds[i]] - logits[i, j])
                score, diverged = target_score(
                    norms[k, :, j], margin, nb_batches=int(nb_batches),
                    batch_size=int(batch_size), radius=float(radius), c_init=float(c_init),
                    rng=rngs[i])
                n_diverged += diverged
                point_scores.append(score)
            if point_scores:
                scores[i] = float(np.min(point_scores))
        log.info("clever_u (advfit): %d/%d points (%.1f s)", points[-1] + 1, len(x),
                 time.perf_counter() - start)
    if n_diverged:
        log.warning("clever_u (advfit): %d diverged Weibull fits refitted; %d point(s) NaN",
                    n_diverged, int(np.isnan(scores).sum()))
    return scores
