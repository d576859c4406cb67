"""ResNets of the adversarial-training literature (issue 24) and in-model normalization.

Parameter counts are checked against counts worked out from the PyTorch
references' modules (locuslab/robust_overfitting's ``preactresnet.py`` and
``wideresnet.py``; He et al. 2016's CIFAR ResNet-20 with option-A shortcuts),
written out below layer by layer, independently of the Keras construction.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest

from advfit.models.architectures import build_model, check_logits_model

CIFAR_MEAN = [0.4914, 0.4822, 0.4465]  # robust_overfitting's utils.py
CIFAR_STD = [0.2471, 0.2435, 0.2616]


# ------------------------------------------------ the references' parameter counts

def _bn(c):  # nn.BatchNorm2d(c): weight and bias (running stats are buffers)
    return 2 * c


def _conv(cin, cout, k):  # nn.Conv2d(..., bias=False)
    return cin * cout * k * k


def _linear(cin, cout):
    return cin * cout + cout


def torch_preact_resnet18(in_channels=3, n_classes=10) -> int:
    """PreActResNet(PreActBlock, [2, 2, 2, 2]) as in robust_overfitting's preactresnet.py."""
    total, in_planes = _conv(in_channels, 64, 3), 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for s in (stride, 1):
            total += _bn(in_planes) + _conv(in_planes, planes, 3) + _bn(planes) + _conv(planes, planes, 3)
            if s != 1 or in_planes != planes:
                total += _conv(in_planes, planes, 1)
            in_planes = planes
    return total + _bn(512) + _linear(512, n_classes)  # self.bn, self.linear


def torch_wide_resnet(depth, width, in_channels=3, n_classes=10) -> int:
    """WideResNet(depth, n_classes, widen_factor=width) as in robust_overfitting's wideresnet.py."""
    channels = [16, 16 * width, 32 * width, 64 * width]
    n = (depth - 4) // 6
    total = _conv(in_channels, channels[0], 3)
    for stage in (1, 2, 3):
        for i in range(n):
            cin, cout = (channels[stage - 1] if i == 0 else channels[stage]), channels[stage]
            total += _bn(cin) + _conv(cin, cout, 3) + _bn(cout) + _conv(cout, cout, 3)
            if cin != cout:
                total += _conv(cin, cout, 1)  # convShortcut
    return total + _bn(channels[3]) + _linear(channels[3], n_classes)


def he_resnet20(in_channels=3, n_classes=10) -> int:
    """He et al. 2016 section 4.2, n = 3: conv-BN stem, 3 x 3 basic blocks, option A shortcuts."""
    total, cin = _conv(in_channels, 16, 3) + _bn(16), 16
    for planes in (16, 32, 64):
        for _ in range(3):
            total += _conv(cin, planes, 3) + _bn(planes) + _conv(planes, planes, 3) + _bn(planes)
            cin = planes
    return total + _linear(64, n_classes)


def _counts(model) -> tuple[int, int]:
    def size(weights):
        return sum(int(np.prod(w.shape)) for w in weights)
    return size(model.trainable_weights), size(model.non_trainable_weights)


# ------------------------------------------------ architectures

def test_preact_resnet18_is_rice_et_al_s():
    model = build_model("preact_resnet18", (32, 32, 3), 10)
    trainable, moving = _counts(model)
    assert torch_preact_resnet18() == 11_172_170  # "11.17M"; without the final BN: 11,171,146
    assert trainable == 11_172_170
    # BatchNorm's moving mean and variance: 2 x (all BN channels), never trained
    bn_channels = (2 * (64 + 64) + (64 + 128) + (128 + 128) + (128 + 256) + (256 + 256)
                   + (256 + 512) + (512 + 512) + 512)  # bn1 + bn2 of each block, the final bn
    assert moving == 2 * bn_channels == 7808
    assert model.output_shape == (None, 10)
    # the stem has no BatchNorm; the stages end at 32, 16, 8, 4 pixels (avg_pool2d(out, 4))
    assert [type(layer).__name__ for layer in model.layers[1:3]] == ["Conv2D", "BatchNormalization"]
    for name, shape in (("layer1_2_add", (32, 32, 64)), ("layer2_2_add", (16, 16, 128)),
                        ("layer3_2_add", (8, 8, 256)), ("layer4_2_add", (4, 4, 512))):
        assert tuple(model.get_layer(name).output.shape[1:]) == shape
    # a stride-2 3x3 convolution pads 1 pixel on every side, as PyTorch's padding=1
    assert model.get_layer("layer2_1_conv1_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("layer2_1_conv1").padding == "valid"
    assert not any(getattr(layer, "use_bias", False) for layer in model.layers
                   if type(layer).__name__ == "Conv2D")
    bn = model.get_layer("bn")
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)  # PyTorch's momentum 0.1, eps 1e-5


