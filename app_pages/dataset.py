"""Dataset: summary, balance, sizes and modes, a paginated thumbnail grid, skipped files, duplicates,
and a live preview of the training augmentation."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import streamlit as st

from imgclf_app.charts import counts_chart
from imgclf_app.current_run import current_run_dir
from imgclf_app.dataset_loaders import (
    QUALITY_AUTOMATIC_IMAGES, dataset_predictions_of, quality_report_of, scan_or_report, thumbnail_path,
)
from imgclf_app.forms import augmentation_form
from imgclf_app.session_keys import (
    GRID_PAGE, GRID_PREDICTIONS, GRID_SHOWN, INSPECT_NOW, PREVIEW_ASKED, PREVIEW_IMAGE, PREVIEW_SEED, SIMILAR_NOW,
    show_in_preview,
)
from imgclf_app.sidebar import sidebar_ui
from imgclf_app.similar_view import SimilarQuery, more_like_this_button, similar_dialog_if_asked
from imgclf_app.views import dataset_summary_ui, in_columns, skipped_files_ui
from imgclf_core.data.dataset import SPLITS, TRAIN, DatasetIndex, ImageRecord, split_warnings
from imgclf_core.data.dataset_report import mode_distribution, size_distribution
from imgclf_core.data.images import ImageDecodeError, decode_image
from imgclf_core.data.thumbnails import display_array, make_thumbnail
from imgclf_core.training.run_folder import RunFolder

GRID_COLUMNS = 6
PAGE_SIZES = (24, 48, 96)
PREVIEW_COUNTS = (4, 8, 12, 16)
ALL_SPLITS = "All splits"
ANY_QUALITY = "Any quality"
ANY_PREDICTION = "Any predicted class"
QUALITY_GALLERY = 12  # images shown per issue
PREVIEW_SIZE = 128  # preview images are decoded at most this large: the preview shows transforms, not detail
# A 12-megapixel photo is shown (and decoded, at reduced JPEG scale) at this size; a 28 px one is
# enlarged by whole pixels to about it (27x27 screen pixels per image pixel: crisp, never blurred).
INSPECT_MAX_SIDE = 768


def distributions_ui(index: DatasetIndex) -> None:
    columns = st.columns(3)
    for column, title, counts, label in (
        (columns[0], "Images per class", list(index.class_counts.items()), "class"),
        (columns[1], "Image sizes", size_distribution(index), "size"),
        (columns[2], "Colour modes", mode_distribution(index), "mode"),
    ):
        column.subheader(title)
        data, spec = counts_chart(counts, label)
        column.vega_lite_chart(data, spec, width="stretch")


def splits_ui(index: DatasetIndex) -> None:
    """The dataset's own train/validation/test folders: counts per class and split, gaps, leakage."""
    import pandas as pd  # here, not at the top: the page's title is drawn before pandas loads

    counts = index.split_counts
    st.subheader("Splits")
    st.caption("From the dataset's split folders. Training uses train, picks the best model on validation; "
               "test is held out and only evaluated at the end.")
    table = pd.DataFrame(counts)
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum()
    table.index.name = "class"
    st.dataframe(table, width="content")
    for warning in split_warnings(index):
        st.warning(warning)
    leakage_ui(index)


