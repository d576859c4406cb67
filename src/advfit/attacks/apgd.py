"""Croce & Hein (2020)'s Auto-PGD: APGD-CE, APGD-DLR and APGD-T, traced per batch.

A faithful port of AutoAttack's ``autoattack/autopgd_base.py`` (``APGDAttack``,
``APGDAttack_targeted``; L-inf and L2) to TensorFlow:

- step size 2 eps, halved per point at the checkpoints (:func:`checkpoints`)
  when (a) the loss rose in at most ``rho`` of the iterations since the last
  checkpoint or (b) the step was not halved at the last checkpoint and the
  best loss has not improved since; a halved point restarts from its best
  iterate (and that iterate's gradient);
- momentum 0.75 (none on the first step): ``x + 0.75 (z - x) + 0.25 (x - x_prev)``
  with ``z`` the projected gradient step, projected again;
- the random start at distance exactly eps (L-inf: a uniform draw scaled so
  its largest entry is eps; L2: a Gaussian draw scaled to norm eps), drawn
  from NumPy's global generator, which the jobs seed (``runtime.configure``);
- restarts (and, for APGD-T, target classes) attack only the points no
  earlier run fooled, as the reference does for robust accuracy.

Each point keeps the first iterate that fools the model. The reference keeps
the last; both are misclassified, so robust accuracy is the same, and
keeping the first lets a batch stop as soon as all its points are fooled.
Points no run fooled come back as their highest-loss iterate over all runs
(AutoAttack returns the clean image there; the highest-loss one serves
transfer and trajectory studies better). Images the model misclassifies
already come back unchanged.
"""

from __future__ import annotations

import logging
import time
import weakref

import numpy as np

from advfit.attacks.batching import predict_logits, traced_forward
from advfit.attacks.guards import CLIP_MAX, CLIP_MIN, finish, labels_of
from advfit.attacks.params import NORM, Param, batch, positive
from advfit.attacks.registry import attack

log = logging.getLogger("advfit")

# autopgd_base.py's checkpoint schedule, as fractions of the iteration budget
FIRST_CHECK, CHECK_SHRINK, CHECK_MIN = 0.22, 0.03, 0.06
STEP_FACTOR = 2.0  # initial step size, in units of eps
MOMENTUM = 0.75
DLR_TINY = 1e-12  # keeps DLR's denominator positive when the top logits tie


def checkpoints(n_iter: int) -> list[int]:
    """After how many iterations the step size is checked: as autopgd_base.py computes them.

    The paper's p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06),
    times ``n_iter``, with the reference's rounding: the first interval is
    int(0.22 n), each next one int(0.03 n) shorter, none shorter than
    int(0.06 n), and all at least 1 (n = 100: 22, 41, 57, 70, 80, 87, 93, 99).
    """
    interval = max(int(FIRST_CHECK * n_iter), 1)
    shrink = max(int(CHECK_SHRINK * n_iter), 1)
    shortest = max(int(CHECK_MIN * n_iter), 1)
    done, out = interval, []
    while done <= n_iter:
        out.append(done)
        interval = max(interval - shrink, shortest)
        done += interval
    return out


# --- losses: per-sample, (logits, labels, targets) -> loss to maximise ---------

def ce_loss(logits, y, target=None):
    """Cross-entropy of the true class."""
    import tensorflow as tf

    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)


def dlr_loss(logits, y, target=None):
    """Difference of logits ratio: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12).

    Shift- and scale-invariant in the logits, so a saturated softmax cannot
    hide the gradient (the reason Croce & Hein introduce it). Needs 3 classes.
    """
    import tensorflow as tf

    top, where = tf.math.top_k(logits, k=3)
    y = tf.cast(y, where.dtype)
    true = tf.gather(logits, y, axis=1, batch_dims=1)
    other = tf.where(tf.equal(where[:, 0], y), top[:, 1], top[:, 0])  # best wrong class
    return -(true - other) / (top[:, 0] - top[:, 2] + DLR_TINY)


def dlr_targeted_loss(logits, y, target):
    """Targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12). Needs 4 classes."""
    import tensorflow as tf

    top = tf.math.top_k(logits, k=4).values
    true = tf.gather(logits, tf.cast(y, tf.int32), axis=1, batch_dims=1)
    aim = tf.gather(logits, tf.cast(target, tf.int32), axis=1, batch_dims=1)
    return -(true - aim) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_TINY)