@pytest.mark.parametrize("depth,width,expected", [(16, 4, 2_748_890), (34, 10, 46_160_474)])
def test_wide_resnet_counts_match_the_reference(depth, width, expected):
    model = build_model({"name": "wide_resnet", "params": {"depth": depth, "width": width}},
                        (32, 32, 3), 10)
    assert torch_wide_resnet(depth, width) == expected
    assert _counts(model)[0] == expected
    assert model.name == f"wide_resnet_{depth}_{width}"
    assert model.output_shape == (None, 10)
    n_blocks = sum(1 for layer in model.layers if layer.name.endswith("_add"))
    assert n_blocks == 3 * (depth - 4) // 6


def test_wide_resnet_defaults_to_rice_et_al_s_wrn_34_10():
    from advfit.models.architectures import builder_params
    from advfit.models.resnets import wide_resnet

    assert builder_params("wide_resnet") == ("depth", "width")
    assert builder_params("lenet5") == builder_params("resnet20") == ()
    parameters = inspect.signature(wide_resnet).parameters
    defaults = {k: p.default for k, p in parameters.items() if k in ("depth", "width")}
    assert defaults == {"depth": 34, "width": 10}


def test_resnet20_is_he_et_al_s():
    model = build_model("resnet20", (32, 32, 3), 10)
    assert he_resnet20() == 269_722  # the paper's "0.27M"
    assert _counts(model) == (269_722, 2 * (16 + 3 * 2 * (16 + 32 + 64)))
    assert tuple(model.get_layer("stage3_3_add").output.shape[1:]) == (8, 8, 64)
    # option A: the shortcut that doubles the channels has no weights
    assert model.get_layer("stage2_1_shortcut").weights == []


def test_resnet_outputs_are_logits(digits):
    for name in ("preact_resnet18", "resnet20"):
        model = build_model(name, (8, 8, 1), 10)
        check_logits_model(model, 10, name)  # no softmax at the end
        assert model.layers[-1].activation.__name__ == "linear"
        logits = np.asarray(model(digits.x[:4], training=False))
        assert logits.shape == (4, 10)
        assert (logits < 0).any() and not np.allclose(logits.sum(axis=1), 1.0)


def test_resnet20_on_digits_goes_down_to_2x2():
    model = build_model("resnet20", (8, 8, 1), 10)
    assert tuple(model.get_layer("stage3_3_add").output.shape[1:]) == (2, 2, 64)
    assert _counts(model)[0] == he_resnet20(in_channels=1)


# ------------------------------------------------ BatchNorm at inference

def test_batchnorm_inference_ignores_the_batch_after_a_training_step():
    import keras

    from advfit.models.training import compile_model

    keras.utils.set_random_seed(3)
    model = build_model("resnet20", (8, 8, 1), 10)
    compile_model(model, {"optimizer": "sgd", "learning_rate": 0.05, "batch_size": 16,
                          "epochs": 1})
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    moving = model.get_layer("bn1").moving_mean
    before = moving.numpy().copy()
    model.train_on_batch(x, y)
    assert not np.allclose(moving.numpy(), before)  # the step moved the moving statistics

    batch = np.asarray(model(x, training=False))
    one_by_one = np.concatenate([np.asarray(model(x[i:i + 1], training=False))
                                 for i in range(len(x))])
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-4, atol=1e-5)
    shuffled = np.asarray(model(x[::-1], training=False))[::-1]
    np.testing.assert_allclose(batch, shuffled, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(model(x)), batch, rtol=1e-6)  # default: inference
    # in training mode the batch's own statistics matter: the checks above could fail
    train_mode = np.asarray(model(x[:4], training=True))
    assert not np.allclose(train_mode, batch[:4], atol=1e-3)


