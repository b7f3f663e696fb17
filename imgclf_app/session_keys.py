"""Every key the app keeps in `st.session_state`, by name, and one setter for each key written from several places.

A widget's key is its value's key too: where a page reads or seeds a widget's value, the widget is
made with the constant here. Keys that name one thing among many (an inbox, an image) are functions.
"""

from __future__ import annotations

import os

import streamlit as st

# The sidebar: the dataset folder survives page switches here (each page's box is a new widget).
SAVED_DATASET_DIR = "dataset_dir_saved"
DATASET_DIR_BOX = "dataset_dir"  # the folder box's widget, put back from SAVED_DATASET_DIR on every run
RECENT_FOLDER_CHOICE = "recent_choice"
REMEMBERED_DIR = "remembered_dir"  # the folder last written to the recent-folders settings
EXTRACTED_UPLOAD = "extracted_upload"  # file id of the .zip last unpacked, so a rerun does not unpack it again
CURRENT_RUN = "run_dir"  # the run every page works on (picked, started, or found by the sidebar)

# Dataset page
AUGMENTATION = "augmentation"  # the AugmentationConfig set there; the Train page uses it
GRID_PAGE = "grid_page"
GRID_PREDICTIONS = "grid_predictions"  # {path: (predicted, confidence)} of the current run, when the grid filters by them
GRID_SHOWN = "grid_shown"  # the paths on the grid's current page (the augmentation preview offers them)
INSPECT_NOW = "inspect_now"  # set by an Inspect click, popped by the run that opens the dialog
# Any page: a SimilarQuery set by a More-like-this click, popped by the run that opens the dialog
SIMILAR_NOW = "similar_now"
PREVIEW_IMAGE = "preview_image"
PREVIEW_SEED = "preview_seed"
PREVIEW_ASKED = "preview_asked"  # the augmented versions were asked for once: no button again this session

# Train page
TRAIN_FORM_FOLDER = "train_form_folder"  # the dataset the form's choices were made for
TRAIN_MODEL = "train_model"
# Widgets keyed by model name ("train_size:small_cnn"): their defaults depend on the model.
TRAIN_SIZE, TRAIN_EPOCHS, TRAIN_FINE_TUNE = "train_size:", "train_epochs:", "train_fine_tune:"
TRAIN_BATCH, TRAIN_LEARNING_RATE, TRAIN_VALIDATION = "train_batch:", "train_lr:", "train_val:"
MODEL_KEYED_PREFIXES = (TRAIN_SIZE, TRAIN_EPOCHS, TRAIN_FINE_TUNE, TRAIN_BATCH, TRAIN_LEARNING_RATE, TRAIN_VALIDATION)
TRAIN_RUN_CHOICE = "train_run_choice"
TRAIN_DELETE_CHOICE = "train_delete_choice"
PANEL_STATE = "panel_state"  # {run folder: state last drawn}, to redraw the page when it changes

# Predict, Mistakes, Audit and Label pages
PREDICT_MODEL = "predict_model"
MISTAKES_RUN = "mistakes_run"
MISTAKES_TRUE = "mistakes_true"
MISTAKES_PREDICTED = "mistakes_predicted"
AUDIT_REPORT = "audit_report"  # (signature, report, index, seconds) of the last audit
AUDIT_MAP = "audit_map"
AUDIT_PICKED = "audit_picked"  # the path of the map point last clicked
LABEL_SAVED_UPLOADS = "label_saved_uploads"  # file ids already saved into the inbox
LABEL_CAPTURED = "label_captured"  # file ids of the camera photos already filed (each once)
LABEL_SKIPPED = "label_skipped"

# The outcome of a relabel, undo or redo, shown once by the next run (see relabel_menu)
RELABEL_MESSAGE = "relabel_message"
RELABEL_ERROR = "relabel_error"
RELABEL_PLACE = "relabel_place"  # where the last action was made, so its outcome is shown there


def inbox_key(folder: str | os.PathLike) -> str:
    """The Label page's inbox box for one dataset folder."""
    return f"label_inbox:{folder}"


def label_pick_key(path: str | os.PathLike) -> str:
    """The tick box of one inbox image in the Label page's grid."""
    return f"label_pick:{path}"


def undo_count_key(origin: str) -> str:
    """How many moves one Undo or Redo click of a page (`origin`) walks."""
    return f"{origin}_undo_count"


def selected_run() -> str | None:
    """The current run's folder, as picked this session (None before any)."""
    return st.session_state.get(CURRENT_RUN)


def select_run(run_dir: str | os.PathLike | None) -> None:
    """Make `run_dir` the current run of every page; None forgets it."""
    if run_dir is None:
        st.session_state.pop(CURRENT_RUN, None)
    else:
        st.session_state[CURRENT_RUN] = str(run_dir)


def save_dataset_dir(folder: str | os.PathLike) -> None:
    """Make `folder` the dataset folder of every page (typed, picked from the recent ones, or unpacked)."""
    st.session_state[SAVED_DATASET_DIR] = str(folder)


def show_in_preview(path: str) -> None:
    """Make the image at `path` (relative to the dataset) the augmentation preview's image."""
    st.session_state[PREVIEW_IMAGE] = path
