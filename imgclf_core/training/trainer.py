"""The trainer: one training loop for one CPU/GPU, several GPUs and several machines.

`train_run(run_dir)` trains the run described by run_dir/config.json, continuing after the last
finished epoch when run_dir/checkpoint/ holds one. The epoch loop (`loop`) is a custom loop
(`strategy.run` over a distributed dataset) rather than `model.fit` because Keras 3's fit does not
work under MultiWorkerMirroredStrategy; the same loop serves the default strategy, MirroredStrategy
(more than one GPU) and MultiWorkerMirroredStrategy (TF_CONFIG names several workers).

Every epoch (the loop's parts: loop_policies, loop_writers): progress lines every few batches, then
validation, best model (by val_loss, atomic), checkpoint (atomic: state.json is written last and
names the files it needs), history, status.
SIGTERM: the current batch finishes, the model is saved, state "stopped"; kill -9 loses at most
the epoch in progress. Only the chief writes into the run folder.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf
import keras

from imgclf_core.config import RunConfig
from imgclf_core.data.dataset import TEST, TRAIN, VALIDATION, DatasetError, encode_labels, scan_dataset
from imgclf_core.training.run_catalog import epoch_line, outcome_lines
from imgclf_core.training.run_folder import FAILED, FINISHED, RUNNING, STOPPED, RunFolder
from imgclf_core.training.run_process import check_can_resume, is_chief
from imgclf_core.training.feature_head_stage import run_head_on_features
from imgclf_core.training.loop import EpochListener, EpochLoop, LoopSetup, StopRequest, standard_parts, worker_count
from imgclf_core.training.loop_parts import FINE_TUNE, FULL, HEAD, LoopState
from imgclf_core.training.loop_writers import read_checkpoint_state
from imgclf_core.models.forward import compiled_features_and_forward
from imgclf_core.training.manifest import manifest_rows
from imgclf_core.models.registry import MODEL_REGISTRY, create_model
from imgclf_core.data.pipeline import TrainingData, build_training_data
from imgclf_core.data.split import check_trainable_classes, split_records

# Inverse-frequency class weights kick in ("auto") above this largest/smallest class ratio.
IMBALANCE_RATIO_FOR_WEIGHTS = 1.5
FEATURE_BATCH = 256  # training images per forward pass when the unfamiliar-image model is fitted


def choose_strategy() -> tf.distribute.Strategy:
    """Several workers in TF_CONFIG: multi-worker; more than one GPU: mirrored; else the default."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if sum(len(addresses) for addresses in cluster.values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray | None:
    """Inverse-frequency weights (mean 1 over the samples), or None when not wanted."""
    counts = np.bincount(labels, minlength=num_classes).astype("float64")
    present = counts[counts > 0]
    imbalanced = present.size and present.max() / present.min() > IMBALANCE_RATIO_FOR_WEIGHTS
    if mode == "none" or (mode == "auto" and not imbalanced):
        return None
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype("float32")


def train_run(
    run_dir: str | os.PathLike,
    stop_request: StopRequest | None = None,
    epoch_listener: EpochListener | None = None,
) -> str:
    """Train (or continue) the run in `run_dir`; returns the final state. Errors end as state "failed".

    `epoch_listener(history_row, model)` is called after each finished epoch (benchmarks use it to
    measure test accuracy per epoch); the loop itself never draws or prints.
    """
    folder = RunFolder(run_dir)
    chief = is_chief()
    stop_request = stop_request or StopRequest()
    stop_request.install()
    try:
        return _train(folder, chief, stop_request, epoch_listener)
    except BaseException as error:
        if chief:
            _record_failure(folder, error)
        raise


def _record_failure(folder: RunFolder, error: BaseException) -> None:
    """status.json says why the run failed, even when the failure is a full disk."""
    message = f"{type(error).__name__}: {error}" if not isinstance(error, KeyboardInterrupt) else "interrupted"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:  # h5py's own words for it are hard to read
        message = f"the disk is full (No space left on device) under {folder.path}; the last saved model is kept"
    try:
        folder.write_status(FAILED, message=message.splitlines()[0][:500], in_place_if_disk_full=True)
    except OSError as status_error:
        print(f"imgclf: could not record the failure in {folder.status_path}: {status_error}",
              file=sys.stderr, flush=True)


