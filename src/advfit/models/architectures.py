"""Model registry. Every model maps images in [0, 1] to class *logits*."""

from __future__ import annotations

import inspect
import math
from typing import Callable

from advfit.models import resnets

# Two valid 5x5 convolutions and two 2x2 poolings leave nothing of a smaller image.
LENET5_MIN_SIZE = 16
LENET5_NATIVE_SIZE = 32


def lenet5(input_shape: tuple[int, int, int], n_classes: int):
    """LeNet-5: conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> 120 -> 84 -> logits.

    Images smaller than 16x16 are upsampled inside the model (nearest
    neighbour, integer factor, to LeNet-5's native 32x32) so that the data,
    the attacks and the perturbation norms stay in the images' own pixels.
    """
    import keras
    from keras import layers

    height, width, _ = input_shape
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    if min(height, width) < LENET5_MIN_SIZE:
        factor = math.ceil(LENET5_NATIVE_SIZE / min(height, width))
        x = layers.UpSampling2D(size=factor, interpolation="nearest", name="upsample")(x)
    x = layers.Conv2D(6, 5, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 5, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, activation="relu", name="fc1")(x)
    x = layers.Dense(84, activation="relu", name="fc2")(x)
    outputs = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="lenet5")


# Its valid convolutions and stride-2 reductions take 75x75 down to 1x1; Keras refuses less.
INCEPTION_V3_MIN_SIZE = 75
INCEPTION_V3_CHANNELS = (1, 3)


def inception_v3(input_shape: tuple[int, int, int], n_classes: int):
    """InceptionV3 from scratch (paper 000 trains it from scratch on 10 ImageNet classes).

    Keras' own architecture with random weights and a linear top, so it
    outputs logits. Grayscale images go in as they are, with one input
    channel: a convolution over a channel tiled three times equals a
    convolution over that channel with the three kernel slices summed, so
    tiling would compute the same family of functions (it would only rescale
    the first layer's initialisation and step) at three times that layer's cost.
    Tiling exists for pretrained RGB weights, which this model never loads.
    """
    import keras

    height, width, channels = input_shape
    if min(height, width) < INCEPTION_V3_MIN_SIZE:
        raise ValueError(f"inception_v3 needs images of at least {INCEPTION_V3_MIN_SIZE}x"
                         f"{INCEPTION_V3_MIN_SIZE} pixels, got input shape {tuple(input_shape)}; "
                         f"use a larger image size (e.g. image_folder's size) or lenet5")
    if channels not in INCEPTION_V3_CHANNELS:
        raise ValueError(f"inception_v3 takes 1 (grayscale) or 3 (RGB) channels, got input shape "
                         f"{tuple(input_shape)}")
    return keras.applications.InceptionV3(
        weights=None, include_top=True, input_shape=tuple(input_shape), classes=n_classes,
        classifier_activation=None)


MODELS: dict[str, Callable] = {"lenet5": lenet5, "inception_v3": inception_v3, **resnets.MODELS}
CUSTOM = "custom"
BUILDER_KEY = "model.builder"
PARAMS_KEY = "model.params"
NORMALIZATION_KEY = "model.normalization"
NORMALIZATION_LAYER = "normalization"


def build_model(model: str | dict, input_shape, n_classes: int):
    """A fresh, uncompiled model: ``model`` is a registry name or the config's ``model``.

    ``{name: custom, builder: "file.py:function", params: {...}}`` calls your
    builder as ``function(input_shape, n_classes, **params)`` and checks that
    the result returns logits of shape (None, n_classes). A registry model
    takes its own ``params`` the same way (``{name: wide_resnet, params:
    {depth: 16, width: 4}}``); a name its builder does not take is refused.
    With ``normalization: {mean: [...], std: [...]}`` the model's first layer
    is the fixed map ``(x - mean) / std`` (:func:`with_normalization`), so the
    data, the attacks and every distance stay in pixels in [0, 1].
    """
    spec = {"name": model} if isinstance(model, str) else dict(model)
    input_shape = tuple(int(d) for d in input_shape)
    if spec["name"] == CUSTOM:
        built = build_custom(spec, input_shape, int(n_classes))
    else:
        try:
            factory = MODELS[spec["name"]]
        except KeyError:
            raise ValueError(f"unknown model {spec['name']!r}; known: "
                             f"{sorted(MODELS) + [CUSTOM]}") from None
        params = spec.get("params") or {}
        problems = params_problems(spec["name"], params)
        if problems:
            raise ValueError("; ".join(problems))
        built = factory(input_shape, int(n_classes), **params)
    if spec.get("normalization") is not None:
        built = with_normalization(built, spec["normalization"], input_shape)
    return built


def builder_params(name: str) -> tuple[str, ...]:
    """The keyword parameters registry model ``name`` takes (after input shape and classes)."""
    parameters = list(inspect.signature(MODELS[name]).parameters.values())[2:]
    return tuple(p.name for p in parameters if p.kind is not p.VAR_KEYWORD)


