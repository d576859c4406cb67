"""The ART adapter: a Keras logits model as an ART classifier, used by the ART attacks
and by ``advfit.evaluation.metrics``; ART's logging muted while it runs."""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Callable

import numpy as np

from advfit.attacks.guards import CLIP_MAX, CLIP_MIN


def _traced_gradients(model, input_shape):
    """Traced input gradients of the logits: all classes (a batch Jacobian), or one
    class per sample (one backward pass)."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, *input_shape], tf.float32)

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

    return all_classes, one_class_per_sample


def _label_array(label, n: int) -> np.ndarray:
    """One class per sample, from ART's ``label`` (an int or one per sample)."""
    if isinstance(label, int):
        return np.full(n, label, dtype=np.int32)
    labels = np.asarray(label, dtype=np.int32).reshape(-1)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} samples")
    return labels


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
            self._all_classes, self._one_class_per_sample = _traced_gradients(
                self._model, self.input_shape)

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
            labels = _label_array(label, int(x.shape[0]))
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


def art_norm(value):
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


def art_generate(attack) -> Callable:
    """ART's ``generate`` as ``f(x, labels)``, float32 in and out, ART's INFO logs muted."""
    def generate(x, labels):
        with quiet_art():
            return attack.generate(x.astype(np.float32), y=labels).astype(np.float32)
    return generate

