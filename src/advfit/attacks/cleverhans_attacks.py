"""cleverhans 4.0.0's gradient attacks: FGSM, PGD and BIM, traced per batch."""

from __future__ import annotations

import weakref

import numpy as np

from advfit.attacks.apgd import dlr_loss
from advfit.attacks.batching import batched, predict_logits, traced, traced_forward
from advfit.attacks.guards import CLIP_MAX, CLIP_MIN, finish, labels_of
from advfit.attacks.params import NORM, REQUIRED, Param, batch, positive
from advfit.attacks.registry import attack


def norm_value(value) -> float:
    return np.inf if value in ("inf", np.inf) else float(value)


@attack("fgsm", targeted=True, params={
    "eps": positive(paper=0.1, note="paper 000: 0.1 (L-inf); paper 002: 0.3"),
    "norm": NORM,
    "batch_size": batch(256),
})
def fgsm(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm, batch_size: int,
         y_target: np.ndarray | None = None) -> np.ndarray:
    """Fast Gradient (Sign) Method, cleverhans' implementation.

    One step of size ``eps`` along the sign (L-inf) or the direction (L2) of
    the loss gradient, clipped to [0, 1].
    """
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

    targeted = y_target is not None
    step = traced(model, fast_gradient_method, eps=float(eps), norm=norm_value(norm),
                  clip_min=CLIP_MIN, clip_max=CLIP_MAX, targeted=targeted, sanity_checks=False)
    labels = labels_of(y_target if targeted else y)
    x_adv = batched(step, x, labels, batch_size)
    return finish("fgsm", model, x, x_adv, labels_of(y), None if not targeted else labels)


@attack("pgd", targeted=True, params={
    "eps": positive(paper=0.3, note="paper 002: 0.3"),
    "eps_iter": positive(note="step size; must not exceed eps"),
    "nb_iter": Param("integer", REQUIRED, minimum=1),
    "norm": NORM,
    "rand_init": Param("boolean", True, note="uniform random start in the eps-ball (Madry)"),
    "restarts": Param("integer", 1, minimum=1,
                      note="random starts; each point keeps the first that fools the model "
                           "(else the last); needs rand_init"),
    "loss": Param("string", "ce", enum=("ce", "dlr"),
                  note="'ce' cross-entropy or 'dlr' Croce & Hein's difference of logits ratio"),
    "batch_size": batch(256),
})
def pgd(model, x: np.ndarray, y: np.ndarray, *, eps: float, eps_iter: float, nb_iter: int,
        norm, rand_init: bool, restarts: int, loss: str, batch_size: int,
        y_target: np.ndarray | None = None) -> np.ndarray:
    """Projected Gradient Descent (Madry et al.), cleverhans' steps.

    cleverhans' ``projected_gradient_descent`` loop (its ``fast_gradient_method``
    step, ``clip_eta`` projection and clipping), started from a random point
    drawn by cleverhans' ``random_lp_vector`` outside the traced loop, from
    TensorFlow's global generator, seeded by the job: so a rerun with the same
    seed gives the same examples, and the loop is traced once per model and
    reused for every snapshot (a random op inside a reused trace would not
    follow the seed). Each restart after the first reruns the attack on the
    points not yet fooled (not yet at their target), with a fresh random
    start; without ``rand_init`` every run is the same, so there is one.
    ``loss: dlr`` maximises the DLR of the true class, or, targeted,
    minimises the DLR of the target (cleverhans negates the loss).
    """
    if loss == "dlr" and int(model.output_shape[-1]) < 3:
        raise ValueError("pgd: loss 'dlr' needs at least 3 classes")
    if eps_iter > eps:  # cleverhans' own assertion, kept
        raise ValueError(f"pgd: eps_iter {eps_iter} exceeds eps {eps}")
    targeted = y_target is not None
    loop = _pgd_loop(model, eps=float(eps), eps_iter=float(eps_iter), nb_iter=int(nb_iter),
                     norm=norm_value(norm), loss_fn=PGD_LOSSES[loss], targeted=targeted)
    labels = labels_of(y_target if targeted else y)

    def attack_from_random_starts(todo):
        starts = _starts(x[todo], float(eps), norm_value(norm), bool(rand_init))
        out = np.empty_like(x[todo])
        for i in range(0, len(todo), batch_size):
            part = todo[i:i + batch_size]
            out[i:i + batch_size] = loop(x[part], labels[part], starts[i:i + batch_size]).numpy()
        return out

    x_adv = attack_from_random_starts(np.arange(len(x)))
    for _ in range(int(restarts) - 1 if rand_init else 0):
        todo = np.flatnonzero(~_succeeded(model, x_adv, labels, targeted))
        if not len(todo):
            break
        x_adv[todo] = attack_from_random_starts(todo)
    return finish("pgd", model, x, x_adv, labels_of(y), None if not targeted else labels)


