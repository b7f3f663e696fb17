"""Classification metrics from predicted probabilities, and the predictions.csv of a run (numpy only).

The evaluation dict is the `imgclf evaluate --json` document and the run's evaluation.json:
accuracy, per-class precision/recall/F1/support, a confusion matrix (rows = true class,
columns = predicted class) and macro F1. A ratio whose denominator is zero is 0.0, never NaN.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from imgclf_core.fileio import atomic_write_text

PREDICTION_COLUMNS = ("path", "split", "true", "predicted", "probability", "loss")
# predictions.csv of runs made before the split column: every row is a validation image.
PREDICTION_COLUMNS_WITHOUT_SPLIT = tuple(column for column in PREDICTION_COLUMNS if column != "split")
# Keras' epsilon: a probability of exactly 0 for the true class costs -log(1e-7) ~ 16.1, not infinity.
PROBABILITY_FLOOR = 1e-7


def evaluate_predictions(
    true_indices: Sequence[int] | np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Accuracy, per-class precision/recall/F1/support, confusion matrix, macro F1 and the expected
    calibration error of the probabilities (see calibration)."""
    from imgclf_core.training.calibration import expected_calibration_error

    true_indices, probabilities = _checked_inputs(true_indices, probabilities, class_names)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(true_indices, predicted, len(class_names))
    correct = np.diag(matrix).astype(np.float64)
    precision = _safe_divide(correct, matrix.sum(axis=0))
    recall = _safe_divide(correct, matrix.sum(axis=1))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    per_class = {
        name: {
            "precision": float(precision[number]),
            "recall": float(recall[number]),
            "f1": float(f1[number]),
            "support": int(matrix[number].sum()),
        }
        for number, name in enumerate(class_names)
    }
    return {
        "accuracy": float(correct.sum() / len(true_indices)),
        "class_names": list(class_names),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "macro_f1": float(f1.mean()),
        "ece": round(expected_calibration_error(true_indices, probabilities), 6),
    }


def confusion_matrix(true_indices: np.ndarray, predicted_indices: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs: rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true_indices), np.asarray(predicted_indices)), 1)
    return matrix


def confusion_matrix_difference(before: dict, after: dict) -> dict:
    """What changed between two evaluations of the same classes: matrix after minus before, accuracy change."""
    if list(before["class_names"]) != list(after["class_names"]):
        raise ValueError(
            "cannot compare evaluations of different classes: before has "
            f"{list(before['class_names'])}, after has {list(after['class_names'])}"
        )
    difference = np.asarray(after["confusion_matrix"], dtype=np.int64) - np.asarray(
        before["confusion_matrix"], dtype=np.int64
    )
    return {
        "class_names": list(after["class_names"]),
        "confusion_matrix": difference.tolist(),
        "accuracy_change": float(after["accuracy"]) - float(before["accuracy"]),
    }


def prediction_losses(true_indices: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Cross-entropy of each row, -log p(true class), with p floored so it stays finite."""
    true_probabilities = probabilities[np.arange(len(true_indices)), true_indices]
    return -np.log(np.clip(true_probabilities.astype(np.float64), PROBABILITY_FLOOR, 1.0))


def write_predictions_csv(
    path: str | os.PathLike,
    paths: Sequence[str],
    true_indices: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    splits: Sequence[str] | None = None,
) -> None:
    """Write predictions.csv atomically: path, split, true, predicted, probability (of predicted), loss."""
    true_indices, probabilities = _checked_inputs(true_indices, probabilities, class_names)
    if len(paths) != len(true_indices):
        raise ValueError(f"{len(paths)} paths but {len(true_indices)} labels")
    splits = list(splits) if splits is not None else ["validation"] * len(paths)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(predicted)), predicted]
    losses = prediction_losses(true_indices, probabilities)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    for row in zip(paths, splits, true_indices, predicted, confidence, losses):
        file_path, split, true_index, predicted_index, probability, loss = row
        writer.writerow([file_path, split, class_names[true_index], class_names[predicted_index],
                         f"{probability:.9g}", f"{loss:.9g}"])
    atomic_write_text(path, buffer.getvalue())


def read_predictions_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of a predictions.csv as dicts, probability and loss as floats, split "validation" if not given."""
    csv_path = Path(path)
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) not in (PREDICTION_COLUMNS, PREDICTION_COLUMNS_WITHOUT_SPLIT):
            raise ValueError(
                f"{csv_path}: not a predictions file: expected columns {','.join(PREDICTION_COLUMNS)}, "
                f"got {','.join(reader.fieldnames or [])}"
            )
        return [_parse_prediction_row(row, csv_path, line) for line, row in enumerate(reader, start=2)]


def _parse_prediction_row(row: dict, csv_path: Path, line: int) -> dict:
    try:
        return {"split": "validation", **row, "probability": float(row["probability"]), "loss": float(row["loss"])}
    except (TypeError, ValueError) as error:
        raise ValueError(f"{csv_path}:{line}: probability and loss must be numbers ({error})") from error


def _checked_inputs(
    true_indices: Sequence[int] | np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(true_indices)
    scores = np.asarray(probabilities)
    num_classes = len(class_names)
    if scores.ndim != 2 or scores.shape[1] != num_classes:
        raise ValueError(f"probabilities must have shape (N, {num_classes}) for {num_classes} classes, got {scores.shape}")
    if labels.ndim != 1 or len(labels) != len(scores):
        raise ValueError(f"need one true index per probability row: {labels.shape} labels, {len(scores)} rows")
    if len(labels) == 0:
        raise ValueError("no predictions to evaluate")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"true indices must be integers, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"true indices must be in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    return labels, scores


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    result = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=result, where=denominator != 0)
    return result
