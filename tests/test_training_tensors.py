"""Training converts its arrays to tensors once (issue 13, item 4): the very
same snapshots and history as the per-epoch ``model.fit`` on NumPy arrays it
replaces, history numbers that match a fresh scoring of each snapshot, and a
bit-identical resume."""

from __future__ import annotations

import numpy as np
import pytest

from advfit.models.training import HISTORY_COLUMNS, epoch_seed, snapshot_name

REGIME = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32, "epochs": 3}
SEED = 1234


@pytest.fixture(scope="module")
def parts():
    from advfit import runtime

    runtime.configure(1, seed=0)
    from advfit.data.datasets import PooledData, load_dataset

    d = PooledData(load_dataset("digits"))
    # 333 training images: the last batch is partial (333 = 10 x 32 + 13).
    return (d, d.take(d.official_train[:333]), d.take(d.official_train[333:433]),
            d.take(d.official_test[:150]))


def _model(d, seed=0):
    import keras

    from advfit.models.architectures import build_model

    keras.utils.set_random_seed(seed)
    return build_model("lenet5", d.x.shape[1:], 10)


def _numpy_reference(d, train, validation, test, epochs):
    """The loop train_regime ran before: one ``model.fit`` per epoch on the
    NumPy arrays, then ``model.evaluate`` of the test set, same seeds."""
    import keras

    from advfit.models.training import compile_model

    model = _model(d)
    compile_model(model, REGIME)
    rows = []
    for epoch in range(epochs):
        keras.utils.set_random_seed(epoch_seed(SEED, epoch + 1))
        fit = model.fit(*train, validation_data=validation, initial_epoch=epoch,
                        epochs=epoch + 1, batch_size=REGIME["batch_size"], shuffle=True,
                        verbose=0)
        test_loss, test_accuracy = model.evaluate(*test, batch_size=1024, verbose=0)
        rows.append([epoch + 1, fit.history["loss"][-1], fit.history["accuracy"][-1],
                     fit.history["val_loss"][-1], fit.history["val_accuracy"][-1],
                     float(test_loss), float(test_accuracy)])
    return model, np.array(rows)


def _train(d, train, validation, test, folder, **kwargs):
    from advfit.models.training import train_regime

    model = _model(d)
    history = train_regime(model, REGIME, train, validation, test, folder, seed=SEED, **kwargs)
    return model, history


def test_same_snapshots_and_history_as_the_per_epoch_numpy_fit(parts, tmp_path):
    d, train, validation, test = parts
    reference, rows = _numpy_reference(d, train, validation, test, REGIME["epochs"])
    model, history = _train(d, train, validation, test, tmp_path / "run")
    assert list(history.columns) == HISTORY_COLUMNS
    # Bit for bit: every number of the history and every weight and optimizer variable.
    assert np.array_equal(history.to_numpy(dtype=np.float64), rows)
    for mine, theirs in zip(model.weights + model.optimizer.variables,
                            reference.weights + reference.optimizer.variables):
        assert np.array_equal(mine.numpy(), theirs.numpy()), mine.path


def test_history_numbers_match_a_fresh_scoring_of_each_snapshot(parts, tmp_path):
    import keras

    d, train, validation, test = parts
    model, history = _train(d, train, validation, test, tmp_path / "run")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    for row in history.itertuples():
        model.load_weights(tmp_path / "run" / snapshot_name(row.epoch))
        for (x, y), accuracy, mean_loss in ((validation, row.val_accuracy, row.val_loss),
                                            (test, row.test_accuracy, row.test_loss)):
            logits = model.predict(x, batch_size=1024, verbose=0)
            n_correct = int(np.sum(np.argmax(logits, axis=1) == y))
            assert accuracy == pytest.approx(n_correct / len(y), abs=1e-7)
            assert mean_loss == pytest.approx(float(np.mean(loss(y, logits))), rel=1e-5)
    # Training accuracy is Keras' running mean over the epoch: a count of images.
    assert all(abs(a * len(train[1]) - round(a * len(train[1]))) < 1e-3
               for a in history["train_accuracy"])


def test_stopped_and_resumed_equals_uninterrupted(parts, tmp_path):
    from test_resume import _same_snapshots

    d, train, validation, test = parts
    _, whole = _train(d, train, validation, test, tmp_path / "whole")
    _train(d, train, validation, test, tmp_path / "cut", stop_after=1)
    _, resumed = _train(d, train, validation, test, tmp_path / "cut", resume=True)
    _same_snapshots(tmp_path / "whole", tmp_path / "cut")
    assert np.array_equal(whole.to_numpy(dtype=np.float64), resumed.to_numpy(dtype=np.float64))


def test_as_tensors_keeps_values_and_dtypes():
    from advfit.models.training import as_tensors

    x = np.random.default_rng(0).random((5, 4, 4, 1), dtype=np.float32)
    y = np.arange(5, dtype=np.int64)
    tx, ty = as_tensors((x, y))
    assert tx.dtype.name == "float32" and ty.dtype.name == "int64"
    assert np.array_equal(tx.numpy(), x) and np.array_equal(ty.numpy(), y)


def test_without_validation_set_as_fit_without_validation_data(parts, tmp_path):
    """Paper 000 has no validation set: NaN validation columns, and training
    bit-identical to ``model.fit`` without ``validation_data``."""
    import keras

    from advfit.models.training import compile_model

    d, train, _, test = parts
    empty = (train[0][:0], train[1][:0])
    regime = {**REGIME, "epochs": 2}
    reference = _model(d)
    compile_model(reference, regime)
    losses = []
    for epoch in range(2):
        keras.utils.set_random_seed(epoch_seed(SEED, epoch + 1))
        fit = reference.fit(*train, initial_epoch=epoch, epochs=epoch + 1, batch_size=32,
                            shuffle=True, verbose=0)
        losses.append(fit.history["loss"][-1])
    from advfit.models.training import train_regime

    model = _model(d)
    history = train_regime(model, regime, train, empty, test, tmp_path / "run", seed=SEED)
    assert history["val_loss"].isna().all() and history["val_accuracy"].isna().all()
    assert history["train_loss"].tolist() == losses
    for mine, theirs in zip(model.weights, reference.weights):
        assert np.array_equal(mine.numpy(), theirs.numpy())
