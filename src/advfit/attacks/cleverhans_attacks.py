"""cleverhans 4.0.0's gradient attacks: FGSM, PGD and BIM, traced per batch."""

from __future__ import annotations

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
    """Projected Gradient Descent (Madry et al.), cleverhans' implementation.

    The random start is drawn from TensorFlow's global generator, seeded by
    the job, so a rerun with the same seed gives the same examples. Each
    restart after the first reruns the attack on the points not yet fooled
    (not yet at their target), with a fresh random start; without
    ``rand_init`` every run is the same, so there is one. ``loss: dlr``
    maximises the DLR of the true class, or, targeted, minimises the DLR
    of the target (cleverhans negates the loss).
    """
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    if loss == "dlr" and int(model.output_shape[-1]) < 3:
        raise ValueError("pgd: loss 'dlr' needs at least 3 classes")
    targeted = y_target is not None
    # loss_fn=None is cleverhans' own default (cross-entropy): the same trace as before
    step = traced(model, projected_gradient_descent, eps=float(eps), eps_iter=float(eps_iter),
                  nb_iter=int(nb_iter), norm=norm_value(norm), loss_fn=PGD_LOSSES[loss],
                  clip_min=CLIP_MIN, clip_max=CLIP_MAX, targeted=targeted,
                  rand_init=bool(rand_init), sanity_checks=False)
    labels = labels_of(y_target if targeted else y)
    x_adv = batched(step, x, labels, batch_size)
    for _ in range(int(restarts) - 1 if rand_init else 0):
        todo = np.flatnonzero(~_succeeded(model, x_adv, labels, targeted))
        if not len(todo):
            break
        x_adv[todo] = batched(step, x[todo], labels[todo], batch_size)
    return finish("pgd", model, x, x_adv, labels_of(y), None if not targeted else labels)


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

