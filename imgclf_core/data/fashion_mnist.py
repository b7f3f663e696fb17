"""Fashion-MNIST from its IDX files (Debian's dataset-fashion-mnist) to folder-per-class PNG trees."""

from __future__ import annotations

import csv
import gzip
import io
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from imgclf_core.fileio import atomic_write_bytes

DEFAULT_SOURCE_DIR = Path("/usr/share/datasets/fashion-mnist")
# Folder-safe versions of the official names (T-shirt/top has a slash).
CLASS_NAMES = (
    "tshirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally .gz) into a numpy array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"not an unsigned-byte IDX file: {path}")
    dimensions = data[3]
    shape = struct.unpack(f">{dimensions}I", data[4 : 4 + 4 * dimensions])
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"IDX file {path} holds {values.size} values, header says {shape}")
    return values.reshape(shape)


def load_split(source_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) of the 'train' or 'test' split."""
    source = Path(source_dir)
    images_name, labels_name = _FILES[split]
    images = read_idx(_existing(source, images_name))
    labels = read_idx(_existing(source, labels_name))
    if len(images) != len(labels):
        raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels in {source}")
    return images, labels


def write_full_tree(
    source_dir: str | os.PathLike, out_dir: str | os.PathLike, progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
    """Write OUT/train/<class>/NNNNN.png (60k) and OUT/test/<class>/NNNNN.png (10k)."""
    jobs = []
    for split in ("train", "test"):
        images, labels = load_split(source_dir, split)
        for index, (image, label) in enumerate(zip(images, labels)):
            jobs.append((Path(out_dir) / split / CLASS_NAMES[label] / f"{index:05d}.png", image))
    _write_pngs(jobs, progress)
    return {split: sum(1 for path, _ in jobs if path.parts[-3] == split) for split in ("train", "test")}


def write_sample(
    source_dir: str | os.PathLike, out_dir: str | os.PathLike, per_class: int, inbox_count: int
) -> dict[str, int]:
    """Write a balanced labelled subset from the train split and an unlabelled inbox from the test split.

    OUT/fashion_mnist/<class>/train_NNNNN.png holds the first `per_class` training images of each
    class; OUT/inbox/test_NNNNN.png the first `inbox_count` test images (different images, so
    the inbox is truly held out), with their true classes in OUT/inbox_answers.csv.
    """
    out = Path(out_dir)
    train_images, train_labels = load_split(source_dir, "train")
    jobs = []
    for label, name in enumerate(CLASS_NAMES):
        indices = np.flatnonzero(train_labels == label)[:per_class]
        jobs += [(out / "fashion_mnist" / name / f"train_{index:05d}.png", train_images[index]) for index in indices]
    test_images, test_labels = load_split(source_dir, "test")
    inbox_jobs = [(out / "inbox" / f"test_{index:05d}.png", test_images[index]) for index in range(inbox_count)]
    _write_pngs(jobs + inbox_jobs)
    answers = io.StringIO()
    writer = csv.writer(answers, lineterminator="\n")
    writer.writerow(["file", "label"])
    writer.writerows((path.name, CLASS_NAMES[test_labels[index]]) for index, (path, _) in enumerate(inbox_jobs))
    atomic_write_bytes(out / "inbox_answers.csv", answers.getvalue().encode("utf-8"))
    return {"labelled": len(jobs), "inbox": len(inbox_jobs)}


def _write_pngs(jobs: list[tuple[Path, np.ndarray]], progress: Callable[[int, int], None] | None = None) -> None:
    for folder in sorted({path.parent for path, _ in jobs}):
        folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) * 2) as pool:
        for done, _ in enumerate(pool.map(_write_png, jobs), start=1):
            if progress and (done % 500 == 0 or done == len(jobs)):
                progress(done, len(jobs))


def _write_png(job: tuple[Path, np.ndarray]) -> None:
    path, pixels = job
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    path.write_bytes(buffer.getvalue())


def _existing(source: Path, name: str) -> Path:
    for candidate in (source / f"{name}.gz", source / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {name}(.gz) not found in {source} "
        "(on Debian: apt-get install dataset-fashion-mnist)"
    )
