"""Audit: the labels most likely wrong, near-duplicate images and a map of the dataset (offline ImageNet embeddings)."""

from __future__ import annotations

import time
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from imgclf_app.dataset_loaders import scan_or_report
from imgclf_app.relabel_menu import gallery_relabel_ui, relabel_messages_ui, undo_redo_ui
from imgclf_app.session_keys import AUDIT_MAP, AUDIT_PICKED, AUDIT_REPORT
from imgclf_app.sidebar import sidebar_ui
from imgclf_app.similar_view import SimilarQuery, more_like_this_button, similar_dialog_if_asked
from imgclf_app.views import in_columns
from imgclf_core.config import DataConfig
from imgclf_core.data.dataset import DatasetIndex
from imgclf_core.data.images import ImageDecodeError
from imgclf_core.inspection.relabel import RelabelJournal
from imgclf_core.data.split import split_records
from imgclf_core.data.thumbnails import display_array

ORIGIN = "audit"  # the journal origin of this page's moves (its Undo walks only those)
UNDO_PLACE = "audit:undo"  # where the outcome of the Undo / Redo buttons under the gallery is shown
GALLERY_COLUMNS = 4
GALLERY_SIDE = 224  # px: a 28 px image is drawn 8x by whole pixels, a photo shrunk
DUPLICATE_COLUMNS = 4  # a caption ("ankle_boot · train_00135.png") fits a quarter of the page, unbroken
DUPLICATE_SIDE = 168
DUPLICATES_SHOWN = 8  # members of one group drawn (the caption above counts them all)
PICKED_SIDE = 224
MAP_HIGHLIGHT = 0.0  # a score above this (another class likelier than the label) is drawn large and outlined
# Ten shapes told apart at a few pixels (four built in, a star, an x, a hexagon); past ten classes they
# repeat while the colours (tableau20) still differ.
MAP_SHAPES = ["circle", "square", "triangle-up", "diamond", "cross", "triangle-down",
              "M0,-1L0.24,-0.33L0.95,-0.31L0.38,0.12L0.59,0.81L0,0.4L-0.59,0.81L-0.38,0.12L-0.95,-0.31L-0.24,-0.33Z",
              "M-1,-0.6L-0.6,-1L0,-0.4L0.6,-1L1,-0.6L0.4,0L1,0.6L0.6,1L0,0.4L-0.6,1L-1,0.6L-0.4,0Z",
              "M0,-1L0.87,-0.5L0.87,0.5L0,1L-0.87,0.5L-0.87,-0.5Z", "triangle-right"]


def audit_ui(index: DatasetIndex, folder: Path):
    """Run the audit on a click (embedding every image once takes a while); keep the report for this dataset.

    Returns (report, the index it audited) or (None, None); the page draws from the audited index,
    so relabeling (which changes the current index) never mismatches the report.
    """
    signature = (str(folder), hash(tuple((record.path, record.sha256) for record in index.records)))
    stored = st.session_state.get(AUDIT_REPORT)
    same_folder = stored is not None and stored[0][0] == str(folder)
    if same_folder and stored[0] == signature:
        phase_times_ui(stored[3] if len(stored) > 3 else {})
        return stored[1], stored[2]
    if same_folder:
        st.info("The dataset changed since the last audit (relabelled or new files): run it again to update.")
    if not st.button("Run the audit", type="primary", key="audit_run"):
        if same_folder:
            phase_times_ui(stored[3] if len(stored) > 3 else {})
            return stored[1], stored[2]
        return None, None
    from imgclf_core.inspection.audit import audit_dataset

    progress = PhaseProgress()
    report = audit_dataset(index, progress=progress)
    seconds = progress.finish()
    st.session_state[AUDIT_REPORT] = (signature, report, index, seconds)
    st.session_state.pop(AUDIT_PICKED, None)
    phase_times_ui(seconds)
    return report, index


