"""From a scanned dataset to tf.data batches.

Each file is decoded once (Pillow, in parallel threads) and resized to the model input size; the
uint8 arrays stay in memory or in an on-disk array store, so from epoch 2 on no image is decoded
again. Batches are gathered from that array, then augmented by Keras preprocessing layers.
This module imports TensorFlow; keep it out of pages that do not train or preview.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
import keras

from imgclf_core.data.augmentation import make_geometry_layer, make_photometric_layers
from imgclf_core.config import AugmentationConfig, DataConfig
from imgclf_core.data.dataset import DatasetError, DatasetIndex, ImageRecord, encode_labels
from imgclf_core.fileio import user_cache_dir
from imgclf_core.data.images import ImageDecodeError, decode_image
from imgclf_core.parallel import decode_thread_count, map_in_threads
from imgclf_core.data.split import SplitRecords, check_trainable_classes, split_records

ProgressCallback = Callable[[int, int], None]
# Above this many bytes of decoded pixels, "auto" keeps the arrays in an on-disk store.
AUTO_DISK_CACHE_BYTES = 2 * 1024**3
# Images with fewer pixels than this (median) decode fastest in a single thread.
TINY_IMAGE_PIXELS = 64 * 64


@dataclass(frozen=True)
class TrainingData:
    """Everything a trainer needs: the datasets of each split, their records and the label order."""

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    class_names: tuple[str, ...]
    train_records: tuple[ImageRecord, ...]
    validation_records: tuple[ImageRecord, ...]
    test: tf.data.Dataset | None = None  # the dataset's own test split: evaluated at the end, never trained on
    test_records: tuple[ImageRecord, ...] = ()
    train_images: np.ndarray | None = None  # the decoded training images, unaugmented (uint8, N x S x S x C)


def build_training_data(
    index: DatasetIndex,
    data_config: DataConfig,
    augmentation: AugmentationConfig | None,
    progress: ProgressCallback | None = None,
    splits: SplitRecords | None = None,
) -> TrainingData:
    """Split the index (given splits kept), decode every image once, and return batched datasets."""
    class_names = tuple(index.class_names)
    if len(class_names) < 2:
        raise DatasetError(f"{index.root}: need at least two classes with images, found {len(class_names)}")
    splits = splits or split_records(index.records, data_config.validation_split, data_config.seed)
    check_trainable_classes(splits, class_names)
    all_records = splits.train + splits.validation + splits.test
    images = decode_records(index.root, all_records, data_config, progress=progress)
    labels = encode_labels(all_records, class_names)
    ends = np.cumsum([len(splits.train), len(splits.validation), len(splits.test)])
    train = make_dataset(
        images[:ends[0]], labels[:ends[0]], data_config.batch_size,
        shuffle=True, seed=data_config.seed, augmentation=augmentation,
    )
    validation, test = (
        make_dataset(images[start:end], labels[start:end], data_config.batch_size, shuffle=False, seed=data_config.seed)
        if end > start else None
        for start, end in ((ends[0], ends[1]), (ends[1], ends[2]))
    )
    return TrainingData(
        train, validation, class_names, tuple(splits.train), tuple(splits.validation), test, tuple(splits.test),
        train_images=images[:ends[0]],
    )


def decode_records(
    root: str | os.PathLike,
    records: Sequence[ImageRecord],
    data_config: DataConfig,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Decode and resize every record once into a (N, S, S, C) uint8 array (memory or disk store)."""
    shape = (len(records), data_config.image_size, data_config.image_size, data_config.channels)
    use_disk = data_config.cache == "disk" or (
        data_config.cache == "auto" and int(np.prod(shape)) > AUTO_DISK_CACHE_BYTES
    )
    if not use_disk:
        images = np.empty(shape, dtype=np.uint8)
        _decode_into(images, Path(root), records, data_config, progress, workers)
        return images
    store = _array_store_path(records, data_config)
    if store.exists():
        cached = np.load(store, mmap_mode="r")
        if cached.shape == shape:
            if progress:
                progress(len(records), len(records))
            return cached
    store.parent.mkdir(parents=True, exist_ok=True)
    temporary = store.with_name(f".{store.name}.{os.getpid()}.tmp.npy")
    images = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
    try:
        _decode_into(images, Path(root), records, data_config, progress, workers)
        images.flush()
        del images
        os.replace(temporary, store)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return np.load(store, mmap_mode="r")


def _decode_into(
    images: np.ndarray,
    root: Path,
    records: Sequence[ImageRecord],
    data_config: DataConfig,
    progress: ProgressCallback | None,
    workers: int | None,
) -> None:
    size = (data_config.image_size, data_config.image_size)

    def decode_one(position: int) -> None:
        path = root / records[position].path
        try:
            images[position] = decode_image(path, color_mode=data_config.color_mode, size=size)
        except ImageDecodeError as error:
            raise DatasetError(f"{path}: {error} (the file changed after the scan; scan again)") from error

    tiny = bool(records) and np.median([record.width * record.height for record in records]) < TINY_IMAGE_PIXELS
    for _ in map_in_threads(decode_one, range(len(records)), workers or decode_thread_count(tiny), progress):
        pass


def _array_store_path(records: Sequence[ImageRecord], data_config: DataConfig) -> Path:
    digest = hashlib.sha256(f"{data_config.image_size}:{data_config.color_mode}:".encode())
    for record in records:
        digest.update(record.sha256.encode("ascii"))
    return user_cache_dir() / "arrays" / f"{digest.hexdigest()[:24]}.npy"


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    augmentation: AugmentationConfig | None = None,
) -> tf.data.Dataset:
    """Batches of (float32 images in 0..255, int32 labels) gathered from a uint8 array."""
    count = len(images)
    image_shape = images.shape[1:]

    def gather(batch_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Sorted fancy indexing reads a memory-mapped store sequentially.
        order = np.sort(batch_indices)
        return np.asarray(images[order]), labels[order]

    def load_batch(batch_indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        batch_images, batch_labels = tf.numpy_function(gather, [batch_indices], (tf.uint8, tf.int32))
        batch_images.set_shape((None, *image_shape))
        batch_labels.set_shape((None,))
        if geometry is not None:
            batch_images = geometry(batch_images, training=True)  # uint8 in, float32 out
        batch_images = tf.cast(batch_images, tf.float32)
        if photometric is not None:
            batch_images = photometric(batch_images, training=True)
        return batch_images, batch_labels

    geometry = photometric = None
    if augmentation is not None:
        geometry = make_geometry_layer(augmentation, seed)
        photometric = make_photometric_layers(augmentation, seed)
    dataset = tf.data.Dataset.range(count)
    if shuffle:
        dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(load_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