LOSSES = {"ce": (ce_loss, 2), "dlr": (dlr_loss, 3), "dlr_targeted": (dlr_targeted_loss, 4)}


# --- geometry: the reference's steps and projections ----------------------------

def _per_sample(values, ndims: int):
    """A (batch,) tensor shaped to broadcast over images."""
    import tensorflow as tf

    return tf.reshape(values, [-1] + [1] * ndims)


def _l2_norm(d):
    import tensorflow as tf

    axes = list(range(1, len(d.shape)))
    return tf.sqrt(tf.reduce_sum(tf.square(d), axis=axes, keepdims=True))


def _geometry(linf: bool, eps: float):
    """(step, project) for the norm, as autopgd_base.py writes them."""
    import tensorflow as tf

    def project(x, z):
        if linf:
            z = tf.minimum(tf.maximum(z, x - eps), x + eps)
        else:  # x + normalize(z - x) * min(eps, ||z - x||), the reference's form
            norm = _l2_norm(z - x)
            z = x + (z - x) / (norm + 1e-12) * tf.minimum(eps, norm)
        return tf.clip_by_value(z, CLIP_MIN, CLIP_MAX)

    def step(x_adv, grad, size):
        if linf:
            return x_adv + size * tf.sign(grad)
        return x_adv + size * grad / (_l2_norm(grad) + 1e-12)

    return step, project


def _schedule_tensors(n_iter: int):
    """Per iteration: is it a checkpoint, and how many iterations its window spans."""
    is_check = np.zeros(n_iter, dtype=bool)
    window = np.ones(n_iter, dtype=np.float32)
    previous = 0
    for done in checkpoints(n_iter):
        is_check[done - 1] = True
        window[done - 1] = done - previous
        previous = done
    return is_check, window


def _apgd_run(model, loss_name: str, *, eps: float, linf: bool, n_iter: int, rho: float):
    """One APGD run on a batch, traced once for any batch size.

    ``run(x, y, target, x_start)`` returns, per point: the first iterate that
    fooled the model (or ``x_start``), whether one did, the highest-loss
    iterate and its loss. ``target`` is read by the targeted loss only.

    Cached per model and settings: tracing costs about as much as attacking
    100 digits, the run holds no randomness (the starts come in as
    arguments) and reads the model's variables, so seeds, restarts and
    reloaded weights can share one trace.
    """
    key = (loss_name, float(eps), bool(linf), int(n_iter), float(rho))
    runs = _RUNS.setdefault(model, {})
    if key not in runs:
        runs[key] = _trace_run(weakref.ref(model), *key)
    return runs[key]


_RUNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _trace_run(own, loss_name: str, eps: float, linf: bool, n_iter: int, rho: float):
    """The traced run of :func:`_apgd_run`; ``own`` is a weak reference to the model, so
    that the cache does not keep the model alive."""
    import tensorflow as tf

    loss_fn = LOSSES[loss_name][0]
    step, project = _geometry(linf, eps)
    is_check, window = (tf.constant(a) for a in _schedule_tensors(n_iter))
    images = tf.TensorSpec([None, *own().input_shape[1:]], tf.float32)
    labels = tf.TensorSpec([None], tf.int64)

    def loss_and_gradient(x_adv, y, target):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            logits = own()(x_adv, training=False)
            loss = loss_fn(logits, y, target)
            # the samples are independent: the gradient of the sum is each one's own
            total = tf.reduce_sum(loss)
        return logits, loss, tape.gradient(total, x_adv)

    @tf.function(input_signature=(images, labels, labels, images), reduce_retracing=True)
    def run(x, y, target, x_start):
        ndims = len(x.shape) - 1
        x_adv = tf.clip_by_value(x_start, CLIP_MIN, CLIP_MAX)
        logits, loss, grad = loss_and_gradient(x_adv, y, target)
        fooled = tf.argmax(logits, axis=1) != y
        first_adv = x_adv
        x_best, grad_best, loss_best = x_adv, grad, loss
        size = tf.fill(tf.shape(loss), np.float32(STEP_FACTOR * eps))
        x_prev = x_adv
        # autopgd_base.py's check_oscillation compares the first window's first
        # loss with an unfilled (zero) row of its loss history: so do we.
        loss_prev = tf.zeros_like(loss)
        rises = tf.zeros_like(loss)
        loss_best_at_check = loss_best
        halved_at_check = tf.ones_like(loss, dtype=tf.bool)  # (b) is off at the first check
        for i in tf.range(n_iter):
            if tf.reduce_all(fooled):
                break  # every point has its AE: later iterates would not be kept
            momentum = tf.where(i > 0, MOMENTUM, 1.0)
            drift = x_adv - x_prev
            x_prev = x_adv
            z = project(x, step(x_adv, grad, _per_sample(size, ndims)))
            x_adv = project(x, x_adv + (z - x_adv) * momentum + drift * (1.0 - momentum))
            logits, loss, grad = loss_and_gradient(x_adv, y, target)

            newly = (tf.argmax(logits, axis=1) != y) & ~fooled
            first_adv = tf.where(_per_sample(newly, ndims), x_adv, first_adv)
            fooled = fooled | newly
            better = loss > loss_best
            x_best = tf.where(_per_sample(better, ndims), x_adv, x_best)
            grad_best = tf.where(_per_sample(better, ndims), grad, grad_best)
            loss_best = tf.where(better, loss, loss_best)
            rises += tf.cast(loss > loss_prev, tf.float32)
            loss_prev = loss

            # At a checkpoint: halve the step and go back to the best point where
            # (a) the loss rose too rarely or (b) nothing improved since an unhalved check.
            check = is_check[i]
            oscillating = rises <= window[i] * rho
            stalled = ~halved_at_check & (loss_best_at_check >= loss_best)
            halve = check & (oscillating | stalled)
            size = tf.where(halve, size / 2.0, size)
            x_adv = tf.where(_per_sample(halve, ndims), x_best, x_adv)
            grad = tf.where(_per_sample(halve, ndims), grad_best, grad)
            halved_at_check = tf.where(check, halve, halved_at_check)
            loss_best_at_check = tf.where(check, loss_best, loss_best_at_check)
            rises = tf.where(check, tf.zeros_like(rises), rises)
        return first_adv, fooled, x_best, loss_best

    return run


def random_start(x: np.ndarray, eps: float, linf: bool) -> np.ndarray:
    """The reference's random start: a random direction at distance exactly eps, in [0, 1]."""
    if linf:
        t = np.random.uniform(-1.0, 1.0, size=x.shape)
        scale = np.abs(t).reshape(len(x), -1).max(axis=1)
    else:
        t = np.random.standard_normal(size=x.shape)
        scale = np.sqrt(np.square(t).reshape(len(x), -1).sum(axis=1))
    delta = eps * t / (scale.reshape(-1, *[1] * (x.ndim - 1)) + 1e-12)
    return np.clip(x + delta, CLIP_MIN, CLIP_MAX).astype(np.float32)


def _linf(norm) -> bool:
    return norm in ("inf", np.inf)


def _check_classes(name: str, loss_name: str, n_classes: int, n_target_classes: int = 0):
    need = LOSSES[loss_name][1]
    if n_classes < need:
        raise ValueError(f"{name}: loss {loss_name!r} needs at least {need} classes, "
                         f"the model has {n_classes}")
    if n_target_classes > n_classes - 1:
        raise ValueError(f"{name}: n_target_classes={n_target_classes} but the model has only "
                         f"{n_classes - 1} classes other than the true one")


def _apgd(name: str, model, x: np.ndarray, y: np.ndarray, *, loss_name: str, eps: float, norm,
          nb_iter: int, rho: float, restarts: int, batch_size: int,
          target_ranks: tuple[int | None, ...]) -> np.ndarray:
    """Run APGD over ``target_ranks`` x ``restarts`` runs, each on the points still robust.

    A rank k targets the k-th highest logit on the clean image (k >= 2: for a
    correctly classified image the (k-1)-th most likely wrong class); None
    is untargeted.
    """
    labels = labels_of(y)
    x = np.asarray(x, dtype=np.float32)
    logits = predict_logits(traced_forward(model), x)
    _check_classes(name, loss_name, logits.shape[1], max(r or 0 for r in target_ranks) - 1)
    order = np.argsort(logits, axis=1)  # ascending: order[:, -k] is the k-th highest
    robust = logits.argmax(axis=1) == labels  # misclassified images are not attacked
    x_adv, best_loss = x.copy(), np.full(len(x), -np.inf, dtype=np.float32)
    linf = _linf(norm)
    run = _apgd_run(model, loss_name, eps=float(eps), linf=linf, n_iter=int(nb_iter),
                    rho=float(rho))
    start_time = time.perf_counter()
    for rank in target_ranks:
        for restart in range(restarts):
            todo = np.flatnonzero(robust)
            for lo in range(0, len(todo), batch_size):
                idx = todo[lo:lo + batch_size]
                target = order[idx, -rank] if rank else labels[idx]
                out = run(x[idx], labels[idx], target.astype(np.int64),
                          random_start(x[idx], float(eps), linf))
                first_adv, fooled, x_best, loss_best = (t.numpy() for t in out)
                # highest loss so far where still robust; the first AE where fooled
                higher = ~fooled & (loss_best > best_loss[idx])
                x_adv[idx[higher]], best_loss[idx[higher]] = x_best[higher], loss_best[higher]
                x_adv[idx[fooled]], robust[idx[fooled]] = first_adv[fooled], False
            run_name = f"target rank {rank}, restart {restart + 1}" if rank else \
                f"restart {restart + 1}"
            log.info("%s: %s: %d of %d still robust (%.1f s)", name, run_name, robust.sum(),
                     len(x), time.perf_counter() - start_time)
    return x_adv


