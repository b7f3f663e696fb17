"""Grad-CAM (Selvaraju et al. 2017): which part of an image made the model choose a class.

`GradCam(model)` builds the two-output model (feature map, classifier input) once and runs it in
a `tf.function` with a batch-agnostic input signature, so repeated calls reuse one trace.
The class score is the pre-softmax logit when the output layer is a softmax Dense (as in every
registry model): the softmax probability saturates near 1 and would give near-zero gradients.
Drawing the heatmap on the image is `imgclf_core.inspection.overlay`'s job.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras

from imgclf_core.models.registry import OUTPUT_LAYER, last_conv_layer_name


class GradCam:
    """A reusable, compiled Grad-CAM for one model and one feature-map layer."""

    def __init__(self, model: keras.Model, layer_name: str | None = None):
        self.model = model
        self.layer_name = layer_name or last_conv_layer_name(model)
        feature_layer = _get_layer(model, self.layer_name)
        if len(feature_layer.output.shape) != 4:
            raise ValueError(
                f"Grad-CAM needs a layer with a 4D (N, H, W, C) output; {self.layer_name!r} has shape "
                f"{tuple(feature_layer.output.shape)}"
            )
        self.output_dense = _softmax_dense_output(model)
        classifier_input = self.output_dense.input if self.output_dense is not None else model.output
        self.grad_model = keras.Model(model.inputs, [feature_layer.output, classifier_input])
        self.input_shape = tuple(model.inputs[0].shape[1:])
        self._compiled = tf.function(
            self._probabilities_and_heatmaps,
            input_signature=[
                tf.TensorSpec((None, *self.input_shape), tf.float32),
                tf.TensorSpec((None,), tf.int32),
            ],
        )

    def __call__(self, images: np.ndarray, class_index: int | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, K), heatmaps (N, h, w) in 0..1) for float 0..255 images (N, H, W, C)."""
        batch = _checked_batch(images, self.input_shape)
        class_indices = self._class_indices(class_index, len(batch))
        probabilities, heatmaps = self._compiled(tf.convert_to_tensor(batch, tf.float32), class_indices)
        return probabilities.numpy(), heatmaps.numpy()

    def _class_indices(self, class_index: int | np.ndarray | None, batch_size: int) -> tf.Tensor:
        """One class per image; -1 means 'the top class' and is resolved inside the compiled graph."""
        num_classes = int(self.model.outputs[0].shape[-1])
        if class_index is None:
            indices = np.full(batch_size, -1, dtype=np.int32)
        else:
            indices = np.broadcast_to(np.asarray(class_index), (batch_size,)).astype(np.int32)
            if indices.min() < 0 or indices.max() >= num_classes:
                raise ValueError(f"class_index must be in 0..{num_classes - 1}, got {class_index}")
        return tf.convert_to_tensor(indices)

    def _probabilities_and_heatmaps(self, images: tf.Tensor, class_indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            # The tape only records ops fed by watched tensors: watching the input keeps weight-free paths too.
            tape.watch(images)
            feature_maps, classifier_input = self.grad_model(images, training=False)
            probabilities, scores = self._probabilities_and_scores(classifier_input)
            top = tf.argmax(probabilities, axis=1, output_type=tf.int32)
            chosen = tf.where(class_indices < 0, top, class_indices)
            class_scores = tf.gather(scores, chosen, axis=1, batch_dims=1)
        # Each image's score depends only on its own feature map, so one gradient of the sum serves all.
        # float32 from here on: a mixed-precision model hands out float16 maps and gradients.
        gradients = tf.cast(tape.gradient(class_scores, feature_maps), tf.float32)
        channel_weights = tf.reduce_mean(gradients, axis=(1, 2))
        heatmaps = tf.nn.relu(tf.einsum("nhwc,nc->nhw", tf.cast(feature_maps, tf.float32), channel_weights))
        peaks = tf.reduce_max(heatmaps, axis=(1, 2), keepdims=True)
        return probabilities, tf.math.divide_no_nan(heatmaps, peaks)

    def _probabilities_and_scores(self, classifier_input: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        features = tf.cast(classifier_input, tf.float32)
        if self.output_dense is None:
            return features, tf.math.log(tf.maximum(features, 1e-12))
        logits = tf.matmul(features, tf.cast(self.output_dense.kernel, tf.float32))
        if self.output_dense.use_bias:
            logits = logits + tf.cast(self.output_dense.bias, tf.float32)
        return tf.nn.softmax(logits), logits


def _get_layer(model: keras.Model, layer_name: str) -> keras.layers.Layer:
    try:
        return model.get_layer(layer_name)
    except ValueError as error:
        raise ValueError(f"model {model.name!r} has no layer named {layer_name!r}") from error


def _softmax_dense_output(model: keras.Model) -> keras.layers.Dense | None:
    """The output layer when it is a Dense with softmax activation (its logits are then computable)."""
    try:
        layer = model.get_layer(OUTPUT_LAYER)
    except ValueError:
        layer = model.layers[-1]
    is_softmax_dense = isinstance(layer, keras.layers.Dense) and layer.activation is keras.activations.softmax
    return layer if is_softmax_dense and layer.output is model.outputs[0] else None


def _checked_batch(images: np.ndarray, input_shape: tuple) -> np.ndarray:
    batch = np.asarray(images)
    if batch.ndim != 4 or tuple(batch.shape[1:]) != input_shape:
        raise ValueError(f"images must have shape (N, {', '.join(map(str, input_shape))}), got {batch.shape}")
    if len(batch) == 0:
        raise ValueError("no images to explain")
    return batch.astype(np.float32, copy=False)
