"""The sidebar every page draws first: the dataset folder (typed, recent or an unpacked .zip) and the current run.

Every page imports this module, then draws this sidebar and its title before any slow work, so
importing it stays cheap: no pandas, altair or TensorFlow, and numpy and Pillow only once the
scan or a thumbnail decodes an image. tests/app/test_first_paint.py holds the line.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import streamlit as st

from imgclf_app.current_run import current_run_dir
from imgclf_app.session_keys import (
    DATASET_DIR_BOX, EXTRACTED_UPLOAD, RECENT_FOLDER_CHOICE, REMEMBERED_DIR, SAVED_DATASET_DIR, save_dataset_dir,
)
from imgclf_core import settings
from imgclf_core.data.archive import ArchiveError, extract_dataset_zip
from imgclf_core.fileio import unique_path, user_data_dir
from imgclf_core.training.run_folder import RunFolder

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATASET = PROJECT_ROOT / "sample_data" / "fashion_mnist"
# An uploaded .zip may unpack to at most this much, in at most this many files.
UPLOAD_MAX_TOTAL_BYTES = 2 * 1024**3
UPLOAD_MAX_FILES = 100_000


def default_dataset_dir() -> str:
    """IMGCLF_DATA_DIR if set, else the folder used last (a reload or restart reopens it), else the shipped sample."""
    if os.environ.get("IMGCLF_DATA_DIR"):
        return os.environ["IMGCLF_DATA_DIR"]
    recent = [folder for folder in settings.recent_dataset_folders() if Path(folder).is_dir()]
    return recent[0] if recent else str(SAMPLE_DATASET)


def uploaded_datasets_dir() -> Path:
    """Where uploaded .zip datasets are unpacked, one folder each."""
    return user_data_dir() / "datasets"


def sidebar_ui() -> Path | None:
    """The sidebar every page draws first: dataset folder and current run; returns the usable folder or None.

    Each page draws it itself (not app.py) because AppTest drops entry-script sidebar elements
    after the first run; the folder survives page switches through SAVED_DATASET_DIR.
    """
    folder = _dataset_dir_ui()
    current_run_sidebar(folder)
    return folder


def _dataset_dir_ui() -> Path | None:
    """Dataset folder (typed, recent or uploaded); None, with a message, when unusable.

    Reads top to bottom: the folder box, then recent folders, then "…or upload a .zip".
    """
    # Each page has its own widget under the same key, and a new widget ignores the value an old
    # one left there: the folder lives in SAVED_DATASET_DIR (kept by the callbacks and the
    # upload) and is put back into the widget's key on every run.
    st.session_state.setdefault(SAVED_DATASET_DIR, default_dataset_dir())
    # The box is drawn first but made last: a .zip uploaded in this run must be unpacked (and
    # become the folder) before the box's widget exists, since a widget's value cannot be
    # changed once it is made in a run.
    folder_box = st.sidebar.container()
    _recent_folders_ui()
    _zip_upload_ui()
    st.session_state[DATASET_DIR_BOX] = st.session_state[SAVED_DATASET_DIR]
    folder = folder_box.text_input(
        "Dataset folder", key=DATASET_DIR_BOX, on_change=_save_typed_folder,
        help="A folder with one subfolder of images per class.",
    ).strip()
    path = Path(folder).expanduser()
    if not folder:
        folder_box.error("Enter a dataset folder.")
        return None
    if not path.exists():
        folder_box.error(f"Folder not found: {path}")
        return None
    if not path.is_dir():
        folder_box.error(f"Not a folder: {path}")
        return None
    if st.session_state.get(REMEMBERED_DIR) != folder:
        settings.remember_dataset_folder(path)
        st.session_state[REMEMBERED_DIR] = folder
    return path


def _save_typed_folder() -> None:
    save_dataset_dir(st.session_state[DATASET_DIR_BOX])


def _use_recent_folder() -> None:
    chosen = st.session_state.get(RECENT_FOLDER_CHOICE)
    if chosen:
        save_dataset_dir(chosen)


def _recent_folders_ui() -> None:
    recent = [folder for folder in settings.recent_dataset_folders() if Path(folder).is_dir()]
    if len(recent) > 1:
        st.sidebar.selectbox(
            "Recent folders", recent, index=None, key=RECENT_FOLDER_CHOICE, on_change=_use_recent_folder,
            placeholder="Pick a recently used folder",
        )


def _zip_upload_ui() -> None:
    upload = st.sidebar.file_uploader(
        "…or upload a .zip (one folder per class)", type=["zip"], key="dataset_zip",
        help="Up to 100 MB (the server's upload limit); open a bigger dataset by typing its folder above.",
    )
    if upload is None or st.session_state.get(EXTRACTED_UPLOAD) == upload.file_id:
        return
    stem = Path(upload.name).stem or "dataset"
    target = unique_path(uploaded_datasets_dir(), f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    root = None
    try:
        with st.spinner(f"Unpacking {upload.name}…"):
            root = extract_dataset_zip(upload, target, UPLOAD_MAX_TOTAL_BYTES, UPLOAD_MAX_FILES)
    except ArchiveError as error:
        st.sidebar.error(f"{upload.name}: {error}")
    st.session_state[EXTRACTED_UPLOAD] = upload.file_id  # unpacked or refused: never tried again on a rerun
    if root is not None:
        save_dataset_dir(root)


def current_run_sidebar(folder: Path | None) -> None:
    """The current run's name and state under the folder box (or that there is none yet)."""
    run_dir = current_run_dir(folder)
    if run_dir is None:
        st.sidebar.caption("Run: none yet (start one on the Train page)")
        return
    status = RunFolder(run_dir).read_status()
    st.sidebar.caption(f"Run: **{run_dir.name}** · {status['state']}")