def _common_params(restarts_note: str) -> dict[str, Param]:
    return {
        "eps": positive(note="AutoAttack: 0.3 (MNIST, L-inf), 8/255 (CIFAR-10, L-inf), "
                             "0.5 (CIFAR-10, L2)"),
        "norm": NORM,
        "nb_iter": Param("integer", 100, minimum=1, paper=100,
                         note="iterations per run (AutoAttack: 100)"),
        "restarts": Param("integer", 1, minimum=1, paper=1, note=restarts_note),
        "rho": Param("number", 0.75, minimum=0.0, maximum=1.0, paper=0.75,
                     note="step halved where the loss rose in at most this share of the "
                          "iterations since the last checkpoint"),
        "batch_size": batch(256),
    }


@attack("apgd_ce", targeted=False, params=_common_params(
    "random starts, each on the points not yet fooled (AutoAttack standard: 1)"))
def apgd_ce(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm, nb_iter: int,
            restarts: int, rho: float, batch_size: int) -> np.ndarray:
    """APGD on the cross-entropy (Croce & Hein 2020), AutoAttack's first attack."""
    x_adv = _apgd("apgd_ce", model, x, y, loss_name="ce", eps=eps, norm=norm, nb_iter=nb_iter,
                  rho=rho, restarts=restarts, batch_size=batch_size, target_ranks=(None,))
    return finish("apgd_ce", model, x, x_adv, labels_of(y), None)


@attack("apgd_dlr", targeted=False, params=_common_params(
    "random starts, each on the points not yet fooled (AutoAttack plus: 5)"))
def apgd_dlr(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm, nb_iter: int,
             restarts: int, rho: float, batch_size: int) -> np.ndarray:
    """APGD on the difference of logits ratio (Croce & Hein 2020): needs >= 3 classes."""
    x_adv = _apgd("apgd_dlr", model, x, y, loss_name="dlr", eps=eps, norm=norm,
                  nb_iter=nb_iter, rho=rho, restarts=restarts, batch_size=batch_size,
                  target_ranks=(None,))
    return finish("apgd_dlr", model, x, x_adv, labels_of(y), None)


@attack("apgd_t", targeted=False, params={
    **_common_params("random starts per target class, each on the points not yet fooled "
                     "(AutoAttack standard: 1)"),
    "n_target_classes": Param("integer", 9, minimum=1, paper=9,
                              note="targets: the most likely wrong classes on the clean image "
                                   "(AutoAttack: 9; at most classes - 1)"),
})
def apgd_t(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm, nb_iter: int,
           restarts: int, rho: float, n_target_classes: int, batch_size: int) -> np.ndarray:
    """APGD-T (Croce & Hein 2020): targeted DLR towards each of the likeliest wrong classes.

    Untargeted as a whole: success is any misclassification, and each point
    keeps the first AE any target gave. Needs >= 4 classes.
    """
    ranks = tuple(range(2, int(n_target_classes) + 2))
    x_adv = _apgd("apgd_t", model, x, y, loss_name="dlr_targeted", eps=eps, norm=norm,
                  nb_iter=nb_iter, rho=rho, restarts=restarts, batch_size=batch_size,
                  target_ranks=ranks)
    return finish("apgd_t", model, x, x_adv, labels_of(y), None)
