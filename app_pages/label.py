"""Label: file the images of an inbox into class folders, one at a time or many at once, helped by the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from imgclf_app.current_run import current_run_dir
from imgclf_app.dataset_loaders import load_dataset_index, scan_or_report
from imgclf_app.model_state import model_cache_key, predictor_or_report
from imgclf_app.relabel_menu import relabel_messages_ui, set_outcome_message, undo_redo_ui
from imgclf_app.session_keys import LABEL_CAPTURED, LABEL_SAVED_UPLOADS, LABEL_SKIPPED, inbox_key, label_pick_key
from imgclf_app.sidebar import sidebar_ui
from imgclf_app.views import in_columns
from imgclf_core.data.images import IMAGE_EXTENSIONS, ImageDecodeError
from imgclf_core.inspection.labeling import (
    DEFAULT_ORDER, ORDERS, default_inbox, file_capture, inbox_images, inbox_order, save_into_inbox, suggest_classes,
    top_suggestion,
)
from imgclf_core.inspection.relabel import QUARANTINE, RelabelError, RelabelJournal, describe_move
from imgclf_core.data.thumbnails import display_array
from imgclf_core.training.run_folder import RunFolder

GRID_SIZE = 12
GRID_COLUMNS = 6
BULK_PREVIEW = 24  # images shown before "Accept all"
SUGGESTIONS = 3
CLASS_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0")  # keyboard shortcuts of the class buttons
ORIGIN = "label"  # this page's moves: its Undo and Redo walk only these
SINGLE_SIDE = 384  # the image shown alone; small ones enlarged by whole pixels
GRID_SIDE = 160
NEW_CLASS = "New class…"


def inbox_ui(folder: Path) -> Path:
    """The inbox folder (typed; default DATASET/_inbox or the sample's inbox) and uploads into it."""
    box_key = inbox_key(folder)
    st.session_state.setdefault(box_key, str(default_inbox(folder)))
    inbox = Path(st.text_input("Inbox folder (images without a class)", key=box_key).strip()).expanduser()
    uploads = st.file_uploader("Add images to the inbox", type=[ext.lstrip(".") for ext in IMAGE_EXTENSIONS],
                               accept_multiple_files=True, key="label_upload")
    saved = st.session_state.setdefault(LABEL_SAVED_UPLOADS, set())
    for upload in uploads or []:
        if upload.file_id not in saved:
            try:
                inbox.mkdir(parents=True, exist_ok=True)
                save_into_inbox(inbox, upload.name, upload.getvalue())
            except (ValueError, OSError) as error:
                st.error(f"{upload.name}: {error}")
            saved.add(upload.file_id)
    return inbox


@st.cache_data(max_entries=16, show_spinner="Asking the model about the inbox…")
def inbox_suggestions(_predictor, model_key: str, paths: tuple[str, ...]) -> np.ndarray:
    return suggest_classes(_predictor, paths)


def assistant_predictor(folder: Path):
    """The current run's model when it has one (finished, or stopped with a saved model), else None."""
    run_dir = current_run_dir(folder)
    if run_dir is None or not RunFolder(run_dir).has_model():
        return None, None
    return predictor_or_report(str(run_dir)), model_cache_key(str(run_dir))


def file_image(folder: Path, path: Path, label: str) -> None:
    """The click handler of every labeling button: one journaled move, then a message."""
    try:
        move = RelabelJournal(folder).label(path, label, origin=ORIGIN)
        set_outcome_message(describe_move(move, "Filed") + ".")
    except RelabelError as error:
        set_outcome_message(str(error), error=True)
    load_dataset_index.clear()


def camera_ui(folder: Path, inbox: Path, class_names: list[str]) -> None:
    """Teachable Machine's way in: pick or name a class, take photos; each is filed into it (undoable)."""
    if not st.toggle("Capture from the camera", key="label_camera_on",
                     help="Take photos with this computer's camera, each filed into the class you pick"):
        return
    choice = st.selectbox("Into class", [*class_names, NEW_CLASS], key="label_camera_class")
    name = st.text_input("New class name", key="label_camera_new").strip() if choice == NEW_CLASS else choice
    photo = st.camera_input(f"Take a photo for '{name}'" if name else "Name the class first", key="label_camera",
                            disabled=not name)
    filed = st.session_state.setdefault(LABEL_CAPTURED, set())
    if photo is None or photo.file_id in filed or not name:
        return
    filed.add(photo.file_id)  # each photo is filed once, however often the page reruns
    try:
        move = file_capture(RelabelJournal(folder), inbox, photo.getvalue(), name, origin=ORIGIN)
        set_outcome_message(describe_move(move, "Filed") + ". Undo puts it back into the inbox.")
    except (RelabelError, ImageDecodeError, ValueError, OSError) as error:
        set_outcome_message(f"the photo was not filed: {error}", error=True)
    load_dataset_index.clear()
    st.rerun()  # the counts and the class list with the new photo


def image_ui(container, path: Path, side: int, caption: str | None = None, advice: str = "") -> None:
    """One inbox image drawn pixel-crisp (a 28 px image enlarged by whole pixels), or why it cannot be."""
    try:
        # PNG: Streamlit would send an array as JPEG, whose artefacts smear the enlarged pixels.
        container.image(display_array(path, side), caption=caption, width="stretch", output_format="PNG")
    except ImageDecodeError as error:
        container.warning(f"{path.name}: {error}{advice}")


def counters_ui(remaining: int, folder: Path, class_counts: dict[str, int]) -> None:
    labelled = sum(1 for move, undone in RelabelJournal(folder).relabel_moves() if move.reason == "label" and not undone)
    columns = st.columns(3)
    columns[0].metric("Labelled from the inbox", labelled)
    columns[1].metric("Left in the inbox", remaining)
    columns[2].metric("Classes", len(class_counts))
    st.caption(" · ".join(f"{name}: {count}" for name, count in class_counts.items()))


def single_ui(folder: Path, path: Path, class_names: list[str], probabilities: np.ndarray | None, names: list[str]) -> None:
    """One image, large, with the model's top suggestions and a button per class."""
    left, right = st.columns([2, 3])
    image_ui(left, path, SINGLE_SIDE, path.name, " (quarantine it, or skip)")
    with right:
        if probabilities is not None and not np.isnan(probabilities).any():
            order = np.argsort(-probabilities)[:SUGGESTIONS]
            st.markdown("**Model suggests:** " + " · ".join(f"{names[i]} {probabilities[i]:.0%}" for i in order))
            top = names[order[0]]
            st.button(f"Accept: {top}", type="primary", key="label_accept", on_click=file_image, args=(folder, path, top),
                      shortcut="A")
        st.markdown("**Class** (keys 1-9 and 0 pick the first ten)")
        columns = st.columns(4)
        for number, name in enumerate(class_names):
            columns[number % 4].button(name, key=f"label_class:{name}", on_click=file_image, args=(folder, path, name),
                                       width="stretch", shortcut=CLASS_KEYS[number] if number < len(CLASS_KEYS) else None)
        new_class = st.text_input("New class", key="label_new_class", placeholder="a new class name").strip()
        columns = st.columns(3)
        if columns[0].button("Add to new class", key="label_new", disabled=not new_class):
            file_image(folder, path, new_class)
            st.rerun()
        if columns[1].button("Skip", key="label_skip", shortcut="S"):
            st.session_state.setdefault(LABEL_SKIPPED, []).append(str(path))
            st.rerun()
        columns[2].button("Quarantine", key="label_quarantine", on_click=file_image, args=(folder, path, QUARANTINE),
                          shortcut="Q")


def grid_ui(folder: Path, paths: list[Path], class_names: list[str], probabilities: np.ndarray | None,
            names: list[str]) -> None:
    """Several thumbnails at once, each with the model's suggestion (when there is a model): tick some, give them one class."""
    shown = paths[:GRID_SIZE]
    for position, (column, path) in enumerate(in_columns(shown, GRID_COLUMNS)):
        suggestion = top_suggestion(probabilities[position], names) if probabilities is not None else None
        caption = f"suggests {suggestion[0]} {suggestion[1]:.0%}" if suggestion else None
        if probabilities is not None and suggestion is None:
            caption = "no suggestion (unreadable)"
        image_ui(column, path, GRID_SIDE, caption)
        column.checkbox(path.name, key=label_pick_key(path))
    picked = [path for path in shown if st.session_state.get(label_pick_key(path))]
    columns = st.columns([2, 1])
    label = columns[0].selectbox("Class for the ticked images", class_names, key="label_grid_class")
    if columns[1].button(f"Assign {len(picked)} image(s)", key="label_grid_assign", disabled=not picked):
        for path in picked:
            file_image(folder, path, label)
            st.session_state.pop(label_pick_key(path), None)
        st.rerun()


def bulk_accept_ui(folder: Path, paths: list[Path], probabilities: np.ndarray, names: list[str]) -> None:
    with st.expander("Accept many suggestions at once"):
        threshold = st.slider("Accept the model's class when it is at least this sure", 0.0, 1.0, 0.95, 0.01,
                              key="label_threshold")
        sure = [(path, names[int(np.argmax(row))], float(np.max(row)))
                for path, row in zip(paths, probabilities) if not np.isnan(row).any() and np.max(row) >= threshold]
        st.caption(f"{len(sure)} image(s) at or above {threshold:.0%}; check the preview before accepting.")
        for column, (path, label, confidence) in in_columns(sure[:BULK_PREVIEW], GRID_COLUMNS):
            image_ui(column, path, GRID_SIDE, f"{label} {confidence:.0%}")
        if st.button(f"Accept all {len(sure)}", key="label_bulk", disabled=not sure):
            progress = st.progress(0.0)
            for done, (path, label, _) in enumerate(sure, start=1):
                file_image(folder, path, label)
                progress.progress(done / len(sure))
            set_outcome_message(f"Filed {len(sure)} image(s) by the model's suggestion.")
            st.rerun()


folder = sidebar_ui()
st.title("Label")
if folder is not None:
    inbox = inbox_ui(folder)
    dataset_index = scan_or_report(folder)
    classes = list(dataset_index.class_names) if dataset_index is not None else []
    camera_ui(folder, inbox, classes)
    files = inbox_images(inbox)
    relabel_messages_ui()
    undo_redo_ui(RelabelJournal(folder), ORIGIN)  # right under the message of the last filing
    counters_ui(len(files), folder, dict(dataset_index.class_counts) if dataset_index is not None else {})
    if not files:
        st.info(f"The inbox {inbox} has no images: add some above, or choose another folder.")
    else:
        predictor, model_key = assistant_predictor(folder)
        suggestions, model_names = None, []
        if predictor is not None:
            suggestions = inbox_suggestions(predictor, model_key, tuple(map(str, files)))
            model_names = predictor.class_names
            order = st.selectbox("Order", list(ORDERS), index=list(ORDERS).index(DEFAULT_ORDER),
                                 format_func=ORDERS.get, key="label_order")
        else:
            st.caption("Train a model on the Train page and its suggestions appear here.")
            order = "name"
        ranked = inbox_order(suggestions, order) if suggestions is not None else list(range(len(files)))
        skipped = set(st.session_state.get(LABEL_SKIPPED, []))
        ranked.sort(key=lambda row: str(files[row]) in skipped)  # skipped images go to the back
        ordered = [files[row] for row in ranked]
        mode = st.radio("View", ["One at a time", "Grid"], horizontal=True, key="label_mode")
        if mode == "One at a time":
            first = ranked[0]
            single_ui(folder, files[first], classes, suggestions[first] if suggestions is not None else None,
                      model_names)
        else:
            grid_ui(folder, ordered, classes, suggestions[ranked] if suggestions is not None else None, model_names)
        if suggestions is not None:
            bulk_accept_ui(folder, ordered, suggestions[ranked], model_names)
