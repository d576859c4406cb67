"""Training recipes (issue 24): learning-rate schedules, weight decay, Nesterov
momentum and augmentation (advfit.models.recipes), their config checks, and a
training killed mid-run that resumes bit-identically with all of them on."""

from __future__ import annotations

import hashlib
import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import kill_and_resume

from advfit.models.recipes import (augment, augmentation_seed, cutout, decayed_variables,
                                   flip_horizontal, learning_rate, pad, random_crop,
                                   resolve_recipe, step_recipe)

PIECEWISE_FRACTION = {"type": "piecewise", "unit": "fraction", "boundaries": [0.5, 0.75],
                      "factors": [0.1, 0.01]}
SGD = {"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "batch_size": 32, "epochs": 4}


# ---------------------------------------------------------------- learning rate

def test_piecewise_schedule_in_both_units_is_the_formula():
    """4 epochs of 3 steps: steps 0-5 at the base rate, 6-8 (epoch 3) at 1/10,
    9-11 (epoch 4) at 1/100, whether the boundaries are fractions or epochs."""
    by_epoch = {**PIECEWISE_FRACTION, "unit": "epoch", "boundaries": [2, 3]}
    expected = [0.1] * 6 + [0.01] * 3 + [0.001] * 3
    for spec in (PIECEWISE_FRACTION, by_epoch):
        rates = [learning_rate(spec, 0.1, i, 3, 4) for i in range(12)]
        assert rates == pytest.approx(expected, rel=1e-12), spec
    # Rice et al.'s 200 epochs of 391 steps: the drop at the first step of epoch 101.
    assert learning_rate(PIECEWISE_FRACTION, 0.1, 100 * 391 - 1, 391, 200) == 0.1
    assert learning_rate(PIECEWISE_FRACTION, 0.1, 100 * 391, 391, 200) == pytest.approx(0.01)
    assert learning_rate(PIECEWISE_FRACTION, 0.1, 150 * 391, 391, 200) == pytest.approx(0.001)
    # A step exactly on a decimal boundary counts as past it (0.3 of 10 epochs of 3 steps).
    one = {"type": "piecewise", "unit": "fraction", "boundaries": [0.3], "factors": [0.5]}
    assert [learning_rate(one, 1.0, i, 3, 10) for i in (8, 9)] == [1.0, 0.5]
    # Factors are multiples of the base rate, not of the previous rate; they may rise.
    up = {"type": "piecewise", "unit": "epoch", "boundaries": [1, 2], "factors": [2.0, 0.5]}
    assert [learning_rate(up, 0.1, i, 1, 3) for i in range(3)] == pytest.approx([0.1, 0.2, 0.05])


def test_constant_and_cosine_schedules_are_the_formula():
    assert learning_rate(None, 0.3, 17, 5, 4) == 0.3
    assert all(learning_rate({"type": "constant"}, 0.3, i, 5, 4) == 0.3 for i in range(20))
    for final in (0.0, 0.1):
        spec = {"type": "cosine", "final_factor": final}
        for i in (0, 1, 7, 10, 19):
            t = i / 5  # epochs elapsed at the step's start
            expected = 0.3 * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t / 4)))
            assert learning_rate(spec, 0.3, i, 5, 4) == pytest.approx(expected, rel=1e-12)
        assert learning_rate(spec, 0.3, 10, 5, 4) == pytest.approx(0.3 * (final + (1 - final) / 2))
    assert learning_rate({"type": "cosine"}, 0.3, 0, 5, 4) == 0.3


def test_warmup_multiplies_any_schedule_linearly():
    spec = {**PIECEWISE_FRACTION, "warmup_epochs": 1}  # 4 epochs of 4 steps
    rates = [learning_rate(spec, 0.1, i, 4, 4) for i in range(16)]
    assert rates == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.1]
                                  + [0.01] * 4 + [0.001] * 4, rel=1e-12)
    half = {"type": "cosine", "warmup_epochs": 0.5}  # 2 warm-up steps of 4 per epoch
    assert learning_rate(half, 1.0, 0, 4, 4) == pytest.approx(0.5 * learning_rate(
        {"type": "cosine"}, 1.0, 0, 4, 4))
    assert learning_rate(half, 1.0, 5, 4, 4) == learning_rate({"type": "cosine"}, 1.0, 5, 4, 4)


