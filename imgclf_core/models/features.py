"""Backbone features, computed once per image and cached by (content hash, model, input size, colour mode).

One cache serves the head-on-features training stage and the label audit: the audit's ImageNet
EfficientNet-Lite0 embeddings at 224 px are the same vectors a transfer-learning run of
`efficientnet_lite0` at 224 px trains its first head on. A moved (relabelled) file keeps its hash,
so it is never embedded again. Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from imgclf_core.config import DataConfig
from imgclf_core.data.dataset import ImageRecord
from imgclf_core.fileio import atomic_write_with, user_cache_dir

ProgressCallback = Callable[[int, int], None]
# A compiled uint8 (N, S, S, C) -> float32 (N, D) call.
EmbedFunction = Callable[[np.ndarray], np.ndarray]
EMBEDDING_BATCH = 64
DECODE_CHUNK = 512  # images decoded at a time: the 224 px uint8 array of a chunk is ~77 MB
# While features are computed, the cache is saved at most this often: a killed extraction of 100k
# photos (an hour on 2 cores) loses minutes, not everything; each save rewrites the whole file.
CACHE_SAVE_SECONDS = 120.0


def feature_cache_key(model_name: str, image_size: int, color_mode: str = "rgb", weights: str = "imagenet") -> str | None:
    """The cache name of a backbone's features, or None when the weights are not fixed ImageNet ones."""
    if weights != "imagenet":
        return None  # random or user-supplied weights: features are not worth keeping across runs
    return f"{model_name}-{image_size}" + ("" if color_mode == "rgb" else f"-{color_mode}")


def feature_cache_file(cache_key: str) -> Path:
    return user_cache_dir() / "embeddings" / f"{cache_key}.npz"


def cached_features(
    root: str | os.PathLike,
    records: Sequence[ImageRecord],
    cache_key: str | None,
    data_config: DataConfig,
    make_embed: Callable[[], EmbedFunction],
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """(N, D) float32 features of `records`, computing (and caching) only those the cache lacks.

    `make_embed` builds the compiled features call; it is called only when something is missing.
    """
    cache_file = feature_cache_file(cache_key) if cache_key else None
    cached = load_feature_cache(cache_file) if cache_file else {}
    missing = [record for record in unique_by_hash(records) if record.sha256 not in cached]
    last_save = time.monotonic()

    def save_now_and_then(computed: dict[str, np.ndarray]) -> None:
        nonlocal last_save
        if cache_file and time.monotonic() - last_save >= CACHE_SAVE_SECONDS:
            save_feature_cache(cache_file, {**cached, **computed})
            last_save = time.monotonic()

    if missing:  # `progress` counts only these: cached features cost nothing
        cached.update(embed_records(root, missing, data_config, make_embed(), progress, save_now_and_then))
        if cache_file:
            save_feature_cache(cache_file, cached)
    if not records:
        return np.zeros((0, 0), np.float32)
    return np.stack([cached[record.sha256] for record in records])


def embed_records(
    root: str | os.PathLike,
    records: Sequence[ImageRecord],
    data_config: DataConfig,
    embed: EmbedFunction,
    progress: ProgressCallback | None = None,
    after_chunk: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> dict[str, np.ndarray]:
    """{content hash: feature vector}, decoding a chunk of images at a time (bounded memory).

    `after_chunk(vectors so far)` is called after each chunk (the cache saves itself from there).
    """
    from imgclf_core.data.pipeline import decode_records

    vectors: dict[str, np.ndarray] = {}
    for start in range(0, len(records), DECODE_CHUNK):
        chunk = list(records[start:start + DECODE_CHUNK])
        images = decode_records(root, chunk, data_config)
        for offset in range(0, len(chunk), EMBEDDING_BATCH):
            batch = np.asarray(embed(images[offset:offset + EMBEDDING_BATCH]))
            for record, vector in zip(chunk[offset:offset + EMBEDDING_BATCH], batch):
                vectors[record.sha256] = vector.astype(np.float32)
            if progress:
                progress(start + min(offset + EMBEDDING_BATCH, len(chunk)), len(records))
        if after_chunk:
            after_chunk(vectors)
    return vectors


def compiled_embed_function(model) -> EmbedFunction:
    """A classifier's features (its feature layer's output) as a uint8 -> float32 call, compiled once."""
    import keras

    from imgclf_core.models.forward import compiled_forward
    from imgclf_core.models.registry import feature_layer_name

    forward = compiled_forward(keras.Model(model.inputs, model.get_layer(feature_layer_name(model)).output))
    return lambda images: forward(images).numpy()


def unique_by_hash(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    seen: dict[str, ImageRecord] = {}
    for record in records:
        seen.setdefault(record.sha256, record)
    return list(seen.values())


def load_feature_cache(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as stored:
            return dict(zip(stored["hashes"].tolist(), stored["vectors"]))
    except (OSError, KeyError, ValueError):
        return {}  # no cache yet, or a damaged one: features are recomputed, never trusted broken


def save_feature_cache(path: Path, vectors: dict[str, np.ndarray]) -> None:
    hashes = np.array(list(vectors), dtype="U64")
    matrix = np.stack(list(vectors.values())).astype(np.float32)

    def write(temp_path: Path) -> None:
        with open(temp_path, "wb") as handle:
            np.savez(handle, hashes=hashes, vectors=matrix)

    atomic_write_with(path, write)
