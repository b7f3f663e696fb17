"""Evaluate a run's model on a folder-per-class dataset (`imgclf evaluate`).

By default on the test split of the dataset the run was trained on. Class names come from the
run's config.json, so a dataset with classes the model does not know is refused before TensorFlow
loads.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

from imgclf_core.data.dataset import TEST, DatasetError, DatasetIndex, encode_labels, scan_dataset
from imgclf_core.training.evaluation import evaluate_predictions
from imgclf_core.training.run_folder import RunFolder

ProgressCallback = Callable[[int, int], None]


def dataset_to_evaluate(
    run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, progress: ProgressCallback | None = None,
) -> tuple[DatasetIndex, str]:
    """The images to evaluate the run on and how to name them: `data_dir`, else its own dataset's test split."""
    run_config, class_names = RunFolder(run_dir).read_trained_config()
    source = data_dir or run_config.data_dir
    index = scan_dataset(source, progress=progress)
    description = str(source)
    if data_dir is None:
        index = test_split_of(index, run_dir)
        description = f"the test split of {source}"
    check_classes_known(index.class_names, class_names, description, run_dir)
    return index, description


def test_split_of(index: DatasetIndex, run_dir: str | os.PathLike) -> DatasetIndex:
    """The index narrowed to its test split; DatasetError when the dataset has none."""
    test = tuple(record for record in index.records if record.split == TEST)
    if not test:
        raise DatasetError(f"{index.root} has no test split (a test/ folder beside train/): give DATA_DIR to "
                           f"evaluate {run_dir} on another folder")
    return dataclasses.replace(index, records=test, skipped=())


def check_classes_known(
    data_classes: Sequence[str], model_classes: Sequence[str], data_dir: str, run_dir: str | os.PathLike,
) -> None:
    """Refuse a dataset without images, or with a class folder the model was not trained on."""
    if not data_classes:
        raise DatasetError(f"{data_dir}: no usable images in class folders to evaluate")
    unknown = sorted(set(data_classes) - set(model_classes))
    if unknown:
        raise DatasetError(
            f"{data_dir}: class folder(s) {', '.join(map(repr, unknown))} unknown to the model in {run_dir} "
            f"(it knows: {', '.join(model_classes)})"
        )


def evaluate_run(run_dir: str | os.PathLike, index: DatasetIndex, progress: ProgressCallback | None = None,
                 flip_average: bool = False) -> dict:
    """The run's best model (calibrated) on every image of `index`: the evaluation dict (see training.evaluation);
    flip_average: each image's probabilities averaged with its mirror image's."""
    from imgclf_core.inspection.predict import predict_index

    model, class_names, run_config = RunFolder(run_dir).load_trained_model()
    probabilities = predict_index(model, index, run_config.data, progress=progress, flip_average=flip_average)
    return evaluate_predictions(encode_labels(index.records, class_names), probabilities, class_names)