def test_the_history_rate_is_the_last_step_of_each_epoch():
    steps = step_recipe({**SGD, "lr_schedule": PIECEWISE_FRACTION}, n_train=70, seed=1)
    assert steps.steps == 3  # 70 images, batches of 32: 32, 32, 6
    assert [steps.epoch_rate(e) for e in (1, 2, 3, 4)] == [0.05, 0.05, 0.005, 0.0005]
    assert steps.rate(3, 0) == learning_rate(PIECEWISE_FRACTION, 0.05, 6, 3, 4)
    assert step_recipe(SGD, 70, 1) is None and step_recipe({**SGD, "weight_decay": 1e-4}, 70, 1) \
        is None  # nothing per step: the loops run as without recipes


# ---------------------------------------------------------------- augmentation

def _images(n=64, h=8, w=6, c=3, seed=0):
    return np.random.default_rng(seed).random((n, h, w, c), dtype=np.float32) + 0.5  # no zeros


def test_crops_are_shifted_windows_of_the_padded_image():
    x = _images()
    top = np.random.default_rng(1).integers(0, 9, len(x))
    left = np.random.default_rng(2).integers(0, 9, len(x))
    for mode in ("constant", "reflect"):
        out = random_crop(x, 4, top, left, mode)
        padded = np.pad(x, [(0, 0), (4, 4), (4, 4), (0, 0)], mode=mode)
        assert out.shape == x.shape and out.dtype == x.dtype
        for i in range(len(x)):
            assert np.array_equal(out[i], padded[i, top[i]:top[i] + 8, left[i]:left[i] + 6])
    # Zero padding: a shift by (4 - top, 4 - left) with zeros moved in.
    out = random_crop(x, 4, top, left)
    for i in range(len(x)):
        dy, dx = 4 - top[i], 4 - left[i]
        shifted = np.zeros_like(x[i])
        src = x[i][max(0, -dy):8 - max(0, dy), max(0, -dx):6 - max(0, dx)]
        shifted[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
        assert np.array_equal(out[i], shifted), i
    assert np.array_equal(random_crop(x, 4, np.full(len(x), 4), np.full(len(x), 4)), x)
    assert pad(x, 2, "reflect")[0, 0, 2, 0] == x[0, 2, 0, 0]  # mirrored without the edge


def test_flips_are_mirror_images_and_cutout_zeroes_one_square():
    x = _images()
    choice = np.arange(len(x)) % 3 == 0
    out = flip_horizontal(x, choice)
    for i in range(len(x)):
        assert np.array_equal(out[i], x[i, :, ::-1] if choice[i] else x[i])
    top, left = np.arange(len(x)) % 6, np.arange(len(x)) % 4
    out = cutout(x, top, left, 3)
    for i in range(len(x)):
        hole = np.zeros(x.shape[1:3], bool)
        hole[top[i]:top[i] + 3, left[i]:left[i] + 3] = True
        assert np.all(out[i][hole] == 0) and np.array_equal(out[i][~hole], x[i][~hole])
        assert hole.sum() == 9  # the whole square lies inside the image


def test_augment_is_a_pure_function_of_its_seed():
    x = _images(n=400)
    spec = {"crop": {"padding": 2, "padding_mode": "constant"}, "flip": "horizontal",
            "cutout": {"size": 2}}
    seeds = [augmentation_seed(7, 3), 5]
    first, again = augment(x, spec, seeds), augment(x.copy(), spec, seeds)
    assert np.array_equal(first, again) and not np.array_equal(first, x)
    assert not np.array_equal(first, augment(x, spec, [augmentation_seed(7, 4), 5]))  # epoch
    assert not np.array_equal(first, augment(x, spec, [augmentation_seed(7, 3), 6]))  # batch
    assert not np.array_equal(first, augment(x, spec, [augmentation_seed(8, 3), 5]))  # job
    assert np.array_equal(x, _images(n=400))  # the input is left as it is
    # Each kind alone: about half the images flipped, every crop offset drawn.
    flipped = augment(x, {"flip": "horizontal"}, 1)
    mirrored = np.array([np.array_equal(a, b[:, ::-1]) for a, b in zip(flipped, x)])
    assert 150 < mirrored.sum() < 250
    assert np.all(mirrored | np.all(flipped == x, axis=(1, 2, 3)))
    cropped = augment(x, {"crop": {"padding": 1}}, 1)
    padded = pad(x, 1)
    offsets = {next((t, s) for t in range(3) for s in range(3)
                    if np.array_equal(c, p[t:t + 8, s:s + 6])) for c, p in zip(cropped, padded)}
    assert offsets == {(t, s) for t in range(3) for s in range(3)}


def test_adversarial_training_augments_before_crafting_and_sets_each_rate():
    """The images handed to the crafting step are the augmented batch, and each
    step runs at its scheduled rate (a stand-in step and optimizer record them)."""
    from advfit.models.adversarial_training import train_epoch

    x, y = _images(n=70, h=8, w=8, c=1), np.arange(70) % 10
    regime = {**SGD, "lr_schedule": PIECEWISE_FRACTION, "augmentation": {"flip": "horizontal"}}
    steps = step_recipe(regime, len(x), seed=9)

    class Optimizer:
        rates: list = []

        def __setattr__(self, name, value):
            assert name == "learning_rate"
            self.rates.append(value)

    seen = []

    def step(images, labels, n_adv, seed):
        seen.append(images)
        return 0.0, 0, 0

    import functools

    before = functools.partial(steps.before_step, Optimizer(), 3)
    train_epoch(step, x, y, 32, 1.0, 123, before)
    order = np.random.default_rng(123).permutation(70)
    for b, images in enumerate(seen):
        batch = x[order[32 * b:32 * (b + 1)]]
        assert np.array_equal(images, augment(batch, resolve_recipe(regime)["augmentation"],
                                              [augmentation_seed(9, 3), b]))
    assert Optimizer.rates == [steps.rate(3, b) for b in range(3)] == pytest.approx([0.005] * 3)


# ---------------------------------------------------------------- weight decay

def _tiny_bn_model(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Flatten()(keras.layers.ReLU()(h))
    return keras.Model(inputs, keras.layers.Dense(10, name="dense")(h))


def _one_step(model, optimizer, x, y, penalty=0.0):
    """One optimizer step on the cross-entropy (+ ``penalty`` x sum of the kernels' squares)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            y, model(x, training=True)))
        if penalty:
            loss += penalty * tf.add_n([tf.reduce_sum(v ** 2) for v in
                                        decayed_variables(model)])
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))
    return {v.path: v.numpy() for v in model.trainable_variables}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_coupled_decay_is_half_lambda_sum_of_squared_kernels_in_the_loss(optimizer):
    """weight_decay = lambda adds lambda x w to each kernel's gradient: the very
    update of the loss + lambda/2 x sum of the kernels' squares (PyTorch's
    weight_decay); biases and BatchNorm's gamma and beta get their plain update."""
    from advfit.models.training import make_optimizer

    lam = 0.05
    regime = {"optimizer": optimizer, "learning_rate": 0.1,
              **({"momentum": 0.9} if optimizer == "sgd" else {})}
    x = _images(n=16, h=8, w=8, c=1)
    y = np.arange(16) % 10
    model = _tiny_bn_model()
    assert sorted(v.path for v in decayed_variables(model)) == [
        "conv/kernel", "dense/kernel"]
    assert len(decayed_variables(model, "all")) == len(model.trainable_variables) == 6
    coupled = [_one_step(model, make_optimizer({**regime, "weight_decay": lam}, model), x, y)]
    reference = _tiny_bn_model()
    in_loss = _one_step(reference, make_optimizer(regime), x, y, penalty=lam / 2)
    plain = _one_step(_tiny_bn_model(), make_optimizer(regime), x, y)
    for name, value in coupled[0].items():
        assert np.allclose(value, in_loss[name], rtol=1e-5, atol=1e-7), name
        if name.endswith("kernel"):
            assert not np.allclose(value, plain[name], rtol=1e-6, atol=0), name
        else:  # bias, gamma, beta: untouched by the decay, bit for bit
            assert np.array_equal(value, plain[name]), name
    if optimizer == "sgd":  # the first step: w1 = w0 - lr (g + lambda w0)
        w0 = _tiny_bn_model().get_layer("dense").kernel.numpy()
        assert np.allclose(coupled[0]["dense/kernel"] - plain["dense/kernel"], -0.1 * lam * w0,
                           atol=1e-7)


def test_decoupled_decay_shrinks_kernels_only_by_lr_times_lambda():
    from advfit.models.training import make_optimizer

    regime = {"optimizer": "adam", "learning_rate": 0.01}
    x, y = _images(n=16, h=8, w=8, c=1), np.arange(16) % 10
    model = _tiny_bn_model()
    w0 = {v.path: v.numpy() for v in model.trainable_variables}
    optimizer = make_optimizer({**regime, "weight_decay": 0.5, "weight_decay_mode": "decoupled"},
                               model)
    decayed = _one_step(model, optimizer, x, y)
    plain = _one_step(_tiny_bn_model(), make_optimizer(regime), x, y)
    for name, value in decayed.items():
        if name.endswith("kernel"):  # AdamW: w -= lr x lambda x w, apart from the gradient
            assert np.allclose(value - plain[name], -0.01 * 0.5 * w0[name], atol=1e-7), name
        else:
            assert np.array_equal(value, plain[name]), name
    everything = make_optimizer({**regime, "weight_decay": 0.5, "weight_decay_mode": "decoupled",
                                 "weight_decay_scope": "all"}, model := _tiny_bn_model())
    gamma = _one_step(model, everything, x, y)["bn/gamma"]  # biases start at 0: gamma at 1
    assert np.allclose(gamma - plain["bn/gamma"], -0.01 * 0.5 * w0["bn/gamma"], atol=1e-7)


def test_nesterov_and_zero_decay_choose_the_optimizer():
    from advfit.models.training import make_optimizer

    model = _tiny_bn_model()
    nesterov = make_optimizer({**SGD, "nesterov": True}, model)
    assert nesterov.nesterov and type(nesterov).__name__ == "SGD"
    assert not make_optimizer(SGD).nesterov
    assert type(make_optimizer({**SGD, "weight_decay": 1e-3}, model)).__name__ == "CoupledSGD"
    assert type(make_optimizer({**SGD, "weight_decay": 0}, model)).__name__ == "SGD"
    with pytest.raises(ValueError, match="needs the model"):
        make_optimizer({**SGD, "weight_decay": 1e-3})


# ---------------------------------------------------------------- config and fingerprint

@pytest.mark.parametrize("change,named", [
    ({"weight_decay": -1e-4}, "weight_decay"),
    ({"weight_decay": float("nan")}, "weight_decay"),
    ({"weight_decay": float("inf")}, "weight_decay"),
    ({"weight_decay_mode": "decoupled"}, "weight_decay_mode"),  # without weight_decay
    ({"weight_decay": 1e-4, "weight_decay_mode": "l1"}, "weight_decay_mode"),
    ({"lr_schedule": {"type": "step"}}, "lr_schedule.type"),
    ({"lr_schedule": {**PIECEWISE_FRACTION, "boundaries": [0.75, 0.5]}}, "lr_schedule.boundaries"),
    ({"lr_schedule": {**PIECEWISE_FRACTION, "boundaries": [0.5, 0.5]}}, "lr_schedule.boundaries"),
    ({"lr_schedule": {**PIECEWISE_FRACTION, "boundaries": [0.5, 1.0]}}, "lr_schedule.boundaries"),
    ({"lr_schedule": {**PIECEWISE_FRACTION, "unit": "epoch", "boundaries": [10, 20]}},
     "lr_schedule.boundaries"),  # the regime has 20 epochs
    ({"lr_schedule": {**PIECEWISE_FRACTION, "factors": [0.1, 0]}}, "lr_schedule.factors"),
    ({"lr_schedule": {**PIECEWISE_FRACTION, "factors": [0.1]}}, "lr_schedule.factors"),
    ({"lr_schedule": {k: v for k, v in PIECEWISE_FRACTION.items() if k != "unit"}},
     "lr_schedule.unit"),
    ({"lr_schedule": {"type": "cosine", "boundaries": [0.5]}}, "lr_schedule.boundaries"),
    ({"lr_schedule": {"type": "cosine", "final_factor": 1.0}}, "lr_schedule.final_factor"),
    ({"lr_schedule": {"type": "constant", "warmup_epochs": 20}}, "lr_schedule.warmup_epochs"),
    ({"augmentation": {"crop": {"padding": 8}}}, "augmentation.crop.padding"),  # digits: 8x8
    ({"augmentation": {"crop": {"padding": 0}}}, "augmentation.crop.padding"),
    ({"augmentation": {"cutout": {"size": 9}}}, "augmentation.cutout.size"),
    ({"augmentation": {"flip": "vertical"}}, "augmentation.flip"),
    ({"augmentation": {"crop": {"padding": 2, "padding_mode": "edge"}}},
     "augmentation.crop.padding_mode"),
    ({"augmentation": {}}, "augmentation"),
    ({"nesterov": True}, "nesterov"),  # normal is sgd without a momentum
])
def test_bad_recipes_are_refused_before_any_job_naming_the_key(default_config, change, named):
    from advfit.config import ConfigError, validate_config

    default_config["regimes"]["normal"].update(change)
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert any(f"'regimes.normal.{named}{end}" in str(error.value) for end in "'."), error.value


def test_nesterov_needs_sgd_and_check_config_names_the_key(default_config):
    from advfit.config import ConfigError, check_config, check_schema, fill_defaults

    default_config["regimes"]["overfit"]["nesterov"] = True  # overfit uses adam
    config = check_schema(default_config)
    fill_defaults(config)
    with pytest.raises(ConfigError, match=r"'regimes\.overfit\.nesterov': only the sgd optimizer"):
        check_config(config)


def test_rice_et_al_recipe_is_accepted_and_absent_keys_stay_absent(default_config):
    from advfit.config import validate_config

    rice = {"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "batch_size": 128,
            "epochs": 20, "weight_decay": 5e-4, "nesterov": False,
            "lr_schedule": dict(PIECEWISE_FRACTION),
            "augmentation": {"crop": {"padding": 4, "padding_mode": "reflect"},
                             "flip": "horizontal", "cutout": {"size": 8}}}
    default_config["regimes"]["normal"] = rice
    config = validate_config(default_config)
    assert config["regimes"]["normal"]["lr_schedule"]["warmup_epochs"] == 0  # schema default
    assert not set(config["regimes"]["overfit"]) & {"lr_schedule", "weight_decay", "nesterov",
                                                     "augmentation", "weight_decay_mode"}


def test_the_fingerprint_of_a_regime_without_recipe_is_unchanged():
    """Partial runs saved before recipes existed stay resumable: the same digest
    as the code before issue 24 computed."""
    from advfit.models.training import _fingerprint

    x = np.zeros((20, 8, 8, 1), np.float32)
    y = np.arange(20) % 10
    held = (x[:5], y[:5])
    regime = {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "batch_size": 8,
              "epochs": 2, "label_noise": 0.1}
    digest = hashlib.sha256()
    spec = {k: v for k, v in regime.items() if k != "epochs"}
    digest.update(json.dumps({"regime": spec, "seed": 1}, sort_keys=True).encode())
    for array in map(np.ascontiguousarray, [x, y, *held, *held, y]):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    assert _fingerprint(regime, 1, (x, y), held, held, y) == digest.hexdigest()

    plain = _fingerprint(regime, 1, (x, y), held, held)
    fingerprint = lambda r: _fingerprint(r, 1, (x, y), held, held)  # noqa: E731
    # Settings equal to the absent key's, written out: the same run.
    assert fingerprint({**regime, "weight_decay": 0, "nesterov": False}) == plain
    with_decay = fingerprint({**regime, "weight_decay": 1e-4})
    assert with_decay != plain
    assert fingerprint({**regime, "weight_decay": 1e-4, "weight_decay_mode": "coupled",
                        "weight_decay_scope": "kernels"}) == with_decay
    assert fingerprint({**regime, "weight_decay": 1e-4, "weight_decay_scope": "all"}) != with_decay
    crop = {"augmentation": {"crop": {"padding": 2}}}
    assert fingerprint({**regime, **crop}) == fingerprint(
        {**regime, "augmentation": {"crop": {"padding": 2, "padding_mode": "constant"}}})
    assert fingerprint({**regime, **crop}) != plain
    # A schedule in fractions of the run depends on its length, one in epochs does not.
    fraction = {**regime, "lr_schedule": PIECEWISE_FRACTION}
    assert fingerprint(fraction) != fingerprint({**fraction, "epochs": 3})
    by_epoch = {**regime, "lr_schedule": {**PIECEWISE_FRACTION, "unit": "epoch",
                                          "boundaries": [1, 1.5]}}
    assert fingerprint(by_epoch) == fingerprint({**by_epoch, "epochs": 3})


# ---------------------------------------------------------------- training

@pytest.fixture(scope="module")
def small_digits():
    from advfit import runtime

    runtime.configure(1, seed=0)
    from advfit.data.datasets import PooledData, load_dataset

    d = PooledData(load_dataset("digits"))
    return (d, d.take(d.official_train[:200]), d.take(d.official_train[200:300]),
            d.take(d.official_test[:100]))


def _train(small_digits, directory, regime, seed=5, **kwargs):
    import keras

    from advfit.models.architectures import build_model
    from advfit.models.training import train_regime

    d, train, validation, test = small_digits
    keras.utils.set_random_seed(seed)
    model = build_model("lenet5", d.x.shape[1:], 10)
    return model, train_regime(model, regime, train, validation, test, directory, seed=seed,
                               **kwargs)


ADAM = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32, "epochs": 2}
AUGMENT = {"crop": {"padding": 1}, "flip": "horizontal"}


