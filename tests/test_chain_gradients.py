"""CLEVER's margin gradients by the layer chain's own backward pass, against autodiff."""

import numpy as np
import pytest

from advfit.evaluation import clever
from advfit.evaluation.chain_gradients import chain_layers, trace_chain_margin_norms

N_CLASSES = 5


def _randomised(model, seed):
    """Every weight random (biases positive, BatchNorm's statistics away from 0 and 1),
    so that the ReLUs, the max-pool ties and BatchNorm's scaling all matter."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        if w.ndim == 1:
            weights.append(rng.uniform(0.05, 0.5, w.shape).astype(w.dtype))
        else:
            fan_in = int(np.prod(w.shape[:-1]))
            weights.append(rng.normal(0, 1.5 / np.sqrt(fan_in), w.shape).astype(w.dtype))
    model.set_weights(weights)
    return model


def _models():
    import keras
    from keras import layers

    def functional(shape, *stack):
        inputs = keras.Input(shape)
        x = inputs
        for layer in stack:
            x = layer(x)
        return keras.Model(inputs, x)

    return {
        # odd sizes: blocks and pooling windows that do not tile the image
        "conv-valid-maxpool": functional(
            (11, 9, 3), layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(6, 2), layers.ReLU(), layers.Flatten(),
            layers.Dense(8, activation="relu"), layers.Dense(N_CLASSES)),
        "upsample-same-strided-bn-avgpool": functional(
            (6, 6, 1), layers.Rescaling(2.0, offset=-1.0), layers.UpSampling2D(2),
            layers.Conv2D(5, 5, activation="relu"), layers.BatchNormalization(),
            layers.Conv2D(6, 3, strides=2, padding="same"), layers.Activation("relu"),
            layers.AveragePooling2D(2), layers.Dropout(0.5), layers.Reshape((-1,)),
            layers.Dense(N_CLASSES)),
        "sequential-dense-on-images": keras.Sequential([
            keras.Input((4, 4, 2)), layers.Conv2D(3, 2, padding="same", activation="relu"),
            layers.Dense(7, activation="relu"), layers.GaussianNoise(0.3), layers.Flatten(),
            layers.Dense(N_CLASSES)]),
    }


@pytest.fixture(scope="module")
def models():
    return {name: _randomised(model, seed) for seed, (name, model) in enumerate(_models().items())}


def _pool(shape, n=40, seed=0):
    """Uniform points, half of them clipped hard to 0 and 1 (ties in every max-pool window)."""
    rng = np.random.default_rng(seed)
    pool = rng.random((n, *shape), dtype=np.float32)
    pool[: n // 2] = np.clip(np.round(pool[: n // 2] * 1.2 - 0.1), 0, 1)
    pool[0] = 0.0
    return pool


@pytest.mark.parametrize("name", ["conv-valid-maxpool", "upsample-same-strided-bn-avgpool",
                                  "sequential-dense-on-images"])
@pytest.mark.parametrize("order", [2, 1, np.inf])
def test_chain_pass_equals_autodiff(models, name, order):
    model = models[name]
    layers = chain_layers(model)
    assert layers is not None
    pool = _pool(model.input_shape[1:])
    pred = np.random.default_rng(1).integers(0, N_CLASSES, len(pool)).astype(np.int32)
    expected = np.asarray(clever._trace_margin_norms(model, N_CLASSES, order)(pool, pred))
    got = np.asarray(trace_chain_margin_norms(layers, N_CLASSES, order)(pool, pred))
    assert (got[np.arange(len(pool)), pred] == 0).all()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * expected.max())
    assert np.median(expected[expected > 0]) > 1e-2  # gradients that do not vanish


def test_max_pool_ties_go_to_the_first_maximum():
    """A constant image gives equal positive values in every window: one of them, the
    first, takes the gradient (spreading it over all four would double the norms)."""
    import keras
    from keras import layers

    model = keras.Sequential([keras.Input((4, 4, 1)), layers.Conv2D(1, 1, activation="relu"),
                              layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(2)])
    model.set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32),
                       np.array([[1, 0], [0, 1], [0, 0], [0, 0]], np.float32),
                       np.zeros(2, np.float32)])
    pool, pred = np.full((1, 4, 4, 1), 0.5, np.float32), np.zeros(1, np.int32)
    norms = np.asarray(trace_chain_margin_norms(chain_layers(model), 2, 2)(pool, pred))
    # grad(z0 - z1): +1 at the first pixel of window 0, -1 at the first of window 1
    np.testing.assert_allclose(norms, [[0.0, np.sqrt(2)]], rtol=1e-6)
    expected = np.asarray(clever._trace_margin_norms(model, 2, 2)(pool, pred))
    np.testing.assert_allclose(norms, expected, rtol=1e-6)


def test_unknown_layers_and_branches_fall_back_to_autodiff():
    import keras
    from keras import layers

    inputs = keras.Input((6, 6, 1))
    x = layers.Conv2D(2, 3, padding="same", activation="relu")(inputs)
    branched = keras.Model(inputs, layers.Dense(3)(layers.Flatten()(layers.Add()([x, inputs]))))
    tanh = keras.Sequential([keras.Input((6, 6, 1)), layers.Conv2D(2, 3, activation="tanh"),
                             layers.Flatten(), layers.Dense(3)])
    dilated = keras.Sequential([keras.Input((6, 6, 1)), layers.Conv2D(2, 3, dilation_rate=2),
                                layers.Flatten(), layers.Dense(3)])
    overlapping = keras.Sequential([keras.Input((6, 6, 1)), layers.MaxPooling2D(3, strides=1),
                                    layers.Flatten(), layers.Dense(3)])
    for model in (branched, tanh, dilated, overlapping):
        assert chain_layers(model) is None
        assert clever._MarginNorms(model, 3, 2).path == "autodiff"


def test_a_chain_pass_that_disagrees_with_autodiff_is_dropped(models, monkeypatch, caplog):
    """The once-per-model check: a wrong chain pass (here norms 1 % too large) is
    detected on the first call and autodiff's norms are returned from then on."""
    model = models["conv-valid-maxpool"]
    pool = _pool(model.input_shape[1:])
    pred = np.zeros(len(pool), np.int32)
    norms = clever._MarginNorms(model, N_CLASSES, 2)
    right = norms.chain
    norms.chain = lambda p, q: right(p, q) * 1.01
    with caplog.at_level("WARNING", logger="advfit"):
        got = np.asarray(norms(pool, pred))
    assert norms.path == "autodiff" and "disagrees with autodiff" in caplog.text
    np.testing.assert_array_equal(got, np.asarray(norms.autodiff(pool, pred)))
    honest = clever._MarginNorms(model, N_CLASSES, 2)
    honest(pool, pred)
    assert honest.path == "chain"
