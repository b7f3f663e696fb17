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


def compiled_forward(model: keras.Model) -> Callable[[np.ndarray | tf.Tensor], tf.Tensor]:
    """`model(images, training=False)` as a tf.function taking uint8 batches of any size, float32 out, traced once."""
    input_shape = tuple(model.inputs[0].shape[1:])

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.uint8)])
    def forward(images: tf.Tensor) -> tf.Tensor:
        return tf.cast(model(tf.cast(images, tf.float32), training=False), tf.float32)

    return forward