def leakage_ui(index: DatasetIndex) -> None:
    """Identical images found in two splits, with their paths: each one inflates the held-out figures."""
    import pandas as pd

    groups = index.leakage_groups
    if not groups:
        st.caption("No image appears in more than one split.")
        return
    split_of = {record.path: record.split for record in index.records}
    rows = [{split: ", ".join(path for path in group if split_of[path] == split) for split in index.split_counts}
            for group in groups]
    with st.expander(f"Identical images in more than one split ({len(groups)})", expanded=len(groups) <= 10):
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def grid_filters_ui(index: DatasetIndex) -> list[ImageRecord]:
    splits = list(index.split_counts)
    columns = st.columns([2, 2, 2, 1] if splits else [2, 2, 1])
    label = columns[0].selectbox("Class", ["All classes", *index.class_names], key="grid_class")
    split = columns[1].selectbox("Split", [ALL_SPLITS, *splits], key="grid_split") if splits else ALL_SPLITS
    name_filter = columns[-2].text_input("File name contains", key="grid_name").strip().lower()
    page_size = columns[-1].selectbox("Per page", PAGE_SIZES, key="grid_page_size")
    # Only once the quality section below has a report: the grid is drawn before any quality pass runs.
    with_issue = quality_filter_ui(quality_report_of(index, compute=False))
    predicted = prediction_filter_ui(index)
    records = [
        record for record in index.records
        if (label == "All classes" or record.label == label) and split in (ALL_SPLITS, record.split)
        and (not name_filter or name_filter in record.path.rsplit("/", 1)[-1].lower())
        and (with_issue is None or record.path in with_issue)
        and (predicted is None or predicted(record))
    ]
    if splits:
        records.sort(key=lambda record: SPLITS.index(record.split) if record.split else 0)  # train images first
    pages = max(1, math.ceil(len(records) / page_size))
    if st.session_state.get(GRID_PAGE, 1) > pages:  # a narrower filter leaves fewer pages
        st.session_state[GRID_PAGE] = pages
    page = st.number_input(f"Page (of {pages})", 1, pages, key=GRID_PAGE) if pages > 1 else 1
    st.caption(f"{len(records):,} image(s) match")
    return records[(page - 1) * page_size:page * page_size]


def grid_ui(index: DatasetIndex) -> str | None:
    """The filtered, paged grid; the path of the image whose Inspect dialog this run opened, if any."""
    st.subheader("Images")
    shown = grid_filters_ui(index)
    st.session_state[GRID_SHOWN] = [record.path for record in shown]
    predictions = st.session_state.get(GRID_PREDICTIONS, {}) if st.session_state.get("grid_by_prediction") else {}
    for column, record in in_columns(shown, GRID_COLUMNS):
        thumbnail = thumbnail_path(index, record)
        if thumbnail is None:
            column.caption(f"{record.path}: no longer readable")
            continue
        # "class · split · file" in the split layout, "class · file" otherwise
        caption = " · ".join(part for part in (record.label, record.split, Path(record.path).name) if part)
        if record.path in predictions:
            predicted, confidence = predictions[record.path]
            caption += f" → {predicted} {confidence:.0%}"
        column.image(thumbnail, caption=caption)
        column.button("Inspect", key=f"inspect:{record.path}", on_click=inspect, args=(record.path,))
    clicked = st.session_state.pop(INSPECT_NOW, None)
    record = next((record for record in shown if record.path == clicked), None)
    if record is None:
        return None
    inspect_dialog(index, record)
    return record.path


def inspect(path: str) -> None:
    """An Inspect click: open the image in a dialog, and make it the augmentation preview's image."""
    st.session_state[INSPECT_NOW] = path
    show_in_preview(path)


@st.dialog("Inspect", width="large")
def inspect_dialog(index: DatasetIndex, record: ImageRecord) -> None:
    """The image where the person is looking (a dialog over the grid), a small one enlarged by whole pixels."""
    left, right = st.columns([2, 1])
    try:
        # PNG: Streamlit would send an array as JPEG, smearing the enlarged pixels' edges.
        left.image(display_array(index.absolute_path(record.path), INSPECT_MAX_SIDE), caption=record.path,
                   width="stretch", output_format="PNG")
    except ImageDecodeError as error:
        left.error(f"{record.path}: {error}")
    right.markdown(
        f"**{Path(record.path).name}**  \nclass: `{record.label}`  \n"
        + (f"split: `{record.split}`  \n" if record.split else "")
        + f"path: `{index.absolute_path(record.path)}`  \n"
        f"size: {record.width}×{record.height}  \nmode: {record.mode} ({record.format})  \n"
        f"sha256: `{record.sha256}`"
    )
    right.caption("The augmentation preview at the bottom of the page now shows this image.")
    more_like_this_button(SimilarQuery(record.path, path=record.path), f"inspect:{record.path}", right)
    if st.session_state.get(SIMILAR_NOW) is not None:
        st.rerun()  # a click here reruns only this dialog: the whole page opens More like this in its place


