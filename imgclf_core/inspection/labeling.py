"""The labeling inbox: unlabelled images waiting for a class, ordered by what the model thinks of them."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from imgclf_core.fileio import atomic_write_bytes, unique_file_path
from imgclf_core.data.images import IMAGE_EXTENSIONS

INBOX_FOLDER = "_inbox"

ORDERS = {
    "uncertain": "least sure first (lowest top-1 probability: active learning)",
    "margin": "closest call first (smallest gap between the top two)",
    "confident": "most sure first (for bulk acceptance)",
    "name": "file name",
}
# With a model, the images it is least sure about come first: labelling those teaches it the most.
DEFAULT_ORDER = "uncertain"


def default_inbox(dataset_dir: str | os.PathLike) -> Path:
    """DATASET/_inbox if it exists, else an `inbox` folder beside the dataset (the shipped sample), else DATASET/_inbox."""
    dataset = Path(dataset_dir)
    inside, beside = dataset / INBOX_FOLDER, dataset.parent / "inbox"
    if inside.is_dir():
        return inside
    return beside if beside.is_dir() else inside


def inbox_images(inbox: str | os.PathLike) -> list[Path]:
    """The image files directly in the inbox folder (by extension, hidden files skipped), sorted by name."""
    folder = Path(inbox)
    if not folder.is_dir():
        return []
    return sorted(
        entry for entry in folder.iterdir()
        if entry.is_file() and not entry.is_symlink() and not entry.name.startswith(".")
        and entry.suffix.lower() in IMAGE_EXTENSIONS
    )


def save_into_inbox(inbox: str | os.PathLike, name: str, data: bytes) -> Path:
    """Write an uploaded image into the inbox under its own name (numbered if taken), atomically."""
    base = Path(name).name
    stem, suffix = os.path.splitext(base)
    if not stem or stem.startswith(".") or suffix.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f"not an image file name: {name!r}")
    target = unique_file_path(inbox, base)
    atomic_write_bytes(target, data)
    return target


def file_capture(journal, inbox: str | os.PathLike, data: bytes, class_name: str, origin: str = "label",
                 when: str | None = None):
    """A camera photo into a class: written into the inbox as camera-<time>.<png|jpg> (checked to be an
    image), then filed into `class_name` (a new class folder if need be) through the journal, so Undo puts
    it back into the inbox. Returns the journal's Move."""
    from imgclf_core.data.images import inspect_image

    info = inspect_image(data)  # ImageDecodeError for a frame that is not an image
    suffix = ".png" if info.format == "PNG" else ".jpg"
    stamp = when or time.strftime("%Y%m%d-%H%M%S")
    Path(inbox).mkdir(parents=True, exist_ok=True)
    saved = save_into_inbox(inbox, f"camera-{stamp}{suffix}", data)
    return journal.label(saved, class_name, origin=origin)


def suggest_classes(predictor, paths: Sequence[str | os.PathLike], batch_size: int = 64) -> np.ndarray:
    """Probabilities (N, K) of the model for each inbox image; a row of NaN for a file that cannot be read."""
    probabilities = np.full((len(paths), len(predictor.class_names)), np.nan, dtype=np.float32)
    for start in range(0, len(paths), batch_size):
        batch, readable, _ = predictor.load_images(paths[start:start + batch_size])
        if batch is not None:
            probabilities[[start + position for position in readable]] = predictor.predict_arrays(batch)
    return probabilities


def top_suggestion(probabilities: np.ndarray, class_names: Sequence[str]) -> tuple[str, float] | None:
    """(class, confidence) the model suggests for one image, or None for an image it could not read (NaN)."""
    row = np.asarray(probabilities, dtype=np.float64)
    if row.size == 0 or np.isnan(row).any():
        return None
    best = int(np.argmax(row))
    return class_names[best], float(row[best])


def inbox_order(probabilities: np.ndarray | None, order: str) -> list[int]:
    """Row numbers in the chosen order; unreadable rows (NaN) last; "name" (or no model) keeps the given order."""
    count = 0 if probabilities is None else len(probabilities)
    if probabilities is None or order == "name":
        return list(range(count))
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
    ranked = np.sort(np.nan_to_num(probabilities, nan=-1.0), axis=1)
    top1 = ranked[:, -1]
    margin = top1 - ranked[:, -2] if probabilities.shape[1] > 1 else top1
    key = {"uncertain": top1, "margin": margin, "confident": -top1}[order]
    unreadable = np.isnan(probabilities).any(axis=1)
    return sorted(range(count), key=lambda row: (bool(unreadable[row]), float(key[row]), row))
