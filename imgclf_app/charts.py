"""Chart builders for the pages: training curves, run comparison, confusion matrix (Altair), counts (Vega-Lite).

altair and pandas (about half a second to import, more on a busy machine) are imported inside the
builders, not at the top: the pages import this module before they draw their sidebar and title,
and the first chart comes after both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import altair as alt
    import pandas as pd

CURVE_METRICS = {"loss": "Loss", "accuracy": "Accuracy"}


def curves_frame(history: Sequence[dict[str, Any]], progress: Sequence[dict[str, Any]] = ()) -> pd.DataFrame:
    """Long-format curves: one row per (x, metric, split, value); x is fractional epochs.

    Finished epochs give train and validation points at x = epoch; progress lines inside the
    epoch in progress give train points at x = epoch - 1 + step/steps, so curves move mid-epoch.
    """
    import pandas as pd

    rows = []
    for row in history:
        for metric in CURVE_METRICS:
            rows.append({"epoch": float(row["epoch"]), "metric": metric, "split": "train", "value": row[metric]})
            value = row.get(f"val_{metric}")
            if isinstance(value, (int, float)):
                rows.append({"epoch": float(row["epoch"]), "metric": metric, "split": "validation", "value": value})
    finished = len(history)
    for record in progress:
        if record["epoch"] > finished and record.get("steps"):
            x = record["epoch"] - 1 + record["step"] / record["steps"]
            for metric in CURVE_METRICS:
                rows.append({"epoch": x, "metric": metric, "split": "train", "value": record[metric]})
    frame = pd.DataFrame(rows, columns=["epoch", "metric", "split", "value"])
    return frame.dropna(subset=["value"])


def curves_chart(frame: pd.DataFrame, metric: str, color: str = "split") -> alt.Chart:
    """A line per `color` value (split, or run when comparing) for one metric against epochs."""
    import altair as alt

    data = frame[frame["metric"] == metric]
    return (
        alt.Chart(data, title=CURVE_METRICS[metric], height=260)
        .mark_line(point=True)
        .encode(
            # Whole epochs on the axis (a lone first point would otherwise read "1.000000"), from 0.
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(format="d", tickMinStep=1),
                    scale=alt.Scale(domainMin=0)),
            y=alt.Y("value:Q", title=CURVE_METRICS[metric].lower(), scale=alt.Scale(zero=False)),
            color=alt.Color(f"{color}:N", title=color),
            tooltip=["epoch", color, alt.Tooltip("value:Q", format=".4f")],
        )
    )


def confusion_matrix_chart(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> alt.Chart:
    """Heatmap with counts: rows are true classes, columns predicted."""
    import altair as alt
    import pandas as pd

    rows = [
        {"true": true_name, "predicted": predicted_name, "count": int(count)}
        for true_name, counts in zip(class_names, matrix)
        for predicted_name, count in zip(class_names, counts)
    ]
    data = pd.DataFrame(rows)
    order = list(class_names)
    # Every class name is shown: Vega would otherwise drop labels that might overlap.
    base = alt.Chart(data, height=max(240, 32 * len(order))).encode(
        x=alt.X("predicted:N", sort=order, title="predicted", axis=alt.Axis(labelOverlap=False)),
        y=alt.Y("true:N", sort=order, title="true", axis=alt.Axis(labelOverlap=False)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), legend=None),
        tooltip=["true", "predicted", "count"],
    )
    labels = base.mark_text(fontSize=11).encode(
        text="count:Q",
        color=alt.condition(alt.datum.count > max(data["count"].max(), 1) / 2, alt.value("white"), alt.value("black")),
    )
    return cells + labels


def counts_chart(counts: Sequence[tuple[str, int]], label: str, height: int = 220) -> tuple[dict, dict]:
    """Horizontal bars of (name, count), in the given order: (data, Vega-Lite spec) for st.vega_lite_chart.

    A plain spec, not an Altair chart: the Dataset page draws three of these on its first visit, and
    importing Altair (about 0.4 s, twice that on a busy machine) would hold up its image grid.
    """
    data = {label: [name for name, _ in counts], "images": [int(count) for _, count in counts]}
    spec = {
        "height": max(height, 22 * len(counts)),
        "mark": {"type": "bar"},
        "encoding": {
            "x": {"field": "images", "type": "quantitative"},
            "y": {"field": label, "type": "nominal", "sort": None, "title": label, "axis": {"labelOverlap": False}},
            "tooltip": [{"field": label, "type": "nominal"}, {"field": "images", "type": "quantitative"}],
        },
    }
    return data, spec


def class_counts_chart(rows: Sequence[tuple[str, str, int]], height: int = 260) -> tuple[dict, dict]:
    """Vertical bars of images per class from (class, split, count) rows, stacked by split when any row names
    one: (data, Vega-Lite spec) for st.vega_lite_chart (plain, like counts_chart: the Home page's first chart)."""
    stacked = any(split for _, split, _ in rows)
    data = {"class": [name for name, _, _ in rows], "images": [int(count) for _, _, count in rows]}
    encoding = {
        "x": {"field": "class", "type": "nominal", "sort": None, "title": "class"},
        "y": {"field": "images", "type": "quantitative"},
        "tooltip": [{"field": "class", "type": "nominal"}, {"field": "images", "type": "quantitative"}],
    }
    if stacked:  # the splits in the rows' order, the first at the bottom of each bar and on top of the legend
        splits = list(dict.fromkeys(split for _, split, _ in rows))
        data["split"] = [split for _, split, _ in rows]
        data["stack"] = [splits.index(split) for _, split, _ in rows]
        encoding["color"] = {"field": "split", "type": "nominal", "title": "split", "sort": splits}
        encoding["order"] = {"field": "stack", "type": "quantitative"}
        encoding["tooltip"].insert(1, {"field": "split", "type": "nominal"})
    return data, {"height": height, "mark": {"type": "bar"}, "encoding": encoding}


def top_k_chart(pairs: Sequence[tuple[str, float]]) -> alt.Chart:
    """Horizontal bars of (label, probability), most probable on top."""
    import altair as alt
    import pandas as pd

    data = pd.DataFrame(pairs, columns=["label", "probability"])
    data["text"] = [f"{probability:.1%}" for probability in data["probability"]]
    base = alt.Chart(data, height=max(140, 40 * len(data))).encode(
        # Room right of 100% for the figure at the end of a full bar; ticks stop at 100%.
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1.18]), title=None,
                axis=alt.Axis(format="%", labelFontSize=13, values=[0, 0.25, 0.5, 0.75, 1.0])),
        y=alt.Y("label:N", sort=None, title=None,
                axis=alt.Axis(labelLimit=320, labelOverlap=False, labelFontSize=14, labelPadding=6)),
        tooltip=["label", alt.Tooltip("probability:Q", format=".2%")],
    )
    # Each bar says its figure at its end: readable without the axis.
    return base.mark_bar(size=24) + base.mark_text(align="left", dx=4, fontSize=13).encode(text="text:N")


