"""Square Attack (Andriushchenko et al. 2020), as AutoAttack runs it: score-based, L-inf and L2.

A port of ``autoattack/square.py`` (fra31/auto-attack, ``SquareAttack``) from
PyTorch NCHW to NumPy NHWC. The model is only queried for its logits (never its
gradients), in batches, through the traced forward pass; the bookkeeping is
NumPy. Randomness comes from NumPy's global generator, which the jobs seed.

Kept as in the reference, because they change which AEs are found:

- one square position (and, for L-inf, one sign per channel) is drawn per
  iteration and shared by every image still being attacked in the batch;
- only images not yet fooled (margin > 0) are queried; an image is fooled
  once its margin ``z_y - max_{j != y} z_j`` is <= 0;
- the size schedule ``p_selection`` is rescaled to the query budget
  (``resc_schedule=True``), so a small budget runs the whole schedule;
- restarts attack only the images the previous runs left correctly classified.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from advfit.attacks.batching import in_chunks, predict_logits, traced_forward
from advfit.attacks.guards import finish, labels_of
from advfit.attacks.params import NORM, Param, batch, positive
from advfit.attacks.registry import attack

log = logging.getLogger("advfit")

# (upper end of the rescaled iteration, divisor of p_init): the reference's if-chain
P_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
              (6000, 128), (8000, 256))
P_LAST_DIVISOR = 512


def p_selection(i_iter: int, n_queries: int, p_init: float) -> float:
    """Fraction of the image a square covers at iteration ``i_iter`` (reference schedule).

    The iteration is first mapped onto a 10000-query budget, as the reference
    does by default, so the halvings happen at the same share of any budget.
    """
    it = int(i_iter / n_queries * 10000)
    for upper, divisor in P_SCHEDULE:
        if it <= upper:
            return p_init / divisor
    return p_init / P_LAST_DIVISOR


def is_linf(norm) -> bool:
    """True for L-inf, False for L2; any other norm is refused (AutoAttack's L1 is not ported)."""
    if norm in ("inf", np.inf):
        return True
    if norm in (2, "2"):
        return False
    raise ValueError(f"norm must be 'inf' or 2, got {norm!r}")


def _random_sign(shape) -> np.ndarray:
    """The reference's ``random_choice``: sign(2u - 1), u uniform in [0, 1)."""
    return np.sign(2.0 * np.random.random_sample(shape) - 1.0).astype(np.float32)


def _random_int(low: int, high: int) -> int:
    """The reference's ``random_int``: floor(low + (high - low) u), so ``high`` is excluded."""
    return int(low + (high - low) * np.random.random_sample())


def _margin(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z_y - max_{j != y} z_j: the reference's margin loss (untargeted), <= 0 when fooled."""
    rows = np.arange(len(y))
    correct = logits[rows, y].copy()
    others = logits.copy()
    others[rows, y] = -np.inf
    return correct - others.max(axis=1)


def _normalize(delta: np.ndarray, linf: bool) -> np.ndarray:
    """Each perturbation scaled to norm 1 (the reference's ``normalize``)."""
    flat = delta.reshape(len(delta), -1)
    size = np.abs(flat).max(axis=1) if linf else np.sqrt((flat ** 2).sum(axis=1))
    return delta / (size.reshape(-1, 1, 1, 1) + 1e-12)


def _l2_norm(delta: np.ndarray) -> np.ndarray:
    return np.sqrt((delta.reshape(len(delta), -1) ** 2).sum(axis=1)).reshape(-1, 1, 1, 1)


def _eta_rectangle(rows: int, cols: int) -> np.ndarray:
    """Concentric rectangles weighted 1/(k+1)^2, unit L2 norm (reference: ``eta_rectangles``)."""
    delta = np.zeros((rows, cols), np.float32)
    top, left = rows // 2, cols // 2
    for k in range(max(rows // 2 + 1, cols // 2 + 1)):
        delta[max(top, 0):min(top + 2 * k + 1, rows),
              max(left, 0):min(left + 2 * k + 1, cols)] += 1.0 / (k + 1) ** 2
        top, left = top - 1, left - 1
    return delta / np.sqrt((delta ** 2).sum())


def _eta(s: int) -> np.ndarray:
    """The L2 square's pattern: two opposite-signed rectangle stacks, transposed half the time."""
    delta = np.zeros((s, s), np.float32)
    delta[:s // 2] = _eta_rectangle(s // 2, s) if s // 2 else 0.0
    delta[s // 2:] = -_eta_rectangle(s - s // 2, s)
    delta /= np.sqrt((delta ** 2).sum())
    if np.random.random_sample() > 0.5:
        delta = delta.T
    return delta


def _init_linf(x: np.ndarray, eps: float) -> np.ndarray:
    """Vertical stripes: one random sign per image, column and channel (constant down a column)."""
    n, _, w, c = x.shape
    return np.clip(x + eps * _random_sign((n, 1, w, c)), 0.0, 1.0)


def _init_l2(x: np.ndarray, eps: float) -> np.ndarray:
    """A grid of ``eta`` squares with random signs, scaled to L2 norm eps."""
    n, h, w, c = x.shape
    # The reference divides by h // 5: images under 5 pixels high would crash it.
    s = max(h // 5, 1)
    start = (h - s * 5) // 2
    delta = np.zeros_like(x)
    vh = start
    for _ in range(h // s):
        vw = start
        for _ in range(w // s):
            # eta draws its transpose first, then the signs, as in the reference
            pattern = _eta(s)[None, :, :, None]
            delta[:, vh:vh + s, vw:vw + s, :] += pattern * _random_sign((n, 1, 1, c))
            vw += s
        vh += s
    return np.clip(x + _normalize(delta, linf=False) * eps, 0.0, 1.0)


def _step_linf(x: np.ndarray, x_best: np.ndarray, eps: float, p: float) -> np.ndarray:
    """One candidate per image: a square of +-2 eps (one sign per channel) added, then projected."""
    _, h, w, c = x.shape
    s = min(max(int(round(math.sqrt(p * h * w))), 1), h, w)
    vh, vw = _random_int(0, h - s), _random_int(0, w - s)
    change = np.zeros((1, h, w, c), np.float32)
    change[:, vh:vh + s, vw:vw + s, :] = 2.0 * eps * _random_sign((1, 1, c))
    x_new = np.clip(x_best + change, x - eps, x + eps)
    return np.clip(x_new, 0.0, 1.0)


def _step_l2(x: np.ndarray, x_best: np.ndarray, eps: float, p: float) -> np.ndarray:
    """One candidate per image: the mass of two windows moved into one, refreshed with ``eta``.

    Keeps the perturbation's L2 norm at eps (before clipping to [0, 1]).
    """
    n, h, w, c = x.shape
    delta = x_best - x
    s = max(int(round(math.sqrt(p * h * w))), 3)
    s = min(s + 1 if s % 2 == 0 else s, h, w)
    vh, vw = _random_int(0, h - s), _random_int(0, w - s)
    window = (slice(None), slice(vh, vh + s), slice(vw, vw + s), slice(None))
    norms_window_1 = np.sqrt((delta[window] ** 2).sum(axis=(1, 2), keepdims=True))
    vh2, vw2 = _random_int(0, h - s), _random_int(0, w - s)
    window_2 = (slice(None), slice(vh2, vh2 + s), slice(vw2, vw2 + s), slice(None))
    mask = np.zeros((1, h, w, 1), np.float32)
    mask[window] = 1.0
    mask[window_2] = 1.0
    norms_image = _l2_norm(delta)
    norms_windows = np.sqrt(((delta * mask) ** 2).sum(axis=(1, 2), keepdims=True))

    new = _eta(s)[None, :, :, None] * _random_sign((n, 1, 1, c))
    new = new + delta[window] / (1e-12 + norms_window_1)
    # the budget left over by the rest of the image, shared between the channels
    budget = np.sqrt(np.maximum(eps ** 2 - norms_image ** 2, 0.0) / c + norms_windows ** 2)
    new = new / (1e-12 + np.sqrt((new ** 2).sum(axis=(1, 2), keepdims=True))) * budget
    delta[window_2] = 0.0
    delta[window] = new
    return np.clip(x + _normalize(delta, linf=False) * eps, 0.0, 1.0)


def _single_run(margin_of, x: np.ndarray, y: np.ndarray, *, eps: float, linf: bool,
                n_queries: int, p_init: float) -> tuple[np.ndarray, np.ndarray]:
    """One run on images the model classifies correctly: (best images, queries used per image)."""
    x_best = (_init_linf if linf else _init_l2)(x, eps).astype(np.float32)
    margin_min = margin_of(x_best, y)
    queries = np.ones(len(x))
    if (margin_min < 0.0).all():
        return x_best, queries
    step = _step_linf if linf else _step_l2
    for i_iter in range(n_queries):
        active = np.flatnonzero(margin_min > 0.0)
        if len(active) == 0:  # every margin is <= 0 (the reference's break) or exactly 0
            break
        x_curr, best_curr = x[active], x_best[active]
        x_new = step(x_curr, best_curr, eps, p_selection(i_iter, n_queries, p_init))
        margin = margin_of(x_new.astype(np.float32), y[active])
        # The margin is the loss: keep the candidate when it lowers it (or fools).
        improved = (margin < margin_min[active]) | (margin <= 0.0)
        margin_min[active] = np.where(improved, margin, margin_min[active])
        x_best[active] = np.where(improved[:, None, None, None], x_new, best_curr)
        queries[active] += 1
    return x_best, queries


def square_perturb(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm, n_queries: int,
                   p_init: float, restarts: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference's ``perturb`` on one batch: (AEs, queries per image; 0 if not attacked).

    Images the model already misclassifies come back unchanged; so do images
    that no restart fools.
    """
    forward = traced_forward(model)
    y = labels_of(y)

    def margin_of(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return _margin(predict_logits(forward, images), labels)

    linf = is_linf(norm)
    adv = x.copy()
    queries = np.zeros(len(x))
    robust = np.argmax(predict_logits(forward, x), axis=1) == y
    for _ in range(int(restarts)):
        todo = np.flatnonzero(robust)
        if len(todo) == 0:
            break
        adv_curr, used = _single_run(margin_of, x[todo], y[todo], eps=float(eps), linf=linf,
                                     n_queries=int(n_queries), p_init=float(p_init))
        queries[todo] += used
        fooled = np.argmax(predict_logits(forward, adv_curr), axis=1) != y[todo]
        robust[todo[fooled]] = False
        adv[todo[fooled]] = adv_curr[fooled]
    return adv, queries


@attack("square", targeted=False, params={
    "eps": positive(note="L-inf or L2 budget; AutoAttack: 0.3 (MNIST L-inf), 8/255 (CIFAR)"),
    "norm": NORM,
    "n_queries": Param("integer", 5000, minimum=1, paper=5000,
                       note="queries per image and restart; AutoAttack standard: 5000"),
    "p_init": Param("number", 0.8, minimum=0.0, maximum=1.0, exclusive_minimum=True, paper=0.8,
                    note="initial share of the image a square covers; AutoAttack: 0.8"),
    "restarts": Param("integer", 1, minimum=1, paper=1, note="AutoAttack standard: 1"),
    "batch_size": batch(256),
})
def square(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm, n_queries: int,
           p_init: float, restarts: int, batch_size: int) -> np.ndarray:
    """Square Attack (Andriushchenko et al. 2020), AutoAttack's implementation ported.

    Random search over square-shaped updates at the vertices of the eps-ball
    (L-inf) or on its sphere (L2), accepting a candidate when it lowers the
    margin z_y - max_{j != y} z_j; an image stops being queried once fooled.
    Untargeted. Draws from NumPy's global generator (seeded by the job).
    """
    queries: list[np.ndarray] = []  # per chunk, in order: in_chunks runs them one by one

    def attack_batch(xb: np.ndarray, yb: np.ndarray) -> np.ndarray:
        adv, used = square_perturb(model, xb, yb, eps=eps, norm=norm, n_queries=n_queries,
                                   p_init=p_init, restarts=restarts)
        queries.append(used)
        return adv

    x_adv = in_chunks("square", attack_batch, x, labels_of(y), batch_size)
    used = np.concatenate(queries) if queries else np.zeros(0)
    if (used > 0).any():
        log.info("square: %.1f queries per attacked image on average (budget %d x %d restarts)",
                 used[used > 0].mean(), n_queries, restarts)
    return finish("square", model, x, x_adv, labels_of(y), None)
