"""The compiled forward pass: test-time flip averages an image with its mirror image."""

from __future__ import annotations

import numpy as np


def test_flip_average_is_the_mean_over_each_image_and_its_mirror():
    import keras

    from imgclf_core.models.forward import compiled_features_and_forward, compiled_forward

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 8, 1))
    features = keras.layers.Flatten(name="head_flatten")(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(features)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).integers(0, 255, (5, 6, 8, 1)).astype("uint8")
    plain = compiled_forward(model)(images).numpy()
    mirrored = compiled_forward(model)(np.ascontiguousarray(images[:, :, ::-1])).numpy()
    averaged = compiled_forward(model, flip_average=True)(images).numpy()
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, atol=1e-6)
    assert not np.allclose(averaged, plain)  # the mirror image really changes the answer of this model
    both_features, both_outputs = compiled_features_and_forward(model)(images)
    np.testing.assert_allclose(both_outputs.numpy(), plain, atol=1e-6)
    assert both_features.shape == (5, 4 * 6 * 4)  # a 3x3 conv leaves 4 x 6 positions of 4 filters
