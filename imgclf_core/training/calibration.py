"""Confidence calibration: expected calibration error, reliability bins and temperature scaling.

A model is calibrated when, of the images it gives 80% confidence, about 80% are right. The expected
calibration error (ECE) is the gap between confidence and accuracy averaged over equal-width confidence
bins, weighted by how many images fall in each (Guo et al., 2017). Temperature scaling divides the
logits by one number T fitted on the validation split (minimum negative log-likelihood): T > 1 softens
an over-confident model, and the ranking of classes, so every prediction and accuracy, is unchanged.

Our models end in Dense + softmax, so softmax(z / T) is the same model with the last layer's kernel and
bias divided by T (`fold_temperature`): every consumer of the calibrated model (predict, the pages,
every export format) gets calibrated probabilities with no extra op. On probabilities alone the same
transform is p^(1/T) renormalised (`apply_temperature`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

ECE_BINS = 15
RELIABILITY_BINS = 10
TEMPERATURE_RANGE = (0.05, 20.0)
MIN_IMAGES_TO_FIT = 20  # fewer validation images: no temperature is fitted (T = 1)
_EPSILON = 1e-12


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T) row by row: the probabilities a temperature-scaled model gives."""
    logits = np.log(np.clip(np.asarray(probabilities, np.float64), _EPSILON, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=1, keepdims=True)).astype(np.float32)


def negative_log_likelihood(true_indices: np.ndarray, probabilities: np.ndarray) -> float:
    picked = np.asarray(probabilities, np.float64)[np.arange(len(true_indices)), true_indices]
    return float(-np.mean(np.log(np.clip(picked, _EPSILON, 1.0))))


def fit_temperature(true_indices: np.ndarray, probabilities: np.ndarray) -> float:
    """The T in TEMPERATURE_RANGE with the lowest validation NLL (golden-section search on log T; the NLL
    is convex in 1/T). 1.0 when there are too few images to fit it."""
    true_indices = np.asarray(true_indices)
    if len(true_indices) < MIN_IMAGES_TO_FIT:
        return 1.0

    def loss(log_t: float) -> float:
        return negative_log_likelihood(true_indices, apply_temperature(probabilities, math.exp(log_t)))

    low, high = (math.log(bound) for bound in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(60):  # the bracket shrinks by 0.618 each step: far below 1e-6 in log T
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return round(math.exp((low + high) / 2), 6)


def reliability_bins(true_indices: np.ndarray, probabilities: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Per equal-width confidence bin: its bounds, image count, mean confidence and accuracy (None when empty)."""
    probabilities = np.asarray(probabilities)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(true_indices)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for number in range(bins):
        inside = which == number
        count = int(inside.sum())
        rows.append({"low": round(float(edges[number]), 4), "high": round(float(edges[number + 1]), 4), "count": count,
                     "confidence": round(float(confidence[inside].mean()), 6) if count else None,
                     "accuracy": round(float(correct[inside].mean()), 6) if count else None})
    return rows


def expected_calibration_error(true_indices: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over confidence bins of (share of images) x |accuracy - mean confidence|."""
    total = len(true_indices)
    if total == 0:
        return float("nan")
    return float(sum(row["count"] / total * abs(row["accuracy"] - row["confidence"])
                     for row in reliability_bins(true_indices, probabilities, bins) if row["count"]))


def calibration_report(true_indices: np.ndarray, raw: np.ndarray, temperature: float) -> dict:
    """ECE and reliability bins of one split before and after temperature scaling (evaluation.json)."""
    calibrated = apply_temperature(raw, temperature)
    return {
        "temperature": temperature,
        "ece_before": round(expected_calibration_error(true_indices, raw), 6),
        "ece_after": round(expected_calibration_error(true_indices, calibrated), 6),
        "nll_before": round(negative_log_likelihood(true_indices, raw), 6),
        "nll_after": round(negative_log_likelihood(true_indices, calibrated), 6),
        "reliability_before": reliability_bins(true_indices, raw),
        "reliability_after": reliability_bins(true_indices, calibrated),
    }


def fold_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """Divide the softmax output layer's kernel and bias by T, in place: the model now gives softmax(z / T)."""
    if temperature == 1.0:
        return model
    from imgclf_core.models.errors import ModelError

    output = model.layers[-1]
    activation = getattr(getattr(output, "activation", None), "__name__", "")
    if activation != "softmax" or len(output.weights) != 2:
        raise ModelError(f"cannot apply a temperature to a model ending in {type(output).__name__} ({activation})")
    for weight in output.weights:
        weight.assign(weight.numpy() / temperature)
    return model
