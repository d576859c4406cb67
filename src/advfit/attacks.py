"""Attacks: one pure function per attack, arrays in, arrays out.

Each takes a Keras model returning logits, images ``x`` (float32 NHWC) in
[0, 1] and their true labels ``y``, plus the attack's parameters as keywords,
and returns the adversarial images (same shape, float32, in [0, 1]).
Untargeted by default: the attack pushes away from ``y``. Attacks whose
algorithm has a targeted form take ``y_target`` (one target class per image)
and then push towards it instead.

Backends: cleverhans 4.0.0 (``fgsm``, ``pgd``, ``bim``), ART 1.20.1
(``fgsm_art``, ``pgd_art``, ``deepfool``, ``hopskipjump``, ``cw_l2_art``) and
our own TensorFlow code for Carlini-Wagner L2 (``cw_l2``; see its docstring for
why). ``ATTACK_PARAMS`` describes every parameter (type, range, default, the
papers' value); ``ATTACK_DEFAULTS`` holds the defaults; ``run_attack``
dispatches by name.

Random attacks (``pgd``'s start, ``pgd_art``'s start, ``hopskipjump``) draw
from TensorFlow's and NumPy's global generators, which the jobs seed
(``runtime.configure``), so a rerun with the same seed gives the same examples.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

log = logging.getLogger("advfit")

CLIP_MIN, CLIP_MAX = 0.0, 1.0
REQUIRED = object()  # marks a parameter without a default


# ---------------------------------------------------------------------------
# Parameter descriptions: the config schema and the docs are written from them.

@dataclass(frozen=True)
class Param:
    """One attack or metric parameter, in JSON-schema terms.

    ``type`` is a JSON-schema type name or a tuple of them; ``minimum`` and
    ``maximum`` are inclusive unless ``exclusive_minimum``; ``paper`` is the
    paper-faithful value: what the papers state or, where they are silent,
    the default of the implementation they most likely used (ART, whose
    metrics paper 002 reports; C&W's reference code for ``cw_l2``); ``None``
    where neither says. ``note`` tells which.
    """

    type: str | tuple[str, ...]
    default: Any = REQUIRED
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    enum: tuple | None = None
    paper: Any = None
    note: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


NORM = Param(("string", "integer"), "inf", enum=("inf", 2),
             note="'inf' (L-infinity) or 2 (L2)")


def _batch(default: int) -> Param:
    return Param("integer", default, minimum=1, note="images per call: memory and log granularity")


ATTACK_PARAMS: dict[str, dict[str, Param]] = {
    "fgsm": {
        "eps": Param("number", REQUIRED, minimum=0.0, exclusive_minimum=True, paper=0.1,
                     note="paper 000: 0.1 (L-inf); paper 002: 0.3"),
        "norm": NORM,
        "batch_size": _batch(256),
    },
    "fgsm_art": {
        "eps": Param("number", REQUIRED, minimum=0.0, exclusive_minimum=True, paper=0.1,
                     note="as fgsm"),
        "norm": NORM,
        "batch_size": _batch(256),
    },
    "pgd": {
        "eps": Param("number", REQUIRED, minimum=0.0, exclusive_minimum=True, paper=0.3,
                     note="paper 002: 0.3"),
        "eps_iter": Param("number", REQUIRED, minimum=0.0, exclusive_minimum=True,
                          note="step size; must not exceed eps"),
        "nb_iter": Param("integer", REQUIRED, minimum=1),
        "norm": NORM,
        "rand_init": Param("boolean", True, note="uniform random start in the eps-ball (Madry)"),
        "batch_size": _batch(256),
    },
    "pgd_art": {
        "eps": Param("number", REQUIRED, minimum=0.0, exclusive_minimum=True, paper=0.3,
                     note="as pgd"),
        "eps_iter": Param("number", REQUIRED, minimum=0.0, exclusive_minimum=True,
                          note="ART's eps_step; must not exceed eps"),
        "nb_iter": Param("integer", REQUIRED, minimum=1, note="ART's max_iter"),
        "norm": NORM,
        "rand_init": Param("boolean", True, note="one random start (ART num_random_init=1)"),
        "batch_size": _batch(256),
    },
    "bim": {
        "eps": Param("number", REQUIRED, minimum=0.0, exclusive_minimum=True),
        "eps_iter": Param("number", REQUIRED, minimum=0.0, exclusive_minimum=True,
                          note="step size; must not exceed eps"),
        "nb_iter": Param("integer", REQUIRED, minimum=1),
        "norm": NORM,
        "batch_size": _batch(256),
    },
    "cw_l2": {
        "confidence": Param("number", 0.0, minimum=0.0, paper=0.0,
                            note="logit margin kappa; paper 002: 0"),
        "learning_rate": Param("number", 0.1, minimum=0.0, exclusive_minimum=True, paper=0.01,
                               note="Adam step; C&W's reference code: 0.01"),
        "binary_search_steps": Param("integer", 6, minimum=1, paper=9,
                                     note="C&W's reference code: 9"),
        "max_iter": Param("integer", 100, minimum=1, paper=10000,
                          note="Adam steps per binary-search step; reference: 10000"),
        "initial_const": Param("number", 1.0, minimum=0.0, exclusive_minimum=True, paper=0.001,
                               note="starting c; reference: 0.001"),
        "abort_early": Param("boolean", True, paper=True,
                             note="stop a binary-search step when the loss stalls"),
        "batch_size": _batch(128),
    },
    "cw_l2_art": {
        "confidence": Param("number", 0.0, minimum=0.0, paper=0.0),
        "learning_rate": Param("number", 0.01, minimum=0.0, exclusive_minimum=True, paper=0.01,
                               note="ART default"),
        "binary_search_steps": Param("integer", 10, minimum=1, paper=10, note="ART default"),
        "max_iter": Param("integer", 10, minimum=1, paper=10, note="ART default"),
        "initial_const": Param("number", 0.01, minimum=0.0, exclusive_minimum=True, paper=0.01,
                               note="ART default"),
        "max_halving": Param("integer", 5, minimum=1, paper=5, note="ART default"),
        "max_doubling": Param("integer", 5, minimum=1, paper=5, note="ART default"),
        "batch_size": _batch(128),
    },
    "deepfool": {
        "max_iter": Param("integer", 100, minimum=1, paper=100, note="paper 000: 100"),
        "nb_grads": Param(("integer", "null"), None, minimum=2, paper=None,
                          note="candidate classes; null = all classes (paper 000)"),
        "overshoot": Param("number", 0.02, minimum=0.0, paper=None,
                           note="DeepFool paper 0.02; ART's epsilon default 1e-6"),
        "batch_size": _batch(128),
    },
    "hopskipjump": {
        "norm": Param(("string", "integer"), 2, enum=("inf", 2), paper=2,
                      note="2 or 'inf'; ART default 2"),
        "max_iter": Param("integer", 10, minimum=0, paper=50, note="ART default 50"),
        "max_eval": Param("integer", 1000, minimum=1, paper=10000, note="ART default 10000"),
        "init_eval": Param("integer", 100, minimum=1, paper=100, note="ART default 100"),
        "init_size": Param("integer", 100, minimum=1, paper=100, note="ART default 100"),
        "batch_size": _batch(16),
    },
}

ATTACK_DEFAULTS: dict[str, dict[str, Any]] = {
    method: {name: p.default for name, p in params.items() if not p.required}
    for method, params in ATTACK_PARAMS.items()
}

# Attacks whose algorithm has a targeted form (they accept ``y_target``).
TARGETED = ("fgsm", "fgsm_art", "pgd", "pgd_art", "bim", "cw_l2", "cw_l2_art", "hopskipjump")


def resolve_params(method: str, params: dict) -> dict:
    """The attack's complete parameters: ``params`` over the defaults.

    Unknown or missing names raise ``ValueError`` naming them.
    """
    if method not in ATTACK_PARAMS:
        raise ValueError(f"unknown attack method {method!r}; known: {sorted(ATTACK_PARAMS)}")
    spec = ATTACK_PARAMS[method]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ValueError(f"{method}: unknown parameter(s) {unknown}; known: {sorted(spec)}")
    missing = sorted(name for name, p in spec.items() if p.required and name not in params)
    if missing:
        raise ValueError(f"{method}: missing parameter(s) {missing}")
    return {**ATTACK_DEFAULTS[method], **params}


# ---------------------------------------------------------------------------
# Shared helpers

def _norm(value) -> float:
    return np.inf if value in ("inf", np.inf) else float(value)


def _labels(y) -> np.ndarray:
    return np.asarray(y, dtype=np.int64).reshape(-1)


def _predict(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=1)


def _finish(name: str, model, x: np.ndarray, x_adv: np.ndarray, y: np.ndarray,
            y_target: np.ndarray | None) -> np.ndarray:
    """Check the output and log the success rate: an attack never fails silently.

    Broken output (shape, NaN, outside [0, 1]) raises; an attack that fools
    nothing is logged as a warning (its parameters may be too weak).
    """
    x_adv = np.asarray(x_adv)
    if x_adv.shape != x.shape:
        raise RuntimeError(f"{name}: returned shape {x_adv.shape}, expected {x.shape}")
    if not np.all(np.isfinite(x_adv)):
        raise RuntimeError(f"{name}: returned non-finite values")
    if x_adv.size and (x_adv.min() < CLIP_MIN - 1e-6 or x_adv.max() > CLIP_MAX + 1e-6):
        raise RuntimeError(f"{name}: returned values outside [{CLIP_MIN}, {CLIP_MAX}]")
    x_adv = np.clip(x_adv, CLIP_MIN, CLIP_MAX).astype(np.float32)
    if len(x):
        predicted = _predict(model, x_adv)
        if y_target is None:
            hits, what = predicted != y, "fooled"
        else:
            hits, what = predicted == y_target, "hit their target"
        unchanged = np.all((x_adv == x).reshape(len(x), -1), axis=1)
        log.info("%s: %d of %d AEs %s (%.3f); %d returned unchanged",
                 name, hits.sum(), len(x), what, hits.mean(), unchanged.sum())
        if not hits.any():
            log.warning("%s: no AE %s: are the attack's parameters too weak?", name, what)
    return x_adv


def _batched(fn: Callable, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
    """Run a traced attack step over fixed-size batches (bounded memory, one trace)."""
    out = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        out[start:stop] = fn(x[start:stop], y[start:stop]).numpy()
    return out


def _in_chunks(name: str, generate: Callable, x: np.ndarray, y: np.ndarray | None,
               batch_size: int) -> np.ndarray:
    """Call ``generate(x, y)`` chunk by chunk, logging progress after each chunk.

    Long attacks (CW, DeepFool, HopSkipJump) report here instead of through
    ART's progress bars, which are switched off.
    """
    out = np.empty_like(x)
    start_time = time.perf_counter()
    for start in range(0, len(x), batch_size):
        stop = min(start + batch_size, len(x))
        out[start:stop] = generate(x[start:stop], None if y is None else y[start:stop])
        log.info("%s: %d/%d images done (%.1f s)", name, stop, len(x),
                 time.perf_counter() - start_time)
    return out


def _traced(model, attack: Callable, **params):
    import tensorflow as tf

    spec = (tf.TensorSpec([None, *model.input_shape[1:]], tf.float32),
            tf.TensorSpec([None], tf.int64))

    @tf.function(input_signature=spec, reduce_retracing=True)
    def step(x, y):
        return attack(model, x, y=y, **params)

    return step


# ---------------------------------------------------------------------------
# cleverhans attacks

def fgsm(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm="inf",
         y_target: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
    """Fast Gradient (Sign) Method, cleverhans' implementation.

    One step of size ``eps`` along the sign (L-inf) or the direction (L2) of
    the loss gradient, clipped to [0, 1].
    """
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

    targeted = y_target is not None
    step = _traced(model, fast_gradient_method, eps=float(eps), norm=_norm(norm),
                   clip_min=CLIP_MIN, clip_max=CLIP_MAX, targeted=targeted, sanity_checks=False)
    labels = _labels(y_target if targeted else y)
    x_adv = _batched(step, x, labels, batch_size)
    return _finish("fgsm", model, x, x_adv, _labels(y), None if not targeted else labels)


def pgd(model, x: np.ndarray, y: np.ndarray, *, eps: float, eps_iter: float, nb_iter: int,
        norm="inf", rand_init: bool = True, y_target: np.ndarray | None = None,
        batch_size: int = 256) -> np.ndarray:
    """Projected Gradient Descent (Madry et al.), cleverhans' implementation.

    The random start is drawn from TensorFlow's global generator, seeded by
    the job, so a rerun with the same seed gives the same examples.
    """
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    targeted = y_target is not None
    step = _traced(model, projected_gradient_descent, eps=float(eps), eps_iter=float(eps_iter),
                   nb_iter=int(nb_iter), norm=_norm(norm), clip_min=CLIP_MIN,
                   clip_max=CLIP_MAX, targeted=targeted, rand_init=bool(rand_init),
                   sanity_checks=False)
    labels = _labels(y_target if targeted else y)
    x_adv = _batched(step, x, labels, batch_size)
    return _finish("pgd", model, x, x_adv, _labels(y), None if not targeted else labels)


def bim(model, x: np.ndarray, y: np.ndarray, *, eps: float, eps_iter: float, nb_iter: int,
        norm="inf", y_target: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
    """Basic Iterative Method (Kurakin et al.): PGD from the image itself, no random start."""
    from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method

    targeted = y_target is not None
    step = _traced(model, basic_iterative_method, eps=float(eps), eps_iter=float(eps_iter),
                   nb_iter=int(nb_iter), norm=_norm(norm), clip_min=CLIP_MIN,
                   clip_max=CLIP_MAX, targeted=targeted, sanity_checks=False)
    labels = _labels(y_target if targeted else y)
    x_adv = _batched(step, x, labels, batch_size)
    return _finish("bim", model, x, x_adv, _labels(y), None if not targeted else labels)


# ---------------------------------------------------------------------------
# ART: the classifier wrapper shared by the ART attacks and the metrics

@functools.cache
def _art_classifier_class():
    """ART's TF2 classifier with a correct and fast ``class_gradient`` (built lazily).

    Two problems of ``TensorFlowV2Classifier.class_gradient`` under Keras 3:

    * a NumPy integer label (``np.int64``, what ``np.argmax`` returns) is not
      ``isinstance(label, int)``, so it takes the per-sample branch, which
      iterates over the label and raises ``TypeError: 'numpy.int64' object is
      not iterable``. ``art.metrics.clever_t`` passes exactly that (its
      predicted class), so ``clever_u`` crashes with the stock classifier.
      We turn NumPy integer scalars into ``int`` here, where the type is
      interpreted, rather than in every caller.
    * it runs eagerly, re-running the model once per class inside a
      persistent tape: DeepFool, CW and CLEVER spend almost all their time
      there (DeepFool on 50 digits: 143 s stock, 3.7 s traced). We compute
      the same gradients in traced functions: one backward pass for a single
      class or one class per sample, a batch Jacobian for all classes.

    Results match the stock method to float rounding (tested). The model must
    have no ART preprocessing (we never set any), so gradients w.r.t. the
    model's input are gradients w.r.t. ``x``.
    """
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    class AdvfitTensorFlowV2Classifier(TensorFlowV2Classifier):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if not self._identity_preprocessing():
                raise ValueError("advfit's ART classifier supports no preprocessing")
            model = self._model
            spec = tf.TensorSpec([None, *self.input_shape], tf.float32)

            @tf.function(input_signature=(spec,), reduce_retracing=True)
            def all_classes(x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    logits = model(x, training=False)
                return tape.batch_jacobian(logits, x)

            @tf.function(input_signature=(spec, tf.TensorSpec([None], tf.int32)),
                         reduce_retracing=True)
            def one_class_per_sample(x, label):
                # d(sum_i z_i[label_i]) / dx_i = dz_i[label_i] / dx_i: samples are independent
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    logits = model(x, training=False)
                    chosen = tf.reduce_sum(tf.gather(logits, label, axis=1, batch_dims=1))
                return tape.gradient(chosen, x)

            self._all_classes = all_classes
            self._one_class_per_sample = one_class_per_sample

        def _identity_preprocessing(self) -> bool:
            # ART always installs a standardisation step; ours is mean 0, std 1
            return all(
                np.all(getattr(op, "mean", None) == 0) and np.all(getattr(op, "std", None) == 1)
                for op in self.preprocessing_operations)

        def class_gradient(self, x, label=None, training_mode: bool = False, **kwargs):
            if training_mode:
                raise NotImplementedError("class gradients in training mode are not used")
            if isinstance(label, np.integer) or (isinstance(label, np.ndarray) and label.ndim == 0):
                label = int(label)  # the TypeError described above
            x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
            if int(x.shape[0]) == 0:  # oneDNN's convolutions reject an empty batch
                n_out = self.nb_classes if label is None else 1
                return np.zeros((0, n_out, *self.input_shape), dtype=np.float32)
            if label is None:
                return self._all_classes(x).numpy()
            if isinstance(label, int):
                labels = np.full(int(x.shape[0]), label, dtype=np.int32)
            else:
                labels = np.asarray(label, dtype=np.int32).reshape(-1)
                if len(labels) != int(x.shape[0]):
                    raise ValueError(f"{len(labels)} labels for {int(x.shape[0])} samples")
            if labels.size and (labels.min() < 0 or labels.max() >= self.nb_classes):
                raise ValueError(f"class label out of range 0..{self.nb_classes - 1}")
            gradient = self._one_class_per_sample(x, tf.constant(labels)).numpy()
            return gradient[:, np.newaxis]

    return AdvfitTensorFlowV2Classifier


def art_classifier(model, stock: bool = False):
    """Wrap a Keras logits model for ART.

    The loss sums over the batch (``reduction='sum'``) so that ART's
    ``loss_gradient`` returns each sample's own gradient; with Keras' default
    mean the gradients shrink by 1/batch size (harmless for FGSM/PGD, which
    normalise them, but wrong for ``art.metrics.loss_sensitivity``).
    ``stock=True`` gives ART's unmodified classifier (tests compare the two).
    """
    import keras
    from art.estimators.classification import TensorFlowV2Classifier

    cls = TensorFlowV2Classifier if stock else _art_classifier_class()
    return cls(
        model,
        nb_classes=int(model.output_shape[-1]),
        input_shape=tuple(int(d) for d in model.input_shape[1:]),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum"),
        clip_values=(CLIP_MIN, CLIP_MAX),
    )


def _art_norm(value):
    return np.inf if value in ("inf", np.inf) else int(value)


@contextlib.contextmanager
def quiet_art():
    """Raise ART's loggers to WARNING for the duration.

    ART logs at INFO once per image (HopSkipJump: "Found initial adversarial
    image") or with misleading figures (FGM: "Success rate of FGM attack:
    0.00%" whatever the rate); our per-chunk progress and success lines
    replace them. Warnings and errors still come through.
    """
    art_log = logging.getLogger("art")
    level = art_log.level
    art_log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        art_log.setLevel(level)


def _art_generate(attack) -> Callable:
    """ART's ``generate`` as ``f(x, labels)``, float32 in and out, ART's INFO logs muted."""
    def generate(x, labels):
        with quiet_art():
            return attack.generate(x.astype(np.float32), y=labels).astype(np.float32)
    return generate


# ---------------------------------------------------------------------------
# ART attacks

def fgsm_art(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm="inf",
             y_target: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
    """Fast Gradient (Sign) Method, ART's implementation (same AEs as ``fgsm``)."""
    from art.attacks.evasion import FastGradientMethod

    targeted = y_target is not None
    attack = FastGradientMethod(art_classifier(model), norm=_art_norm(norm), eps=float(eps),
                                eps_step=float(eps), targeted=targeted, batch_size=int(batch_size))
    labels = _labels(y_target if targeted else y)
    x_adv = _art_generate(attack)(x, labels)
    return _finish("fgsm_art", model, x, x_adv, _labels(y), labels if targeted else None)


def pgd_art(model, x: np.ndarray, y: np.ndarray, *, eps: float, eps_iter: float, nb_iter: int,
            norm="inf", rand_init: bool = True, y_target: np.ndarray | None = None,
            batch_size: int = 256) -> np.ndarray:
    """Projected Gradient Descent, ART's implementation (random start from NumPy's generator)."""
    from art.attacks.evasion import ProjectedGradientDescent

    targeted = y_target is not None
    attack = ProjectedGradientDescent(
        art_classifier(model), norm=_art_norm(norm), eps=float(eps), eps_step=float(eps_iter),
        max_iter=int(nb_iter), targeted=targeted, num_random_init=int(bool(rand_init)),
        batch_size=int(batch_size), verbose=False)
    labels = _labels(y_target if targeted else y)
    x_adv = _art_generate(attack)(x, labels)
    return _finish("pgd_art", model, x, x_adv, _labels(y), labels if targeted else None)


def cw_l2_art(model, x: np.ndarray, y: np.ndarray, *, confidence: float = 0.0,
              learning_rate: float = 0.01, binary_search_steps: int = 10, max_iter: int = 10,
              initial_const: float = 0.01, max_halving: int = 5, max_doubling: int = 5,
              y_target: np.ndarray | None = None, batch_size: int = 128) -> np.ndarray:
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
    labels = _labels(y_target if targeted else y)
    x_adv = _in_chunks("cw_l2_art", _art_generate(attack), x, labels, batch_size)
    return _finish("cw_l2_art", model, x, x_adv, _labels(y), labels if targeted else None)


def deepfool(model, x: np.ndarray, y: np.ndarray, *, max_iter: int = 100,
             nb_grads: int | None = None, overshoot: float = 0.02,
             batch_size: int = 128) -> np.ndarray:
    """DeepFool (Moosavi-Dezfooli et al.), ART's implementation; untargeted only.

    DeepFool pushes each image away from the model's *predicted* class (ART
    ignores labels); for correctly classified images that is ``y``, and a
    warning says how many are not. ``nb_grads=None`` uses every class as a
    candidate. ``overshoot`` is ART's ``epsilon``: with ART's 1e-6 about 2 %
    of the images end exactly on the decision boundary, where the label
    depends on float rounding; 0.02 (the DeepFool paper) moves them across.
    """
    from art.attacks.evasion import DeepFool

    y = _labels(y)
    n_classes = int(model.output_shape[-1])
    misclassified = int(np.sum(_predict(model, x) != y)) if len(x) else 0
    if misclassified:
        log.warning("deepfool: %d of %d images are misclassified already; DeepFool moves them "
                    "away from their predicted class, not from y", misclassified, len(x))
    attack = DeepFool(art_classifier(model), max_iter=int(max_iter), epsilon=float(overshoot),
                      nb_grads=n_classes if nb_grads is None else int(nb_grads),
                      batch_size=int(batch_size), verbose=False)
    x_adv = _in_chunks("deepfool", lambda xb, _: _art_generate(attack)(xb, None), x, None,
                       batch_size)
    return _finish("deepfool", model, x, x_adv, y, None)


def hopskipjump(model, x: np.ndarray, y: np.ndarray, *, norm=2, max_iter: int = 10,
                max_eval: int = 1000, init_eval: int = 100, init_size: int = 100,
                y_target: np.ndarray | None = None, batch_size: int = 16) -> np.ndarray:
    """HopSkipJump (Chen et al.), ART's decision-based implementation.

    Uses only the model's labels, never its gradients. Random draws come from
    NumPy's global generator. The defaults are cheap; ART's (and so probably
    the papers') are max_iter=50, max_eval=10000, init_eval=100, init_size=100.
    An image for which no adversarial starting point is found comes back
    unchanged (counted in the log line).
    """
    from art.attacks.evasion import HopSkipJump

    targeted = y_target is not None
    attack = HopSkipJump(art_classifier(model), targeted=targeted, norm=_art_norm(norm),
                         max_iter=int(max_iter), max_eval=int(max_eval),
                         init_eval=int(init_eval), init_size=int(init_size), verbose=False)
    labels = _labels(y_target if targeted else y)
    x_adv = _in_chunks("hopskipjump", _art_generate(attack), x, labels, batch_size)
    return _finish("hopskipjump", model, x, x_adv, _labels(y), labels if targeted else None)


# ---------------------------------------------------------------------------
# Carlini-Wagner L2, our own TensorFlow implementation

TANH_SMOOTHER = 0.999999  # keeps arctanh finite at pixels that are exactly 0 or 1
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8
CONST_UPPER = 1e10  # the reference code gives up raising c above this


def _cw_optimizer(model, *, confidence: float, learning_rate: float, max_iter: int,
                  targeted: bool, abort_early: bool):
    """One binary-search step of CW-L2 for a batch, traced: Adam on the tanh variable.

    Returns, per image, the smallest squared L2 distance among the iterates that
    were adversarial (inf if none) and that iterate.
    """
    import tensorflow as tf

    check_every = max(max_iter // 10, 1)
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)

    @tf.function(input_signature=(spec, spec, tf.TensorSpec([None, None], tf.float32),
                                  tf.TensorSpec([None], tf.float32)), reduce_retracing=True)
    def optimize(x, w_x, onehot, const):
        axes = list(range(1, len(x.shape)))
        delta = tf.zeros_like(x)
        m, v = tf.zeros_like(x), tf.zeros_like(x)
        best_l2 = tf.fill(tf.shape(const), np.float32(np.inf))
        best_adv = x
        previous = tf.constant(np.inf, tf.float32)
        for i in tf.range(max_iter):
            with tf.GradientTape() as tape:
                tape.watch(delta)
                adv = (tf.tanh(w_x + delta) + 1.0) / 2.0  # always inside [0, 1]
                logits = model(adv, training=False)
                l2 = tf.reduce_sum(tf.square(adv - x), axis=axes)
                real = tf.reduce_sum(onehot * logits, axis=1)
                other = tf.reduce_max(logits - onehot * 1e4, axis=1)
                margin = (other - real if targeted else real - other) + confidence
                loss = tf.reduce_sum(l2 + const * tf.maximum(margin, 0.0))
            # strictly past the margin: a tie is not an adversarial example
            improved = (margin < 0.0) & (l2 < best_l2)
            best_l2 = tf.where(improved, l2, best_l2)
            best_adv = tf.where(tf.reshape(improved, [-1] + [1] * len(axes)), adv, best_adv)
            if abort_early and i % check_every == 0:
                if loss > previous * 0.9999:
                    break
                previous = loss
            gradient = tape.gradient(loss, delta)
            t = tf.cast(i + 1, tf.float32)
            m = ADAM_BETA1 * m + (1.0 - ADAM_BETA1) * gradient
            v = ADAM_BETA2 * v + (1.0 - ADAM_BETA2) * tf.square(gradient)
            m_hat = m / (1.0 - ADAM_BETA1 ** t)
            v_hat = v / (1.0 - ADAM_BETA2 ** t)
            delta = delta - learning_rate * m_hat / (tf.sqrt(v_hat) + ADAM_EPSILON)
        return best_l2, best_adv

    return optimize


def _cw_update_const(const, lower, upper, succeeded):
    """The reference binary search on c: halve the bracket, or grow c tenfold until success."""
    upper = np.where(succeeded, np.minimum(upper, const), upper)
    lower = np.where(succeeded, lower, np.maximum(lower, const))
    bracketed = upper < 1e9
    const = np.where(bracketed, (lower + upper) / 2.0, const * 10.0)
    return const, lower, upper


def cw_l2(model, x: np.ndarray, y: np.ndarray, *, confidence: float = 0.0,
          learning_rate: float = 0.1, binary_search_steps: int = 6, max_iter: int = 100,
          initial_const: float = 1.0, abort_early: bool = True,
          y_target: np.ndarray | None = None, batch_size: int = 128) -> np.ndarray:
    """Carlini-Wagner L2 (Carlini and Wagner 2017), as in their reference code.

    Minimises ||x' - x||_2^2 + c * max(margin + confidence, 0) over
    x' = (tanh(w) + 1) / 2 (so x' stays in [0, 1]) with Adam, and
    binary-searches c per image. The margin is Z_y - max_{j != y} Z_j on the
    logits (untargeted) or max_{j != t} Z_j - Z_t (targeted). Returns the
    smallest adversarial iterate found; images never made adversarial come
    back unchanged (counted in the log).

    Why not a library's: cleverhans 4.0.0's CW raises ``TypeError: 'list'
    object is not callable`` under Keras 3 (and, patched, was seen to return
    nearly unchanged images); ART's works but its line-search steps leave
    perturbations ~50 % larger than ours and larger than DeepFool's.

    The defaults are cheap and converge on digits: learning_rate 0.01,
    binary_search_steps 9, max_iter 1000 find a mean L2 under 1 % smaller,
    9 times slower. The reference values are learning_rate 0.01,
    binary_search_steps 9, max_iter 10000, initial_const 0.001.
    """
    import tensorflow as tf

    targeted = y_target is not None
    labels = _labels(y_target if targeted else y)
    n_classes = int(model.output_shape[-1])
    optimize = _cw_optimizer(model, confidence=float(confidence),
                             learning_rate=float(learning_rate), max_iter=int(max_iter),
                             targeted=targeted, abort_early=bool(abort_early))

    def attack_batch(xb: np.ndarray, lb: np.ndarray) -> np.ndarray:
        x_t = tf.constant(xb, tf.float32)
        w_x = tf.constant(np.arctanh((2.0 * xb - 1.0) * TANH_SMOOTHER), tf.float32)
        onehot = tf.one_hot(lb, n_classes, dtype=tf.float32)
        const = np.full(len(xb), float(initial_const))
        lower, upper = np.zeros(len(xb)), np.full(len(xb), CONST_UPPER)
        best_l2, best_adv = np.full(len(xb), np.inf), xb.copy()
        for _ in range(int(binary_search_steps)):
            step_l2, step_adv = optimize(x_t, w_x, onehot, tf.constant(const, tf.float32))
            step_l2, step_adv = step_l2.numpy(), step_adv.numpy()
            better = step_l2 < best_l2
            best_l2[better], best_adv[better] = step_l2[better], step_adv[better]
            const, lower, upper = _cw_update_const(const, lower, upper, np.isfinite(step_l2))
        return best_adv

    x_adv = _in_chunks("cw_l2", attack_batch, x, labels, batch_size)
    return _finish("cw_l2", model, x, x_adv, _labels(y), labels if targeted else None)


# ---------------------------------------------------------------------------

ATTACKS: dict[str, Callable] = {
    "fgsm": fgsm, "fgsm_art": fgsm_art, "pgd": pgd, "pgd_art": pgd_art, "bim": bim,
    "cw_l2": cw_l2, "cw_l2_art": cw_l2_art, "deepfool": deepfool, "hopskipjump": hopskipjump,
}


def run_attack(method: str, model, x: np.ndarray, y: np.ndarray, params: dict,
               y_target: np.ndarray | None = None) -> np.ndarray:
    try:
        attack = ATTACKS[method]
    except KeyError:
        raise ValueError(f"unknown attack method {method!r}; known: {sorted(ATTACKS)}") from None
    if y_target is None:
        return attack(model, x, y, **params)
    if method not in TARGETED:
        raise ValueError(f"{method} has no targeted form")
    return attack(model, x, y, y_target=y_target, **params)
