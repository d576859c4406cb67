"""Real LeNet-5 on real digits: architecture, snapshots, determinism."""

import numpy as np
import pytest

from advfit.models.architectures import build_model
from advfit.runtime.layout import snapshot_name


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
    # One file per epoch and the manifest that seals the folder (as train_model's).
    assert sorted(p.name for p in snapshot_dir.iterdir()) == sorted(
        [snapshot_name(e) for e in (1, 2, 3)] + ["manifest.json"])
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

    from advfit.models.training import train_regime

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


# ---------------------------------------------------------------- label noise

def test_noisy_labels_flips_exactly_the_rounded_fraction_each_to_another_class():
    from advfit.models.label_noise import noisy_labels

    y = np.repeat(np.arange(10), 96)  # 960 labels
    for fraction, expected in ((0.3, 288), (0.25, 240), (0.001, 1), (0.999, 959)):
        noisy = noisy_labels(y, fraction, 10, seed=3)
        flipped = noisy != y
        assert flipped.sum() == expected == round(fraction * len(y))
        assert noisy.dtype == y.dtype and noisy.shape == y.shape
        assert noisy.min() >= 0 and noisy.max() <= 9
    # every class is a possible replacement, never the true one
    noisy = noisy_labels(y, 0.5, 10, seed=3)
    assert set(np.unique(noisy[noisy != y])) == set(range(10))
    y_odd = np.array([0, 1, 2, 3, 4, 5, 6])  # round(0.5 * 7) = 4 (round half to even)
    assert (noisy_labels(y_odd, 0.5, 7, seed=1) != y_odd).sum() == 4
    two = np.array([0, 1] * 50)
    assert np.array_equal(noisy_labels(two, 0.999, 2, seed=0)[:99], 1 - two[:99])


def test_noisy_labels_is_deterministic_and_pure():
    from advfit.models.label_noise import noisy_labels

    y = np.random.default_rng(0).integers(0, 10, 500)
    before = y.copy()
    a, b = noisy_labels(y, 0.3, 10, seed=42), noisy_labels(y, 0.3, 10, seed=42)
    assert np.array_equal(a, b) and np.array_equal(y, before)
    assert not np.array_equal(a, noisy_labels(y, 0.3, 10, seed=43))
    assert a is not y


def test_noisy_labels_zero_is_unchanged_and_bad_fractions_are_refused():
    from advfit.models.label_noise import noisy_labels

    y = np.arange(10)
    same = noisy_labels(y, 0, 10, seed=1)
    assert np.array_equal(same, y) and same is not y
    assert np.array_equal(noisy_labels(y, 0.04, 10, seed=1), y)  # round(0.4) = 0 flips
    for fraction in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="label_noise"):
            noisy_labels(y, fraction, 10, seed=1)
    with pytest.raises(ValueError, match="outside"):
        noisy_labels(np.array([0, 12]), 0.5, 10, seed=1)


def test_training_labels_file_round_trip_and_refusals(tmp_path):
    from advfit.models.label_noise import load_training_labels, save_training_labels, training_labels
    from advfit.runtime.seeds import job_seed

    y = np.repeat(np.arange(10), 50)
    index = np.arange(1000, 1500)
    regime = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 128, "epochs": 2}
    clean, record = training_labels(y, regime, 10, seed=5)
    assert np.array_equal(clean, y) and record["n_flipped"] == 0 and record["fraction"] == 0
    noisy, record = training_labels(y, {**regime, "label_noise": 0.3}, 10, seed=5)
    assert record == {"fraction": 0.3, "seed": job_seed(5, "label_noise"), "n_flipped": 150,
                      "n": 500}
    other, _ = training_labels(y, {**regime, "label_noise": 0.3}, 10, seed=6)
    assert not np.array_equal(other, noisy)  # per job: the job seed names the split and regime

    path = tmp_path / "train_labels.npz"
    saved = save_training_labels(path, y, index, {"label_noise": 0.3}, 10, seed=5)
    assert saved["n_flipped"] == 150 and saved["n_classes"] == 10 and "numpy" in saved["versions"]
    labels, loaded = load_training_labels(path, index, y)
    assert np.array_equal(labels, noisy) and loaded == saved
    with pytest.raises(ValueError, match="training indices are not this split's"):
        load_training_labels(path, index + 1, y)
    with pytest.raises(ValueError, match="true labels are not the dataset's"):
        load_training_labels(path, index, np.roll(y, 1))
    stored = dict(np.load(path))
    stored["y"] = stored["y_true"]  # a file whose labels do not match its record
    np.savez(path, **stored)
    with pytest.raises(ValueError, match="0 labels differ, the record says 150"):
        load_training_labels(path, index, y)


def test_label_noise_is_part_of_the_resume_fingerprint():
    from advfit.models.label_noise import noisy_labels
    from advfit.models.training import _fingerprint

    x = np.zeros((20, 8, 8, 1), np.float32)
    y = np.arange(20) % 10
    regime = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 8, "epochs": 2}
    held = (x[:5], y[:5])
    clean = _fingerprint(regime, 1, (x, y), held, held)
    noisy_y = noisy_labels(y, 0.3, 10, seed=0)
    assert _fingerprint({**regime, "label_noise": 0.3}, 1, (x, y), held, held) != clean
    assert _fingerprint(regime, 1, (x, noisy_y), held, held) != clean


def test_train_regime_trains_on_the_given_labels_and_checks_them(digits, tmp_path):
    """The regime's noise cannot be forgotten: a noisy regime without its labels, or labels
    with the wrong number of flips, are refused."""
    from advfit import runtime
    from advfit.models.label_noise import training_labels
    from advfit.models.architectures import build_model
    from advfit.models.training import train_regime

    runtime.configure(1, seed=0)
    train = digits.take(digits.official_train[:300])
    held = digits.take(digits.official_test[:50])
    regime = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 64, "epochs": 1}
    noisy = {**regime, "label_noise": 0.4}
    labels, record = training_labels(train[1], noisy, 10, 11)
    assert record["n_flipped"] == 120
    model = build_model("lenet5", digits.x.shape[1:], 10)
    with pytest.raises(ValueError, match="label_noise is 0.4: pass the labels"):
        train_regime(model, noisy, train, held, held, tmp_path / "none", seed=11)
    with pytest.raises(ValueError, match="differ from the true labels in 120 places; the "
                                         "regime's label_noise 0.0 flips 0"):
        train_regime(model, regime, train, held, held, tmp_path / "wrong", seed=11,
                     train_labels=labels)
    histories = {}
    for name, spec, given in (("clean", regime, None), ("noisy", noisy, labels)):
        model = build_model("lenet5", digits.x.shape[1:], 10)
        histories[name] = train_regime(model, spec, train, held, held, tmp_path / name,
                                       seed=11, train_labels=given)
    # 40 % wrong labels: the fit's training accuracy cannot match the clean run's
    assert histories["noisy"].train_accuracy[0] < histories["clean"].train_accuracy[0]