class PhaseProgress:
    """The audit's progress callback: a bar per phase ("Out-of-fold heads 3/5"), the phases done under it."""

    def __init__(self) -> None:
        from imgclf_core.inspection.audit import AUDIT_PHASES

        self.phases = AUDIT_PHASES
        self.bar = st.progress(0.0, text=f"{AUDIT_PHASES[0]}…")
        self.done_line = st.empty()
        self.seconds: dict[str, float] = {}
        self.phase: str | None = None
        self.started = time.monotonic()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            self._close_phase()
            self.phase, self.started = phase, time.monotonic()
            if self.seconds:
                finished = " · ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
                self.done_line.caption(f"Done: {finished}")
        step = self.phases.index(phase) + 1 if phase in self.phases else 0
        counted = f" {done:,}/{total:,}" if total > 1 else "…"
        self.bar.progress(min(done / total, 1.0) if total else 1.0,
                          text=f"{phase}{counted} (step {step} of {len(self.phases)})")

    def _close_phase(self) -> None:
        if self.phase is not None:
            self.seconds[self.phase] = time.monotonic() - self.started

    def finish(self) -> dict[str, float]:
        """Seconds per phase, in order; the bar and the list are removed."""
        self._close_phase()
        self.bar.empty()
        self.done_line.empty()
        return dict(self.seconds)


def phase_times_ui(seconds: dict[str, float]) -> None:
    if not seconds:
        return
    st.caption(f"Audited in {sum(seconds.values()):.1f} s: "
               + " · ".join(f"{name.lower()} {value:.1f} s" for name, value in seconds.items()) + ".")


def score_text(suspect) -> str:
    """"labelled shirt · looks like coat · +2.31" (the score: log10 of how much likelier `coat` is)."""
    return f"labelled {suspect.given} · looks like {suspect.suggested} · {suspect.score:+.2f}"


def suspect_ui(suspect, path: str, folder: Path, journal: RelabelJournal, class_names: list[str], kept: set[str],
               widget_key: str, side: int = GALLERY_SIDE) -> bool:
    """One suspect: its image (pixel-crisp), what it is labelled and looks like, its relabel menu, and under
    it the outcome of using that menu with Undo / Redo. Returns whether that outcome is shown here."""
    try:
        picture = display_array(folder / path, side)
    except (ImageDecodeError, OSError):
        st.caption(f"{suspect.path}: no longer there" if path == suspect.path else f"{path}: cannot be read")
        return relabel_messages_ui(journal, ORIGIN, place=widget_key)
    # PNG: Streamlit would send an array as JPEG, whose artefacts smear the enlarged pixels.
    st.image(picture, caption=score_text(suspect), width="stretch", output_format="PNG")
    more_like_this_button(SimilarQuery(path, path=path), widget_key)
    return gallery_relabel_ui(folder, journal, suspect.path, path, class_names, kept, widget_key, ORIGIN)


def suspects_ui(report, folder: Path, journal: RelabelJournal) -> bool:
    st.subheader("Labels most likely wrong")
    st.caption("Each image's class probabilities come from a linear head that never saw its label (5-fold). "
               "The score says how much likelier the best other class is than the given label, in powers of "
               "ten: +1 means 10 times likelier, +2 a hundred times, 0 just as likely, below 0 less likely. "
               "Above 0 the image looks more like another class than like its own.")
    count = st.slider("Show", 4, 48, 12, 4, key="audit_count")
    shown = report.suspects[:count]
    located = journal.current_paths([suspect.path for suspect in shown])
    kept = journal.kept_paths()
    shown_at_an_image = False
    for column, (suspect, path) in in_columns(list(zip(shown, located)), GALLERY_COLUMNS):
        with column:
            shown_at_an_image |= suspect_ui(suspect, path, folder, journal, report.class_names, kept,
                                            f"audit:{suspect.path}")
    return shown_at_an_image


def duplicate_caption(path: str, label: str) -> str:
    """"coat · train_00135.png": the class and the file name (the folder is the class), no path to break."""
    return f"{label} · {Path(path).name}"


def duplicates_ui(report, index: DatasetIndex, folder: Path) -> None:
    from imgclf_core.inspection.audit import duplicate_group_notes

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
        more = f" (the first {DUPLICATES_SHOWN} shown)" if len(group) > DUPLICATES_SHOWN else ""
        st.markdown(f"**{len(group)} images**{more}" + (f" · :red[{', '.join(notes)}]" if notes else ""))
        for column, path in in_columns(group[:DUPLICATES_SHOWN], DUPLICATE_COLUMNS):
            try:
                picture = display_array(folder / path, DUPLICATE_SIDE)
            except (ImageDecodeError, OSError):
                column.caption(f"{path}: no longer there")
                continue
            column.image(picture, caption=duplicate_caption(path, labels.get(path, "")), width="stretch",
                         output_format="PNG")


