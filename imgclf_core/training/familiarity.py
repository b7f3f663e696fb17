"""Unfamiliar images: how unlike the training data an image is, to the run's own model.

A Fashion-MNIST model calls a cat photo "bag 57%": its probabilities only say which of its classes
fits best, never that none does. The score here is the Mahalanobis distance from the image's features
(the model's global-pooling output, the vector its classifier reads) to the nearest class of the
training images (Lee et al. 2018): each class is a Gaussian around its mean, all sharing one
within-class covariance, estimated from a sample of the training features with Ledoit-Wolf shrinkage
(so a few hundred images of 1,280-d features still give an invertible matrix). The threshold is the
PASS_RATE quantile of the validation images' distances, so about that share of images like the
training data pass, and an image whose distance is above it is flagged as unfamiliar.

Why this score (bench/bench_trust.py, scikit-image's 16 photos, ~5% of the test images flagged):
  default run on full Fashion-MNIST:  Mahalanobis 16/16 photos (the cat 28.4 against a threshold of 22.0),
      4.4% of the test images; the cosine distance to the 5th nearest training feature, used before,
      11/16 (the cat passed: 0.221 against 0.224), 5.7%;
  default run on the 2,000-image sample: Mahalanobis 16/16 (the cat 27.0 against 21.8); 5th nearest 12/16;
  1 - the top probability: 2/16 and 4/16 (the cat is "bag 100%").

The run keeps the class means, the inverse covariance and the threshold in familiarity.npz (written
with the evaluation, when training ends; a new model.keras removes it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN_SAMPLE = 10_000  # training images whose features estimate the classes, up to 64 px inputs
SMALL_SAMPLE = 2_000  # at least this many for big inputs (see sample_size)
PASS_RATE = 0.95
_CHUNK = 4096  # query rows per matrix product


@dataclass(frozen=True)
class Familiarity:
    """Per-class feature means, the shared inverse covariance, and the distance above which an image is unfamiliar."""

    class_means: np.ndarray  # (C, D) float32, the classes present in the training sample
    precision: np.ndarray  # (D, D) float32, inverse of the shrunk within-class covariance
    threshold: float

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of `features` (raw features) to the nearest class mean."""
        queries = np.asarray(features, np.float32)
        projected_means = self.class_means @ self.precision  # (C, D)
        mean_terms = np.einsum("cd,cd->c", projected_means, self.class_means)
        out = np.empty(len(queries), np.float32)
        for start in range(0, len(queries), _CHUNK):
            rows = queries[start:start + _CHUNK]
            squared = (np.einsum("nd,nd->n", rows @ self.precision, rows)[:, None]
                       - 2.0 * rows @ projected_means.T + mean_terms[None, :])
            out[start:start + _CHUNK] = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
        return out

    def unfamiliar(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    def save(self, path: str | os.PathLike) -> None:
        np.savez(path, class_means=self.class_means.astype(np.float32), precision=self.precision.astype(np.float32),
                 threshold=np.float32(self.threshold))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Familiarity | None:
        """The saved model, or None when the run has none (older runs, or not evaluated yet)."""
        try:
            with np.load(Path(path)) as stored:
                return cls(stored["class_means"].astype(np.float32), stored["precision"].astype(np.float32),
                           float(stored["threshold"]))
        except (FileNotFoundError, KeyError, ValueError, OSError):
            return None


def fit_familiarity(train_features: np.ndarray, train_labels: np.ndarray, validation_features: np.ndarray,
                    pass_rate: float = PASS_RATE) -> Familiarity:
    """Class means and shared covariance from the training features; the threshold lets `pass_rate` of the
    validation images through."""
    if len(train_features) == 0 or len(validation_features) == 0:
        raise ValueError("familiarity needs training and validation features")
    train = np.asarray(train_features, np.float64)
    labels = np.asarray(train_labels)
    if len(labels) != len(train):
        raise ValueError(f"familiarity: {len(train)} training features but {len(labels)} labels")
    classes = np.unique(labels)
    means = np.stack([train[labels == label].mean(axis=0) for label in classes])
    within = train - means[np.searchsorted(classes, labels)]
    precision = np.linalg.inv(shrunk_covariance(within))
    model = Familiarity(means.astype(np.float32), precision.astype(np.float32), float("inf"))
    threshold = float(np.quantile(model.scores(validation_features), pass_rate))
    return Familiarity(model.class_means, model.precision, threshold)


def shrunk_covariance(centred: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf covariance of already centred rows: the sample covariance pulled toward a multiple of the
    identity by the amount that minimises the expected squared error (Ledoit & Wolf 2004)."""
    count, dimensions = centred.shape
    sample = centred.T @ centred / count
    scale = np.trace(sample) / dimensions
    target = scale * np.eye(dimensions)
    spread = np.sum((sample - target) ** 2) / dimensions
    row_norms = np.einsum("nd,nd->n", centred, centred)
    noise = (np.sum(row_norms ** 2) - count * np.sum(sample ** 2)) / (count ** 2 * dimensions)
    shrinkage = 1.0 if spread <= 0 else float(np.clip(noise / spread, 0.0, 1.0))
    covariance = (1.0 - shrinkage) * sample + shrinkage * target
    return covariance + 1e-6 * max(scale, 1e-12) * np.eye(dimensions)  # dead features (all zero) stay invertible


def sample_size(image_size: int) -> int:
    """Training images to keep: TRAIN_SAMPLE for small inputs, fewer for big ones (each costs a forward
    pass when training ends: 2,000 at 224 px, about 30 s of EfficientNet-Lite0 on 2 cores)."""
    return int(min(TRAIN_SAMPLE, max(SMALL_SAMPLE, TRAIN_SAMPLE * (64 / image_size) ** 2)))


def training_sample(count: int, size: int = TRAIN_SAMPLE, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `size` of `count` training images (sorted: sequential reads of a disk store)."""
    if count <= size:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))
