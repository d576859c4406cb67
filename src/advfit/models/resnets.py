"""Residual networks of the adversarial-training literature, as Keras 3 functional models.

* ``preact_resnet18``: Rice, Wong & Kolter (2020, "Overfitting in adversarially
  robust deep learning")'s PreActResNet18, layer for layer as
  locuslab/robust_overfitting's ``preactresnet.py`` (He et al. 2016,
  "Identity Mappings in Deep Residual Networks"): a 3x3 stem convolution
  without BatchNorm, four stages of two pre-activation basic blocks
  (64-128-256-512 filters), a final BatchNorm + ReLU, global average pooling
  and a linear layer. 11,172,170 trainable parameters for 10 classes on
  32x32x3 (11,171,146 is kuangliu/pytorch-cifar's variant, which has no final
  BatchNorm).
* ``wide_resnet``: Zagoruyko & Komodakis (2016)'s WRN-``depth``-``width`` as
  robust_overfitting's ``wideresnet.py`` (pre-activation basic blocks, dropout
  0): WRN-34-10 (Rice et al.'s, 46,160,474 trainable for 10 classes) by
  default, WRN-16-4 (2,748,890) for small runs.
* ``resnet20``: He et al. (2016, "Deep Residual Learning", section 4.2)'s
  CIFAR ResNet-20: a 16-filter stem, three stages of three post-activation
  basic blocks (16-32-64), parameter-free shortcuts (option A: subsample and
  zero-pad the channels), global average pooling: 269,722 trainable
  parameters for 10 classes on 32x32x3 (the paper's "0.27M").

Every model ends in a linear layer of logits. Convolutions followed by a
BatchNorm have no bias; BatchNorm uses PyTorch's defaults (momentum 0.1, i.e.
Keras ``momentum=0.9``, epsilon 1e-5). A stride-2 3x3 convolution pads one
pixel on every side, as PyTorch's ``padding=1`` does (Keras' ``"same"`` pads
only the bottom and right of an even-sized image), so on 32x32 inputs every
layer computes what the PyTorch reference computes with the same weights.
The pooling is global (the references' ``avg_pool2d(out, 4)`` and ``(out, 8)``
are global on 32x32), so these models take any image size and channel count:
8x8 digits go down to 1x1 in PreActResNet18's last stage and to 2x2 in
ResNet-20's. Initialisation follows the references: PyTorch's default
(uniform, +-1/sqrt(fan_in)) for PreActResNet18, Kaiming normal (fan out) for
the WRN's convolutions, Kaiming normal (fan in) for ResNet-20.

Keras is imported inside the builders so that the config check can import
this module (``value_problems``) without loading TensorFlow.
"""

from __future__ import annotations

PARAMS_KEY = "model.params"
BN_MOMENTUM = 0.9  # PyTorch's BatchNorm momentum 0.1, Keras' convention
BN_EPSILON = 1e-5  # PyTorch's default
WRN_DEFAULT_DEPTH = 34
WRN_DEFAULT_WIDTH = 10


def _torch_default():
    """PyTorch's default for Conv2d and Linear weights: kaiming_uniform(a=sqrt(5)),
    i.e. uniform in +-1/sqrt(fan_in)."""
    import keras

    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform")


def _kaiming_normal(mode: str):
    import keras

    return keras.initializers.VarianceScaling(2.0, mode=mode, distribution="untruncated_normal")


def _batch_norm(name: str):
    from keras import layers

    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _conv(x, filters: int, kernel: int, stride: int, init, name: str):
    """PyTorch's ``Conv2d(kernel, stride, padding=kernel // 2, bias=False)``."""
    from keras import layers

    if stride > 1 and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    return layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                         kernel_initializer=init, name=name)(x)


def _logits(x, n_classes: int, kernel_init, bias_init, name: str = "logits"):
    from keras import layers

    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dense(n_classes, kernel_initializer=kernel_init, bias_initializer=bias_init,
                        name=name)(x)


def _torch_linear_bias(fan_in: int):
    import keras

    bound = 1.0 / fan_in ** 0.5
    return keras.initializers.RandomUniform(-bound, bound)


# ------------------------------------------------------------------ PreActResNet18

def _preact_block(x, in_planes: int, planes: int, stride: int, init, name: str):
    """robust_overfitting's ``PreActBlock``: the shortcut convolution (when the
    shape changes) reads the pre-activated input, the identity the raw one."""
    from keras import layers

    out = layers.ReLU(name=f"{name}_relu1")(_batch_norm(f"{name}_bn1")(x))
    if stride != 1 or in_planes != planes:
        shortcut = _conv(out, planes, 1, stride, init, f"{name}_shortcut")
    else:
        shortcut = x
    out = _conv(out, planes, 3, stride, init, f"{name}_conv1")
    out = layers.ReLU(name=f"{name}_relu2")(_batch_norm(f"{name}_bn2")(out))
    out = _conv(out, planes, 3, 1, init, f"{name}_conv2")
    return layers.Add(name=f"{name}_add")([out, shortcut])


def preact_resnet18(input_shape: tuple[int, int, int], n_classes: int):
    """Rice et al. (2020)'s PreActResNet18 (module docstring), logits out."""
    import keras
    from keras import layers

    init = _torch_default()
    inputs = keras.Input(shape=tuple(input_shape))
    x = _conv(inputs, 64, 3, 1, init, "conv1")
    in_planes = 64
    for stage, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
        for block, block_stride in enumerate((stride, 1), start=1):
            x = _preact_block(x, in_planes, planes, block_stride, init, f"layer{stage}_{block}")
            in_planes = planes
    x = layers.ReLU(name="relu")(_batch_norm("bn")(x))
    outputs = _logits(x, n_classes, init, _torch_linear_bias(in_planes))
    return keras.Model(inputs, outputs, name="preact_resnet18")