def test_a_constant_schedule_trains_the_very_same_weights(small_digits, tmp_path):
    """Setting the rate before every step changes nothing by itself: only the
    history's learning_rate column is new."""
    from test_resume import _same_snapshots

    _, plain = _train(small_digits, tmp_path / "plain", ADAM)
    _, constant = _train(small_digits, tmp_path / "constant",
                         {**ADAM, "lr_schedule": {"type": "constant"}})
    _same_snapshots(tmp_path / "plain", tmp_path / "constant")
    assert constant.columns.tolist() == plain.columns.tolist() + ["learning_rate"]
    assert constant.drop(columns="learning_rate").equals(plain)
    assert constant.learning_rate.tolist() == [0.01, 0.01]


def test_augmented_training_scores_history_on_clean_data(small_digits, tmp_path):
    """Validation and test numbers of the history are those of the snapshot on
    the data as it is; the training numbers are those of the augmented batches
    trained on (as model.fit reports them), so they differ from a clean scoring."""
    import keras

    from advfit.runtime.layout import snapshot_name

    regime = {**ADAM, "augmentation": AUGMENT,
              "lr_schedule": {"type": "cosine", "final_factor": 0.1}}
    model, history = _train(small_digits, tmp_path / "aug", regime)
    _, plain = _train(small_digits, tmp_path / "plain", ADAM)
    assert not history.train_loss.equals(plain.train_loss)  # the augmentation bites
    assert history.learning_rate.tolist() == pytest.approx(
        [learning_rate(regime["lr_schedule"], 0.01, 7 * e - 1, 7, 2) for e in (1, 2)])
    _, train, validation, test = small_digits
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    for row in history.itertuples():
        model.load_weights(tmp_path / "aug" / snapshot_name(row.epoch))
        for (x, y), accuracy, mean_loss in ((validation, row.val_accuracy, row.val_loss),
                                            (test, row.test_accuracy, row.test_loss)):
            logits = model.predict(x, batch_size=1024, verbose=0)
            assert accuracy == pytest.approx(np.mean(np.argmax(logits, axis=1) == y), abs=1e-7)
            assert mean_loss == pytest.approx(float(np.mean(loss(y, logits))), rel=1e-5)
    logits = model.predict(train[0], verbose=0)
    assert history.train_loss.iloc[-1] != pytest.approx(float(np.mean(loss(train[1], logits))),
                                                         rel=1e-3)


