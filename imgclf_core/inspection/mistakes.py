"""What a finished run got wrong: the images behind a confusion cell, the top losses, and where the model looks."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def cell_predictions(rows: Sequence[dict], true_label: str, predicted_label: str) -> list[dict]:
    """The rows of one confusion-matrix cell, most confident first."""
    cell = [row for row in rows if row["true"] == true_label and row["predicted"] == predicted_label]
    return sorted(cell, key=lambda row: -row["probability"])


def top_losses(rows: Sequence[dict], count: int) -> list[dict]:
    """The wrongly predicted rows the model was most sure about (highest loss first)."""
    wrong = [row for row in rows if row["true"] != row["predicted"]]
    return sorted(wrong, key=lambda row: -row["loss"])[:count]


def largest_confusions(confusion_matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> list[tuple[str, str, int]]:
    """Off-diagonal cells as (true, predicted, count), largest first; empty when nothing is confused."""
    cells = [
        (class_names[true], class_names[predicted], int(count))
        for true, row in enumerate(confusion_matrix)
        for predicted, count in enumerate(row)
        if true != predicted and count > 0
    ]
    return sorted(cells, key=lambda cell: -cell[2])


def explain_paths(predictor, paths: Sequence[str | os.PathLike], class_index: int | None = None) -> list[dict]:
    """For each image file: {"probabilities", "heatmap"} from one batched Grad-CAM call, or {"error"}."""
    batch, readable, errors = predictor.load_images(paths)
    results: list[dict] = [{"error": errors[position]} if position in errors else {} for position in range(len(paths))]
    if batch is not None:
        probabilities, heatmaps = predictor.explain_batch(batch, class_index)
        for position, row, heatmap in zip(readable, probabilities, heatmaps):
            results[position] = {"probabilities": row, "heatmap": heatmap}
    return results


def class_average_gradcam(predictor, paths: Sequence[str | os.PathLike], class_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean image uint8, mean Grad-CAM heatmap for `class_index` in 0..1) over the images that decode.

    A bright border or corner in the mean heatmap means the model decides from the background
    (a shortcut) rather than from the object.
    """
    batch, _, _ = predictor.load_images(paths)
    if batch is None:
        raise ValueError("no readable images to average")
    _, heatmaps = predictor.explain_batch(batch, class_index)
    mean_heatmap = heatmaps.mean(axis=0)
    peak = mean_heatmap.max()
    mean_image = np.round(batch.astype(np.float64).mean(axis=0)).astype(np.uint8)
    return mean_image, (mean_heatmap / peak if peak > 0 else mean_heatmap).astype(np.float32)
