"""Gradient-masking sanity flags (issue 23), after AutoAttack's checks.

A robustness number from a gradient attack means little when the gradients
are useless: a model that outputs probabilities (the cross-entropy saturates),
one whose input gradient is zero or non-finite (a quantising or otherwise
non-differentiable layer), one whose outputs are random (the attack chases
noise). AutoAttack (Croce & Hein 2020, ``autoattack/checks.py``) warns about
these; Carlini et al. (2019, "On evaluating adversarial robustness") add that
robust accuracy must not rise with the budget. Each check here is one pure
function (model and arrays in, numbers out); :func:`measure_snapshot` runs them
all on one loaded snapshot and :func:`sanity_row` turns its arrays into one
table row with the raised flags.

Thresholds (why not all "> 0"):

- ``zero_gradient_share > 0.1``: a confident ReLU network can have an exactly
  zero cross-entropy gradient on a few points legitimately (the softmax
  underflows in float32); masking makes it the rule, not the exception.
- ``nonfinite_gradient_share > 0``: never legitimate.
- ``blackbox_only_share > 0``: as AutoAttack, which warns whenever the
  black-box attack breaks a point the white-box ones left robust.
- ``max_logit_change > 1e-4`` (absolute, on logits): GPU kernels may round two
  identical passes differently by far less; a noise layer changes them by far more.
- ``accuracy_rises_with_eps``: any strict rise from eps/2 to eps to 2 eps.
"""

from __future__ import annotations

import time
import weakref

import numpy as np

SOFTMAX_ATOL = 1e-3  # rows summing to 1 within this count as probabilities
ZERO_GRADIENT_MAX = 0.1
NONFINITE_GRADIENT_MAX = 0.0
BLACKBOX_ONLY_MAX = 0.0
LOGIT_CHANGE_MAX = 1e-4
# the monotonicity check's budgets, in units of eps, and their array names
EPS_FACTORS = {"half": 0.5, "eps": 1.0, "double": 2.0}

FLAGS = ("softmax_output", "zero_gradient", "nonfinite_gradient", "blackbox_beats_whitebox",
         "randomised_output", "accuracy_rises_with_eps")


# --- the model as the checks see it ------------------------------------------------------------

def attackable(model):
    """``model`` with every input wired to the output by a zero-weight path.

    A non-differentiable op (``tf.round``) makes TensorFlow return *no*
    gradient, not a zero one, and APGD cannot step on ``None``. Adding
    ``0 * sum(x)`` leaves the logits bit for bit (inputs are finite) and turns a
    missing gradient into an exactly zero one, which the checks then report.
    The wrapper shares the model's variables: loading weights into ``model``
    updates it, so one wrapper (and one trace) serves every snapshot.
    """
    import keras

    inputs = keras.Input(model.input_shape[1:])
    logits = model(inputs)
    axes = tuple(range(1, len(model.input_shape)))
    zero = keras.ops.expand_dims(keras.ops.sum(inputs, axis=axes) * 0.0, -1)
    return keras.Model(inputs, logits + zero, name=f"{model.name}_attackable")


# --- one function per check -------------------------------------------------------------------

def outputs_are_probabilities(logits: np.ndarray, atol: float = SOFTMAX_ATOL) -> bool:
    """Whether every row is non-negative and sums to 1: a softmax output, not logits."""
    logits = np.asarray(logits, np.float64)
    return bool(len(logits)) and bool((logits >= 0).all()
                                      and np.allclose(logits.sum(axis=1), 1.0, atol=atol))