def test_tiny_training_of_resnet20_on_digits(digits, tmp_path):
    import keras

    from advfit.models.training import train_regime

    keras.utils.set_random_seed(0)
    model = build_model({"name": "resnet20", "normalization": {"mean": 0.5, "std": 0.3}},
                        digits.x.shape[1:], 10)
    regime = {"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "batch_size": 32,
              "epochs": 1}
    train = digits.take(digits.official_train[:96])
    held = digits.take(digits.official_train[96:160])
    history = train_regime(model, regime, train, held, held, tmp_path)
    assert np.isfinite(history["train_loss"]).all()
    assert history["test_accuracy"].between(0, 1).all()
    # the snapshot (BatchNorm's moving statistics included) loads into a fresh model
    fresh = build_model({"name": "resnet20", "normalization": {"mean": 0.5, "std": 0.3}},
                        digits.x.shape[1:], 10)
    fresh.load_weights(tmp_path / "epoch_001.weights.h5")
    x = held[0][:8]
    np.testing.assert_allclose(np.asarray(fresh(x, training=False)),
                               np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6)


# ------------------------------------------------ normalization inside the model

def test_normalization_is_the_first_fixed_layer_and_equals_normalised_input():
    import keras

    shape = (16, 16, 3)
    keras.utils.set_random_seed(1)
    plain = build_model("resnet20", shape, 10)
    normalized = build_model({"name": "resnet20",
                              "normalization": {"mean": CIFAR_MEAN, "std": CIFAR_STD}}, shape, 10)
    first = normalized.layers[1]
    assert first.name == "normalization" and first.weights == []
    assert len(normalized.weights) == len(plain.weights)  # nothing more to save or train
    assert _counts(normalized) == _counts(plain)
    normalized.set_weights(plain.get_weights())

    x = np.random.default_rng(2).uniform(size=(6, *shape)).astype(np.float32)
    by_hand = (x - np.float32(CIFAR_MEAN)) / np.float32(CIFAR_STD)
    expected = np.asarray(plain(by_hand, training=False))
    got = np.asarray(normalized(x, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.asarray(plain(x, training=False)), expected, atol=1e-2)
    # the layer's own output: per channel, (x - mean) / std
    np.testing.assert_allclose(np.asarray(first(x)), by_hand, rtol=1e-5, atol=1e-6)
    # gradients reach the pixels (attacks work in [0, 1])
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = tf.reduce_sum(normalized(xt, training=False))
    assert np.abs(tape.gradient(out, xt).numpy()).sum() > 0


def test_normalization_with_one_value_and_a_custom_model(tmp_path):
    (tmp_path / "tiny.py").write_text(
        "import keras\n"
        "def build(input_shape, n_classes, units=4):\n"
        "    inputs = keras.Input(shape=input_shape)\n"
        "    x = keras.layers.Flatten()(inputs)\n"
        "    return keras.Model(inputs, keras.layers.Dense(n_classes)(x))\n")
    spec = {"name": "custom", "builder": f"{tmp_path}/tiny.py:build", "params": {"units": 3},
            "normalization": {"mean": 0.5, "std": 0.25}}
    model = build_model(spec, (8, 8, 1), 10)
    assert model.layers[1].name == "normalization"
    x = np.random.default_rng(0).uniform(size=(3, 8, 8, 1)).astype(np.float32)
    inner = model.layers[-1]
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(inner((x - 0.5) / 0.25)),
                               rtol=1e-5, atol=1e-5)


def test_build_model_refuses_bad_params_and_normalization():
    with pytest.raises(ValueError, match=r"'model.params.depth': lenet5 has no parameter "
                                         r"'depth' \(it takes none\)"):
        build_model({"name": "lenet5", "params": {"depth": 16}}, (8, 8, 1), 10)
    with pytest.raises(ValueError, match=r"'model.params.deep': wide_resnet has no parameter "
                                         r"'deep' \(it takes depth, width\)"):
        build_model({"name": "wide_resnet", "params": {"deep": 16}}, (8, 8, 1), 10)
    with pytest.raises(ValueError, match=r"'model.params.depth': 18 is not a WideResNet depth"):
        build_model({"name": "wide_resnet", "params": {"depth": 18, "width": 1}}, (8, 8, 1), 10)
    with pytest.raises(ValueError, match=r"'model.normalization.mean': 3 values for images of 1"):
        build_model({"name": "resnet20", "normalization": {"mean": CIFAR_MEAN, "std": 0.2}},
                    (8, 8, 1), 10)


