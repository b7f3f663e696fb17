"""Audit: the labels most likely wrong, near-duplicate images and a map of the dataset (offline ImageNet embeddings)."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from imgclf_app.dataset_state import scan_or_report, sidebar_ui
from imgclf_app.relabel_menu import relabel_menu_ui, relabel_messages_ui, undo_redo_ui
from imgclf_app.views import in_columns
from imgclf_core.config import DataConfig
from imgclf_core.dataset import DatasetIndex
from imgclf_core.relabel import RelabelJournal
from imgclf_core.split import split_records

GALLERY_COLUMNS = 4
DUPLICATE_COLUMNS = 6
MAP_HIGHLIGHT = 0.2  # a suspect score above this is drawn as a misfit on the map


def audit_ui(index: DatasetIndex, folder: Path):
    """Run the audit on a click (embedding every image once takes a while); keep the report for this dataset."""
    """Returns (report, the index it audited) or (None, None); the page draws from the audited index,
    so relabeling (which changes the current index) never mismatches the report."""
    signature = (str(folder), hash(tuple((record.path, record.sha256) for record in index.records)))
    stored = st.session_state.get("audit_report")
    same_folder = stored is not None and stored[0][0] == str(folder)
    if same_folder and stored[0] == signature:
        return stored[1], stored[2]
    if same_folder:
        st.info("The dataset changed since the last audit (relabelled or new files): run it again to update.")
    if not st.button("Run the audit", type="primary", key="audit_run"):
        return (stored[1], stored[2]) if same_folder else (None, None)
    from imgclf_core.audit import audit_dataset

    bar = st.progress(0.0, text="Embedding the images with the offline ImageNet backbone…")
    report = audit_dataset(index, progress=lambda done, total: bar.progress(done / max(total, 1),
                                                                             text=f"Embedding images: {done}/{total}"))
    bar.empty()
    st.session_state["audit_report"] = (signature, report, index)
    return report, index


def suspects_ui(report, folder: Path, journal: RelabelJournal) -> None:
    st.subheader("Labels most likely wrong")
    st.caption("Each image's class probabilities come from a linear head that never saw it (5-fold). "
               "Score = probability of the best other class minus that of the given label.")
    count = st.slider("Show", 4, 48, 12, 4, key="audit_count")
    shown = report.suspects[:count]
    located = journal.current_paths([suspect.path for suspect in shown])
    kept = journal.kept_paths()
    for column, (suspect, path) in in_columns(list(zip(shown, located)), GALLERY_COLUMNS):
        with column:
            if not (folder / path).is_file():
                st.caption(f"{suspect.path}: no longer there")
                continue
            st.image(str(folder / path), width="stretch",
                     caption=f"labelled {suspect.given} · looks like {suspect.suggested} · {suspect.score:+.2f}")
            if path != suspect.path:
                st.caption(f"moved to **{path}**")
            elif path not in kept:
                relabel_menu_ui(folder, path, report.class_names, f"audit:{path}")
            else:
                st.caption("marked correct as is")


def duplicates_ui(report, index: DatasetIndex, folder: Path) -> None:
    from imgclf_core.audit import duplicate_group_notes

    st.subheader(f"Near-duplicates ({len(report.near_duplicates)} group(s))")
    if not report.near_duplicates:
        st.caption("No two images are near-copies of each other.")
        return
    labels = {record.path: record.label for record in index.records}
    settings = DataConfig()
    validation = split_records(index.records, settings.validation_split, settings.seed).validation
    validation_paths = {record.path for record in validation}
    for group in report.near_duplicates[:20]:
        notes = duplicate_group_notes(group, labels, validation_paths)
        st.markdown(f"**{len(group)} images**" + (f" · :red[{', '.join(notes)}]" if notes else ""))
        for column, path in zip(st.columns(DUPLICATE_COLUMNS), group[:DUPLICATE_COLUMNS]):
            if (folder / path).is_file():
                column.image(str(folder / path), caption=path, width="stretch")


def map_ui(report, index: DatasetIndex, folder: Path) -> None:
    st.subheader("Map of the dataset")
    st.caption("The embeddings projected on their two main directions (PCA), coloured by class; "
               "crosses are the likely label errors. Hover for a point's file; click to see its image.")
    scores = {suspect.path: suspect for suspect in report.suspects}
    frame = pd.DataFrame({
        "x": report.map_2d[:, 0], "y": report.map_2d[:, 1],
        "path": [record.path for record in index.records],
        "class": [record.label for record in index.records],
        "looks like": [scores[record.path].suggested for record in index.records],
        "score": [round(scores[record.path].score, 3) for record in index.records],
    })
    frame["misfit"] = frame["score"] > MAP_HIGHLIGHT
    pick = alt.selection_point(name="picked", fields=["path"], on="click", nearest=True)
    chart = alt.Chart(frame, height=420).mark_point(filled=True).encode(
        x=alt.X("x:Q", title=None, axis=None), y=alt.Y("y:Q", title=None, axis=None),
        color=alt.Color("class:N"),
        shape=alt.Shape("misfit:N", scale=alt.Scale(domain=[False, True], range=["circle", "cross"]), legend=None),
        size=alt.condition(alt.datum.misfit, alt.value(90), alt.value(25)),
        tooltip=["path", "class", "looks like", "score"],
    ).add_params(pick)
    event = st.altair_chart(chart, width="stretch", on_select="rerun", key="audit_map")
    picked = (event.selection.get("picked") or []) if event else []
    if picked and (folder / picked[0]["path"]).is_file():
        st.image(str(folder / picked[0]["path"]), caption=picked[0]["path"], width=160)


folder = sidebar_ui()
st.title("Audit")
st.caption("Finds labels that are probably wrong and images that are near-copies, without any cloud "
           "service: the offline ImageNet EfficientNet-Lite0 embeds every image once (cached by content).")
if folder is not None:
    dataset_index = scan_or_report(folder)
    if dataset_index is not None and len(dataset_index.class_names) < 2:
        st.info("The audit needs at least two classes with images.")
    elif dataset_index is not None:
        audit_report, audited_index = audit_ui(dataset_index, folder)
        if audit_report is not None:
            relabel_journal = RelabelJournal(folder)
            relabel_messages_ui()
            columns = st.columns(3)
            columns[0].metric("Images audited", f"{len(audit_report.suspects):,}")
            columns[1].metric("Look more like another class", sum(1 for item in audit_report.suspects if item.score > 0))
            columns[2].metric("Near-duplicate groups", len(audit_report.near_duplicates))
            suspects_ui(audit_report, folder, relabel_journal)
            undo_redo_ui(relabel_journal, "audit")
            duplicates_ui(audit_report, audited_index, folder)
            map_ui(audit_report, audited_index, folder)
