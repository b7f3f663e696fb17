"""Home: the current dataset at a glance (name, class counts, a few thumbnails). No TensorFlow here."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from imgclf_app.dataset_state import dataset_dir_sidebar, file_mtime_ns, load_thumbnail, scan_or_report
from imgclf_core.dataset import DatasetIndex

THUMBNAILS_PER_CLASS = 4


def summary_ui(index: DatasetIndex) -> None:
    columns = st.columns(4)
    columns[0].metric("Images", f"{index.num_images:,}")
    columns[1].metric("Classes", len(index.class_names))
    columns[2].metric("Skipped files", len(index.skipped))
    columns[3].metric("Duplicate groups", len(index.duplicate_groups))
    for warning in index.warnings:
        st.warning(warning)


def class_counts_ui(index: DatasetIndex) -> None:
    st.subheader("Images per class")
    counts = pd.DataFrame({"class": list(index.class_counts), "images": list(index.class_counts.values())})
    st.bar_chart(counts, x="class", y="images", height=260)


def thumbnails_ui(index: DatasetIndex) -> None:
    st.subheader("A few images of each class")
    by_class: dict[str, list] = {name: [] for name in index.class_names}
    for record in index.records:
        if len(by_class[record.label]) < THUMBNAILS_PER_CLASS:
            by_class[record.label].append(record)
    for name, records in by_class.items():
        row = st.columns([2] + [1] * THUMBNAILS_PER_CLASS)
        row[0].markdown(f"**{name}**  \n{index.class_counts[name]:,} images")
        for column, record in zip(row[1:], records):
            path = index.absolute_path(record.path)
            thumbnail = load_thumbnail(str(path), file_mtime_ns(path))
            if thumbnail is not None:
                column.image(thumbnail, caption=Path(record.path).stem, width=96)


def skipped_ui(index: DatasetIndex) -> None:
    if index.skipped:
        with st.expander(f"{len(index.skipped)} skipped file(s)"):
            st.dataframe(pd.DataFrame([vars(item) for item in index.skipped]), hide_index=True)


folder = dataset_dir_sidebar()
st.title("imgclf")
if folder is not None:
    dataset_index = scan_or_report(folder)
    if dataset_index is not None:
        st.header(f"Dataset: {folder.name}")
        st.caption(str(folder))
        summary_ui(dataset_index)
        class_counts_ui(dataset_index)
        thumbnails_ui(dataset_index)
        skipped_ui(dataset_index)