def _train(folder: RunFolder, chief: bool, stop_request: StopRequest, epoch_listener: EpochListener | None) -> str:
    document = folder.read_document()  # once per start: the loop gets what it needs from it
    config = document.config
    spec = MODEL_REGISTRY.get(config.model.name)
    if spec is None:
        raise DatasetError(f"unknown model {config.model.name!r} in {folder.config_path}")
    # Kept from an earlier trainer of this run (resume), so the pages keep saying a model is ready.
    usable_model = folder.read_status().get("usable_model")
    if chief:
        # The CLI refuses a run another trainer holds, so temp files here are a killed writer's leftovers.
        folder.remove_stale_temp_files()
        folder.write_status(RUNNING, message="scanning the dataset", usable_model=usable_model)
    index = scan_dataset(config.data_dir)
    class_names = list(index.class_names)
    if document.class_names and document.class_names != class_names:
        raise DatasetError(
            f"the classes in {config.data_dir} changed since this run started "
            f"({document.class_names} -> {class_names}); start a new run"
        )
    if chief and not document.class_names:
        folder.write_config(config, class_names, created_at=document.created_at)

    # Same seed, same split, same initial weights, same batches: a run can be repeated.
    keras.utils.set_random_seed(config.data.seed)
    strategy = choose_strategy()
    splits = split_records(index.records, config.data.validation_split, config.data.seed)
    check_trainable_classes(splits, class_names)
    if chief and folder.read_manifest() is None:  # what the run trains on, as it starts (a resume keeps it)
        folder.write_manifest(manifest_rows(((TRAIN, splits.train), (VALIDATION, splits.validation),
                                             (TEST, splits.test))))
    labels = encode_labels(splits.train, class_names)
    weights = class_weights(labels, len(class_names), config.training.class_weighting)

    stages = _stages(config, spec.pretrained)
    with strategy.scope():
        model = create_model(config.model, len(class_names), config.data.image_size, config.data.channels)
    imbalanced = weights is not None and chief
    notes = ("classes are imbalanced: training with inverse-frequency class weights",) if imbalanced else ()
    setup = LoopSetup(folder=folder, chief=chief, config=config, model=model, class_names=tuple(class_names),
                      strategy=strategy, stop_request=stop_request, class_weights=weights,
                      epoch_listener=epoch_listener, notes=notes, created_at=document.created_at)
    loop = EpochLoop(setup, standard_parts(setup, write_run_evaluation), state=read_checkpoint_state(folder),
                     usable_model=usable_model)
    if _head_trains_on_features(config, spec.pretrained, stages, loop.state, strategy):
        if run_head_on_features(loop, index.root, splits, stages[0][1]) == STOPPED:
            return STOPPED
    if chief:
        folder.write_status(RUNNING, message="decoding images", usable_model=loop.usable_model)
    return loop.run(build_training_data(index, config.data, config.augmentation, splits=splits), stages)


def _head_trains_on_features(
    config: RunConfig, pretrained: bool, stages: list[tuple[str, int]], state: LoopState, strategy
) -> bool:
    """The head stage runs on cached features for a fixed ImageNet base, on one machine, when not done yet."""
    head_left = bool(stages) and stages[0][0] == HEAD and (
        state.epoch == 0 or (state.stage == HEAD and state.stage_epoch < stages[0][1])
    )
    single = strategy.num_replicas_in_sync == 1 and worker_count(strategy) == 1
    return pretrained and config.model.weights == "imagenet" and head_left and single


def _stages(config: RunConfig, pretrained: bool) -> list[tuple[str, int]]:
    training = config.training
    if not pretrained:
        return [(FULL, training.total_epochs)]
    stages = [(HEAD, training.epochs)] if training.epochs else []
    if training.fine_tune_epochs:
        stages.append((FINE_TUNE, training.fine_tune_epochs))
    return stages