# ------------------------------------------------------------------ WideResNet

def wide_resnet_problems(params: dict) -> list[str]:
    """What is wrong with ``wide_resnet``'s ``depth`` and ``width``, naming the keys."""
    problems = []
    depth = params.get("depth", WRN_DEFAULT_DEPTH)
    if not _is_int(depth) or depth < 10 or (depth - 4) % 6:
        problems.append(f"config key '{PARAMS_KEY}.depth': {depth!r} is not a WideResNet depth; "
                        f"it is 6n + 4 with n >= 1 blocks per stage (10, 16, 22, 28, 34, 40, ...)")
    width = params.get("width", WRN_DEFAULT_WIDTH)
    if not _is_int(width) or width < 1:
        problems.append(f"config key '{PARAMS_KEY}.width': {width!r} is not a widening factor; "
                        f"it is an integer >= 1 (10 for WRN-34-10)")
    return problems


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _wide_block(x, in_planes: int, out_planes: int, stride: int, init, name: str):
    """robust_overfitting's ``BasicBlock`` (dropout 0): when the widths differ,
    both the residual branch and the 1x1 shortcut read the pre-activated input."""
    from keras import layers

    activated = layers.ReLU(name=f"{name}_relu1")(_batch_norm(f"{name}_bn1")(x))
    out = _conv(activated, out_planes, 3, stride, init, f"{name}_conv1")
    out = layers.ReLU(name=f"{name}_relu2")(_batch_norm(f"{name}_bn2")(out))
    out = _conv(out, out_planes, 3, 1, init, f"{name}_conv2")
    if in_planes == out_planes:
        shortcut = x
    else:
        shortcut = _conv(activated, out_planes, 1, stride, init, f"{name}_shortcut")
    return layers.Add(name=f"{name}_add")([shortcut, out])


def wide_resnet(input_shape: tuple[int, int, int], n_classes: int,
                depth: int = WRN_DEFAULT_DEPTH, width: int = WRN_DEFAULT_WIDTH):
    """WRN-``depth``-``width`` (module docstring); depth 6n + 4, n blocks per stage."""
    import keras
    from keras import layers

    problems = wide_resnet_problems({"depth": depth, "width": width})
    if problems:
        raise ValueError("; ".join(problems))
    n = (depth - 4) // 6
    conv_init = _kaiming_normal("fan_out")
    channels = [16, 16 * width, 32 * width, 64 * width]
    inputs = keras.Input(shape=tuple(input_shape))
    x = _conv(inputs, channels[0], 3, 1, conv_init, "conv1")
    for stage, stride in enumerate((1, 2, 2), start=1):
        for block in range(n):
            in_planes = channels[stage - 1] if block == 0 else channels[stage]
            x = _wide_block(x, in_planes, channels[stage], stride if block == 0 else 1,
                            conv_init, f"block{stage}_{block + 1}")
    x = layers.ReLU(name="relu")(_batch_norm("bn")(x))
    outputs = _logits(x, n_classes, _torch_default(), "zeros")
    return keras.Model(inputs, outputs, name=f"wide_resnet_{depth}_{width}")


# ------------------------------------------------------------------ ResNet-20

def _subsample_and_pad(stride: int, pad: int, name: str):
    """He et al.'s option-A shortcut: every ``stride``-th pixel, ``pad`` zero
    channels on each side (no parameters)."""
    from keras import layers, ops

    return layers.Lambda(
        lambda t: ops.pad(t[:, ::stride, ::stride, :], [[0, 0], [0, 0], [0, 0], [pad, pad]]),
        name=name)


def _basic_block(x, in_planes: int, planes: int, stride: int, init, name: str):
    from keras import layers

    out = _conv(x, planes, 3, stride, init, f"{name}_conv1")
    out = layers.ReLU(name=f"{name}_relu1")(_batch_norm(f"{name}_bn1")(out))
    out = _conv(out, planes, 3, 1, init, f"{name}_conv2")
    out = _batch_norm(f"{name}_bn2")(out)
    if stride != 1 or in_planes != planes:
        shortcut = _subsample_and_pad(stride, (planes - in_planes) // 2, f"{name}_shortcut")(x)
    else:
        shortcut = x
    out = layers.Add(name=f"{name}_add")([out, shortcut])
    return layers.ReLU(name=f"{name}_relu2")(out)


def resnet20(input_shape: tuple[int, int, int], n_classes: int):
    """He et al. (2016)'s CIFAR ResNet-20 (module docstring), logits out."""
    import keras
    from keras import layers

    init = _kaiming_normal("fan_in")
    inputs = keras.Input(shape=tuple(input_shape))
    x = _conv(inputs, 16, 3, 1, init, "conv1")
    x = layers.ReLU(name="relu1")(_batch_norm("bn1")(x))
    in_planes = 16
    for stage, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        for block in range(3):
            x = _basic_block(x, in_planes, planes, stride if block == 0 else 1, init,
                             f"stage{stage}_{block + 1}")
            in_planes = planes
    outputs = _logits(x, n_classes, init, "zeros")
    return keras.Model(inputs, outputs, name="resnet20")


MODELS = {"preact_resnet18": preact_resnet18, "wide_resnet": wide_resnet,
          "resnet20": resnet20}
# Checks of a model's params' values (their names are checked against the builder's signature).
VALUE_CHECKS = {"wide_resnet": wide_resnet_problems}
