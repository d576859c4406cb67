"""PGD adversarial training (Madry et al. 2018), the regime key ``adversarial_training``.

For every mini-batch, a ``fraction`` of its images is replaced by L-inf PGD
adversarial examples crafted on the *current* weights (the model in inference
mode), and the optimizer takes its step on that mixed batch. Crafting and the
step are one traced function (:func:`make_train_step`), so a batch costs one
graph call.

Determinism and resume: nothing here draws from a stateful generator. Epoch
e's order is a permutation drawn from ``epoch_seed`` (its own NumPy
generator), and batch b's random start is ``tf.random.stateless_uniform``
seeded with ``(epoch_seed, b)``. The weights and the optimizer's variables
(iteration counter and moments), which :mod:`advfit.models.training` saves after
every epoch, are therefore all the state there is: a run resumed after epoch
k gives bit-identical snapshots and history to one that never stopped.
"""

from __future__ import annotations

import functools
import logging
import time

import numpy as np

from advfit.attacks import CLIP_MAX, CLIP_MIN

log = logging.getLogger("advfit")

ATTACKS = ("pgd",)  # the crafting attacks this regime key knows; more may come
DEFAULTS = {"fraction": 1.0, "rand_init": True, "crafting_mode": "inference"}
CRAFTING_MODES = ("inference", "training")


def resolve_spec(spec: dict) -> dict:
    """``spec`` with its defaults, checked; ValueError names the offending key.

    The config schema refuses the same things first; this guards callers that
    build a regime by hand.
    """
    spec = {**DEFAULTS, **spec}
    where = "adversarial_training"
    unknown = sorted(set(spec) - {"attack", "eps", "eps_iter", "nb_iter", *DEFAULTS})
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key")
    missing = [key for key in ("attack", "eps", "eps_iter", "nb_iter") if key not in spec]
    if missing:
        raise ValueError(f"{where}.{missing[0]}: required but missing")
    if spec["attack"] not in ATTACKS:
        raise ValueError(f"{where}.attack: {spec['attack']!r} is not one of {list(ATTACKS)}")
    if not 0.0 < float(spec["eps"]) <= 1.0:
        raise ValueError(f"{where}.eps: {spec['eps']} is not in (0, 1]")
    if not 0.0 < float(spec["eps_iter"]) <= float(spec["eps"]):
        raise ValueError(f"{where}.eps_iter: {spec['eps_iter']} is not in (0, eps = {spec['eps']}]")
    if int(spec["nb_iter"]) != spec["nb_iter"] or int(spec["nb_iter"]) < 1:
        raise ValueError(f"{where}.nb_iter: {spec['nb_iter']} is not an integer >= 1")
    if not 0.0 <= float(spec["fraction"]) <= 1.0:
        raise ValueError(f"{where}.fraction: {spec['fraction']} is not in [0, 1]")
    if spec["crafting_mode"] not in CRAFTING_MODES:
        raise ValueError(f"{where}.crafting_mode: {spec['crafting_mode']!r} is not one of "
                         f"{list(CRAFTING_MODES)}")
    return {"attack": spec["attack"], "eps": float(spec["eps"]),
            "eps_iter": float(spec["eps_iter"]), "nb_iter": int(spec["nb_iter"]),
            "fraction": float(spec["fraction"]), "rand_init": bool(spec["rand_init"]),
            "crafting_mode": spec["crafting_mode"]}


def pgd_linf(model, x, y, *, eps: float, eps_iter: float, nb_iter: int, rand_init: bool, seed,
             training: bool = False):
    """Untargeted L-inf PGD from ``x`` (labels ``y``), as TensorFlow ops.

    The same arithmetic as cleverhans' ``projected_gradient_descent``: a
    uniform start in the eps-ball (``rand_init``; stateless, from ``seed``, a
    pair of integers), then ``nb_iter`` steps of ``eps_iter`` along the sign of
    the gradient of the summed cross-entropy, each followed by a clip to
    [0, 1], a projection onto the eps-ball around ``x`` and a clip again. The
    model runs in inference mode, or with ``training`` in training mode (batch
    statistics, BatchNorm's moving statistics updated by every step, as in
    PyTorch's train mode); no gradient flows back into the result.
    """
    import tensorflow as tf

    if rand_init:
        eta = tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps, dtype=x.dtype)
    else:
        eta = tf.zeros_like(x)
    x_adv = tf.clip_by_value(x + eta, CLIP_MIN, CLIP_MAX)
    for _ in tf.range(nb_iter):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=model(x_adv, training=training))
        step = eps_iter * tf.sign(tape.gradient(loss, x_adv))
        x_adv = tf.clip_by_value(x_adv + step, CLIP_MIN, CLIP_MAX)
        x_adv = x + tf.clip_by_value(x_adv - x, -eps, eps)
        x_adv = tf.clip_by_value(x_adv, CLIP_MIN, CLIP_MAX)
    return tf.stop_gradient(x_adv)


