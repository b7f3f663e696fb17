"""Unfamiliar images: how unlike the training data an image is, to the run's own model.

A Fashion-MNIST model calls a cat photo "bag 57%": its probabilities only say which of its classes
fits best, never that none does. The score here is the distance from the image's features (the
model's global-pooling output, the vector its classifier reads) to the training images' features:
the cosine distance to the k-th nearest (k = K) of a sample of them (deep nearest neighbours, Sun et al.
2022), after centring every vector on the training features' mean. Post-ReLU pooled features all
point into one orthant, so uncentred cosine distances are tiny and crowded (0.002 for images and
photos alike on a briefly trained model); centred, the photos stand out (0.12-0.49 against a
validation threshold of 0.32, same model). The threshold is the PASS_RATE quantile of the validation images' scores, so about that share
of images like the training data pass, and an image scoring above it is flagged as unfamiliar.

The run keeps the centred, L2-normalised features of at most TRAIN_SAMPLE training images (fewer for big
inputs, see sample_size) and the threshold in
familiarity.npz (written with the evaluation, when training ends; a new model.keras removes it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Scikit-image photos flagged (of 16), at ~5% of the in-distribution images flagged, by k:
#   default run on full Fashion-MNIST (10,000 training features kept): k=1 13, k=2 12, k=5 11, k=10 11, k=50 11;
#   default run on the 2,000-image sample (1,600 kept):                 k=1 7,  k=2 9,  k=5 12, k=10 14.
# k = 5 holds up on both.
K = 5
TRAIN_SAMPLE = 10_000  # training images kept, up to 64 px inputs
SMALL_SAMPLE = 2_000  # at least this many for big inputs (see sample_size)
PASS_RATE = 0.95
_CHUNK = 1024  # query rows per matrix product: 1,024 x 10,000 float32 similarities = 40 MB


@dataclass(frozen=True)
class Familiarity:
    """The training images' normalised features and the score above which an image is unfamiliar."""

    train_features: np.ndarray  # (N, D) float32, centred unit rows
    threshold: float
    k: int = K
    mean: np.ndarray | None = None  # (D,) the raw training features' mean, subtracted before normalising

    def scores(self, features: np.ndarray) -> np.ndarray:
        """1 - cosine similarity to the k-th nearest training image, per row of `features` (raw features)."""
        raw = np.asarray(features, np.float32)
        queries = unit_rows(raw - self.mean if self.mean is not None else raw)
        k = min(self.k, len(self.train_features))
        out = np.empty(len(queries), np.float32)
        for start in range(0, len(queries), _CHUNK):
            similarity = queries[start:start + _CHUNK] @ self.train_features.T
            kth = np.partition(-similarity, k - 1, axis=1)[:, k - 1]
            out[start:start + _CHUNK] = 1.0 + kth  # -(-s) : 1 - s
        return out

    def unfamiliar(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    def save(self, path: str | os.PathLike) -> None:
        np.savez(path, train_features=self.train_features.astype(np.float16), threshold=np.float32(self.threshold),
                 k=np.int32(self.k), mean=self.mean if self.mean is not None else np.zeros(0, np.float32))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Familiarity | None:
        """The saved model, or None when the run has none (older runs, or not evaluated yet)."""
        try:
            with np.load(Path(path)) as stored:
                mean = stored["mean"].astype(np.float32) if "mean" in stored.files else np.zeros(0, np.float32)
                return cls(stored["train_features"].astype(np.float32), float(stored["threshold"]), int(stored["k"]),
                           mean if mean.size else None)
        except (FileNotFoundError, KeyError, ValueError, OSError):
            return None


def fit_familiarity(train_features: np.ndarray, validation_features: np.ndarray,
                    pass_rate: float = PASS_RATE, k: int = K) -> Familiarity:
    """Keep the training features; the threshold lets `pass_rate` of the validation images through."""
    if len(train_features) == 0 or len(validation_features) == 0:
        raise ValueError("familiarity needs training and validation features")
    train = np.asarray(train_features, np.float32)
    mean = train.mean(axis=0, dtype=np.float64).astype(np.float32)
    model = Familiarity(unit_rows(train - mean), float("inf"), k, mean)
    threshold = float(np.quantile(model.scores(validation_features), pass_rate))
    return Familiarity(model.train_features, threshold, k, mean)


def sample_size(image_size: int) -> int:
    """Training images to keep: TRAIN_SAMPLE for small inputs, fewer for big ones (each costs a forward
    pass when training ends: 2,000 at 224 px, about 30 s of EfficientNet-Lite0 on 2 cores)."""
    return int(min(TRAIN_SAMPLE, max(SMALL_SAMPLE, TRAIN_SAMPLE * (64 / image_size) ** 2)))


def training_sample(count: int, size: int = TRAIN_SAMPLE, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `size` of `count` training images (sorted: sequential reads of a disk store)."""
    if count <= size:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero), as C-contiguous float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
