"""The first stage of transfer learning: the classifier head trained on cached backbone features.

The base is frozen during this stage, so each image's pooled backbone output is fixed: it is computed
once (and cached, see imgclf_core.models.features) and the head's few layers are trained on those vectors,
a second or so per epoch where a pass through the backbone takes minutes. The head layers trained
here are the model's own, so the full model (backbone + head) is a usable model the moment this ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf
import keras

from imgclf_core.models.registry import head_layers

# (epoch, {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}) after each epoch; True stops the stage.
EpochCallback = Callable[[int, dict], bool]


@dataclass(frozen=True)
class FeatureSplit:
    """Features and integer labels of one split."""

    features: np.ndarray
    labels: np.ndarray


def train_head_on_features(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    train: FeatureSplit,
    validation: FeatureSplit | None,
    epochs: int,
    batch_size: int,
    class_weight_vector: np.ndarray,
    learning_rate: Callable[[int, int, int], float],
    seed: int,
    on_epoch: EpochCallback,
) -> float:
    """Train the model's head layers on features; leaves the best epoch's weights (by val_loss) in place.

    `learning_rate(epoch_index, step, steps)` gives each step's rate. Returns the best monitored loss.
    """
    layers = head_layers(model)
    variables = [variable for layer in layers for variable in layer.trainable_variables]
    weights = tf.constant(class_weight_vector, tf.float32)

    def head(features, training):
        for layer in layers:
            features = layer(features, training=training)
        return features

    @tf.function
    def train_step(features, labels):
        with tf.GradientTape() as tape:
            probabilities = head(features, True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            loss = tf.reduce_mean(per_example * tf.gather(weights, labels))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return batch_totals(per_example, probabilities, labels)

    @tf.function
    def evaluate_step(features, labels):
        probabilities = head(features, False)
        return batch_totals(keras.losses.sparse_categorical_crossentropy(labels, probabilities), probabilities, labels)

    generator = np.random.default_rng(seed)
    steps = max(1, math.ceil(len(train.labels) / batch_size))
    best_loss, best_weights = math.inf, [variable.numpy() for variable in variables]
    for epoch_index in range(epochs):
        order = generator.permutation(len(train.labels))
        totals = np.zeros(3)
        for step in range(steps):
            optimizer.learning_rate.assign(learning_rate(epoch_index, step, steps))
            chosen = order[step * batch_size:(step + 1) * batch_size]
            totals += [float(value) for value in train_step(train.features[chosen], train.labels[chosen])]
        row = {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2],
               "lr": float(optimizer.learning_rate.numpy())}
        row["val_loss"], row["val_accuracy"] = _evaluate(evaluate_step, validation, batch_size)
        monitored = row["val_loss"] if math.isfinite(row["val_loss"]) else row["loss"]
        if monitored < best_loss:
            best_loss, best_weights = monitored, [variable.numpy() for variable in variables]
        if on_epoch(epoch_index, row):
            break
    for variable, value in zip(variables, best_weights):
        variable.assign(value)
    return best_loss


def _evaluate(evaluate_step, split: FeatureSplit | None, batch_size: int) -> tuple[float, float]:
    if split is None or not len(split.labels):
        return math.nan, math.nan
    totals = np.zeros(3)
    for start in range(0, len(split.labels), max(batch_size, 256)):
        end = start + max(batch_size, 256)
        totals += [float(value) for value in evaluate_step(split.features[start:end], split.labels[start:end])]
    return totals[0] / totals[2], totals[1] / totals[2]


def batch_totals(per_example_loss, probabilities, labels):
    """(summed loss, correct, count) of a batch, the numbers every epoch figure is made of."""
    predicted = tf.argmax(probabilities, axis=-1, output_type=labels.dtype)
    correct = tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32))
    return tf.reduce_sum(per_example_loss), correct, tf.cast(tf.size(labels), tf.float32)