def _starts(x: np.ndarray, eps: float, norm: float, rand_init: bool) -> np.ndarray:
    """cleverhans' start: x plus a uniform draw from the eps-ball, clipped to [0, 1]."""
    if not rand_init or not len(x):
        return x
    from cleverhans.tf2.utils import clip_eta, random_lp_vector

    eta = clip_eta(random_lp_vector(x.shape, norm, np.float32(eps)), norm, eps)
    return np.clip(x + eta.numpy(), CLIP_MIN, CLIP_MAX).astype(np.float32)


def _pgd_loop(model, **params):
    """cleverhans' PGD iterations from a given start, traced once per model and settings."""
    key = tuple(sorted(params.items()))
    loops = _PGD_LOOPS.setdefault(model, {})
    if key not in loops:
        loops[key] = _trace_pgd_loop(weakref.ref(model), **params)
    return loops[key]


_PGD_LOOPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _trace_pgd_loop(own, *, eps: float, eps_iter: float, nb_iter: int, norm: float, loss_fn,
                    targeted: bool):
    import tensorflow as tf
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.utils import clip_eta

    images = tf.TensorSpec([None, *own().input_shape[1:]], tf.float32)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits if loss_fn is None else loss_fn

    @tf.function(input_signature=(images, tf.TensorSpec([None], tf.int64), images),
                 reduce_retracing=True)
    def loop(x, y, start):
        adv_x = start
        for _ in tf.range(nb_iter):
            adv_x = fast_gradient_method(own(), adv_x, eps_iter, norm, loss, clip_min=CLIP_MIN,
                                         clip_max=CLIP_MAX, y=y, targeted=targeted,
                                         sanity_checks=False)
            # projected back into the eps-ball around x, then into [0, 1], as cleverhans does
            adv_x = tf.clip_by_value(x + clip_eta(adv_x - x, norm, eps), CLIP_MIN, CLIP_MAX)
        return adv_x

    return loop


def _dlr_for_cleverhans(labels, logits):
    """DLR in cleverhans' ``loss_fn(labels=..., logits=...)`` form."""
    return dlr_loss(logits, labels)


PGD_LOSSES = {"ce": None, "dlr": _dlr_for_cleverhans}


def _succeeded(model, x_adv: np.ndarray, labels: np.ndarray, targeted: bool) -> np.ndarray:
    """Per image: fooled (untargeted) or classified as its target (targeted)."""
    predicted = predict_logits(traced_forward(model), x_adv).argmax(axis=1)
    return predicted == labels if targeted else predicted != labels


@attack("bim", targeted=True, params={
    "eps": positive(),
    "eps_iter": positive(note="step size; must not exceed eps"),
    "nb_iter": Param("integer", REQUIRED, minimum=1),
    "norm": NORM,
    "batch_size": batch(256),
})
def bim(model, x: np.ndarray, y: np.ndarray, *, eps: float, eps_iter: float, nb_iter: int,
        norm, batch_size: int, y_target: np.ndarray | None = None) -> np.ndarray:
    """Basic Iterative Method (Kurakin et al.): PGD from the image itself, no random start."""
    from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method

    targeted = y_target is not None
    step = traced(model, basic_iterative_method, eps=float(eps), eps_iter=float(eps_iter),
                  nb_iter=int(nb_iter), norm=norm_value(norm), clip_min=CLIP_MIN,
                  clip_max=CLIP_MAX, targeted=targeted, sanity_checks=False)
    labels = labels_of(y_target if targeted else y)
    x_adv = batched(step, x, labels, batch_size)
    return finish("bim", model, x, x_adv, labels_of(y), None if not targeted else labels)