def make_train_step(model, spec: dict):
    """One traced optimizer step of ``model`` (compiled) on a batch whose first
    ``n_adv`` images are replaced by their PGD AEs on the current weights.

    ``step(x, y, n_adv, seed)`` returns the batch's loss (as ``model.fit``
    computes it: ``model.compute_loss`` on the training-mode logits), its
    number of correct predictions and the number among the AEs.
    """
    import tensorflow as tf

    spec = resolve_spec(spec)
    attack = {key: spec[key] for key in ("eps", "eps_iter", "nb_iter", "rand_init")}
    attack["training"] = spec["crafting_mode"] == "training"
    optimizer = model.optimizer
    variables = model.trainable_variables
    if not optimizer.built:  # variables are created outside the trace
        optimizer.build(variables)
    signature = (tf.TensorSpec([None, *model.input_shape[1:]], tf.float32),
                 tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int32),
                 tf.TensorSpec([2], tf.int64))

    @tf.function(input_signature=signature, reduce_retracing=True)
    def step(x, y, n_adv, seed):
        # A batch with no AE to craft (fraction 0, a tiny last batch) must not
        # reach the model empty: convolutions refuse an empty batch.
        crafted = tf.cond(n_adv > 0,
                          lambda: pgd_linf(model, x[:n_adv], y[:n_adv], seed=seed, **attack),
                          lambda: x[:0])
        mixed = tf.concat([crafted, x[n_adv:]], axis=0)
        with tf.GradientTape() as tape:
            logits = model(mixed, training=True)
            loss = model.compute_loss(x=mixed, y=y, y_pred=logits, training=True)
            scaled = optimizer.scale_loss(loss)
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=1), y), tf.int64)
        return loss, tf.reduce_sum(correct), tf.reduce_sum(correct[:n_adv])

    return step


def train_epoch(step, x: np.ndarray, y: np.ndarray, batch_size: int, fraction: float,
                seed: int, before_step=None) -> dict:
    """One epoch of adversarial training: seeded order, every batch through ``step``.

    Batches follow a permutation drawn from ``seed`` (the last one may be
    smaller, as with ``model.fit``); batch b crafts ``round(fraction * size)``
    AEs with random start seed ``(seed, b)``. Returns the epoch's ``loss`` and
    ``accuracy`` (means over the images trained on, the AEs included: what
    ``model.fit`` reports) and ``robust_accuracy`` (accuracy on the AEs alone,
    NaN when none were crafted), all measured before each batch's update.
    ``before_step(b, x_b)``, for a regime with a training recipe, is called
    before batch b's step (it sets the step's learning rate) and returns the
    images to craft from and train on (augmented before crafting, as Rice et
    al. do).
    """
    order = np.random.default_rng(int(seed)).permutation(len(x))
    y = np.asarray(y, dtype=np.int64)
    loss_sum, correct, adv_correct, n_adv_total = 0.0, 0, 0, 0
    for batch, start in enumerate(range(0, len(x), batch_size)):
        index = order[start:start + batch_size]
        n_adv = int(round(fraction * len(index)))
        images = x[index] if before_step is None else before_step(batch, x[index])
        loss, hits, adv_hits = step(images, y[index], np.int32(n_adv),
                                    np.array([seed, batch], dtype=np.int64))
        loss_sum += float(loss) * len(index)
        correct += int(hits)
        adv_correct += int(adv_hits)
        n_adv_total += n_adv
    return {"loss": loss_sum / len(x), "accuracy": correct / len(x),
            "robust_accuracy": adv_correct / n_adv_total if n_adv_total else float("nan"),
            "n_adversarial": n_adv_total}


class AdversarialTrainer:
    """The per-epoch driver that :func:`advfit.models.training.train_regime` calls instead of ``fit``."""

    def __init__(self, model, spec: dict, batch_size: int, steps=None):
        """``steps``: the regime's per-step recipe (learning rate, augmentation;
        :func:`advfit.models.recipes.step_recipe`), None without."""
        self.spec = resolve_spec(spec)
        self.batch_size = int(batch_size)
        self.step = make_train_step(model, self.spec)
        self.optimizer, self.steps = model.optimizer, steps

    def fit_epoch(self, x, y, seed: int, epoch: int | None = None) -> dict:
        """One epoch from seed ``seed``; ``epoch`` (1-based) is needed with ``steps``."""
        started = time.perf_counter()
        before_step = None
        if self.steps is not None:
            if epoch is None:
                raise ValueError("a regime with a training recipe needs the epoch number")
            before_step = functools.partial(self.steps.before_step, self.optimizer, epoch)
        logs = train_epoch(self.step, np.asarray(x, np.float32), y, self.batch_size,
                           self.spec["fraction"], seed, before_step)
        log.info("adversarial training: %d PGD AEs, robust accuracy on them %.4f (%.1f s)",
                 logs["n_adversarial"], logs["robust_accuracy"], time.perf_counter() - started)
        return logs
