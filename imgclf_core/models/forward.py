"""A model's forward pass as one compiled call: the way prediction, evaluation and embedding run a model.

The `tf.function` has a batch-agnostic uint8 input signature, so it is traced once per model: a
warm call on one image is a graph call, not Keras' eager call or `model.predict` (which builds a
tf.data pipeline per call and is ~10x slower for one image). This module imports TensorFlow.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf
import keras


def compiled_forward(model: keras.Model, flip_average: bool = False) -> Callable[[np.ndarray | tf.Tensor], tf.Tensor]:
    """`model(images, training=False)` as a tf.function taking uint8 batches of any size, float32 out, traced once.

    flip_average: the mean of the outputs for each image and its mirror image (test-time augmentation:
    one more forward pass).
    """
    input_shape = tuple(model.inputs[0].shape[1:])

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.uint8)])
    def forward(images: tf.Tensor) -> tf.Tensor:
        pixels = tf.cast(images, tf.float32)
        outputs = tf.cast(model(pixels, training=False), tf.float32)
        if flip_average:
            mirrored = tf.cast(model(tf.reverse(pixels, axis=[2]), training=False), tf.float32)
            outputs = (outputs + mirrored) / 2.0
        return outputs

    return forward


def compiled_features_and_forward(model: keras.Model) -> Callable[[np.ndarray | tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """Like compiled_forward, returning (the features the classifier reads, the model's output) in one pass."""
    from imgclf_core.models.registry import feature_layer_name

    both = keras.Model(model.inputs, [model.get_layer(feature_layer_name(model)).output, model.outputs[0]])
    input_shape = tuple(model.inputs[0].shape[1:])

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.uint8)])
    def forward(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        features, outputs = both(tf.cast(images, tf.float32), training=False)
        return tf.cast(features, tf.float32), tf.cast(outputs, tf.float32)

    return forward
