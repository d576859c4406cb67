"""ART 1.20.1's attacks: FGSM, PGD, Carlini-Wagner L2, DeepFool, HopSkipJump."""

from __future__ import annotations

import logging

import numpy as np

from advfit.attacks.art_adapter import art_classifier, art_generate, art_norm
from advfit.attacks.batching import in_chunks
from advfit.attacks.guards import finish, labels_of, predict
from advfit.attacks.params import NORM, REQUIRED, Param, batch, positive
from advfit.attacks.registry import attack

log = logging.getLogger("advfit")


@attack("fgsm_art", targeted=True, params={
    "eps": positive(paper=0.1, note="as fgsm"),
    "norm": NORM,
    "batch_size": batch(256),
})
def fgsm_art(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm, batch_size: int,
             y_target: np.ndarray | None = None) -> np.ndarray:
    """Fast Gradient (Sign) Method, ART's implementation (same AEs as ``fgsm``)."""
    from art.attacks.evasion import FastGradientMethod

    targeted = y_target is not None
    attack = FastGradientMethod(art_classifier(model), norm=art_norm(norm), eps=float(eps),
                                eps_step=float(eps), targeted=targeted, batch_size=int(batch_size))
    labels = labels_of(y_target if targeted else y)
    x_adv = art_generate(attack)(x, labels)
    return finish("fgsm_art", model, x, x_adv, labels_of(y), labels if targeted else None)


@attack("pgd_art", targeted=True, params={
    "eps": positive(paper=0.3, note="as pgd"),
    "eps_iter": positive(note="ART's eps_step; must not exceed eps"),
    "nb_iter": Param("integer", REQUIRED, minimum=1, note="ART's max_iter"),
    "norm": NORM,
    "rand_init": Param("boolean", True, note="one random start (ART num_random_init=1)"),
    "batch_size": batch(256),
})
def pgd_art(model, x: np.ndarray, y: np.ndarray, *, eps: float, eps_iter: float, nb_iter: int,
            norm, rand_init: bool, batch_size: int,
            y_target: np.ndarray | None = None) -> np.ndarray:
    """Projected Gradient Descent, ART's implementation (random start from NumPy's generator)."""
    from art.attacks.evasion import ProjectedGradientDescent

    targeted = y_target is not None
    attack = ProjectedGradientDescent(
        art_classifier(model), norm=art_norm(norm), eps=float(eps), eps_step=float(eps_iter),
        max_iter=int(nb_iter), targeted=targeted, num_random_init=int(bool(rand_init)),
        batch_size=int(batch_size), verbose=False)
    labels = labels_of(y_target if targeted else y)
    x_adv = art_generate(attack)(x, labels)
    return finish("pgd_art", model, x, x_adv, labels_of(y), labels if targeted else None)


@attack("cw_l2_art", targeted=True, params={
    "confidence": Param("number", 0.0, minimum=0.0, paper=0.0),
    "learning_rate": Param("number", 0.01, minimum=0.0, exclusive_minimum=True, paper=0.01,
                           note="ART default"),
    "binary_search_steps": Param("integer", 10, minimum=1, paper=10, note="ART default"),
    "max_iter": Param("integer", 10, minimum=1, paper=10, note="ART default"),
    "initial_const": Param("number", 0.01, minimum=0.0, exclusive_minimum=True, paper=0.01,
                           note="ART default"),
    "max_halving": Param("integer", 5, minimum=1, paper=5, note="ART default"),
    "max_doubling": Param("integer", 5, minimum=1, paper=5, note="ART default"),
    "batch_size": batch(128),
})
def cw_l2_art(model, x: np.ndarray, y: np.ndarray, *, confidence: float, learning_rate: float,
              binary_search_steps: int, max_iter: int, initial_const: float, max_halving: int,
              max_doubling: int, batch_size: int,
              y_target: np.ndarray | None = None) -> np.ndarray:
    """Carlini-Wagner L2, ART's implementation, with ART's defaults.

    Works with Keras 3 (tested), but its gradient steps with line search
    converge slowly: more ``max_iter`` barely shrinks its perturbations, which
    stay larger than DeepFool's. Prefer ``cw_l2``; this one is kept to compare
    with what the papers' toolkit gives.
    """
    from art.attacks.evasion import CarliniL2Method

    targeted = y_target is not None
    attack = CarliniL2Method(
        art_classifier(model), confidence=float(confidence), targeted=targeted,
        learning_rate=float(learning_rate), binary_search_steps=int(binary_search_steps),
        max_iter=int(max_iter), initial_const=float(initial_const),
        max_halving=int(max_halving), max_doubling=int(max_doubling),
        batch_size=int(batch_size), verbose=False)
    labels = labels_of(y_target if targeted else y)
    x_adv = in_chunks("cw_l2_art", art_generate(attack), x, labels, batch_size)
    return finish("cw_l2_art", model, x, x_adv, labels_of(y), labels if targeted else None)


