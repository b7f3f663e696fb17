"""Small drawing functions that more than one page uses."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence, TypeVar

import streamlit as st

from imgclf_core.training.run_catalog import active_runs
from imgclf_core.data.dataset import TEST, VALIDATION, DatasetIndex, dataset_warnings

# How each evaluated split is named wherever its figures are shown.
SPLIT_NAMES = {VALIDATION: "Validation", TEST: "Test"}
SPLIT_TITLES = {VALIDATION: "Validation", TEST: "Test (held out, never trained on)"}

Item = TypeVar("Item")


def accuracy_text(accuracy: float) -> str:
    """An accuracy as every page shows it: one definition (see run_catalog.run_accuracy), one rounding."""
    return f"{accuracy:.1%}"


def in_columns(items: Sequence[Item], count: int) -> Iterator[tuple["st.delta_generator.DeltaGenerator", Item]]:
    """(column, item) pairs laying the items out in rows of `count` columns (a gallery grid)."""
    for start in range(0, len(items), count):
        yield from zip(st.columns(count), items[start:start + count])


def dataset_summary_ui(index: DatasetIndex, split_warnings_elsewhere: bool = False) -> None:
    """Four counts and every warning (the scan's and the health checks'), but the split ones if shown elsewhere."""
    columns = st.columns(4)
    columns[0].metric("Images", f"{index.num_images:,}")
    columns[1].metric("Classes", len(index.class_names))
    columns[2].metric("Skipped files", len(index.skipped))
    columns[3].metric("Duplicate groups", len(index.duplicate_groups))
    for warning in dataset_warnings(index, with_split_warnings=not split_warnings_elsewhere):
        st.warning(warning)


def skipped_files_ui(index: DatasetIndex, download: bool = False) -> None:
    """The files the scan skipped and why, as a table (with a CSV download when asked)."""
    import pandas as pd  # here, not at the top: a page's title is drawn before pandas loads

    table = pd.DataFrame([{"path": item.path, "reason": item.reason} for item in index.skipped])
    st.dataframe(table, hide_index=True, width="stretch")
    if download:
        st.download_button("Download as CSV", table.to_csv(index=False).encode("utf-8"), file_name="skipped_files.csv",
                           mime="text/csv")


def evaluation_ui(evaluation: dict, split: str = VALIDATION, beside: dict[str, float] | None = None) -> None:
    """One split's accuracy (other accuracies `beside` it), per-class precision/recall/F1 and confusion matrix."""
    import pandas as pd

    from imgclf_app.charts import confusion_matrix_chart

    name = SPLIT_NAMES[split]
    columns = st.columns(3 + len(beside or {}))
    columns[0].metric(f"{name} accuracy", accuracy_text(evaluation["accuracy"]))
    for column, (label, accuracy) in zip(columns[1:], (beside or {}).items()):
        column.metric(label, accuracy_text(accuracy))
    columns[-2].metric("Macro F1", f"{evaluation.get('macro_f1', float('nan')):.3f}")
    columns[-1].metric(f"{name} images", f"{sum(map(sum, evaluation['confusion_matrix'])):,}")
    table = pd.DataFrame.from_dict(evaluation["per_class"], orient="index")
    table.index.name = "class"
    st.dataframe(table, column_config={
        name: st.column_config.NumberColumn(format="%.3f") for name in ("precision", "recall", "f1")
    })
    st.altair_chart(confusion_matrix_chart(evaluation["confusion_matrix"], evaluation["class_names"]),
                    width="stretch")
    if "calibration" in evaluation:
        calibration_ui(evaluation["calibration"], name)


def calibration_ui(calibration: dict, split_name: str) -> None:
    """ECE before and after temperature scaling, the temperature, and the reliability diagram."""
    from imgclf_app.charts import reliability_chart

    st.markdown(f"**Confidence calibration ({split_name.lower()} images)**")
    st.caption("Of the images a calibrated model gives 80% confidence, about 80% are right. The expected "
               "calibration error (ECE) is the average gap between confidence and accuracy. The temperature, "
               "fitted on the validation images, softens (above 1) or sharpens (below 1) every probability "
               "that predict, the pages and the exports give; it never changes which class wins.")
    columns = st.columns(3)
    columns[0].metric("ECE before", f"{calibration['ece_before']:.1%}")
    columns[1].metric("ECE calibrated", f"{calibration['ece_after']:.1%}",
                      delta=f"{calibration['ece_after'] - calibration['ece_before']:+.1%}", delta_color="inverse")
    columns[2].metric("Temperature", f"{calibration['temperature']:.3f}")
    st.altair_chart(reliability_chart(calibration["reliability_before"], calibration["reliability_after"]),
                    width="stretch")


def split_evaluations_ui(evaluations: dict[str, dict]) -> None:
    """One evaluation per split ({split: evaluation}), side by side and titled when there are several."""
    if len(evaluations) == 1:
        (split, evaluation), = evaluations.items()
        evaluation_ui(evaluation, split)
        return
    for column, (split, evaluation) in zip(st.columns(len(evaluations)), evaluations.items()):
        with column:
            st.markdown(f"#### {SPLIT_TITLES[split]}")
            evaluation_ui(evaluation, split)


def refused_while_busy(runs_root: Path) -> bool:
    """One run trains at a time: say so (and return True) when another is training."""
    busy = active_runs(runs_root)
    if busy:
        st.error(f"A run is already training ({busy[0].name}): stop it or let it finish first; "
                 "two runs at once would share the same cores and both go slower.")
    return bool(busy)
