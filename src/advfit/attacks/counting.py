"""What an attack costs in model passes: images through the model forward, and input
gradients taken backward, counted inside traced functions as well as eagerly.

An attack's wall time depends on the machine and on what else runs; its
counts do not (same seed, same counts), so the white-box table records the
counts and leaves the seconds to the benchmarks folder.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Passes:
    forward: int  # images through the model
    backward: int  # images whose input gradient was taken (one per image and backward pass)


class CountingModel:
    """``model`` as a callable that counts the images it sees, for an attack to use.

    Forward: every call adds its batch size. Backward: an identity with a
    custom gradient sits in front of the model and adds the batch size of
    each gradient that flows back to the images. Both are TensorFlow
    variables, so calls inside a traced function (a ``tf.function``, a
    ``tf.while_loop``) count every time they run, not once at tracing.
    A backward pass that stops before the input (a gradient with respect to
    weights only) is not counted; no attack takes one.

    Anything else (``input_shape``, ``layers``, ``predict`` ...) is the
    model's own, uncounted.
    """

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        self._forward = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._backward = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._identity = _counting_identity(self._backward)

    def __call__(self, x, *args, **kwargs):
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        self._forward.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
        return self.model(self._identity(x), *args, **kwargs)

    def __getattr__(self, name):
        # only reached for names the counter lacks: the wrapped model's attributes
        return getattr(self.__dict__["model"], name)

    def reset(self) -> None:
        self._forward.assign(0)
        self._backward.assign(0)

    @property
    def passes(self) -> Passes:
        return Passes(int(self._forward.numpy()), int(self._backward.numpy()))


def _counting_identity(counter):
    import tensorflow as tf

    @tf.custom_gradient
    def identity(x):
        def gradient(upstream):
            counter.assign_add(tf.cast(tf.shape(upstream)[0], tf.int64))
            return upstream

        return tf.identity(x), gradient

    return identity