def write_run_evaluation(run_dir: Path, data: TrainingData) -> None:
    """evaluation.json (a section per split), calibration.json and predictions.csv of the run's best model on
    its held-out images. The temperature is fitted on the validation split; every figure and probability
    written is the calibrated model's, and each split's section keeps the ECE before and after."""
    from imgclf_core.training.calibration import calibration_report, apply_temperature, fit_temperature
    from imgclf_core.training.evaluation import evaluate_predictions

    held_out = [(split, dataset, records) for split, dataset, records in (
        (VALIDATION, data.validation, data.validation_records), (TEST, data.test, data.test_records),
    ) if dataset is not None]
    if not held_out:
        return
    folder = RunFolder(run_dir)
    model = folder.load_model(expected_num_classes=len(data.class_names))
    predict = compiled_features_and_forward(model)
    class_names = list(data.class_names)
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    features: dict[str, np.ndarray] = {}
    for split, dataset, _ in held_out:
        # The held-out batches are unaugmented whole numbers in float32: back to uint8 losslessly.
        outputs = [predict(tf.cast(images, tf.uint8)) for images, _ in dataset]
        features[split] = np.concatenate([batch_features.numpy() for batch_features, _ in outputs])
        probabilities = np.concatenate([batch_probabilities.numpy() for _, batch_probabilities in outputs])
        raw[split] = (np.concatenate([labels.numpy() for _, labels in dataset]), probabilities)
    temperature = fit_temperature(*raw[VALIDATION]) if VALIDATION in raw else 1.0
    folder.write_calibration(temperature, len(raw[VALIDATION][0]) if VALIDATION in raw else 0)
    if VALIDATION in features and data.train_images is not None and len(data.train_images):
        folder.write_familiarity(_familiarity(predict, data, features[VALIDATION]))
    evaluation, paths, splits, true_parts, probability_parts = {}, [], [], [], []
    for split, _, records in held_out:
        true_indices, probabilities = raw[split]
        calibrated = apply_temperature(probabilities, temperature)
        evaluation[split] = {**evaluate_predictions(true_indices, calibrated, class_names),
                             "calibration": calibration_report(true_indices, probabilities, temperature)}
        paths += [record.path for record in records]
        splits += [split] * len(records)
        true_parts.append(true_indices)
        probability_parts.append(calibrated)
    folder.write_evaluation(evaluation)
    folder.write_predictions(paths, np.concatenate(true_parts), np.concatenate(probability_parts), class_names,
                             splits)


def _familiarity(predict, data: TrainingData, validation_features: np.ndarray):
    """The unfamiliar-image model: class statistics of a sample of the training features, the validation threshold."""
    from imgclf_core.training.familiarity import fit_familiarity, sample_size, training_sample

    train_images = data.train_images
    sample = training_sample(len(train_images), sample_size(train_images.shape[1]))
    labels = encode_labels([data.train_records[index] for index in sample], data.class_names)
    train_features = np.concatenate([
        predict(np.asarray(train_images[sample[start:start + FEATURE_BATCH]]))[0].numpy()
        for start in range(0, len(sample), FEATURE_BATCH)
    ])
    return fit_familiarity(train_features, labels, validation_features)


def main(argv: Sequence[str] | None = None) -> int:
    """The trainer process: train RUN_DIR to its end; 0 when finished or stopped, 1 when failed, 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m imgclf_core.training",
                                     description="Train (or continue) the run in RUN_DIR; run_process starts it.")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    args = parser.parse_args(argv)
    try:
        folder = check_can_resume(args.run_dir)
        state = train_run(folder.path, epoch_listener=lambda row, model: print(epoch_line(row), file=sys.stderr,
                                                                               flush=True))
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:  # one line, as `imgclf train` says it
        print(f"imgclf train: error: {str(error).replace(chr(10), ' ')}", file=sys.stderr)
        return 2
    print("\n".join(outcome_lines(folder.path, state)))
    return 0 if state in (FINISHED, STOPPED) else 1