def prediction_filter_ui(index: DatasetIndex):
    """Filters by what the current run's model thinks of every image: predicted class, right or wrong, and a
    confidence range (FiftyOne's most used view). Returns a record -> keep? test, or None for no filter."""
    run_dir = current_run_dir(index.root)
    if run_dir is None or not RunFolder(run_dir).has_model():
        return None
    if not st.toggle(f"Filter by what the model of {run_dir.name} thinks", key="grid_by_prediction"):
        return None
    outputs = dataset_predictions_of(index, str(run_dir))
    if outputs is None:
        return None
    predictions = outputs.predicted
    st.session_state[GRID_PREDICTIONS] = predictions
    columns = st.columns([2, 2, 3])
    classes = sorted({predicted for predicted, _ in predictions.values()})
    wanted = columns[0].selectbox("Predicted class", [ANY_PREDICTION, *classes], key="grid_predicted")
    verdict = columns[1].selectbox("Prediction", ["right or wrong", "right", "wrong"], key="grid_verdict")
    low, high = columns[2].slider("Confidence", 0, 100, (0, 100), step=5, format="%d%%", key="grid_confidence")

    def keep(record: ImageRecord) -> bool:
        predicted, confidence = predictions.get(record.path, (None, -1.0))
        return (predicted is not None and wanted in (ANY_PREDICTION, predicted)
                and (verdict == "right or wrong" or (predicted == record.label) == (verdict == "right"))
                and low / 100 <= confidence <= high / 100)

    return keep


def quality_filter_ui(report) -> set[str] | None:
    """The grid's image-quality filter, once the page has a quality report: the paths to keep, or None for all."""
    if report is None:
        return None
    counts = report.counts()
    options = [ANY_QUALITY, *(issue for issue, count in counts.items() if count)]
    chosen = st.selectbox("Image quality", options, key="grid_quality",
                          format_func=lambda issue: issue if issue == ANY_QUALITY else f"{issue} ({counts[issue]})")
    return None if chosen == ANY_QUALITY else set(report.paths_with(chosen))


def quality_ui(index: DatasetIndex, inspected: str | None = None) -> None:
    """Each image-quality issue with its count and a gallery (see imgclf_core.data.quality). `inspected`: the
    image whose Inspect dialog this run opened, opened again after the rerun that ends a first quality pass."""
    from imgclf_core.data.quality import ISSUES

    st.subheader("Image quality")
    report = quality_report_of(index, compute=False)  # kept for the process once computed
    if report is None:
        automatic = index.num_images <= QUALITY_AUTOMATIC_IMAGES
        if not automatic and not st.button(f"Check the quality of {index.num_images:,} images", key="quality_check"):
            st.caption("Finds images too dark, too bright, blurry, nearly blank, of odd size or shape, or grey "
                       "images stored in colour. The first check decodes every image once; later ones are cached.")
            return
        quality_report_of(index, compute=True)  # after the grid, so the grid never waits for it
        if inspected is not None:
            st.session_state[INSPECT_NOW] = inspected  # the click that started this run keeps its dialog
        st.rerun()  # the grid above gets its quality filter
    counts = report.counts()
    st.caption(f"{len(report.issues_by_path):,} image(s) with an issue. Thresholds are in the docs "
               "(imgclf_core/data/quality.py); the grid above filters by issue.")
    columns = st.columns(4)
    for number, issue in enumerate(ISSUES):
        columns[number % 4].metric(sentence_case(issue), f"{counts[issue]:,}")
    by_path = index.records_by_path
    for issue in ISSUES:
        paths = report.paths_with(issue)
        if not paths:
            continue
        with st.expander(f"{sentence_case(issue)} ({len(paths):,})"):
            for column, path in in_columns(paths[:QUALITY_GALLERY], GRID_COLUMNS):
                thumbnail = thumbnail_path(index, by_path[path]) if path in by_path else None
                if thumbnail is not None:
                    column.image(thumbnail, caption=path)
            if len(paths) > QUALITY_GALLERY:
                st.caption(f"The first {QUALITY_GALLERY} of {len(paths):,}: filter the grid by this issue for all.")


def sentence_case(text: str) -> str:
    """"grayscale stored as RGB" -> "Grayscale stored as RGB" (str.capitalize would lower the rest)."""
    return text[:1].upper() + text[1:]


def skipped_ui(index: DatasetIndex) -> None:
    st.subheader(f"Skipped files ({len(index.skipped)})")
    if not index.skipped:
        st.caption("Every file in a class folder is a usable image.")
        return
    skipped_files_ui(index, download=True)


