"""Home: the current dataset and run at a glance. No TensorFlow here, so it opens fast.

The sidebar and the title are drawn before anything slow (pandas, the scan, thumbnails): the chart is a
plain Vega-Lite spec (no Altair), and pandas loads with it, not at the top.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from imgclf_app.charts import class_counts_chart
from imgclf_app.current_run import current_run_dir
from imgclf_app.dataset_loaders import scan_or_report, thumbnail_path
from imgclf_app.sidebar import sidebar_ui
from imgclf_app.views import accuracy_text, dataset_summary_ui, skipped_files_ui
from imgclf_core.training.run_catalog import summarize_run
from imgclf_core.data.dataset import DatasetIndex

THUMBNAILS_PER_CLASS = 4


def class_counts_ui(index: DatasetIndex) -> None:
    st.subheader("Images per class")
    if index.split_counts:  # the dataset's own train/validation/test folders, stacked
        rows = [(name, split, count) for split, by_class in index.split_counts.items() for name, count in by_class.items()]
    else:
        rows = [(name, "", count) for name, count in index.class_counts.items()]
    data, spec = class_counts_chart(rows)
    st.vega_lite_chart(data, spec, width="stretch")


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
            thumbnail = thumbnail_path(index, record)
            if thumbnail is not None:
                column.image(thumbnail, caption=Path(record.path).stem, width=96)


def skipped_ui(index: DatasetIndex) -> None:
    if index.skipped:
        with st.expander(f"{len(index.skipped)} skipped file(s)"):
            skipped_files_ui(index)


def run_glance_ui(folder: Path | None) -> None:
    run_dir = current_run_dir(folder)
    if run_dir is None:
        st.page_link("app_pages/train.py", label="No run yet: train a model", icon=":material/monitoring:")
        return
    summary = summarize_run(run_dir)
    validation, test = summary["val_accuracy"], summary["test_accuracy"]
    accuracies = "".join((
        f", validation accuracy {accuracy_text(validation)}" if validation is not None else "",
        f", test accuracy {accuracy_text(test)} (held out)" if test is not None else "",
    ))
    st.page_link("app_pages/train.py", icon=":material/monitoring:",
                 label=f"Run {summary['run']}: {summary['state']}, epoch {summary['epochs']}{accuracies}")


folder = sidebar_ui()
st.title("imgclf")
run_glance_ui(folder)
if folder is not None:
    dataset_index = scan_or_report(folder)
    if dataset_index is not None:
        st.header(f"Dataset: {folder.name}")
        st.caption(str(folder))
        dataset_summary_ui(dataset_index)
        class_counts_ui(dataset_index)
        thumbnails_ui(dataset_index)
        skipped_ui(dataset_index)
