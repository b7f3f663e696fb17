"""Unfamiliar images: Mahalanobis distance to the nearest training class, thresholded on validation."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf_core.training.familiarity import (
    Familiarity, fit_familiarity, sample_size, shrunk_covariance, training_sample,
)


def clusters(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of images like the training data (three tight clusters in 32-d) and their classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    return (np.eye(32)[labels] * 10 + rng.normal(0, 1.0, (count, 32))).astype(np.float32), labels


def test_about_the_pass_rate_of_familiar_images_pass_and_far_ones_are_flagged(tmp_path):
    features, labels = clusters(2000, seed=0)
    familiarity = fit_familiarity(features, labels, clusters(1000, seed=1)[0])
    fresh = familiarity.unfamiliar(familiarity.scores(clusters(4000, seed=2)[0])).mean()
    assert 0.02 < fresh < 0.09  # 5% expected
    far = np.random.default_rng(3).normal(0, 1.0, (200, 32)).astype(np.float32) * 3  # no cluster's centre
    far[:, :3] = 0
    assert familiarity.unfamiliar(familiarity.scores(far)).all()
    between = (np.eye(32)[0] * 5 + np.eye(32)[1] * 5)[None, :].astype(np.float32)  # halfway between two classes
    assert familiarity.unfamiliar(familiarity.scores(between)).all()
    familiarity.save(tmp_path / "familiarity.npz")
    loaded = Familiarity.load(tmp_path / "familiarity.npz")
    assert loaded.threshold == pytest.approx(familiarity.threshold)
    np.testing.assert_allclose(loaded.scores(far[:5]), familiarity.scores(far[:5]), rtol=1e-5)
    assert Familiarity.load(tmp_path / "none.npz") is None
    np.savez(tmp_path / "old.npz", train_features=features[:4], threshold=np.float32(0.3), k=np.int32(5))
    assert Familiarity.load(tmp_path / "old.npz") is None  # the nearest-neighbour model runs had before


def test_the_score_is_the_mahalanobis_distance_to_the_nearest_class_mean():
    precision = np.diag([1.0, 4.0]).astype(np.float32)  # the second feature varies half as much
    model = Familiarity(np.array([[0.0, 0.0], [10.0, 0.0]], np.float32), precision, threshold=2.0)
    queries = np.array([[0.0, 1.0], [3.0, 0.0], [9.0, 0.5]], np.float32)
    np.testing.assert_allclose(model.scores(queries), [2.0, 3.0, np.sqrt(1 + 4 * 0.25)], rtol=1e-6)
    assert list(model.unfamiliar(model.scores(queries))) == [False, True, False]


def test_the_shrunk_covariance_is_invertible_with_fewer_images_than_features():
    rng = np.random.default_rng(0)
    few = rng.normal(0, 1.0, (50, 200))
    covariance = shrunk_covariance(few - few.mean(axis=0))
    assert np.all(np.linalg.eigvalsh(covariance) > 0)
    many = rng.normal(0, 1.0, (20_000, 4)) * [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(np.diag(shrunk_covariance(many - many.mean(axis=0))), [1, 4, 9, 16], rtol=0.05)


def test_the_training_sample_is_sorted_bounded_and_whole_when_small():
    assert list(training_sample(5, size=10)) == [0, 1, 2, 3, 4]
    sample = training_sample(100_000, size=1000)
    assert len(sample) == len(set(sample)) == 1000 and list(sample) == sorted(sample)
    assert [sample_size(side) for side in (28, 64, 128, 224)] == [10_000, 10_000, 2_500, 2_000]  # a forward pass each
    with pytest.raises(ValueError, match="needs training and validation"):
        fit_familiarity(np.zeros((0, 4)), np.zeros(0), np.ones((3, 4)))
