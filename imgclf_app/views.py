"""Small drawing functions that more than one page uses."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence, TypeVar

import streamlit as st

from imgclf_core import runs
from imgclf_core.dataset import DatasetIndex
from imgclf_core.dataset_report import dataset_health_warnings

Item = TypeVar("Item")


def in_columns(items: Sequence[Item], count: int) -> Iterator[tuple["st.delta_generator.DeltaGenerator", Item]]:
    """(column, item) pairs laying the items out in rows of `count` columns (a gallery grid)."""
    for start in range(0, len(items), count):
        yield from zip(st.columns(count), items[start:start + count])


def dataset_summary_ui(index: DatasetIndex) -> None:
    """Four counts and every warning (the scan's and the health checks')."""
    columns = st.columns(4)
    columns[0].metric("Images", f"{index.num_images:,}")
    columns[1].metric("Classes", len(index.class_names))
    columns[2].metric("Skipped files", len(index.skipped))
    columns[3].metric("Duplicate groups", len(index.duplicate_groups))
    for warning in (*index.warnings, *dataset_health_warnings(index)):
        st.warning(warning)


def evaluation_ui(evaluation: dict) -> None:
    """Accuracy, the per-class precision/recall/F1 table and the confusion matrix of one evaluation."""
    import pandas as pd

    from imgclf_app.charts import confusion_matrix_chart

    columns = st.columns(3)
    columns[0].metric("Validation accuracy", f"{evaluation['accuracy']:.2%}")
    columns[1].metric("Macro F1", f"{evaluation.get('macro_f1', float('nan')):.3f}")
    columns[2].metric("Validation images", f"{sum(map(sum, evaluation['confusion_matrix'])):,}")
    table = pd.DataFrame.from_dict(evaluation["per_class"], orient="index")
    table.index.name = "class"
    st.dataframe(table, column_config={
        name: st.column_config.NumberColumn(format="%.3f") for name in ("precision", "recall", "f1")
    })
    st.altair_chart(confusion_matrix_chart(evaluation["confusion_matrix"], evaluation["class_names"]),
                    width="stretch")


def refused_while_busy(runs_root: Path) -> bool:
    """One run trains at a time: say so (and return True) when another is training."""
    busy = runs.active_runs(runs_root)
    if busy:
        st.error(f"A run is already training ({busy[0].name}): stop it or let it finish first; "
                 "two runs at once would share the same cores and both go slower.")
    return bool(busy)
