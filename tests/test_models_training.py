"""Real LeNet-5 on real digits: architecture, snapshots, determinism."""

import numpy as np
import pytest

from advfit.models import build_model
from advfit.training import snapshot_name


def test_lenet5_architecture_on_digits():
    model = build_model("lenet5", (8, 8, 1), 10)
    names = [layer.name for layer in model.layers]
    assert names[1] == "upsample"  # 8x8 -> 32x32 inside the model
    assert model.get_layer("conv1").output.shape[1:] == (28, 28, 6)
    assert model.get_layer("conv2").output.shape[1:] == (10, 10, 16)
    assert model.get_layer("fc1").units == 120 and model.get_layer("fc2").units == 84
    assert model.output.shape[1:] == (10,)
    assert model.count_params() == 61706  # the classic LeNet-5 count for 32x32x1


def test_lenet5_takes_large_inputs_as_they_are():
    model = build_model("lenet5", (28, 28, 1), 10)
    assert "upsample" not in [layer.name for layer in model.layers]
    assert model.get_layer("conv2").output.shape[1:] == (8, 8, 16)


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg", (8, 8, 1), 10)


def test_training_writes_one_snapshot_per_epoch(trained_lenet):
    _, history, snapshot_dir = trained_lenet
    assert sorted(p.name for p in snapshot_dir.iterdir()) == [snapshot_name(e) for e in (1, 2, 3)]
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["train_accuracy"].iloc[-1] > 0.8  # 3 epochs of digits is enough to learn
    assert history["test_accuracy"].between(0, 1).all()


def test_snapshot_weights_differ_between_epochs(trained_lenet, digits):
    model, _, snapshot_dir = trained_lenet
    model.load_weights(snapshot_dir / snapshot_name(1))
    first = model.predict(digits.x[:50], verbose=0)
    model.load_weights(snapshot_dir / snapshot_name(3))
    last = model.predict(digits.x[:50], verbose=0)
    assert not np.allclose(first, last)


def test_same_seed_gives_bit_identical_snapshots(digits, tmp_path):
    import keras

    from advfit.training import train_regime

    regime = {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 64, "epochs": 1}
    train = digits.take(digits.official_train[:400])
    held = digits.take(digits.official_train[400:500])
    weights = []
    for run, seed in enumerate((11, 11, 12)):
        keras.utils.set_random_seed(seed)
        model = build_model("lenet5", digits.x.shape[1:], 10)
        train_regime(model, regime, train, held, held, tmp_path / str(run))
        weights.append(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(weights[0], weights[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(weights[0], weights[2]))
