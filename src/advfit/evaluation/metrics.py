"""Attack-agnostic robustness metrics of one snapshot, one value per point.

Each metric takes a Keras model returning logits and a fixed sample of points
``x`` (float32 NHWC in [0, 1]), plus labels where the metric needs them, and
returns a float64 array with one value per point; ``summary`` turns it into
mean, standard deviation and n. The metrics are those of paper 002 (§2.3),
computed with ART 1.20.1 as the paper did:

* ``clever_u``: CLEVER score, untargeted (Weng et al. 2018): an estimated
  lower bound on the smallest perturbation (L2 by default) that changes the
  model's prediction, capped at ``radius``. Higher = more robust. Computed by
  advfit's own estimator (``advfit.evaluation.clever``, ``backend: advfit``, default) or
  by ART's (``backend: art``).
* ``loss_sensitivity``: L2 norm of the gradient of the cross-entropy loss
  w.r.t. the input at the true label (Arpit et al. 2017). Higher = the point
  is more memorised.
* ``empirical_robustness``: smallest FGSM step, on a grid of ``eps_step``
  multiples up to ``eps``, that changes the prediction, as ||delta|| / ||x||
  in the attack's norm (Moosavi-Dezfooli et al. 2016). NaN where no step up
  to ``eps`` changes it (ART averages over the changed points only).

CLEVER and empirical robustness are about the model's *predicted* class at
each point (ART's definitions), so they take no labels.

Where ART gives wrong numbers we correct them and the tests show ART's own:
``clever_t`` crashes with ART's TF2 classifier (fixed in
``attacks.art_classifier``); ART's CLEVER Weibull fit sometimes diverges to a
score of ~1e-7 (refitted here); ART's FGSM grid skips its last step (bound
widened here); ART's ``loss_sensitivity`` divides by the batch size under
Keras' default loss (summed loss here).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Callable

import numpy as np

from advfit.attacks import Param, art_classifier, quiet_art

log = logging.getLogger("advfit")

METRIC_PARAMS: dict[str, dict[str, Param]] = {
    "clever_u": {
        "nb_batches": Param("integer", 500, minimum=1, paper=500,
                            note="maxima drawn for the Weibull fit (CLEVER paper: 500); "
                                 "resampled from the pool, so nearly free"),
        "batch_size": Param("integer", 10, minimum=1, paper=1024,
                            note="gradients per maximum (CLEVER paper: 1024); the pool holds "
                                 "pool_factor x batch_size points: this sets the cost"),
        "radius": Param("number", 5.0, minimum=0.0, exclusive_minimum=True, paper=5.0,
                        note="sampling radius and cap of the score; paper 002's scores "
                             "top out at 5"),
        "norm": Param(("string", "integer"), 2, enum=(1, 2, "inf"), paper=2,
                      note="perturbation norm; the paper: L2"),
        "pool_factor": Param("integer", 10, minimum=1, note="ART default"),
        "c_init": Param("number", 1.0, minimum=0.0, exclusive_minimum=True,
                        note="initial Weibull shape; ART default"),
        "backend": Param("string", "advfit", enum=("advfit", "art"),
                         note="advfit: one ball sample per point for all classes, traced "
                              "Jacobians (advfit.evaluation.clever); art: art.metrics.clever_u, class by "
                              "class (slower, ART's draws exactly)"),
    },
    "loss_sensitivity": {
        "batch_size": Param("integer", 256, minimum=1),
    },
    "empirical_robustness": {
        "eps": Param("number", 0.3, minimum=0.0, exclusive_minimum=True, paper=0.3,
                     note="largest FGSM step tried; ART default"),
        "eps_step": Param("number", 0.1, minimum=0.0, exclusive_minimum=True, paper=0.1,
                          note="grid of steps; ART's metric default (coarse: 0.1, 0.2, 0.3)"),
        "norm": Param(("string", "integer"), "inf", enum=("inf", 2), paper="inf",
                      note="FGSM norm and norm of the ratio; ART default L-inf"),
        "batch_size": Param("integer", 256, minimum=1),
    },
}

METRIC_DEFAULTS = {name: {k: p.default for k, p in params.items()}
                   for name, params in METRIC_PARAMS.items()}

# Metrics that need the true labels (the others use the model's prediction).
NEEDS_LABELS = ("loss_sensitivity",)


def _norm(value):
    return np.inf if value in ("inf", np.inf) else int(value)


@contextlib.contextmanager
def numpy_seed(seed: int):
    """Seed NumPy's global generator (ART's CLEVER draws from it), then restore it."""
    state = np.random.get_state()
    np.random.seed(int(seed) % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


def _every(n: int) -> int:
    """Log roughly ten progress lines per call."""
    return max(1, math.ceil(n / 10))


# A Weibull fit whose Lipschitz estimate exceeds the largest gradient norm we
# sample in the same ball by this factor has diverged (valid fits land within
# a small factor of it; diverged ones are 1e6 times off).
DEGENERATE_FIT_FACTOR = 100.0
REFERENCE_POINTS = 64  # ball points for that reference: one Jacobian call
FIT_RETRIES = 3  # extra seeds tried for a target whose fit diverged


def _dual_norm(norm) -> float:
    return {1: np.inf, 2: 2.0, np.inf: 1.0}[norm]


def _reference_lipschitz(classifier, point: np.ndarray, pred: int, radius: float, norm,
                         seed: int) -> np.ndarray:
    """Per class j: the largest dual norm of grad(z_pred - z_j) over sampled ball points.

    Drawn from its own seeded stream and restoring NumPy's state, so that
    ART's draws (and so its scores) are unaffected.
    """
    from art.utils import random_sphere

    with numpy_seed(seed + 7919):
        noise = random_sphere(REFERENCE_POINTS, point.size, radius, norm)
    pool = np.clip(point[np.newaxis] + noise.reshape(-1, *point.shape).astype(np.float32),
                   *classifier.clip_values).astype(np.float32)
    pool = np.concatenate([point[np.newaxis], pool])
    jacobian = classifier.class_gradient(pool)  # (points, classes, *shape)
    diff = (jacobian[:, [pred]] - jacobian).reshape(len(pool), classifier.nb_classes, -1)
    return np.linalg.norm(diff, ord=_dual_norm(norm), axis=2).max(axis=0)


def fit_diverged(score: float, margin: float, reference: float, radius: float) -> bool:
    """Whether a CLEVER target score comes from a diverged Weibull fit.

    The score is min(margin / L, radius) with L the fitted Lipschitz estimate,
    so L = margin / score unless capped. Diverged: L is more than
    ``DEGENERATE_FIT_FACTOR`` times the largest gradient norm sampled in the
    ball (``reference``), or the score is negative for a positive margin.
    """
    if score >= radius:
        return False  # capped: the fit cannot have overestimated the slope
    if score <= 0 or margin <= 0:
        return score <= 0 < margin
    return margin / score > DEGENERATE_FIT_FACTOR * reference > 0


def _clever_point(classifier, point: np.ndarray, *, seed: int, **params) -> tuple[float, int]:
    """ART's ``clever_u`` for one point, target by target, with diverged fits refitted.

    Same calls in the same order as ``art.metrics.clever_u`` after seeding, so
    the score is ART's exactly unless a fit diverged. A diverged fit (the
    three-parameter Weibull MLE runs off to shape and location ~1e8, giving a
    score ~1e-7 that then wins the minimum) is redone for that target with
    other seeds, NumPy's state restored afterwards so the later targets see
    ART's stream; if every retry diverges the point's score is NaN.
    Returns the score and the number of diverged fits.
    """
    from art.metrics import clever_t

    logits = classifier.predict(point[np.newaxis])[0]
    pred = int(np.argmax(logits))
    reference = _reference_lipschitz(classifier, point, pred, params["radius"], params["norm"],
                                     seed)

    def diverged(target: int, score: float) -> bool:
        return fit_diverged(score, logits[pred] - logits[target], reference[target],
                            params["radius"])

    scores, n_diverged = [], 0
    with numpy_seed(seed):
        for target in (j for j in range(classifier.nb_classes) if j != pred):
            score = clever_t(classifier, point, target, **params)
            retry = 0
            while diverged(target, score):
                n_diverged += 1
                retry += 1
                if retry > FIT_RETRIES:
                    score = np.nan
                    break
                with numpy_seed(seed + 104729 * retry + target):
                    score = clever_t(classifier, point, target, **params)
            scores.append(score)
    return float(np.min(scores)), n_diverged


def clever_u(model, x: np.ndarray, *, nb_batches: int = 500, batch_size: int = 10,
             radius: float = 5.0, norm=2, pool_factor: int = 10, c_init: float = 1.0,
             backend: str = "advfit", seed: int = 0) -> np.ndarray:
    """CLEVER untargeted score of every point, by advfit's estimator or ART's.

    ``backend`` ``advfit``: ``advfit.evaluation.clever.clever_u_fast`` (the same
    estimator, ball samples shared by all target classes, traced margin gradients);
    ``art``: ``clever_u_art`` (``art.metrics.clever_u``, guarded). Both take
    nb_batches, batch_size, radius, norm, pool_factor, c_init and seed.
    """
    params = dict(nb_batches=nb_batches, batch_size=batch_size, radius=radius, norm=norm,
                  pool_factor=pool_factor, c_init=c_init, seed=seed)
    if backend == "advfit":
        from advfit.evaluation.clever import clever_u_fast

        return clever_u_fast(model, x, **params)
    if backend == "art":
        return clever_u_art(model, x, **params)
    raise ValueError(f"clever_u: unknown backend {backend!r}; known: advfit, art")


def clever_u_art(model, x: np.ndarray, *, nb_batches: int = 500, batch_size: int = 10,
                 radius: float = 5.0, norm=2, pool_factor: int = 10, c_init: float = 1.0,
                 seed: int = 0) -> np.ndarray:
    """CLEVER untargeted score of every point: ``art.metrics.clever_u``, guarded.

    NumPy's generator is seeded with ``seed`` before *each* point, so a point's
    score depends on the model, the point and the seed only (not on the other
    points or their order), and the caller's generator is left as it was.
    The classifier is advfit's ART wrapper: with ART's stock TF2 classifier
    ``clever_t`` crashes (see ``attacks._art_classifier_class``). Diverged
    Weibull fits are refitted (see ``_clever_point``) and logged.
    """
    classifier = art_classifier(model)
    params = dict(nb_batches=int(nb_batches), batch_size=int(batch_size), radius=float(radius),
                  norm=_norm(norm), c_init=float(c_init), pool_factor=int(pool_factor))
    scores = np.empty(len(x), dtype=np.float64)
    start, n_diverged = time.perf_counter(), 0
    for i, point in enumerate(np.asarray(x, dtype=np.float32)):
        with quiet_art():
            scores[i], diverged = _clever_point(classifier, point, seed=int(seed), **params)
        n_diverged += diverged
        if (i + 1) % _every(len(x)) == 0 or i + 1 == len(x):
            log.info("clever_u: %d/%d points (%.1f s)", i + 1, len(x), time.perf_counter() - start)
    if n_diverged:
        log.warning("clever_u: %d diverged Weibull fits refitted with other seeds; "
                    "%d point(s) left NaN", n_diverged, int(np.isnan(scores).sum()))
    return scores


def loss_gradients(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Each point's own gradient of its cross-entropy loss w.r.t. the input.

    Computed by ART's ``loss_gradient``; ``art_classifier`` sums the loss over
    the batch, so a point's gradient does not depend on its batch.
    """
    classifier = art_classifier(model)
    n_classes = classifier.nb_classes
    onehot = np.eye(n_classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)]
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        out[start:stop] = classifier.loss_gradient(x[start:stop], onehot[start:stop])
    return out


