"""Metrics on a hand-made example, predictions.csv round trips, confusion-matrix differences."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from imgclf_core.training.evaluation import (
    confusion_matrix_difference,
    evaluate_predictions,
    read_predictions_csv,
    write_predictions_csv,
)

CLASS_NAMES = ["ant", "bee", "cat"]
# Seven images; nothing is ever predicted as "cat".
TRUE = [0, 0, 0, 1, 1, 2, 2]
PREDICTED = [0, 0, 1, 1, 0, 1, 0]


def probabilities_for(predicted, confidence=0.7, num_classes=3):
    """Rows whose argmax is `predicted`, the rest of the mass spread evenly."""
    rows = np.full((len(predicted), num_classes), (1 - confidence) / (num_classes - 1))
    rows[np.arange(len(predicted)), predicted] = confidence
    return rows


def test_hand_made_example_exact_numbers():
    result = evaluate_predictions(TRUE, probabilities_for(PREDICTED), CLASS_NAMES)
    assert result["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [1, 1, 0]]
    assert result["accuracy"] == pytest.approx(3 / 7)
    assert result["class_names"] == CLASS_NAMES
    ant, bee, cat = (result["per_class"][name] for name in CLASS_NAMES)
    assert ant == pytest.approx({"precision": 2 / 4, "recall": 2 / 3, "f1": 4 / 7, "support": 3})
    assert bee == pytest.approx({"precision": 1 / 3, "recall": 1 / 2, "f1": 2 / 5, "support": 2})
    # Never predicted: precision 0/0 and F1 0/0 are 0.0, not NaN.
    assert cat == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert result["macro_f1"] == pytest.approx((4 / 7 + 2 / 5 + 0) / 3)
    assert isinstance(cat["support"], int) and isinstance(result["accuracy"], float)


def test_class_absent_from_the_data_has_zero_support_and_no_nan():
    result = evaluate_predictions([0, 1], probabilities_for([0, 0]), CLASS_NAMES)
    assert result["per_class"]["cat"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert not any(math.isnan(value) for scores in result["per_class"].values() for value in scores.values())


def test_perfect_predictions():
    result = evaluate_predictions(TRUE, probabilities_for(TRUE), CLASS_NAMES)
    assert result["accuracy"] == 1.0
    assert result["macro_f1"] == 1.0
    assert np.trace(result["confusion_matrix"]) == len(TRUE)


@pytest.mark.parametrize(
    "true, probabilities, message",
    [
        ([0, 1], np.ones((2, 2)) / 2, r"shape \(N, 3\)"),
        ([0, 1, 2], np.ones((2, 3)) / 3, "one true index per probability row"),
        ([0, 3], np.ones((2, 3)) / 3, r"in 0\.\.2"),
        ([0.0, 1.0], np.ones((2, 3)) / 3, "must be integers"),
        ([], np.ones((0, 3)), "no predictions"),
    ],
)
def test_bad_inputs_raise_clear_errors(true, probabilities, message):
    with pytest.raises(ValueError, match=message):
        evaluate_predictions(true, probabilities, CLASS_NAMES)


def test_predictions_csv_round_trip(tmp_path):
    paths = ["ant/a,1.png", "ant/été.png", "ant/c.png", "bee/d.png", "bee/e.png", "cat/f.png", 'cat/"g".png']
    probabilities = probabilities_for(PREDICTED)
    probabilities[5] = [0.5, 0.5, 0.0]  # p(true) = 0: a finite loss, not infinity
    csv_path = tmp_path / "run" / "predictions.csv"
    write_predictions_csv(csv_path, paths, TRUE, probabilities, CLASS_NAMES)
    assert os.listdir(csv_path.parent) == ["predictions.csv"]
    assert csv_path.read_text(encoding="utf-8").splitlines()[0] == "path,split,true,predicted,probability,loss"
    rows = read_predictions_csv(csv_path)
    assert [row["path"] for row in rows] == paths
    assert {row["split"] for row in rows} == {"validation"}
    assert [row["true"] for row in rows] == [CLASS_NAMES[i] for i in TRUE]
    assert [row["predicted"] for row in rows] == ["ant", "ant", "bee", "bee", "ant", "ant", "ant"]
    assert rows[0]["probability"] == pytest.approx(0.7)
    assert rows[0]["loss"] == pytest.approx(-math.log(0.7))
    assert rows[2]["loss"] == pytest.approx(-math.log(0.15))  # true ant, predicted bee
    assert rows[5]["loss"] == pytest.approx(-math.log(1e-7))
    assert all(math.isfinite(row["loss"]) for row in rows)


def test_predictions_csv_keeps_each_rows_split_and_reads_files_made_before_the_split_column(tmp_path):
    probabilities = probabilities_for(PREDICTED)
    splits = ["validation"] * 4 + ["test"] * 3
    write_predictions_csv(tmp_path / "p.csv", [f"{n}.png" for n in range(7)], TRUE, probabilities, CLASS_NAMES,
                          splits=splits)
    assert [row["split"] for row in read_predictions_csv(tmp_path / "p.csv")] == splits
    old = tmp_path / "old.csv"
    old.write_text("path,true,predicted,probability,loss\na.png,ant,bee,0.6,0.9\n", encoding="utf-8")
    assert read_predictions_csv(old) == [{"split": "validation", "path": "a.png", "true": "ant", "predicted": "bee",
                                          "probability": 0.6, "loss": 0.9}]


def test_reading_a_file_that_is_not_a_predictions_csv(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a predictions file"):
        read_predictions_csv(path)


def test_write_refuses_paths_and_labels_of_different_lengths(tmp_path):
    with pytest.raises(ValueError, match="2 paths but 7 labels"):
        write_predictions_csv(tmp_path / "p.csv", ["a", "b"], TRUE, probabilities_for(PREDICTED), CLASS_NAMES)


def test_confusion_matrix_difference():
    before = evaluate_predictions(TRUE, probabilities_for(PREDICTED), CLASS_NAMES)
    better = [0, 0, 0, 1, 1, 2, 0]
    after = evaluate_predictions(TRUE, probabilities_for(better), CLASS_NAMES)
    difference = confusion_matrix_difference(before, after)
    assert difference["class_names"] == CLASS_NAMES
    assert difference["confusion_matrix"] == [[1, -1, 0], [-1, 1, 0], [0, -1, 1]]
    assert difference["accuracy_change"] == pytest.approx(6 / 7 - 3 / 7)
    # Moved cells only: each row keeps its total.
    assert np.sum(difference["confusion_matrix"], axis=1).tolist() == [0, 0, 0]


def test_confusion_matrix_difference_refuses_different_classes():
    before = evaluate_predictions([0, 1], probabilities_for([0, 1], num_classes=2), ["ant", "bee"])
    after = evaluate_predictions(TRUE, probabilities_for(PREDICTED), CLASS_NAMES)
    with pytest.raises(ValueError, match="different classes.*'ant', 'bee'.*'cat'"):
        confusion_matrix_difference(before, after)
