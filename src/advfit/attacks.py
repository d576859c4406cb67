"""Attacks: one pure function per attack, arrays in, arrays out.

Each takes a Keras model returning logits, images ``x`` in [0, 1] and their
true labels ``y``, plus the attack's parameters, and returns the adversarial
images (same shape and dtype). Untargeted: the attack pushes away from ``y``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

CLIP_MIN, CLIP_MAX = 0.0, 1.0


def _norm(value) -> float:
    return np.inf if value in ("inf", np.inf) else float(value)


def _batched(fn: Callable, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
    """Run a traced attack step over fixed-size batches (bounded memory, one trace)."""
    out = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        out[start:stop] = fn(x[start:stop], y[start:stop]).numpy()
    return out


def _traced(model, attack: Callable, **params):
    import tensorflow as tf

    spec = (tf.TensorSpec([None, *model.input_shape[1:]], tf.float32),
            tf.TensorSpec([None], tf.int64))

    @tf.function(input_signature=spec, reduce_retracing=True)
    def step(x, y):
        return attack(model, x, y=y, **params)

    return step


def fgsm(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm="inf",
         batch_size: int = 256) -> np.ndarray:
    """Fast Gradient (Sign) Method, cleverhans' implementation."""
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

    step = _traced(model, fast_gradient_method, eps=float(eps), norm=_norm(norm),
                   clip_min=CLIP_MIN, clip_max=CLIP_MAX, targeted=False, sanity_checks=False)
    return _batched(step, x, y, batch_size)


def pgd(model, x: np.ndarray, y: np.ndarray, *, eps: float, eps_iter: float, nb_iter: int,
        norm="inf", rand_init: bool = True, batch_size: int = 256) -> np.ndarray:
    """Projected Gradient Descent (Madry et al.), cleverhans' implementation.

    The random start is drawn from TensorFlow's global generator, seeded by
    the job, so a rerun with the same seed gives the same examples.
    """
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    step = _traced(model, projected_gradient_descent, eps=float(eps), eps_iter=float(eps_iter),
                   nb_iter=int(nb_iter), norm=_norm(norm), clip_min=CLIP_MIN,
                   clip_max=CLIP_MAX, targeted=False, rand_init=bool(rand_init),
                   sanity_checks=False)
    return _batched(step, x, y, batch_size)


ATTACKS: dict[str, Callable] = {"fgsm": fgsm, "pgd": pgd}


def run_attack(method: str, model, x: np.ndarray, y: np.ndarray, params: dict) -> np.ndarray:
    try:
        attack = ATTACKS[method]
    except KeyError:
        raise ValueError(f"unknown attack method {method!r}; known: {sorted(ATTACKS)}") from None
    return attack(model, x, y, **params)
