"""Fast untargeted CLEVER (Weng et al. 2018), advfit's own implementation.

Same estimator as ``art.metrics.clever_u`` (which ``metrics.clever_u`` runs
with ``backend: art``), computed differently:

* per point, ``pool_factor x batch_size`` points are drawn uniformly in the
  ball of ``radius`` around it (clipped to [0, 1]) *once*, and reused for every
  target class (ART draws a fresh pool per target class);
* the dual norms of grad(z_pred - z_j) at every pool point, for every class
  j != pred, come from one traced backward pass for the pools of several
  points together, not from two gradient calls per class and per 10 points:
  the layer chain's own pass (``evaluation.chain_gradients``: one forward
  pass, the C-1 cotangents pushed through together) where the model is a
  chain of layers it knows and agrees with autodiff on the first call's
  points, else autodiff over C-1 copies of the pools;
* each target class draws its ``nb_batches`` batch maxima from the pool
  (fresh indices per class, in class order) and they are fitted with the
  reverse Weibull as ART does (``scipy.stats.weibull_min.fit`` on the negated
  maxima, initial shape ``c_init``, optimiser ``scipy.optimize.fmin``), the
  targets of ``FIT_GROUP`` points in one lock-step Nelder-Mead
  (``evaluation.weibull``); the fitted location is -L, and the class's score
  is min(margin / L, radius);
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

from advfit.evaluation.weibull import weibull_location, weibull_locations

log = logging.getLogger("advfit")

# Floats held per traced call: (pool points x (C-1) copies) x (input size + the
# model's activations per sample); ~64 M floats keeps a call near 256 MB for
# the forward pass (the backward pass holds about as much again).
CALL_BUDGET = 64 * 2**20


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
    """A function: (pool, pred) -> dual norms of grad(z_pred - z_j), shape (N, C)."""
    per_model = _TRACED.setdefault(model, {})
    if (n_classes, order) not in per_model:
        per_model[(n_classes, order)] = _MarginNorms(model, n_classes, order)
    return per_model[(n_classes, order)]


# Rows of the first call on which the chain's backward pass is checked against
# autodiff, and the agreement required (float32 rounding is ~1e-6 relative).
CHECK_ROWS = 64
CHECK_RTOL = 1e-3


class _MarginNorms:
    """The layer chain's own backward pass (``chain_gradients``) where the model is a
    chain it knows, checked once against autodiff on the first call's pool points;
    autodiff over C-1 copies otherwise. ``path`` says which one runs."""

    def __init__(self, model, n_classes: int, order):
        from advfit.evaluation.chain_gradients import chain_layers, trace_chain_margin_norms

        self.autodiff = _trace_margin_norms(model, n_classes, order)
        layers = chain_layers(model)
        self.chain = (trace_chain_margin_norms(layers, n_classes, order)
                      if layers is not None else None)
        self.path = "chain" if self.chain is not None else "autodiff"
        self.checked = self.chain is None

    def __call__(self, pool, pred):
        if not self.checked:
            self.checked = True
            rows = slice(0, CHECK_ROWS)
            chain = np.asarray(self.chain(pool[rows], pred[rows]))
            reference = np.asarray(self.autodiff(pool[rows], pred[rows]))
            tolerance = CHECK_RTOL * np.abs(reference) + 1e-6 * np.abs(reference).max()
            if not (np.abs(chain - reference) <= tolerance).all():
                log.warning("clever_u (advfit): the layer chain's backward pass disagrees "
                            "with autodiff on this model; using autodiff")
                self.chain, self.path = None, "autodiff"
        return (self.chain if self.chain is not None else self.autodiff)(pool, pred)


def _trace_margin_norms(model, n_classes: int, order):
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def margin_norms(pool, pred):
        # One backward pass over C-1 copies of the pool, copy k differentiating
        # z_pred - z_j for the k-th class j != pred: the copies are independent
        # samples, so the gradient of the summed margins holds every margin's
        # own gradient. On CPU this is 1.2-1.8x faster than batch_jacobian's
        # vectorised Jacobian (10 rows, one of them the zero row of j = pred).
        n = tf.shape(pool)[0]
        others = _other_classes(pred, n_classes)  # (N, C-1)
        tiled = tf.tile(pool, tf.concat([[n_classes - 1], tf.ones_like(tf.shape(pool)[1:])], 0))
        target = tf.reshape(tf.transpose(others), [-1])  # copy-major, as tf.tile lays them out
        own = tf.tile(pred, [n_classes - 1])
        with tf.GradientTape() as tape:
            tape.watch(tiled)
            logits = model(tiled, training=False)
            margins = tf.reduce_sum(tf.gather(logits, own, axis=1, batch_dims=1)
                                    - tf.gather(logits, target, axis=1, batch_dims=1))
        grads = tf.reshape(tape.gradient(margins, tiled), (n_classes - 1, n, -1))
        return norm_table(grads, target, n_classes, order)

    return margin_norms


def norm_table(grads, target, n_classes: int, order):
    """(C-1, N, D) margin gradients, copy k for the classes ``target[k*N:(k+1)*N]``
    -> (N, C) dual norms, with 0 in the column of the predicted class."""
    import tensorflow as tf

    if order == 2:
        norms = tf.norm(grads, axis=2)
    elif order == 1:
        norms = tf.reduce_sum(tf.abs(grads), axis=2)
    else:
        norms = tf.reduce_max(tf.abs(grads), axis=2)
    n = tf.shape(grads)[1]
    rows = tf.repeat(tf.range(n)[tf.newaxis], n_classes - 1, axis=0)
    index = tf.stack([tf.reshape(rows, [-1]), target], axis=1)
    return tf.scatter_nd(index, tf.reshape(norms, [-1]), tf.stack([n, n_classes]))


def activation_floats(model) -> int:
    """Floats one sample's forward pass keeps per layer, summed (0 where shapes are unknown)."""
    total = 0
    for layer in getattr(model, "layers", []):
        try:
            total += int(np.prod(layer.output.shape[1:]))
        except (AttributeError, TypeError, ValueError):
            continue  # a subclassed layer without a symbolic output
    return total


