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
# What the pages compute from a whole scan (quality report, similarity index, a model's predictions), kept for
# the process: (kind, folder) -> (the index it was computed from, what else it depends on, the result). A newer
# scan of the folder, or a change in what it depends on, replaces the entry.
_per_scan: dict[tuple[str, str], tuple[DatasetIndex, tuple, object]] = {}
_lock = threading.Lock()


def kept_for_scan(kind: str, index: DatasetIndex, depends_on: tuple = ()):
    """The `kind` result computed from this scan (and `depends_on`), or None. A rescan that found the very
    same records (the periodic one, RESCAN_SECONDS) keeps it: recomputing would redo a whole pass (a model
    over every image) and rerun the page under an open dialog."""
    key = (kind, str(index.root))
    with _lock:
        kept = _per_scan.get(key)
        if kept is None or kept[1] != depends_on:
            return None
        if kept[0] is not index:
            if kept[0].records != index.records:
                return None
            _per_scan[key] = (index, kept[1], kept[2])  # later checks of this scan are an `is` again
        return kept[2]


def compute_for_scan(kind: str, index: DatasetIndex, compute, what: str, note: str, depends_on: tuple = (),
                     limit: int | None = None):
    """`compute(progress)` under a progress bar ("{what} 1,234/2,000 ({note})"), kept as kept_for_scan's;
    `limit`: at most this many folders keep a `kind` result (the oldest goes first)."""
    bar = st.progress(0.0, text=f"{what} ({note})…")

    def report(done: int, total: int) -> None:
        bar.progress(min(done / total, 1.0) if total else 1.0, text=f"{what} {done:,}/{total:,} ({note})")

    result = compute(report)
    bar.empty()
    key = (kind, str(index.root))
    with _lock:
        _per_scan.pop(key, None)
        if limit is not None:
            same_kind = [other for other in _per_scan if other[0] == kind]
            for oldest in same_kind[:max(0, len(same_kind) - limit + 1)]:
                _per_scan.pop(oldest)
        _per_scan[key] = (index, depends_on, result)  # the index too: `is` compares the very scan
    return result


def quality_report_of(index: DatasetIndex, compute: bool):
    """The index's QualityReport: kept for the process per scan; computed here (with a bar) when `compute`."""
    from imgclf_core.data.quality import quality_report

    kept = kept_for_scan("quality", index)
    if kept is not None or not compute:
        return kept
    return compute_for_scan("quality", index, lambda progress: quality_report(index, progress=progress),
                            "Checking image quality", "once; cached by content")


def dataset_predictions_of(index: DatasetIndex, run_dir: str):
    """The run's model on every image (DatasetPredictions: class, confidence, features), once per scan and
    model (a bar while it predicts); None with a message when the model cannot load."""
    from imgclf_app.model_state import model_file_stamp, predictor_or_report
    from imgclf_core.inspection.predict import predict_dataset

    model = (run_dir, model_file_stamp(run_dir))
    kept = kept_for_scan("predictions", index, model)
    if kept is not None:
        return kept
    predictor = predictor_or_report(run_dir)
    if predictor is None:
        return None
    return compute_for_scan("predictions", index, lambda progress: predict_dataset(predictor, index, progress=progress),
                            "Decoding the images for the model", "once per model", depends_on=model)


def thumbnail_path(index: DatasetIndex, record, size: int = THUMBNAIL_SIZE) -> str | None:
    """The on-disk thumbnail of a record (made once per content hash); None if the file broke since the scan."""
    try:
        return str(thumbnail_file(index.absolute_path(record.path), record.sha256, size))
    except (ImageDecodeError, OSError):
        return None
