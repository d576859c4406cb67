"""A small VGG-style CNN for advfit's custom-model hook (docs/training.md, "Your own model").

Config:

    model:
      name: custom
      builder: examples/vgg_small.py:build_model
      params: {blocks: 2, width: 16}

Each block is two 3x3 'same' convolutions and a 2x2 max-pooling, doubling
the width and halving the image; then a dense layer and one logit per class
(no softmax: advfit trains with a logits loss and every attack takes logits).
``blocks`` blocks need images of at least 2**blocks pixels a side: 8x8 digits
take up to 3, CIFAR-10's 32x32 up to 5.
"""

import keras
from keras import layers


def build_model(input_shape, n_classes, blocks=2, width=16, dense=64):
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    for block in range(blocks):
        filters = width * 2**block
        for i in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                              name=f"block{block + 1}_conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block + 1}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense, activation="relu", name="fc")(x)
    outputs = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"vgg_small_{blocks}x{width}")
