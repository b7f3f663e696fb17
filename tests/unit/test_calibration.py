"""Calibration: ECE, reliability bins, fitting a temperature, and folding it into the model."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf_core.training.calibration import (
    apply_temperature, calibration_report, expected_calibration_error, fit_temperature, fold_temperature,
    reliability_bins,
)


def sampled(temperature: float, count: int = 20_000, classes: int = 5, seed: int = 0):
    """Labels drawn from softmax(z / temperature), and the probabilities softmax(z) a model would report:
    over-confident by exactly `temperature`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (count, classes))
    true = np.exp(logits / temperature)
    true /= true.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in true])
    reported = np.exp(logits)
    return labels, (reported / reported.sum(axis=1, keepdims=True)).astype(np.float32)


def test_fitting_recovers_the_temperature_and_cuts_the_calibration_error():
    labels, probabilities = sampled(temperature=2.0)
    fitted = fit_temperature(labels, probabilities)
    assert fitted == pytest.approx(2.0, rel=0.05)
    report = calibration_report(labels, probabilities, fitted)
    assert report["ece_before"] > 0.05 and report["ece_after"] < 0.015
    assert report["nll_after"] < report["nll_before"]
    calibrated_labels, calibrated = sampled(temperature=1.0, seed=1)
    assert fit_temperature(calibrated_labels, calibrated) == pytest.approx(1.0, rel=0.05)
    assert fit_temperature(labels[:5], probabilities[:5]) == 1.0  # too few images to fit anything


def test_temperature_keeps_every_prediction_and_one_is_the_identity():
    _, probabilities = sampled(temperature=1.5, count=500)
    for temperature in (0.3, 1.0, 4.0):
        scaled = apply_temperature(probabilities, temperature)
        np.testing.assert_array_equal(scaled.argmax(axis=1), probabilities.argmax(axis=1))
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(apply_temperature(probabilities, 1.0), probabilities, atol=1e-6)
    assert (apply_temperature(probabilities, 4.0).max(axis=1) <= probabilities.max(axis=1) + 1e-6).all()


def test_reliability_bins_and_the_ece_by_hand():
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]], np.float32)
    labels = np.array([0, 1, 0, 1])
    bins = reliability_bins(labels, probabilities, bins=10)
    assert sum(row["count"] for row in bins) == 4
    top = bins[9]
    assert (top["count"], top["accuracy"], top["confidence"]) == (2, 0.5, pytest.approx(0.95))
    assert bins[5]["count"] == 2 and bins[5]["accuracy"] == 1.0 and bins[0]["confidence"] is None
    # two images at 0.95 with half right, two at 0.55 both right: (2 * 0.45 + 2 * 0.45) / 4
    assert expected_calibration_error(labels, probabilities, bins=10) == pytest.approx(0.45, abs=1e-6)


def test_a_folded_temperature_gives_the_scaled_probabilities():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    images = np.random.default_rng(0).normal(0, 2, (16, 4)).astype("float32")
    raw = model.predict(images, verbose=0)
    fold_temperature(model, 2.5)
    np.testing.assert_allclose(model.predict(images, verbose=0), apply_temperature(raw, 2.5), atol=1e-5)
    from imgclf_core.models.errors import ModelError

    logits_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ModelError, match="cannot apply a temperature"):
        fold_temperature(logits_model, 2.0)