def test_lenet5_default_is_unchanged():
    """No params, no normalization: the very layers (and seeded weights) of before."""
    import keras

    from advfit.models.architectures import lenet5

    keras.utils.set_random_seed(5)
    direct = lenet5((8, 8, 1), 10)
    keras.utils.set_random_seed(5)
    built = build_model({"name": "lenet5"}, (8, 8, 1), 10)
    assert [layer.name for layer in built.layers][1:] == [layer.name for layer in direct.layers][1:]
    assert all(np.array_equal(a, b) for a, b in zip(direct.get_weights(), built.get_weights()))


# ------------------------------------------------ the config check

@pytest.fixture()
def filled_config(default_config):
    from advfit.config import check_schema, fill_defaults

    config = check_schema(default_config)  # digits: 8x8 images, 1 channel
    fill_defaults(config)
    return config


@pytest.mark.parametrize("model,named", [
    ({"name": "resnet20", "normalization": {"mean": 0.5, "std": 0.0}},
     r"'model.normalization.std': 0.0: every std must be > 0"),
    ({"name": "resnet20", "normalization": {"mean": 0.5, "std": [0.2, -0.1]}},
     r"'model.normalization.std': 2 values for images of 1 channel"),
    ({"name": "lenet5", "normalization": {"mean": CIFAR_MEAN, "std": CIFAR_STD}},
     r"'model.normalization.mean': 3 values for images of 1 channel"),
    ({"name": "resnet20", "normalization": {"mean": 0.5}},
     r"'model.normalization.std': required but missing"),
    ({"name": "resnet20", "normalization": {"mean": "0.5", "std": 1}},
     r"'model.normalization.mean': '0.5' is not a finite number"),
    ({"name": "resnet20", "normalization": {"mean": 0.5, "std": 1, "eps": 1}},
     r"'model.normalization.eps': unknown key"),
    ({"name": "resnet20", "params": {"depth": 20}},
     r"'model.params.depth': resnet20 has no parameter 'depth' \(it takes none\)"),
    ({"name": "wide_resnet", "params": {"depth": 16, "width": 0}},
     r"'model.params.width': 0 is not a widening factor"),
    ({"name": "wide_resnet", "params": {"depth": True}},
     r"'model.params.depth': True is not a WideResNet depth"),
])
def test_check_config_refuses_bad_model_keys(filled_config, model, named):
    from advfit.config import ConfigError, check_config

    filled_config["model"] = model
    with pytest.raises(ConfigError, match=named):
        check_config(filled_config)


def test_mean_and_std_counts_must_agree():
    from advfit.models.architectures import normalization_problems

    assert normalization_problems({"mean": CIFAR_MEAN, "std": CIFAR_STD}, 3) == []
    assert normalization_problems({"mean": 0.5, "std": 0.25}, 3) == []
    problems = normalization_problems({"mean": CIFAR_MEAN, "std": 0.25}, 3)
    assert problems == ["config key 'model.normalization.std': 1 value(s) but mean has 3; give "
                        "both one value per channel or both a single value"]


def test_validate_config_accepts_the_new_models(default_config):
    from advfit.config import validate_config

    for model in ({"name": "wide_resnet", "params": {"depth": 16, "width": 4}},
                  {"name": "resnet20", "normalization": {"mean": 0.5, "std": 0.25}},
                  {"name": "preact_resnet18"}):
        config = copy.deepcopy(default_config)
        config["model"] = copy.deepcopy(model)
        assert validate_config(config)["model"] == model  # nothing filled in


def test_pgd_adversarial_training_step_on_a_normalized_resnet(digits):
    """The PGD-AT step (crafting in inference mode, the update in training mode) runs
    through BatchNorm and the normalization layer, and moves the moving statistics."""
    import keras

    from advfit.models.adversarial_training import AdversarialTrainer
    from advfit.models.training import compile_model

    keras.utils.set_random_seed(0)
    model = build_model({"name": "resnet20", "normalization": {"mean": 0.5, "std": 0.3}},
                        digits.x.shape[1:], 10)
    compile_model(model, {"optimizer": "sgd", "learning_rate": 0.05, "batch_size": 16,
                          "epochs": 1})
    trainer = AdversarialTrainer(model, {"attack": "pgd", "eps": 0.1, "eps_iter": 0.05,
                                         "nb_iter": 2}, batch_size=16)
    moving = [w for w in model.non_trainable_weights if "moving_mean" in w.path][0]
    before = moving.numpy().copy()
    x, y = digits.take(digits.official_train[:32])
    logs = trainer.fit_epoch(x, y, seed=1)
    assert logs["n_adversarial"] == 32 and np.isfinite(logs["loss"])
    assert not np.allclose(moving.numpy(), before)