def duplicates_ui(index: DatasetIndex) -> None:
    groups = index.duplicate_groups
    st.subheader(f"Duplicate groups ({len(groups)})")
    if not groups:
        st.caption("No two files have the same content.")
        return
    by_path = index.records_by_path
    for group in groups[:20]:
        columns = st.columns(max(len(group), 2))
        for column, path in zip(columns, group):
            thumbnail = thumbnail_path(index, by_path[path])
            if thumbnail is not None:
                column.image(thumbnail, caption=path)
    if len(groups) > 20:
        st.caption(f"…and {len(groups) - 20} more group(s): `imgclf scan --json` lists them all.")


def _ask_for_versions() -> None:
    st.session_state[PREVIEW_ASKED] = True  # before the rerun the click starts: it draws the versions, not the button


@st.fragment
def augmentation_preview_ui(index: DatasetIndex) -> None:
    """Moving a setting reruns only this fragment; TensorFlow is imported only here, and only once asked for
    when the server has not loaded it yet (its ~5 s import would hold up the page's first visit)."""
    st.subheader("Augmentation preview")
    st.caption("The settings the trainer uses (the Train page takes them from here).")
    config = augmentation_form()
    columns = st.columns([3, 1, 1])
    by_path = index.records_by_path
    # The image last inspected (an Inspect click sets it), else the first one training would see (not a test image).
    if st.session_state.get(PREVIEW_IMAGE) not in by_path:
        show_in_preview(next((record.path for record in index.records if record.split in ("", TRAIN)),
                             index.records[0].path))
    # That image and the grid's page to choose from: a list of every image weighs megabytes at 100,000.
    paths = list(dict.fromkeys([st.session_state[PREVIEW_IMAGE], *st.session_state.get(GRID_SHOWN, [])]))
    paths = [path for path in paths if path in by_path]
    chosen = columns[0].selectbox("Image", paths, key=PREVIEW_IMAGE, help="The image inspected last, or one of"
                                  " the grid's page: Inspect an image to preview it.")
    count = columns[1].selectbox("Versions", PREVIEW_COUNTS, index=1, key="preview_count")
    if columns[2].button("Reshuffle", key="preview_reshuffle"):
        st.session_state[PREVIEW_SEED] = st.session_state.get(PREVIEW_SEED, 0) + 1
    if "tensorflow" not in sys.modules and not st.session_state.get(PREVIEW_ASKED):
        st.caption("The augmented versions are made by the trainer's own TensorFlow layers, which this server has "
                   "not loaded yet (about 5 s, once).")
        st.button("Show the augmented versions", key="preview_show", on_click=_ask_for_versions)
        return
    record = by_path[chosen]
    # The scan knows the upright size, so the file is decoded once, straight to the preview size.
    scale = min(1.0, PREVIEW_SIZE / max(record.width, record.height))
    size = (max(1, round(record.height * scale)), max(1, round(record.width * scale))) if scale < 1.0 else None
    try:
        image = decode_image(index.absolute_path(chosen), size=size)
    except ImageDecodeError as error:
        st.error(f"{chosen}: {error}")
        return
    with st.spinner("Augmenting…"):
        from imgclf_core.data.augmentation import preview_augmentations

        versions = preview_augmentations(image, config, count, seed=st.session_state.get(PREVIEW_SEED, 0))
    # Small images are enlarged by whole pixels: the preview shows what the model will see.
    shown = [make_thumbnail(version, PREVIEW_SIZE) for version in (image, *versions)]
    st.image(shown, caption=["original"] + [f"#{number}" for number in range(1, count + 1)], width=PREVIEW_SIZE,
             output_format="PNG")


folder = sidebar_ui()
st.title("Dataset")
if folder is not None:
    dataset_index = scan_or_report(folder)
    if dataset_index is not None:
        st.caption(str(folder))
        dataset_summary_ui(dataset_index, split_warnings_elsewhere=True)
        if dataset_index.split_counts:
            splits_ui(dataset_index)
        if dataset_index.records:
            # Drawn in place above the grid, but after it: the charts' first import of pandas (about 0.5 s at a
            # server's first visit) no longer holds up the images.
            distributions = st.container()
            inspected_path = grid_ui(dataset_index)
            with distributions:
                distributions_ui(dataset_index)
            quality_ui(dataset_index, inspected_path)
        skipped_ui(dataset_index)
        duplicates_ui(dataset_index)
        if dataset_index.records:
            augmentation_preview_ui(dataset_index)
        similar_dialog_if_asked(dataset_index)