def test_adversarial_training_with_a_recipe_resumes_in_process(small_digits, tmp_path):
    from test_resume import _same_snapshots

    regime = {**SGD, "epochs": 3, "nesterov": True, "weight_decay": 5e-4,
              "lr_schedule": {**PIECEWISE_FRACTION, "warmup_epochs": 1}, "augmentation": AUGMENT,
              "adversarial_training": {"attack": "pgd", "eps": 0.1, "eps_iter": 0.05, "nb_iter": 2}}
    _, whole = _train(small_digits, tmp_path / "whole", regime)
    _train(small_digits, tmp_path / "cut", regime, stop_after=1)
    _, resumed = _train(small_digits, tmp_path / "cut", regime, resume=True)
    _same_snapshots(tmp_path / "whole", tmp_path / "cut")
    assert resumed.equals(whole)
    assert whole.learning_rate.tolist() == [0.05, 0.005, 0.0005]


DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path

    from advfit.jobs import job_log

    out = Path(sys.argv[1])
    with job_log(str(out) + ".log"):
        from advfit import runtime

        runtime.configure(1, seed=7)
        from advfit.data.datasets import PooledData, load_dataset
        from advfit.models.architectures import build_model
        from advfit.models.training import train_regime

        d = PooledData(load_dataset("digits"))
        train = d.take(d.official_train[:300])
        validation = d.take(d.official_train[300:400])
        test = d.take(d.official_test[:100])
        regime = {"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True,
                  "batch_size": 32, "epochs": 5, "weight_decay": 5e-4,
                  "lr_schedule": {"type": "piecewise", "unit": "fraction",
                                  "boundaries": [0.5, 0.75], "factors": [0.1, 0.01],
                                  "warmup_epochs": 1},
                  "augmentation": {"crop": {"padding": 2, "padding_mode": "reflect"},
                                   "flip": "horizontal", "cutout": {"size": 2}}}
        model = build_model("lenet5", d.x.shape[1:], 10)
        history = train_regime(model, regime, train, validation, test, out,
                               seed=1234, resume=True)
        history.to_csv(str(out) + ".history.csv", index=False)
""")


def test_a_recipe_run_killed_mid_run_resumes_bit_identically(tmp_path):
    from test_resume import _same_snapshots

    whole, killed = kill_and_resume(tmp_path, DRIVER, epochs=5)
    _same_snapshots(whole, killed)
    history = Path(f"{whole}.history.csv")
    assert Path(f"{killed}.history.csv").read_bytes() == history.read_bytes()
    assert history.read_text().splitlines()[0].endswith(",learning_rate")
