"""Mistakes: confusion matrix -> the images in a cell (with Grad-CAM) -> relabel in place -> undo -> retrain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from imgclf_app.charts import confusion_difference_chart
from imgclf_app.current_run import current_run_dir
from imgclf_app.dataset_loaders import scan_or_report
from imgclf_app.model_state import model_cache_key, predictor_or_report
from imgclf_app.relabel_menu import gallery_relabel_ui, relabel_messages_ui, undo_redo_ui
from imgclf_app.session_keys import MISTAKES_PREDICTED, MISTAKES_RUN, MISTAKES_TRUE, SIMILAR_NOW, select_run
from imgclf_app.sidebar import sidebar_ui
from imgclf_app.similar_view import SimilarQuery, more_like_this_button, similar_dialog_if_asked
from imgclf_app.views import SPLIT_NAMES, SPLIT_TITLES, accuracy_text, evaluation_ui, in_columns, refused_while_busy
from imgclf_core.training import run_catalog, run_process
from imgclf_core.training.run_folder import ACTIVE_STATES, RunFolder
from imgclf_core.data.dataset import TEST, VALIDATION
from imgclf_core.training.evaluation import confusion_matrix_difference
from imgclf_core.data.images import ImageDecodeError, read_image_bytes
from imgclf_core.inspection.mistakes import (
    cell_predictions, class_average_gradcam, explain_paths, largest_confusions, top_losses,
)
from imgclf_core.inspection.overlay import colorize_heatmap, overlay_heatmap
from imgclf_core.inspection.relabel import RelabelJournal
from imgclf_core.data.thumbnails import display_array, make_thumbnail

ORIGIN = "mistakes"  # this page's moves: its Undo and Redo walk only these
GALLERY_COLUMNS = 3  # each item is the image and its Grad-CAM side by side
GALLERY_SIZE = 12
DISPLAY_SIDE = 224  # small images are enlarged by whole pixels to about this, big photos shrunk
TOP_LOSSES = 12
AVERAGE_GRADCAM_IMAGES = 64


def run_choice_ui(folder: Path) -> Path | None:
    """The run to inspect: the sidebar's current run, or another evaluated run of this dataset."""
    evaluated = [run_dir for run_dir in run_catalog.runs_of_dataset(run_catalog.default_runs_root(), folder)
                 if RunFolder(run_dir).has_predictions()]
    current = current_run_dir(folder)
    if current is not None and current not in evaluated:
        return current  # training, stopped or failed: the page says so
    if not evaluated:
        return None
    names = [run_dir.name for run_dir in evaluated]
    st.session_state[MISTAKES_RUN] = (current or evaluated[0]).name

    def pick() -> None:
        select_run(evaluated[names.index(st.session_state[MISTAKES_RUN])])

    chosen = st.selectbox("Run", names, key=MISTAKES_RUN, on_change=pick)
    return evaluated[names.index(chosen)]


@st.cache_data(max_entries=64, show_spinner="Computing Grad-CAM…")
def explain_files(_predictor, model_key: str, paths: tuple[str, ...]) -> list[dict]:
    return explain_paths(_predictor, paths)


@st.cache_data(max_entries=32, show_spinner="Averaging Grad-CAM over the class…")
def average_gradcam(_predictor, model_key: str, paths: tuple[str, ...], class_index: int):
    return class_average_gradcam(_predictor, paths, class_index)


