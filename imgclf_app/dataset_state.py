"""The current dataset folder (sidebar widget) and cached loaders built on imgclf_core."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from imgclf_core.dataset import DatasetError, DatasetIndex, scan_dataset
from imgclf_core.images import ImageDecodeError, decode_image

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATASET = PROJECT_ROOT / "sample_data" / "fashion_mnist"
THUMBNAIL_SIZE = 96


def default_dataset_dir() -> str:
    """IMGCLF_DATA_DIR if set, else the shipped Fashion-MNIST sample."""
    return os.environ.get("IMGCLF_DATA_DIR") or str(SAMPLE_DATASET)


def dataset_dir_sidebar() -> Path | None:
    """Sidebar text input for the dataset folder; None (with a message) when it is unusable."""
    if "dataset_dir" not in st.session_state:
        st.session_state["dataset_dir"] = default_dataset_dir()
    folder = st.sidebar.text_input(
        "Dataset folder", key="dataset_dir", help="A folder with one subfolder of images per class."
    ).strip()
    path = Path(folder).expanduser()
    if not folder:
        st.sidebar.error("Enter a dataset folder.")
        return None
    if not path.exists():
        st.sidebar.error(f"Folder not found: {path}")
        return None
    if not path.is_dir():
        st.sidebar.error(f"Not a folder: {path}")
        return None
    return path


@st.cache_data(ttl=5, show_spinner="Scanning the dataset folder…")
def load_dataset_index(folder: str) -> DatasetIndex:
    """Scan (incrementally, via the core's on-disk cache); re-checked every few seconds."""
    return scan_dataset(folder)


def scan_or_report(folder: Path) -> DatasetIndex | None:
    try:
        return load_dataset_index(str(folder))
    except DatasetError as error:
        st.error(str(error))
        return None


@st.cache_data(max_entries=2000, show_spinner=False)
def load_thumbnail(path: str, mtime_ns: int, size: int = THUMBNAIL_SIZE) -> np.ndarray | None:
    """A thumbnail through the one decode function; None if the file broke since the scan."""
    del mtime_ns  # part of the cache key only: an edited file gets a new thumbnail
    try:
        image = decode_image(path)
    except ImageDecodeError:
        return None
    scale = size / max(image.shape[0], image.shape[1])
    if scale >= 1:  # small images (28 px) are enlarged by repeating pixels, not blurred
        factor = int(scale)
        return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    return decode_image(path, size=(max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))))


def file_mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