def map_chart(frame: pd.DataFrame, class_names: list[str]) -> alt.Chart:
    """Points coloured and shaped by class (a palette made for categories), likely label errors large and outlined."""
    scheme = "tableau10" if len(class_names) <= 10 else "tableau20"
    by_class = {"field": "class", "type": "nominal", "title": "class"}
    pick = alt.selection_point(name="picked", fields=["path"], on="click", nearest=True)
    return alt.Chart(frame, height=460).mark_point(filled=True).encode(
        x=alt.X("x:Q", title=None, axis=None), y=alt.Y("y:Q", title=None, axis=None),
        color=alt.Color(**by_class, scale=alt.Scale(domain=class_names, scheme=scheme)),
        shape=alt.Shape(**by_class, scale=alt.Scale(domain=class_names, range=MAP_SHAPES)),
        size=alt.condition(alt.datum.misfit, alt.value(140), alt.value(45)),
        opacity=alt.condition(alt.datum.misfit, alt.value(1.0), alt.value(0.75)),
        stroke=alt.condition(alt.datum.misfit, alt.value("#333333"), alt.value("transparent")),
        strokeWidth=alt.condition(alt.datum.misfit, alt.value(1.0), alt.value(0)),
        tooltip=["path", "class", "looks like", alt.Tooltip("score:Q", format="+.2f")],
    ).add_params(pick)


def _remember_pick() -> None:
    """on_select of the map: keep the clicked point's path (None when the click picked nothing)."""
    event = st.session_state.get(AUDIT_MAP)
    picked = (event.selection.get("picked") or []) if event else []
    st.session_state[AUDIT_PICKED] = picked[0]["path"] if picked else None


def map_ui(report, index: DatasetIndex, folder: Path, journal: RelabelJournal) -> None:
    st.subheader("Map of the dataset")
    st.caption("The embeddings projected on their two main directions (PCA), coloured and shaped by class; "
               "the images that look more like another class (score above 0) are drawn larger, outlined. "
               "Hover for a point's file; click it to see the image and relabel it.")
    by_path = {suspect.path: suspect for suspect in report.suspects}
    frame = pd.DataFrame({
        "x": report.map_2d[:, 0], "y": report.map_2d[:, 1],
        "path": [record.path for record in index.records],
        "class": [record.label for record in index.records],
        "looks like": [by_path[record.path].suggested for record in index.records],
        "score": [round(by_path[record.path].score, 3) for record in index.records],
    })
    frame["misfit"] = frame["score"] > MAP_HIGHLIGHT
    st.altair_chart(map_chart(frame, list(report.class_names)), width="stretch", on_select=_remember_pick,
                    key=AUDIT_MAP)
    picked = st.session_state.get(AUDIT_PICKED)
    if picked in by_path:
        picked_ui(by_path[picked], report, folder, journal)


def picked_ui(suspect, report, folder: Path, journal: RelabelJournal) -> None:
    """The clicked point: its image, labelled / looks like / score, and the relabel menu."""
    st.markdown(f"**Picked on the map:** {suspect.path}")
    column = st.columns(GALLERY_COLUMNS)[0]
    with column:
        path = journal.current_path(suspect.path)
        suspect_ui(suspect, path, folder, journal, report.class_names, journal.kept_paths(),
                   f"audit-map:{suspect.path}", PICKED_SIDE)


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
            columns = st.columns(3)
            columns[0].metric("Images audited", f"{len(audit_report.suspects):,}")
            columns[1].metric("Look more like another class", sum(1 for item in audit_report.suspects if item.score > 0))
            columns[2].metric("Near-duplicate groups", len(audit_report.near_duplicates))
            undo_above = suspects_ui(audit_report, folder, relabel_journal)
            relabel_messages_ui(place=UNDO_PLACE)  # what the buttons below just did, right above them
            undo_redo_ui(relabel_journal, ORIGIN, place=UNDO_PLACE, shown_above=undo_above)
            duplicates_ui(audit_report, audited_index, folder)
            map_ui(audit_report, audited_index, folder, relabel_journal)
        similar_dialog_if_asked(dataset_index)