def gradient_status(model, x: np.ndarray, y: np.ndarray,
                    batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per point: is the input gradient of the cross-entropy all zero / not all finite?

    The outputs are read as logits (as APGD-CE reads them), in inference mode.
    """
    import tensorflow as tf

    grad = _input_gradient(model)
    zero, nonfinite = [], []
    for start in range(0, len(x), batch_size):
        g = grad(tf.constant(x[start:start + batch_size], tf.float32),
                 tf.constant(y[start:start + batch_size], tf.int64)).numpy()
        g = g.reshape(len(g), -1)
        finite = np.isfinite(g).all(axis=1)
        nonfinite.append(~finite)
        zero.append(finite & (g == 0).all(axis=1))
    return np.concatenate(zero), np.concatenate(nonfinite)


def _input_gradient(model):
    """The traced input gradient of the summed cross-entropy, one trace per model object
    (it reads the model's variables, so it stays valid when a snapshot is loaded)."""
    import tensorflow as tf

    if model not in _GRADIENT:
        own = weakref.ref(model)  # the cache must not keep the model alive

        @tf.function(reduce_retracing=True)
        def grad(xb, yb):
            with tf.GradientTape() as tape:
                tape.watch(xb)
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=yb, logits=own()(xb, training=False))
                total = tf.reduce_sum(loss)  # points are independent: each its own gradient
            return tape.gradient(total, xb, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        _GRADIENT[model] = grad
    return _GRADIENT[model]


_GRADIENT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def logit_change(model, x: np.ndarray, batch_size: int) -> float:
    """Largest absolute difference between two inference-mode passes over ``x``."""
    from advfit.attacks.batching import predict_logits, traced_forward

    forward = traced_forward(model)
    first = predict_logits(forward, x, batch_size)
    second = predict_logits(forward, x, batch_size)
    with np.errstate(invalid="ignore"):
        diff = np.abs(first.astype(np.float64) - second)
    # NaN in one pass and not the other counts as a change; NaN in both does not.
    return float(np.where(np.isnan(first) != np.isnan(second), np.inf, np.nan_to_num(diff)).max(
        initial=0.0))


def robust_after(model, attack, x: np.ndarray, y: np.ndarray, clean: np.ndarray,
                 batch_size: int) -> np.ndarray:
    """Per point: correct on the clean image and still correct on ``attack(x, y)``.

    Only the clean-correct points are attacked (the others are not robust
    already), as in the white-box view.
    """
    from advfit.attacks.batching import predict_logits, traced_forward

    attacked = np.flatnonzero(clean)
    robust = np.zeros(len(x), bool)
    if len(attacked):
        x_adv = np.asarray(attack(model, x[attacked], y[attacked]), np.float32)
        predicted = np.argmax(predict_logits(traced_forward(model), x_adv, batch_size), axis=1)
        robust[attacked] = predicted == y[attacked]
    return robust


def blackbox_only_share(robust_whitebox: np.ndarray, robust_blackbox: np.ndarray) -> float:
    """Share of all points the white-box attack left robust and the black-box one broke."""
    n = len(robust_whitebox)
    return float((robust_whitebox & ~robust_blackbox).sum() / n) if n else float("nan")


def rises_with_eps(accuracies) -> bool:
    """Whether robust accuracy ever rises strictly along increasing budgets."""
    return bool((np.diff(np.asarray(accuracies, np.float64)) > 0).any())


# --- one snapshot, one row --------------------------------------------------------------------

def measure_snapshot(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm, n_queries: int,
                     batch_size: int) -> dict[str, np.ndarray]:
    """Every check on the loaded snapshot: per-point arrays and scalars (a chunk).

    ``model`` should come from :func:`attackable`. The caller seeds the run:
    APGD's random starts and Square's search draw from NumPy's global generator.
    """
    from advfit.attacks.apgd import apgd_ce
    from advfit.attacks.batching import predict_logits, traced_forward
    from advfit.attacks.square import square

    y = np.asarray(y, np.int64)
    seconds = {}
    start = time.perf_counter()
    logits = predict_logits(traced_forward(model), x, batch_size)
    clean = np.argmax(logits, axis=1) == y
    zero, nonfinite = gradient_status(model, x, y, batch_size)
    change = logit_change(model, x, batch_size)
    seconds["checks"] = time.perf_counter() - start

    out = {"clean": clean, "zero_gradient": zero, "nonfinite_gradient": nonfinite,
           "softmax_output": np.array(outputs_are_probabilities(logits)),
           "max_logit_change": np.array(change)}
    start = time.perf_counter()
    for name, factor in EPS_FACTORS.items():
        def white(m, xa, ya, e=eps * factor):
            return apgd_ce(m, xa, ya, eps=e, norm=norm)

        out[f"robust_apgd_{name}"] = robust_after(model, white, x, y, clean, batch_size)
    seconds["apgd"] = time.perf_counter() - start

    start = time.perf_counter()

    def black(m, xa, ya):
        return square(m, xa, ya, eps=eps, norm=norm, n_queries=n_queries)

    out["robust_square"] = robust_after(model, black, x, y, clean, batch_size)
    seconds["square"] = time.perf_counter() - start
    out.update({f"seconds_{k}": np.array(v) for k, v in seconds.items()})
    return out


def raised_flags(row: dict) -> list[str]:
    """The names of the flags a row's measurements raise, in :data:`FLAGS` order."""
    raised = {
        "softmax_output": bool(row["softmax_output"]),
        "zero_gradient": row["zero_gradient_share"] > ZERO_GRADIENT_MAX,
        "nonfinite_gradient": row["nonfinite_gradient_share"] > NONFINITE_GRADIENT_MAX,
        "blackbox_beats_whitebox": row["blackbox_only_share"] > BLACKBOX_ONLY_MAX,
        "randomised_output": row["max_logit_change"] > LOGIT_CHANGE_MAX,
        "accuracy_rises_with_eps": bool(row["accuracy_rises_with_eps"]),
    }
    return [name for name in FLAGS if raised[name]]


def sanity_row(epoch: int, arrays: dict[str, np.ndarray]) -> dict:
    """One snapshot's measurements, its flags (``;``-joined) and ``any_flag``."""
    n = len(arrays["clean"])

    def share(key):
        return float(np.asarray(arrays[key]).sum() / n) if n else float("nan")

    by_eps = [share(f"robust_apgd_{name}") for name in EPS_FACTORS]
    row = {
        "epoch": int(epoch), "n_points": n, "clean_accuracy": share("clean"),
        "softmax_output": bool(arrays["softmax_output"]),
        "zero_gradient_share": share("zero_gradient"),
        "nonfinite_gradient_share": share("nonfinite_gradient"),
        "max_logit_change": float(arrays["max_logit_change"]),
        "robust_accuracy_apgd_ce": share("robust_apgd_eps"),
        "robust_accuracy_square": share("robust_square"),
        "blackbox_only_share": blackbox_only_share(np.asarray(arrays["robust_apgd_eps"], bool),
                                                   np.asarray(arrays["robust_square"], bool)),
        "robust_accuracy_apgd_ce_half_eps": by_eps[0],
        "robust_accuracy_apgd_ce_double_eps": by_eps[2],
        "accuracy_rises_with_eps": rises_with_eps(by_eps),
    }
    raised = raised_flags(row)
    row["flags"] = ";".join(raised)
    row["any_flag"] = bool(raised)
    # Wall times stay out of the table (same config and seed, same table): the job logs them.
    return row