def confusion_difference_chart(difference: Sequence[Sequence[int]], class_names: Sequence[str]) -> alt.Chart:
    """Heatmap of (after - before) counts: on the diagonal up is better, off it down is better."""
    import altair as alt
    import pandas as pd

    order = list(class_names)
    rows = []
    for true_index, counts in enumerate(difference):
        for predicted_index, change in enumerate(counts):
            better = change > 0 if true_index == predicted_index else change < 0
            rows.append({"true": order[true_index], "predicted": order[predicted_index], "change": int(change),
                         "effect": "better" if better else ("same" if change == 0 else "worse")})
    data = pd.DataFrame(rows)
    base = alt.Chart(data, height=max(240, 32 * len(order))).encode(
        x=alt.X("predicted:N", sort=order, title="predicted", axis=alt.Axis(labelOverlap=False)),
        y=alt.Y("true:N", sort=order, title="true", axis=alt.Axis(labelOverlap=False)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("effect:N", scale=alt.Scale(domain=["better", "same", "worse"],
                                                    range=["#4c9a5a", "#f2f2f2", "#d1495b"]), legend=alt.Legend(title=None)),
        tooltip=["true", "predicted", "change"],
    )
    return cells + base.mark_text(fontSize=11).encode(text="change:Q")


def reliability_chart(before: Sequence[dict], after: Sequence[dict]) -> alt.Chart:
    """The reliability diagram: accuracy against mean confidence per confidence bin, before and after
    temperature scaling (points sized by image count), beside the diagonal of a perfectly calibrated model."""
    import altair as alt
    import pandas as pd

    rows = [{**row, "model": name} for name, bins in (("before", before), ("after temperature", after))
            for row in bins if row["count"]]
    data = pd.DataFrame(rows)
    scale = alt.Scale(domain=[0, 1])
    diagonal = alt.Chart(pd.DataFrame({"confidence": [0.0, 1.0], "accuracy": [0.0, 1.0]})).mark_line(
        color="#999999", strokeDash=[4, 4]).encode(x=alt.X("confidence:Q", scale=scale), y=alt.Y("accuracy:Q", scale=scale))
    colors = alt.Scale(domain=["before", "after temperature"], range=["#d1495b", "#2e6f9e"])
    lines = alt.Chart(data, height=300).mark_line(point=True).encode(
        x=alt.X("confidence:Q", scale=scale, title="mean confidence in the bin", axis=alt.Axis(format="%")),
        y=alt.Y("accuracy:Q", scale=scale, title="accuracy in the bin", axis=alt.Axis(format="%")),
        color=alt.Color("model:N", scale=colors, legend=alt.Legend(title=None, orient="bottom")),
        tooltip=["model", alt.Tooltip("confidence:Q", format=".1%"), alt.Tooltip("accuracy:Q", format=".1%"), "count"],
    )
    sized = alt.Chart(data).mark_circle(opacity=0.35).encode(
        x="confidence:Q", y="accuracy:Q", size=alt.Size("count:Q", legend=None),
        color=alt.Color("model:N", scale=colors, legend=None))
    return diagonal + lines + sized
