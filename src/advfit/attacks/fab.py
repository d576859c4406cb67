"""FAB-T, the targeted Fast Adaptive Boundary attack (Croce and Hein 2020), as AutoAttack runs it.

A port of ``autoattack/fab_base.py`` and ``fab_projections.py``
(fra31/auto-attack, ``FABAttack`` with ``targeted=True``) to TensorFlow and
NumPy, L-inf and L2. Each iteration linearises the decision boundary between
the true class y and a target class t at the current iterate (one traced
gradient of z_t - z_y), projects both the iterate and the original image onto
that hyperplane intersected with the [0, 1] box, and steps to a convex
combination of the two projections (overshoot ``eta``, weight on the
original at most ``alpha_max``). Once an iterate is adversarial it is kept if
it is the closest so far and pulled back towards the original by ``beta``.
The target classes are the clean image's 2nd, 3rd, ... highest logits.

``fab_t`` is AutoAttack's robust-accuracy step: an AE counts (and is
returned) only if its norm is <= eps. ``fab_minimal_norm`` gives the
smallest norm found over every target class, for robustness curves.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from advfit.attacks.batching import in_chunks, predict_logits, traced_forward
from advfit.attacks.guards import finish, labels_of
from advfit.attacks.params import NORM, Param, batch, positive
from advfit.attacks.registry import attack
from advfit.attacks.square import is_linf

log = logging.getLogger("advfit")

BIG = np.float32(1e12)  # the reference's stand-in for "no bound" in the L2 projection
NO_AE = np.float32(1e10)  # the reference's initial best norm: no AE found yet
# AutoAttack's FAB radius of the random restarts when no eps is given
DEFAULT_EPS = {"inf": 0.3, 2: 1.0}


def norms_of(delta: np.ndarray, linf: bool) -> np.ndarray:
    """Per-image L-inf or L2 norm of perturbations (float32, as the reference's)."""
    flat = delta.reshape(len(delta), -1)
    if linf:
        return np.abs(flat).max(axis=1)
    return np.sqrt((flat ** 2).sum(axis=1))


# --- projections onto {z : <w, z> = b} intersected with [0, 1]^d ------------------------

def projection_linf(t: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest L-inf step d (rows) with <w, t + d> = b and t + d in the box.

    The reference's ``projection_linf``: sort the coordinates by how far
    they can move, find by binary search how many saturate at the box, and
    solve for the common step of the others. Where the hyperplane cannot be
    reached inside the box, the step goes to the box corner nearest to it.
    """
    w, b = w.copy(), b.copy()
    sign = np.where((w * t).sum(1) - b >= 0, 1.0, -1.0).astype(np.float32)
    w *= sign[:, None]
    b *= sign
    a = (w < 0).astype(np.float32)
    d = (a - t) * (w != 0)
    p = a - t * (2 * a - 1)
    indp = np.argsort(p, axis=1)
    b = b - (w * t).sum(1)
    b0 = (w * d).sum(1)
    indp2 = indp[:, ::-1]
    ws = np.take_along_axis(w, indp2, 1)
    bs2 = -ws * np.take_along_axis(d, indp2, 1)
    s = np.cumsum(np.abs(ws), axis=1)
    sb = np.cumsum(bs2, axis=1) + b0[:, None]
    b2 = sb[:, -1] - s[:, -1] * np.take_along_axis(p, indp[:, :1], 1)[:, 0]
    c_l = b - b2 > 0
    c2 = (b - b0 > 0) & ~c_l
    lb = _binary_search_linf(indp[c2], sb[c2], s[c2], p[c2], b[c2])
    if c_l.any():
        lmbd_opt = np.maximum((b[c_l] - sb[c_l, -1]) / -s[c_l, -1], 0)[:, None]
        d[c_l] = (2 * a[c_l] - 1) * lmbd_opt
    lmbd_opt = np.maximum((b[c2] - sb[c2, lb]) / -s[c2, lb], 0)[:, None]
    d[c2] = np.minimum(lmbd_opt, d[c2]) * a[c2] + np.maximum(-lmbd_opt, d[c2]) * (1 - a[c2])
    return d * (w != 0)


def _binary_search_linf(indp, sb, s, p, b) -> np.ndarray:
    """The reference's search for the last coordinate count that still leaves b - b2 > 0."""
    n_dim = indp.shape[1]
    lb = np.zeros(len(indp), np.float32)
    ub = np.full(len(indp), n_dim - 1, np.float32)
    rows = np.arange(len(indp))
    for _ in range(math.ceil(math.log2(n_dim))):
        middle = np.floor((lb + ub) / 2)
        k = middle.astype(np.int64)
        current = indp[rows, n_dim - 1 - k]
        c = b - (sb[rows, k] - s[rows, k] * p[rows, current]) > 0
        lb, ub = np.where(c, middle, lb), np.where(c, ub, middle)
    return lb.astype(np.int64)


def projection_l2(t: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest L2 step d (rows) with <w, t + d> = b and t + d in the box.

    The reference's ``projection_l2``: the box-constrained minimiser is
    -alpha w clipped to the box for the right alpha; the breakpoints where
    coordinates saturate are sorted and alpha found by binary search.
    """
    w = w.copy()
    c = (w * t).sum(1) - b
    side = np.where(c >= 0, 1.0, -1.0).astype(np.float32)
    w *= side[:, None]
    c = c * side
    r = np.clip(np.maximum(t / w, (t - 1) / w), -BIG, BIG)
    r[np.abs(w) < 1e-8] = BIG
    r[r == -BIG] = BIG
    indr = np.argsort(r, axis=1)
    rs = np.take_along_axis(r, indr, 1)
    rs2 = np.pad(rs[:, 1:], ((0, 0), (0, 1)))
    rs[rs == BIG] = 0
    rs2[rs2 == BIG] = 0
    w3s = np.take_along_axis(w ** 2, indr, 1)
    w5 = w3s.sum(axis=1, keepdims=True)
    ws = w5 - np.cumsum(w3s, axis=1)
    d = -(r * w) * (np.abs(w) > 1e-8)
    s = np.concatenate((-w5 * rs[:, :1], np.cumsum((rs - rs2) * ws, axis=1) - w5 * rs[:, :1]),
                       axis=1)
    c4 = s[:, 0] + c < 0
    c3 = (d * w).sum(1) + c > 0
    c2 = ~(c4 | c3)
    lb = _binary_search_l2(s[c2], c[c2], w.shape[1])
    if c4.any():
        alpha = c[c4] / w5[c4, 0]
        d[c4] = -alpha[:, None] * w[c4]
    if c2.any():
        alpha = (s[c2, lb] + c[c2]) / ws[c2, lb] + rs[c2, lb]
        alpha[ws[c2, lb] == 0] = 0
        c5 = (alpha[:, None] > r[c2]).astype(np.float32)
        d[c2] = d[c2] * c5 - alpha[:, None] * w[c2] * (1 - c5)
    return d * (np.abs(w) > 1e-8)


def _binary_search_l2(s, c, n_dim: int) -> np.ndarray:
    lb = np.zeros(len(s), np.float32)
    ub = np.full(len(s), n_dim - 1, np.float32)
    rows = np.arange(len(s))
    for _ in range(math.ceil(math.log2(n_dim))):
        middle = np.floor((lb + ub) / 2)
        above = s[rows, middle.astype(np.int64)] + c > 0
        lb, ub = np.where(above, middle, lb), np.where(above, ub, middle)
    return lb.astype(np.int64)


# --- the attack -------------------------------------------------------------------------

def _diff_and_gradient(model):
    """(z_t - z_y, its gradient w.r.t. x) per image: one traced tape pass.

    The gradient of the batch's sum is each image's own gradient, since an
    inference-mode model treats the images of a batch independently.
    """
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    labels = tf.TensorSpec([None], tf.int64)

    @tf.function(input_signature=(spec, labels, labels), reduce_retracing=True)
    def diff_grad(x, y, target):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x, training=False)
            diff = (tf.gather(logits, target, batch_dims=1)
                    - tf.gather(logits, y, batch_dims=1))
        return diff, tape.gradient(diff, x)

    return diff_grad


def _random_start(x: np.ndarray, radius: float, linf: bool) -> np.ndarray:
    """The reference's restart point: a random direction scaled to half the radius."""
    if linf:
        t = 2 * np.random.random_sample(x.shape) - 1
    else:
        t = np.random.standard_normal(x.shape)
    direction = t / norms_of(t, linf).reshape(-1, *[1] * (x.ndim - 1))
    return np.clip(x + radius * direction * 0.5, 0.0, 1.0).astype(np.float32)


class _Fab:
    """FAB-T's pieces for one model and one setting: single runs and the target order."""

    def __init__(self, model, *, norm, nb_iter: int, alpha_max: float, eta: float,
                 beta: float, rand_eps: float):
        self.forward = traced_forward(model)
        self.diff_grad = _diff_and_gradient(model)
        self.linf = is_linf(norm)
        self.project = projection_linf if self.linf else projection_l2
        self.nb_iter, self.rand_eps = int(nb_iter), float(rand_eps)
        self.alpha_max, self.eta, self.beta = (np.float32(alpha_max), np.float32(eta),
                                               np.float32(beta))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(predict_logits(self.forward, x), axis=1)

    def _step(self, x1: np.ndarray, x: np.ndarray, y: np.ndarray,
              target: np.ndarray) -> np.ndarray:
        """One FAB step from x1: project x1 and x onto the linearised boundary, combine."""
        n = len(x)
        df, dg = (v.numpy() for v in self.diff_grad(x1, y, target))
        w = dg.reshape(n, -1)
        b = -df + (w * x1.reshape(n, -1)).sum(1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            d3 = self.project(np.concatenate((x1.reshape(n, -1), x.reshape(n, -1))),
                              np.concatenate((w, w)), np.concatenate((b, b)))
        d1, d2 = d3[:n].reshape(x.shape), d3[n:].reshape(x.shape)
        a0 = np.maximum(norms_of(d3, self.linf), np.float32(1e-8))
        a1, a2 = a0[:n], a0[n:]
        # bias towards the original image's projection: keeps the AE close to x
        alpha = np.clip(a1 / (a1 + a2), 0, self.alpha_max).reshape(-1, *[1] * (x.ndim - 1))
        x1 = (x1 + self.eta * d1) * (1 - alpha) + (x + d2 * self.eta) * alpha
        return np.clip(x1, 0.0, 1.0).astype(np.float32)

    def single_run(self, x: np.ndarray, y: np.ndarray, target: np.ndarray,
                   rand_start: bool) -> tuple[np.ndarray, np.ndarray]:
        """FAB towards ``target`` on correctly classified images: (closest AE, its norm).

        Images without an AE come back unchanged with norm inf.
        """
        expand = (-1, *[1] * (x.ndim - 1))
        adv, best = x.copy(), np.full(len(x), NO_AE, np.float32)
        x1 = _random_start(x, self.rand_eps, self.linf) if rand_start else x.copy()
        for _ in range(self.nb_iter):
            x1 = self._step(x1, x, y, target)
            # any wrong class counts, as in the reference, not only the target
            hit = np.flatnonzero(self.predict(x1) != y)
            if len(hit) == 0:
                continue
            t = norms_of(x1[hit] - x[hit], self.linf)
            closer = t < best[hit]
            adv[hit] = np.where(closer.reshape(expand), x1[hit], adv[hit])
            best[hit] = np.where(closer, t, best[hit])
            # back towards x: the next steps search for a closer AE
            x1[hit] = x[hit] + (x1[hit] - x[hit]) * self.beta
        return adv, np.where(best < NO_AE, best, np.float32(np.inf)).astype(np.float32)


def _target_ranks(model, n_target_classes: int) -> range:
    """Ranks 2 .. n_target_classes + 1 of the clean logits, at most every other class.

    The reference indexes past the classes when asked for more targets than
    there are other classes; we take them all instead.
    """
    n_classes = int(model.output_shape[-1])
    return range(2, min(int(n_target_classes), n_classes - 1) + 2)


def _targets(logits: np.ndarray, rank: int) -> np.ndarray:
    """The class with the ``rank``-th highest logit per image (rank 1: the prediction)."""
    return np.argsort(logits, axis=1)[:, -rank].astype(np.int64)


def _fab_t_batch(fab: _Fab, x: np.ndarray, y: np.ndarray, *, eps: float, ranks: range,
                 restarts: int) -> np.ndarray:
    """The reference's targeted ``perturb`` on one batch.

    Target class after target class, attacks the images still robust: an AE
    counts only if it is misclassified and its norm is <= eps; the others come
    back unchanged. The first target that succeeds ends an image's attack.
    """
    logits = predict_logits(fab.forward, x)
    robust = np.argmax(logits, axis=1) == y
    adv = x.copy()
    for rank in ranks:
        for restart in range(int(restarts)):
            todo = np.flatnonzero(robust)
            if len(todo) == 0:
                return adv
            adv_curr, _ = fab.single_run(x[todo], y[todo], _targets(logits[todo], rank),
                                         rand_start=restart > 0)
            size = norms_of(adv_curr - x[todo], fab.linf)
            fooled = (fab.predict(adv_curr) != y[todo]) & (size <= eps)
            robust[todo[fooled]] = False
            adv[todo[fooled]] = adv_curr[fooled]
    return adv


def fab_minimal_norm(model, x: np.ndarray, y: np.ndarray, *, norm="inf", nb_iter: int = 100,
                     n_target_classes: int = 9, restarts: int = 1, alpha_max: float = 0.1,
                     eta: float = 1.05, beta: float = 0.9, eps: float | None = None,
                     batch_size: int = 256) -> np.ndarray:
    """Per image, the smallest L-inf or L2 perturbation FAB-T finds (float32).

    Every correctly classified image is attacked towards every target class
    (no early stop at a budget); 0 for images the model already misclassifies,
    inf where no AE was found. Robust accuracy at a budget e is then
    ``(norms > e).mean()``, which is what ``fab_t`` with ``eps=e`` reports
    (up to float noise). ``eps`` only sets the restarts' random radius
    (AutoAttack's FAB default: 0.3 L-inf, 1.0 L2); 1 restart draws nothing.
    """
    radius = DEFAULT_EPS["inf" if is_linf(norm) else 2] if eps is None else float(eps)
    fab = _Fab(model, norm=norm, nb_iter=nb_iter, alpha_max=alpha_max, eta=eta, beta=beta,
               rand_eps=radius)
    y = labels_of(y)
    norms = np.zeros(len(x), np.float32)
    start_time = time.perf_counter()
    for start in range(0, len(x), int(batch_size)):
        stop = min(start + int(batch_size), len(x))
        norms[start:stop] = _minimal_norms_batch(fab, model, x[start:stop], y[start:stop],
                                                 n_target_classes, restarts)
        log.info("fab_minimal_norm: %d/%d images done (%.1f s)", stop, len(x),
                 time.perf_counter() - start_time)
    return norms


def _minimal_norms_batch(fab: _Fab, model, x, y, n_target_classes: int,
                         restarts: int) -> np.ndarray:
    logits = predict_logits(fab.forward, x)
    correct = np.flatnonzero(np.argmax(logits, axis=1) == y)
    norms = np.zeros(len(x), np.float32)
    norms[correct] = np.inf
    if len(correct) == 0:
        return norms
    for rank in _target_ranks(model, n_target_classes):
        targets = _targets(logits[correct], rank)
        for restart in range(int(restarts)):
            _, found = fab.single_run(x[correct], y[correct], targets, rand_start=restart > 0)
            norms[correct] = np.minimum(norms[correct], found)
    return norms


@attack("fab_t", targeted=False, params={
    "eps": positive(note="budget: an AE counts and is returned only if its norm is <= eps"),
    "norm": NORM,
    "nb_iter": Param("integer", 100, minimum=1, paper=100,
                     note="iterations per target class; AutoAttack: 100"),
    "n_target_classes": Param("integer", 9, minimum=1, paper=9,
                              note="targets: the 2nd .. (k+1)-th highest clean logits"),
    "restarts": Param("integer", 1, minimum=1, paper=1,
                      note="per target; later ones start at random within eps/2"),
    "alpha_max": Param("number", 0.1, minimum=0.0, maximum=1.0, paper=0.1,
                       note="largest weight of the original image's projection"),
    "eta": Param("number", 1.05, minimum=1.0, paper=1.05, note="overshoot of each step"),
    "beta": Param("number", 0.9, minimum=0.0, maximum=1.0, exclusive_minimum=True, paper=0.9,
                  note="backward step towards the original after a success"),
    "batch_size": batch(256),
})
def fab_t(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm, nb_iter: int,
          n_target_classes: int, restarts: int, alpha_max: float, eta: float, beta: float,
          batch_size: int) -> np.ndarray:
    """FAB-T (Croce and Hein 2020), AutoAttack's targeted FAB ported; untargeted overall.

    For each image, targets the classes with the 2nd, 3rd, ... highest clean
    logits in turn, each with ``nb_iter`` FAB steps, and returns the closest
    AE of the first target whose AE has norm <= eps; images without one come
    back unchanged. Deterministic with one restart; later restarts draw from
    NumPy's global generator (seeded by the job). ``fab_minimal_norm`` gives
    the minimal norms themselves.
    """
    fab = _Fab(model, norm=norm, nb_iter=nb_iter, alpha_max=alpha_max, eta=eta, beta=beta,
               rand_eps=eps)
    ranks = _target_ranks(model, n_target_classes)

    def attack_batch(xb: np.ndarray, yb: np.ndarray) -> np.ndarray:
        return _fab_t_batch(fab, xb, yb, eps=float(eps), ranks=ranks, restarts=restarts)

    x_adv = in_chunks("fab_t", attack_batch, x, labels_of(y), batch_size)
    return finish("fab_t", model, x, x_adv, labels_of(y), None)