def gallery_ui(rows: list[dict], predictor, model_key: str, folder: Path, journal: RelabelJournal, key: str,
               sorted_by_loss: bool = False) -> bool:
    """Images beside their Grad-CAM overlay (for the predicted class), confidence (or loss) and a relabel menu.

    The outcome of a relabel is shown under the image it moved, with Undo right under it; returns
    whether it was (the page's other Undo is then left out).
    """
    if not rows:
        st.caption("No images here.")
        return False
    pages = -(-len(rows) // GALLERY_SIZE)
    # Per split: the other split's cell may have fewer pages than the page number left here.
    page_key = f"{key}_page:{rows[0]['split']}"
    page = st.number_input(f"Page (of {pages})", 1, pages, key=page_key) if pages > 1 else 1
    shown = rows[(page - 1) * GALLERY_SIZE:page * GALLERY_SIZE]
    st.caption(f"{len(rows)} image(s), each beside its Grad-CAM: where the model looked for the class it predicted.")
    located = journal.current_paths([row["path"] for row in shown])
    explained = explain_files(predictor, model_key, tuple(str(folder / path) for path in located))
    kept = journal.kept_paths()
    class_names = predictor.class_names
    undo_shown = False
    for column, (row, path, explanation) in in_columns(list(zip(shown, located, explained)), GALLERY_COLUMNS):
        with column:
            undo_shown |= _gallery_item(row, path, explanation, folder, journal, class_names, kept,
                                        f"{key}:{row['path']}", sorted_by_loss)
    return undo_shown


def gallery_caption(row: dict, sorted_by_loss: bool = False) -> str:
    """"ring → cross · 93%"; in a list sorted by loss the loss comes first: "loss 2.65 · ring → cross · 93%"."""
    label = f"{row['true']} → {row['predicted']} · {row['probability']:.0%}"
    return f"loss {row['loss']:.2f} · {label}" if sorted_by_loss else label


def _gallery_item(row: dict, path: str, explained: dict, folder: Path, journal: RelabelJournal, class_names: list[str],
                  kept: set[str], widget_key: str, sorted_by_loss: bool) -> bool:
    """One image beside its Grad-CAM, then its menu (or where it went) and the outcome of using that menu."""
    try:
        photo = display_array(read_image_bytes(folder / path), DISPLAY_SIDE)  # pixel-crisp when small
    except ImageDecodeError as error:
        st.warning(f"{path}: {error}")
        return relabel_messages_ui(journal, ORIGIN, place=widget_key)
    plain, explained_column = st.columns(2, gap="small")
    # PNG: Streamlit would send an array as JPEG, whose artefacts smear the enlarged pixels.
    plain.image(photo, caption=gallery_caption(row, sorted_by_loss), width="stretch", output_format="PNG")
    if "heatmap" in explained:
        explained_column.image(overlay_heatmap(photo, explained["heatmap"], opacity=0.4),
                               caption=f"Grad-CAM for {row['predicted']}", width="stretch", output_format="PNG")
    else:
        explained_column.caption(f"No Grad-CAM: {explained.get('error', 'not computed')}")
    more_like_this_button(SimilarQuery(path, path=path), widget_key)
    return gallery_relabel_ui(folder, journal, row["path"], path, class_names, kept, widget_key, ORIGIN)


def cell_ui(evaluation: dict, rows: list[dict], predictor, model_key: str, folder: Path, journal) -> bool:
    st.subheader("Images behind a confusion-matrix cell")
    names = evaluation["class_names"]
    confusions = largest_confusions(evaluation["confusion_matrix"], names)
    if MISTAKES_TRUE not in st.session_state and confusions:
        st.session_state[MISTAKES_TRUE], st.session_state[MISTAKES_PREDICTED] = confusions[0][:2]
    columns = st.columns(2)
    true_label = columns[0].selectbox("True class", names, key=MISTAKES_TRUE)
    predicted_label = columns[1].selectbox("Predicted as", names, key=MISTAKES_PREDICTED)
    if confusions:
        st.caption("Most confused: " + ", ".join(f"{true} → {predicted} ({count})" for true, predicted, count in confusions[:5]))
    return gallery_ui(cell_predictions(rows, true_label, predicted_label), predictor, model_key, folder, journal,
                      "cell")


def top_losses_ui(rows: list[dict], predictor, model_key: str, folder: Path, journal, split: str) -> bool:
    st.subheader("Top losses")
    st.caption(f"The {split} images the model is most confidently wrong about, highest loss first "
               "(loss = −log of the probability given to the true class): often a wrong label.")
    return gallery_ui(top_losses(rows, TOP_LOSSES), predictor, model_key, folder, journal, "losses",
                      sorted_by_loss=True)


def class_gradcam_ui(rows: list[dict], predictor, model_key: str, folder: Path, journal, split: str) -> None:
    st.subheader("Average Grad-CAM of a class")
    label = st.selectbox("Class", predictor.class_names, key="mistakes_average_class")
    paths = journal.current_paths([row["path"] for row in rows if row["true"] == label][:AVERAGE_GRADCAM_IMAGES])
    paths = [str(folder / path) for path in paths if (folder / path).is_file()]
    if not paths:
        st.caption(f"No {split} images of this class.")
        return
    mean_image, heatmap = average_gradcam(predictor, model_key, tuple(paths), predictor.class_names.index(label))
    columns = st.columns(4)
    mean_image = make_thumbnail(np.asarray(mean_image).squeeze(), DISPLAY_SIDE)  # a small mean: whole pixels
    columns[0].image(overlay_heatmap(mean_image, heatmap, opacity=0.5), caption=f"mean of {len(paths)} images",
                     width="stretch", output_format="PNG")
    columns[1].image(colorize_heatmap(np.asarray(heatmap)), caption="mean Grad-CAM", width="stretch")
    st.caption("Heat along the borders or the background instead of the object hints at a shortcut "
               "(the model learnt something other than the object).")


def journal_ui(folder: Path, journal: RelabelJournal, run_dir: Path, undo_shown_above: bool) -> None:
    st.subheader("Relabel journal")
    moves = journal.relabel_moves()
    if moves:
        st.dataframe(pd.DataFrame([{"time": move.time, "from": move.source, "to": move.target,
                                    "page": move.origin or "", "undone": undone}
                                   for move, undone in moves]), hide_index=True, width="stretch")
    else:
        st.caption(f"No moves yet. Every move is written to {folder.name}/.imgclf/relabel.jsonl first; "
                   "nothing is ever deleted.")
    st.caption("Undo and Redo here walk only the moves made on this page.")
    relabel_messages_ui()  # an outcome not shown at a gallery (e.g. of the buttons below)
    undo_redo_ui(journal, ORIGIN, shown_above=undo_shown_above)
    if st.button("Retrain with the same settings", key="mistakes_retrain", type="primary"):
        if not refused_while_busy(run_catalog.default_runs_root()):
            handle = run_process.retrain_run(run_dir, run_catalog.default_runs_root())
            select_run(handle.run_dir)
            st.rerun()


def comparison_ui(run_dir: Path, evaluation: dict, split: str) -> None:
    """After a retrain: what changed on `split` against the run it retrains."""
    parent = RunFolder(run_dir).retrained_from()
    before = parent.read_evaluation(split) if parent is not None else None
    if before is None:
        return
    st.subheader(f"Compared with {parent.name} (before relabeling)")
    try:
        difference = confusion_matrix_difference(before, evaluation)
    except ValueError as error:
        st.warning(str(error))
        return
    st.metric(f"{SPLIT_NAMES[split]} accuracy", accuracy_text(evaluation["accuracy"]),
              f"{difference['accuracy_change']:+.1%}")
    st.altair_chart(confusion_difference_chart(difference["confusion_matrix"], difference["class_names"]),
                    width="stretch")


def split_choice_ui(run_dir: Path) -> str:
    """Validation by default; the held-out test split too when the run has test predictions."""
    if not RunFolder(run_dir).read_predictions(TEST):
        return VALIDATION
    return st.radio("Images of", [VALIDATION, TEST], key="mistakes_split", horizontal=True,
                    format_func=SPLIT_TITLES.get,
                    help="The test split is held out: never trained on, never used to pick the model.")


def other_accuracy(run_dir: Path, split: str) -> dict[str, float]:
    """The other split's accuracy, shown beside the chosen one's ({} when the run has no test split)."""
    other = TEST if split == VALIDATION else VALIDATION
    evaluation = RunFolder(run_dir).read_evaluation(other)
    if evaluation is None:
        return {}
    return {"Test accuracy (held out)" if other == TEST else "Validation accuracy": evaluation["accuracy"]}


def waiting_ui(run_dir: Path) -> None:
    """A run without an evaluation yet: say why; while it trains, recheck until it has finished."""
    status = RunFolder(run_dir).read_status()
    if status["state"] in ACTIVE_STATES:
        st.info(f"Run {run_dir.name} is training ({status.get('message', '')}); its mistakes appear when it finishes.")
        if status.get("usable_model"):
            st.page_link("app_pages/predict.py", label="Usable model ready: classify images with it now",
                         icon=":material/image_search:")
        st.page_link("app_pages/train.py", label="Watch it on the Train page", icon=":material/monitoring:")
        st.fragment(run_every=3)(_rerun_when_done)(run_dir)
    else:
        st.info(f"Run {run_dir.name} is {status['state']} and has no evaluation: finish (or resume) it first.")


def _rerun_when_done(run_dir: Path) -> None:
    if not RunFolder(run_dir).is_active():
        st.rerun()


folder = sidebar_ui()
st.title("Mistakes")
if folder is not None:
    run = run_choice_ui(folder)
    chosen_split = split_choice_ui(run) if run is not None else VALIDATION
    evaluation = RunFolder(run).read_evaluation(chosen_split) if run is not None else None
    predictions = RunFolder(run).read_predictions(chosen_split) if run is not None else None
    if run is None:
        st.info("No run of this dataset yet: train one on the Train page.")
    elif evaluation is None or predictions is None:
        waiting_ui(run)
    else:
        predictor = predictor_or_report(str(run))
        if predictor is not None:
            key = model_cache_key(str(run))
            relabel_journal = RelabelJournal(folder)
            comparison_ui(run, evaluation, chosen_split)
            evaluation_ui(evaluation, chosen_split, beside=other_accuracy(run, chosen_split))
            undo_in_cell = cell_ui(evaluation, predictions, predictor, key, folder, relabel_journal)
            undo_in_losses = top_losses_ui(predictions, predictor, key, folder, relabel_journal, chosen_split)
            class_gradcam_ui(predictions, predictor, key, folder, relabel_journal, chosen_split)
            journal_ui(folder, relabel_journal, run, undo_in_cell or undo_in_losses)
            if st.session_state.get(SIMILAR_NOW) is not None:
                similar_dialog_if_asked(scan_or_report(folder))
