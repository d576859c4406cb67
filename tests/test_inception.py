"""InceptionV3 from scratch: logits out, smallest input, one real training step."""

import numpy as np
import pytest

from advfit.models.architectures import INCEPTION_V3_MIN_SIZE, build_model


@pytest.fixture(scope="module")
def inception():
    from advfit import runtime

    runtime.configure(2, seed=0)
    return build_model("inception_v3", (INCEPTION_V3_MIN_SIZE, INCEPTION_V3_MIN_SIZE, 3), 10)


def test_inception_v3_outputs_logits_for_the_classes(inception):
    import keras

    assert inception.input_shape == (None, 75, 75, 3)
    assert inception.output_shape == (None, 10)
    assert inception.layers[-1].activation is keras.activations.linear  # logits, no softmax
    # Keras' 23,851,784 parameters for 1000 classes, with a 10-class top instead
    assert inception.count_params() == 23_851_784 - (2048 + 1) * 1000 + (2048 + 1) * 10


def test_inception_v3_takes_a_training_step(inception):
    from advfit.models.training import compile_model

    compile_model(inception, {"optimizer": "sgd", "learning_rate": 0.01})
    rng = np.random.default_rng(0)
    x = rng.random((4, 75, 75, 3), dtype=np.float32)
    y = np.array([0, 3, 7, 9])
    before = [w.copy() for w in inception.get_layer("predictions").get_weights()]
    loss, accuracy = inception.train_on_batch(x, y)
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0
    after = inception.get_layer("predictions").get_weights()
    assert not np.allclose(before[0], after[0])  # the step changed the weights


@pytest.mark.parametrize("shape, message", [
    ((74, 80, 3), r"at least 75x75 pixels, got input shape \(74, 80, 3\)"),
    ((28, 28, 1), r"at least 75x75 pixels, got input shape \(28, 28, 1\)"),
    ((96, 96, 4), r"1 \(grayscale\) or 3 \(RGB\) channels, got input shape \(96, 96, 4\)"),
])
def test_inception_v3_refuses_inputs_it_cannot_take(shape, message):
    with pytest.raises(ValueError, match=message):
        build_model("inception_v3", shape, 10)


def test_inception_v3_takes_grayscale_as_one_channel():
    model = build_model("inception_v3", (80, 80, 1), 4)
    assert model.input_shape == (None, 80, 80, 1) and model.output_shape == (None, 4)
    first_conv = next(layer for layer in model.layers if layer.name.startswith("conv2d"))
    assert first_conv.kernel.shape == (3, 3, 1, 32)  # learns from the one channel, no tiling
