"""Your own model and your own attack: end to end, and every bad one refused before any job."""

from __future__ import annotations

import copy
import shutil
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml

from advfit.data.datasets import PooledData
from advfit.runtime.io import array_to_meta, load_json, load_npz, read_table

from conftest import ROOT, run_snakemake

TINY = {
    "seed": 3,
    "dataset": {"name": "digits"},
    "model": {"name": "custom", "builder": "vgg_small.py:build_model",
              "params": {"blocks": 2, "width": 8}},
    "splits": {"method": "kfold", "n_splits": 2},
    "regimes": {"overfit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 64,
                            "epochs": 3}},
    "best_snapshot": {"metric": "val_accuracy"},
    "attacks": {"fgsm": {"eps": 0.2},
                "square": {"method": "plugin", "function": "square_attack.py:attack",
                           "params": {"eps": 0.2, "max_iter": 20}}},
    "attack_subset_size": 40,
    "knn": {"z": 3, "regime": "overfit"},
}

# Builders and attacks that must be refused; {n} is the number of classes.
BAD_CODE = '''
import keras
from keras import layers


def _body(input_shape):
    inputs = keras.Input(shape=tuple(input_shape))
    return inputs, layers.Dense(16, activation="relu")(layers.Flatten()(inputs))


def wrong_shape(input_shape, n_classes):
    inputs, x = _body(input_shape)
    return keras.Model(inputs, layers.Dense(n_classes + 1)(x))


def softmax_activation(input_shape, n_classes):
    inputs, x = _body(input_shape)
    return keras.Model(inputs, layers.Dense(n_classes, activation="softmax")(x))


def softmax_inside(input_shape, n_classes):
    inputs, x = _body(input_shape)
    outputs = layers.Lambda(lambda z: keras.ops.softmax(z))(layers.Dense(n_classes)(x))
    return keras.Model(inputs, outputs)


def not_a_model(input_shape, n_classes):
    return "lenet"


def no_seed(model, x, y, eps=0.1):
    return x


def with_seed(model, x, y, *, seed):
    return x
'''


def workdir_with_plugins(tmp_path):
    for name in ("vgg_small.py", "square_attack.py"):
        shutil.copy(ROOT / "examples" / name, tmp_path / name)
    (tmp_path / "bad.py").write_text(BAD_CODE)
    return tmp_path


@pytest.fixture(scope="module")
def custom_run(tmp_path_factory):
    workdir = workdir_with_plugins(tmp_path_factory.mktemp("custom"))
    done = run_snakemake(workdir, config=TINY)
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir


@pytest.mark.e2e
def test_custom_model_and_plugin_attack_run_end_to_end(custom_run):
    table = read_table(custom_run / "results/tables/accuracy.csv")
    assert set(table.model) == {"custom"}
    assert set(table.attack) == {"none", "fgsm", "square"}
    best = pd.read_csv(custom_run / "results/tables/best_snapshots.csv")
    data = PooledData(load_npz(custom_run / "results/digits/data.npz"))
    for split in (0, 1):
        run = custom_run / f"results/digits/custom/overfit/split{split}"
        training = load_json(run / "training.json")
        assert training["model_spec"] == TINY["model"]
        assert len(training["builder_sha256"]) == 64
        # the VGG learns: well above chance on the validation split
        assert pd.read_csv(run / "history.csv").val_accuracy.max() > 0.5
        square = load_npz(run / "adversarial/square.npz")
        meta = array_to_meta(square["meta"])
        assert meta["method"] == "plugin" and len(meta["function_sha256"]) == 64
        assert meta["params"] == {"function": "square_attack.py:attack",
                                  "params": {"eps": 0.2, "max_iter": 20}}
        assert int(square["n_success"]) == len(square["x"]) > 0
        original = data.x[square["source_index"]]
        assert np.abs(square["x"] - original).max() <= 0.2 + 1e-6  # inside the eps-ball
        epoch = int(best[best.split == split].best_epoch.iloc[0])
        at_best = table[(table.split == split) & (table.epoch == epoch)
                        & (table.attack == "square")]
        assert at_best.accuracy.tolist() == [0.0]
    knn = read_table(custom_run / "results/tables/knn_accuracy.csv")
    assert {"fgsm", "square"} <= set(knn.attack)
    rows = knn[(knn.attack == "square") & (knn.k == 3)]
    assert len(rows) == 2 and (rows[rows.n > 0].accuracy == 0).all()  # kept: fool the 3-NN
    for split in (0, 1):
        square = load_npz(custom_run / f"results/digits/knn/split{split}/adversarial/square.npz")
        assert array_to_meta(square["meta"])["method"] == "plugin"
        assert int(square["n_tried"]) > 0 and len(square["x"]) == rows.n.iloc[split]


@pytest.mark.e2e
def test_editing_the_builder_or_the_plugin_reruns_what_uses_it(custom_run):
    assert "Nothing to be done" in run_snakemake(custom_run, "-n").stdout
    builder = custom_run / "vgg_small.py"
    original = builder.read_text()
    try:
        builder.write_text(original + "\n# edited\n")
        dry = run_snakemake(custom_run, "-n")
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert "train_model" in dry.stdout
    finally:
        builder.write_text(original)
    plugin = custom_run / "square_attack.py"
    original = plugin.read_text()
    try:
        plugin.write_text(original + "\n# edited\n")
        dry = run_snakemake(custom_run, "-n")
        assert "craft_adversarial_set" in dry.stdout and "train_model" not in dry.stdout
    finally:
        plugin.write_text(original)


