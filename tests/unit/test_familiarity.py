"""Unfamiliar images: k-th nearest training feature distance, thresholded on validation."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf_core.training.familiarity import Familiarity, fit_familiarity, sample_size, training_sample


def clusters(count: int, seed: int) -> np.ndarray:
    """Features of images like the training data: three tight directions in 32-d."""
    rng = np.random.default_rng(seed)
    centres = np.eye(32)[:3] * 10
    return (centres[rng.integers(0, 3, count)] + rng.normal(0, 1.0, (count, 32))).astype(np.float32)


def test_about_the_pass_rate_of_familiar_images_pass_and_far_ones_are_flagged(tmp_path):
    familiarity = fit_familiarity(clusters(2000, seed=0), clusters(1000, seed=1))
    fresh = familiarity.unfamiliar(familiarity.scores(clusters(4000, seed=2))).mean()
    assert 0.02 < fresh < 0.09  # 5% expected
    far = np.random.default_rng(3).normal(0, 1.0, (200, 32)).astype(np.float32)  # no cluster's direction
    far[:, :3] = 0
    assert familiarity.unfamiliar(familiarity.scores(far)).all()
    familiarity.save(tmp_path / "familiarity.npz")
    loaded = Familiarity.load(tmp_path / "familiarity.npz")
    assert loaded.threshold == pytest.approx(familiarity.threshold) and loaded.k == familiarity.k
    np.testing.assert_allclose(loaded.scores(far[:5]), familiarity.scores(far[:5]), atol=2e-3)  # float16 storage
    assert Familiarity.load(tmp_path / "none.npz") is None


def test_the_score_is_the_distance_to_the_kth_nearest_training_image():
    train = np.eye(4, dtype=np.float32)
    model = Familiarity(train, threshold=0.5, k=2)
    query = np.array([[1.0, 1.0, 0.0, 0.0]], np.float32)  # cosine 0.707 to two training rows, 0 to the others
    assert model.scores(query)[0] == pytest.approx(1 - np.sqrt(0.5), abs=1e-6)
    assert Familiarity(train, threshold=0.5, k=3).scores(query)[0] == pytest.approx(1.0, abs=1e-6)


def test_the_training_sample_is_sorted_bounded_and_whole_when_small():
    assert list(training_sample(5, size=10)) == [0, 1, 2, 3, 4]
    sample = training_sample(100_000, size=1000)
    assert len(sample) == len(set(sample)) == 1000 and list(sample) == sorted(sample)
    assert [sample_size(side) for side in (28, 64, 128, 224)] == [10_000, 10_000, 2_500, 2_000]  # a forward pass each
    with pytest.raises(ValueError, match="needs training and validation"):
        fit_familiarity(np.zeros((0, 4)), np.ones((3, 4)))