def params_problems(name: str, params) -> list[str]:
    """What is wrong with registry model ``name``'s ``params``, each naming its config key."""
    if not isinstance(params, dict):
        return [f"config key '{PARAMS_KEY}': {params!r} is not a mapping of parameter names "
                f"to values"]
    accepted = builder_params(name)
    takes = f"it takes {', '.join(accepted)}" if accepted else "it takes none"
    problems = [f"config key '{PARAMS_KEY}.{key}': {name} has no parameter {key!r} ({takes})"
                for key in sorted(params, key=str) if key not in accepted]
    check = resnets.VALUE_CHECKS.get(name)
    if check is not None and not problems:
        problems += check(params)
    return problems


def _values(raw) -> list | None:
    """``raw`` as a non-empty list of finite numbers, or None."""
    values = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    ok = values and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                        and math.isfinite(v) for v in values)
    return values if ok else None


def normalization_problems(normalization, channels: int) -> list[str]:
    """What is wrong with ``model.normalization`` for images of ``channels`` channels."""
    where = NORMALIZATION_KEY
    if not isinstance(normalization, dict):
        return [f"config key '{where}': {normalization!r} is not a mapping with mean and std"]
    problems = [f"config key '{where}.{key}': unknown key; normalization takes mean and std"
                for key in sorted(normalization, key=str) if key not in ("mean", "std")]
    values = {}
    for key in ("mean", "std"):
        if key not in normalization:
            problems.append(f"config key '{where}.{key}': required but missing")
            continue
        found = _values(normalization[key])
        if found is None:
            problems.append(f"config key '{where}.{key}': {normalization[key]!r} is not a "
                            f"finite number or a non-empty list of finite numbers")
            continue
        if len(found) not in (1, channels):
            problems.append(f"config key '{where}.{key}': {len(found)} values for images of "
                            f"{channels} channel(s); give one value per channel or a single "
                            f"value")
        elif key == "std" and min(found) <= 0:
            problems.append(f"config key '{where}.std': {normalization[key]!r}: every std must "
                            f"be > 0")
        values[key] = found
    if len(values) == 2 and len(values["mean"]) != len(values["std"]):
        problems.append(f"config key '{where}.std': {len(values['std'])} value(s) but mean has "
                        f"{len(values['mean'])}; give both one value per channel or both a "
                        f"single value")
    return problems


def with_normalization(model, normalization: dict, input_shape):
    """``model`` behind a fixed first layer ``(x - mean) / std`` (per channel or one value).

    The layer is Keras' ``Rescaling`` (scale 1/std, offset -mean/std, computed
    in float64): no weights, so nothing trainable and nothing more in a
    weights file than the model's own. ``model`` is called as a nested model.
    """
    import keras
    import numpy as np

    input_shape = tuple(int(d) for d in input_shape)
    problems = normalization_problems(normalization, input_shape[-1])
    if problems:
        raise ValueError("; ".join(problems))
    mean = np.asarray(_values(normalization["mean"]), dtype=np.float64)
    std = np.asarray(_values(normalization["std"]), dtype=np.float64)
    scale, offset = (1.0 / std).astype(np.float32), (-mean / std).astype(np.float32)
    if scale.size == 1:
        scale, offset = float(scale[0]), float(offset[0])
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(scale, offset, name=NORMALIZATION_LAYER)(inputs)
    return keras.Model(inputs, model(x), name=f"normalized_{model.name}")


def model_problems(config: dict, info) -> list[str]:
    """The config's ``model.params`` (registry models) and ``model.normalization``
    against the data (``info.image_shape``), each problem naming its key."""
    spec = config["model"]
    problems = []
    if spec["name"] in MODELS and spec.get("params") is not None:
        problems += params_problems(spec["name"], spec["params"])
    if spec.get("normalization") is not None:
        problems += normalization_problems(spec["normalization"], int(info.image_shape[-1]))
    return problems


def build_custom(spec: dict, input_shape: tuple[int, ...], n_classes: int):
    from advfit.runtime.plugins import PluginError, load_callable

    builder = load_callable(spec["builder"], BUILDER_KEY)
    try:
        model = builder(input_shape, n_classes, **(spec.get("params") or {}))
    except Exception as error:  # the user's code: say where it failed
        raise PluginError(f"config key '{BUILDER_KEY}': {spec['builder']} failed for input "
                          f"shape {input_shape}: {type(error).__name__}: {error}") from error
    check_logits_model(model, n_classes, spec["builder"])
    return model


def check_logits_model(model, n_classes: int, builder: str) -> None:
    """Refuse a model whose output is not (None, n_classes) logits.

    A final softmax is refused rather than stripped: the training loss and
    every attack take logits, and a silently edited model would not be the
    one the builder describes.
    """
    import keras

    from advfit.runtime.plugins import PluginError

    where = f"config key '{BUILDER_KEY}': {builder}"
    if not isinstance(model, keras.Model):
        raise PluginError(f"{where} returned {type(model).__name__}, not a Keras model")
    shape = tuple(model.output_shape) if not isinstance(model.output_shape, list) else None
    if shape != (None, n_classes):
        raise PluginError(f"{where} outputs shape {model.output_shape}, expected "
                          f"(None, {n_classes}): one logit per class")
    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    if isinstance(last, keras.layers.Softmax) or activation == "softmax":
        raise PluginError(f"{where} ends in a softmax (layer {last.name!r}); return logits "
                          f"instead (e.g. Dense({n_classes}) with no activation): the training "
                          f"loss and every attack expect logits")