def _other_classes(pred, n_classes: int):
    """(N, C-1): for each row, the classes other than ``pred`` in increasing order."""
    import tensorflow as tf

    shift = tf.cast(tf.range(n_classes - 1)[tf.newaxis] >= pred[:, tf.newaxis], tf.int32)
    return tf.range(n_classes - 1)[tf.newaxis] + shift


def batch_maxima(norms: np.ndarray, rng: np.random.Generator, nb_batches: int,
                 batch_size: int) -> np.ndarray:
    """(targets, nb_batches): each target's batch maxima of its pool norms (fresh indices each)."""
    return np.stack([norms[rng.integers(0, len(norms), size=(nb_batches, batch_size)), t]
                     .max(axis=1) for t in range(norms.shape[1])])


def target_scores(norms: np.ndarray, margins: np.ndarray, locations: np.ndarray, *,
                  nb_batches: int, batch_size: int, radius: float, c_init: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """CLEVER scores of one point against its target classes, from the first fits' locations.

    ``norms`` is (pool points x targets), ``margins`` the logit margin to each
    target, ``locations`` the fitted Weibull location of each target's first
    batch maxima. A target whose fit diverged or failed is redrawn from
    ``rng`` and refitted alone, at most ``FIT_RETRIES`` times. Returns the scores (NaN
    where every try diverged) and the number of diverged fits.
    """
    from advfit.evaluation.metrics import FIT_RETRIES, fit_diverged

    def score(margin, loc):
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(min(-margin / loc, radius)) if loc != 0 else radius

    scores = np.array([score(m, loc) for m, loc in zip(margins, locations)])
    n_diverged = 0
    for t, margin in enumerate(margins):
        reference, tries = float(norms[:, t].max()), 1
        # NaN: SciPy's fit would have failed (non-positive shape or scale)
        while np.isnan(scores[t]) or fit_diverged(scores[t], margin, reference, radius):
            n_diverged += 1
            if tries > FIT_RETRIES:
                scores[t] = np.nan
                break
            maxima = batch_maxima(norms[:, [t]], rng, nb_batches, batch_size)
            scores[t] = score(margin, weibull_location(maxima, c_init))
            tries += 1
    return scores, n_diverged


# Points whose targets are fitted together: one lock-step Nelder-Mead over
# (points x targets) rows spreads its per-step overhead over all of them.
FIT_GROUP = 32


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
    logits = model.predict(x, batch_size=1024, verbose=0) if len(x) else np.zeros((0, n_classes))
    preds = np.argmax(logits, axis=1)
    # Each point's own generator: its score does not depend on the others.
    rngs = [np.random.default_rng([int(seed) % 2**32, 0xC1E7E4]) for _ in range(len(x))]
    scores = np.full(len(x), np.nan)
    start, n_diverged = time.perf_counter(), 0
    for first in range(0, len(x), FIT_GROUP):
        group = range(first, min(first + FIT_GROUP, len(x)))
        norms = pool_norms(model, x[group.start:group.stop], preds[group.start:group.stop],
                           [rngs[i] for i in group], radius=radius, norm=norm,
                           n_pool=int(pool_factor) * int(batch_size))
        targets = {i: [j for j in ([only_class] if only_class is not None else range(n_classes))
                       if j != preds[i]] for i in group}
        maxima = {i: batch_maxima(norms[k][:, targets[i]], rngs[i], int(nb_batches),
                                  int(batch_size)) for k, i in enumerate(group) if targets[i]}
        fitted = (weibull_locations(np.concatenate(list(maxima.values())), c_init)
                  if maxima else np.zeros(0))
        offsets = np.cumsum([len(m) for m in maxima.values()])[:-1]
        for (i, _), locations in zip(maxima.items(), np.split(fitted, offsets)):
            point_scores, diverged = target_scores(
                norms[i - first][:, targets[i]],
                (logits[i, preds[i]] - logits[i, targets[i]]).astype(np.float64), locations,
                nb_batches=int(nb_batches), batch_size=int(batch_size), radius=float(radius),
                c_init=float(c_init), rng=rngs[i])
            n_diverged += diverged
            scores[i] = float(np.min(point_scores))
        log.info("clever_u (advfit): %d/%d points (%.1f s)", group[-1] + 1, len(x),
                 time.perf_counter() - start)
    if n_diverged:
        log.warning("clever_u (advfit): %d diverged Weibull fits refitted; %d point(s) NaN",
                    n_diverged, int(np.isnan(scores).sum()))
    return scores


def pool_norms(model, x: np.ndarray, preds: np.ndarray, rngs: list, *, radius: float, norm,
               n_pool: int) -> np.ndarray:
    """(points, n_pool, classes): each point's ball samples (drawn from its own generator)
    and the dual norms of grad(z_pred - z_j) there, in traced calls of bounded size."""
    n_classes = int(model.output_shape[-1])
    shape, dim = x.shape[1:], int(np.prod(x.shape[1:]))
    margin_norms = _margin_norms_fn(model, n_classes, dual_order(norm))
    per_point = n_pool * (n_classes - 1) * (dim + activation_floats(model))
    chunk = max(1, CALL_BUDGET // per_point)
    out = np.empty((len(x), n_pool, n_classes), dtype=np.float32)
    for first in range(0, len(x), chunk):
        points = range(first, min(first + chunk, len(x)))
        pools = np.concatenate([
            np.clip(x[i] + ball_noise(rngs[i], n_pool, dim, radius, norm)
                    .reshape(n_pool, *shape).astype(np.float32), 0.0, 1.0)
            for i in points]).astype(np.float32)
        pred = np.repeat(preds[points.start:points.stop], n_pool).astype(np.int32)
        out[points.start:points.stop] = np.asarray(margin_norms(pools, pred)).reshape(
            len(points), n_pool, n_classes)
    return out
