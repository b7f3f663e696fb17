"""The scan of the dataset folder (cached for a few seconds) and image thumbnails, for every page.

Every page imports this module before drawing its title, so importing it stays cheap: no pandas,
altair or TensorFlow, and numpy and Pillow only once the scan or a thumbnail decodes an image.
tests/app/test_first_paint.py holds the line.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from imgclf_core.data.dataset import DatasetError, DatasetIndex, scan_dataset
from imgclf_core.data.images import ImageDecodeError
from imgclf_core.data.thumbnails import thumbnail_file

THUMBNAIL_SIZE = 96


@st.cache_data(ttl=5, show_spinner="Scanning the dataset folder…")
def load_dataset_index(folder: str) -> DatasetIndex:
    """Scan (incrementally, via the core's on-disk cache); re-checked every few seconds."""
    return scan_dataset(folder)


def scan_or_report(folder: Path) -> DatasetIndex | None:
    """The folder's scan, or None with the reason shown when the folder cannot be scanned."""
    try:
        return load_dataset_index(str(folder))
    except DatasetError as error:
        st.error(str(error))
        return None


def thumbnail_path(index: DatasetIndex, record, size: int = THUMBNAIL_SIZE) -> str | None:
    """The on-disk thumbnail of a record (made once per content hash); None if the file broke since the scan."""
    try:
        return str(thumbnail_file(index.absolute_path(record.path), record.sha256, size))
    except (ImageDecodeError, OSError):
        return None
