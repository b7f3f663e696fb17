"""The scan of the dataset folder (cached for a few seconds) and image thumbnails, for every page.

Every page imports this module before drawing its title, so importing it stays cheap: no pandas,
altair or TensorFlow, and numpy and Pillow only once the scan or a thumbnail decodes an image.
tests/app/test_first_paint.py holds the line.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import streamlit as st

from imgclf_core.data.dataset import DatasetError, DatasetIndex, folder_stamps, scan_dataset
from imgclf_core.data.images import ImageDecodeError
from imgclf_core.data.thumbnails import thumbnail_file

THUMBNAIL_SIZE = 96


# Rescanned at least this often even when no folder changed: a file rewritten in place keeps its folder's time.
RESCAN_SECONDS = 300


@st.cache_resource(show_spinner="Scanning the dataset folder…", max_entries=4)
def load_dataset_index(folder: str, stamps: tuple, period: int) -> DatasetIndex:
    """Scan (incrementally, via the core's on-disk cache) once per state of the folders.

    A resource, not data: the index is immutable, and copying 100,000 records out of st.cache_data on
    every rerun (and rescanning every few seconds) made each click on the Dataset page of a
    100,000-image folder take 4-6 s.
    """
    return scan_dataset(folder)


def scan_or_report(folder: Path) -> DatasetIndex | None:
    """The folder's scan, or None with the reason shown when the folder cannot be scanned."""
    try:
        return load_dataset_index(str(folder), folder_stamps(folder), int(time.time() // RESCAN_SECONDS))
    except DatasetError as error:
        st.error(str(error))
        return None


# Datasets up to this size get their quality report on the first visit; larger ones on a click (a first
# pass decodes every image once: about a minute per 10,000 phone photos).
QUALITY_AUTOMATIC_IMAGES = 5_000
_quality_reports: dict[tuple[str, int], tuple[DatasetIndex, object]] = {}
_lock = threading.Lock()


def quality_report_of(index: DatasetIndex, compute: bool):
    """The index's QualityReport: kept for the process per scan; computed here (with a bar) when `compute`."""
    from imgclf_core.data.quality import quality_report

    key = (str(index.root), id(index))
    with _lock:
        kept = _quality_reports.get(key)
    if kept is not None or not compute:
        return kept[1] if kept is not None else None
    bar = st.progress(0.0, text="Checking image quality (once; cached by content)…")

    def report(done: int, total: int) -> None:
        bar.progress(min(done / total, 1.0) if total else 1.0, text=f"Checking image quality {done:,}/{total:,}")

    result = quality_report(index, progress=report)
    bar.empty()
    with _lock:
        for old in [old for old in _quality_reports if old[0] == key[0]]:
            _quality_reports.pop(old)  # an older scan of the same folder
        _quality_reports[key] = (index, result)  # the index too: its id stays its own
    return result


_predictions: dict[tuple, tuple[DatasetIndex, dict]] = {}


def dataset_predictions_of(index: DatasetIndex, run_dir: str) -> dict | None:
    """{path: (predicted class, confidence)} of the run's model on every image, once per scan and model (a bar
    while it predicts); None with a message when the model cannot load."""
    from imgclf_app.model_state import model_file_stamp, predictor_or_report
    from imgclf_core.inspection.predict import predict_dataset

    key = (str(index.root), id(index), run_dir, model_file_stamp(run_dir))
    with _lock:
        kept = _predictions.get(key)
    if kept is not None:
        return kept[1]
    predictor = predictor_or_report(run_dir)
    if predictor is None:
        return None
    bar = st.progress(0.0, text="Decoding the images for the model (once per model)…")

    def report(done: int, total: int) -> None:
        bar.progress(min(done / total, 1.0) if total else 1.0, text=f"Decoding the images for the model {done:,}/{total:,}")

    predictions = predict_dataset(predictor, index, progress=report)
    bar.empty()
    with _lock:
        for old in [old for old in _predictions if old[0] == key[0]]:
            _predictions.pop(old)
        _predictions[key] = (index, predictions)
    return predictions


def thumbnail_path(index: DatasetIndex, record, size: int = THUMBNAIL_SIZE) -> str | None:
    """The on-disk thumbnail of a record (made once per content hash); None if the file broke since the scan."""
    try:
        return str(thumbnail_file(index.absolute_path(record.path), record.sha256, size))
    except (ImageDecodeError, OSError):
        return None