@attack("deepfool", targeted=False, params={
    "max_iter": Param("integer", 100, minimum=1, paper=100, note="paper 000: 100"),
    "nb_grads": Param(("integer", "null"), None, minimum=2, paper=None,
                      note="candidate classes; null = all classes (paper 000)"),
    "overshoot": Param("number", 0.02, minimum=0.0, paper=None,
                       note="DeepFool paper 0.02; ART's epsilon default 1e-6"),
    "batch_size": batch(128),
})
def deepfool(model, x: np.ndarray, y: np.ndarray, *, max_iter: int, nb_grads: int | None,
             overshoot: float, batch_size: int) -> np.ndarray:
    """DeepFool (Moosavi-Dezfooli et al.), ART's implementation; untargeted only.

    DeepFool pushes each image away from the model's *predicted* class (ART
    ignores labels); for correctly classified images that is ``y``, and a
    warning says how many are not. ``nb_grads=None`` uses every class as a
    candidate. ``overshoot`` is ART's ``epsilon``: with ART's 1e-6 about 2 %
    of the images end exactly on the decision boundary, where the label
    depends on float rounding; 0.02 (the DeepFool paper) moves them across.
    """
    from art.attacks.evasion import DeepFool

    y = labels_of(y)
    n_classes = int(model.output_shape[-1])
    misclassified = int(np.sum(predict(model, x) != y)) if len(x) else 0
    if misclassified:
        log.warning("deepfool: %d of %d images are misclassified already; DeepFool moves them "
                    "away from their predicted class, not from y", misclassified, len(x))
    attack = DeepFool(art_classifier(model), max_iter=int(max_iter), epsilon=float(overshoot),
                      nb_grads=n_classes if nb_grads is None else int(nb_grads),
                      batch_size=int(batch_size), verbose=False)
    x_adv = in_chunks("deepfool", lambda xb, _: art_generate(attack)(xb, None), x, None,
                       batch_size)
    return finish("deepfool", model, x, x_adv, y, None)


@attack("hopskipjump", targeted=True, params={
    "norm": Param(("string", "integer"), 2, enum=("inf", 2), paper=2,
                  note="2 or 'inf'; ART default 2"),
    "max_iter": Param("integer", 10, minimum=0, paper=50, note="ART default 50"),
    "max_eval": Param("integer", 1000, minimum=1, paper=10000, note="ART default 10000"),
    "init_eval": Param("integer", 100, minimum=1, paper=100, note="ART default 100"),
    "init_size": Param("integer", 100, minimum=1, paper=100, note="ART default 100"),
    "batch_size": batch(16),
})
def hopskipjump(model, x: np.ndarray, y: np.ndarray, *, norm, max_iter: int, max_eval: int,
                init_eval: int, init_size: int, batch_size: int,
                y_target: np.ndarray | None = None) -> np.ndarray:
    """HopSkipJump (Chen et al.), ART's decision-based implementation.

    Uses only the model's labels, never its gradients. Random draws come from
    NumPy's global generator. The defaults are cheap; ART's (and so probably
    the papers') are max_iter=50, max_eval=10000, init_eval=100, init_size=100.
    An image for which no adversarial starting point is found comes back
    unchanged (counted in the log line).
    """
    from art.attacks.evasion import HopSkipJump

    targeted = y_target is not None
    attack = HopSkipJump(art_classifier(model), targeted=targeted, norm=art_norm(norm),
                         max_iter=int(max_iter), max_eval=int(max_eval),
                         init_eval=int(init_eval), init_size=int(init_size), verbose=False)
    labels = labels_of(y_target if targeted else y)
    x_adv = in_chunks("hopskipjump", art_generate(attack), x, labels, batch_size)
    return finish("hopskipjump", model, x, x_adv, labels_of(y), labels if targeted else None)