def loss_sensitivity(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """L2 norm of each point's loss gradient; their mean is ``art.metrics.loss_sensitivity``.

    Caveat on ART's function as such: with Keras' default loss (mean over the
    batch) it returns 1/n of this mean for n points; advfit's classifier sums
    the loss, so its value is the true mean.
    """
    gradients = loss_gradients(model, x, y, batch_size)
    return np.linalg.norm(gradients.reshape(len(gradients), -1), axis=1).astype(np.float64)


def _fgsm_grid_bound(eps: float, eps_step: float) -> tuple[int, float]:
    """Number of grid steps and the bound to hand ART so that it tries all of them.

    ART adds ``eps_step`` repeatedly and stops when the sum exceeds ``eps``:
    0.1 + 0.1 + 0.1 = 0.30000000000000004 > 0.3, so with its defaults it never
    tries 0.3. Half a step of slack restores the intended grid without adding
    a step beyond ``eps``.
    """
    n_steps = math.floor(eps / eps_step + 1e-9)
    if n_steps < 1:
        raise ValueError(f"empirical_robustness: eps_step {eps_step} exceeds eps {eps}")
    return n_steps, (n_steps + 0.5) * eps_step


def empirical_robustness(model, x: np.ndarray, *, eps: float = 0.3, eps_step: float = 0.1,
                         norm="inf", batch_size: int = 256) -> np.ndarray:
    """Per point: the smallest FGSM perturbation changing the prediction, relative to ||x||.

    FGSM (ART, ``minimal=True``) steps along the sign (L-inf) or direction (L2)
    of the loss gradient at the predicted class, trying eps_step, 2 eps_step,
    ... up to ``eps``; the value is ||x_adv - x|| / ||x|| in that norm, NaN
    where no step changes the prediction. Its nanmean is ART's
    ``empirical_robustness`` with the grid of ``_fgsm_grid_bound``.
    """
    from art.attacks.evasion import FastGradientMethod

    classifier = art_classifier(model)
    _, bound = _fgsm_grid_bound(float(eps), float(eps_step))
    ord_ = _norm(norm)
    attack = FastGradientMethod(classifier, norm=ord_, eps=bound, eps_step=float(eps_step),
                                minimal=True, batch_size=int(batch_size))
    x = np.asarray(x, dtype=np.float32)
    with quiet_art():
        x_adv = attack.generate(x)
    before = np.argmax(classifier.predict(x), axis=1)
    after = np.argmax(classifier.predict(x_adv), axis=1)
    flat = len(x), -1
    ratio = (np.linalg.norm((x_adv - x).reshape(flat), ord=ord_, axis=1)
             / np.linalg.norm(x.reshape(flat), ord=ord_, axis=1))
    ratio = np.where(after != before, ratio, np.nan).astype(np.float64)
    log.info("empirical_robustness: %d of %d points change prediction by eps <= %g",
             int(np.sum(after != before)), len(x), eps)
    return ratio


def summary(values: np.ndarray) -> dict[str, float | int]:
    """Mean, standard deviation (ddof 1) and n over the finite values; n_total counts all."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    n = len(finite)
    return {
        "mean": float(finite.mean()) if n else math.nan,
        "std": float(finite.std(ddof=1)) if n > 1 else math.nan,
        "n": n,
        "n_total": len(values),
    }


METRICS: dict[str, Callable] = {
    "clever_u": clever_u,
    "loss_sensitivity": loss_sensitivity,
    "empirical_robustness": empirical_robustness,
}


def run_metric(name: str, model, x: np.ndarray, y: np.ndarray, params: dict,
               seed: int = 0) -> np.ndarray:
    """Dispatch by name; labels go to the metrics that need them, the seed to CLEVER."""
    try:
        metric = METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)}") from None
    unknown = sorted(set(params) - set(METRIC_PARAMS[name]))
    if unknown:
        raise ValueError(f"{name}: unknown parameter(s) {unknown}; known: "
                         f"{sorted(METRIC_PARAMS[name])}")
    if name in NEEDS_LABELS:
        return metric(model, x, y, **params)
    if name == "clever_u":
        return metric(model, x, seed=seed, **params)
    return metric(model, x, **params)