def _config_with(model=None, attack=None) -> dict:
    config = copy.deepcopy(TINY)
    config.pop("knn")
    if model is not None:
        config["model"] = model
    if attack is not None:  # with a registry model, so that only the attack is checked
        config["attacks"] = {"mine": attack}
        config["model"] = {"name": "lenet5"}
    return config


REFUSED = [
    ({"name": "custom", "builder": "missing.py:build_model"}, None,
     "'model.builder': file missing.py not found"),
    ({"name": "custom", "builder": "bad.py:build_model"}, None,
     "'model.builder': .*bad.py has no function 'build_model'"),
    ({"name": "custom", "builder": "bad.py:wrong_shape"}, None,
     r"'model.builder': bad.py:wrong_shape outputs shape \(None, 11\), expected \(None, 10\)"),
    ({"name": "custom", "builder": "bad.py:softmax_activation"}, None,
     "'model.builder': bad.py:softmax_activation ends in a softmax"),
    ({"name": "custom", "builder": "bad.py:softmax_inside"}, None,
     "'model.builder': bad.py:softmax_inside outputs probabilities"),
    ({"name": "custom", "builder": "bad.py:not_a_model"}, None,
     "'model.builder': bad.py:not_a_model returned str, not a Keras model"),
    ({"name": "custom", "builder": "vgg_small.py:build_model", "params": {"blocks": 4}}, None,
     "'model.builder': vgg_small.py:build_model needs inputs of at least 16x16 pixels, "
     "the data has 8x8"),
    ({"name": "lenet5", "builder": "vgg_small.py:build_model"}, None,
     "'model.builder': does not apply to lenet5"),
    (None, {"method": "plugin", "function": "nowhere.py:attack"},
     "'attacks.mine.function': file nowhere.py not found"),
    (None, {"method": "plugin", "function": "bad.py:attack"},
     "'attacks.mine.function': .*bad.py has no function 'attack'"),
    (None, {"method": "plugin", "function": "bad.py:no_seed"},
     r"'attacks.mine.function': cannot be called as attack\(model, x, y, \*, seed"),
    (None, {"method": "plugin", "function": "bad.py:with_seed", "params": {"eps": 0.1}},
     r"'attacks.mine.function': cannot be called .* with params \['eps'\]"),
    (None, {"method": "plugin", "function": "bad.py"},
     "'attacks.mine.function': 'bad.py' does not match"),
]


@pytest.mark.e2e
@pytest.mark.parametrize("model, attack, message", REFUSED)
def test_bad_builders_and_plugins_are_refused_before_any_job(tmp_path, model, attack, message):
    import re

    workdir = workdir_with_plugins(tmp_path)
    done = run_snakemake(workdir, config=_config_with(model, attack))
    assert done.returncode != 0
    assert re.search(message, done.stderr), done.stderr[-3000:]
    assert not (workdir / "results").exists()


# --- the guards, on a plugin's output ------------------------------------------------

BROKEN_ATTACKS = '''
import numpy as np


def nan(model, x, y, *, seed):
    return np.full_like(x, np.nan)


def too_bright(model, x, y, *, seed):
    return x + 0.5


def integers(model, x, y, *, seed):
    return (x > 0.5).astype(np.int64)


def flattened(model, x, y, *, seed):
    return x.reshape(len(x), -1)


def seeded_noise(model, x, y, *, seed, eps):
    noise = np.random.default_rng(seed).uniform(-eps, eps, size=x.shape)
    return np.clip(x + noise, 0, 1).astype(np.float32)
'''


@pytest.fixture(scope="module")
def untrained(digits):
    from advfit import runtime

    runtime.configure(1, seed=0)
    from advfit.models.architectures import build_model

    return build_model("lenet5", digits.x.shape[1:], 10)


@pytest.mark.parametrize("function, message", [
    ("nan", "non-finite"), ("too_bright", "outside"), ("integers", "dtype int64"),
    ("flattened", "shape"),
])
def test_a_plugins_output_passes_the_same_guards(tmp_path, untrained, digits, function, message):
    from advfit.attacks import AttackSpec, craft

    (tmp_path / "broken.py").write_text(BROKEN_ATTACKS)
    x, y = digits.take(digits.official_test[:8])
    spec = AttackSpec.from_config("b", {"method": "plugin",
                                        "function": f"{tmp_path}/broken.py:{function}"})
    with pytest.raises(RuntimeError, match=message):
        craft(spec, untrained, x, y, seed=0)


def test_a_plugin_gets_the_seed_and_its_success_is_logged(tmp_path, untrained, digits, caplog):
    import logging

    from advfit.attacks import AttackSpec, craft

    (tmp_path / "broken.py").write_text(BROKEN_ATTACKS)
    x, y = digits.take(digits.official_test[:8])
    spec = AttackSpec.from_config("n", {"method": "plugin", "params": {"eps": 0.05},
                                        "function": f"{tmp_path}/broken.py:seeded_noise"})
    with caplog.at_level(logging.INFO, logger="advfit"):
        a = craft(spec, untrained, x, y, seed=1)
    assert np.array_equal(a, craft(spec, untrained, x, y, seed=1))
    assert not np.array_equal(a, craft(spec, untrained, x, y, seed=2))
    assert 0 < np.abs(a - x).max() <= 0.05 + 1e-6 and a.dtype == np.float32
    assert any("seeded_noise: " in r.getMessage() and "of 8 AEs fooled" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(ValueError, match="plugin attacks are untargeted"):
        craft(spec, untrained, x, y, seed=1, y_target=(y + 1) % 10)
