"""The trainer: one training loop for one CPU/GPU, several GPUs and several machines.

`train_run(run_dir)` trains the run described by run_dir/config.json, continuing after the last
finished epoch when run_dir/checkpoint/ holds one. It is a custom loop (`strategy.run` over a
distributed dataset) rather than `model.fit` because Keras 3's fit does not work under
MultiWorkerMirroredStrategy; the same loop serves the default strategy, MirroredStrategy (more
than one GPU) and MultiWorkerMirroredStrategy (TF_CONFIG names several workers).

Every epoch: progress lines every few batches, then validation, history, best model (by val_loss,
atomic), checkpoint (atomic: state.json is written last and names the files it needs), status.
SIGTERM: the current batch finishes, the model is saved, state "stopped"; kill -9 loses at most
the epoch in progress. Only the chief writes into the run folder.
"""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorflow as tf
import keras

from imgclf_core.training import runs
from imgclf_core.config import RunConfig
from imgclf_core.data.dataset import TEST, VALIDATION, DatasetError, scan_dataset
from imgclf_core.fileio import atomic_write_json, atomic_write_with, remove_stale_temp_files
from imgclf_core.training.feature_head import FeatureSplit, batch_totals, train_head_on_features
from imgclf_core.models.features import cached_features, compiled_embed_function, feature_cache_key
from imgclf_core.models.registry import MODEL_REGISTRY, create_model, feature_layer_name, set_trainable_top
from imgclf_core.data.pipeline import TrainingData, build_training_data, encode_labels
from imgclf_core.data.split import SplitRecords, check_trainable_classes, split_records

HEAD, FINE_TUNE, FULL = "head", "fine_tune", "full"
# Inverse-frequency class weights kick in ("auto") above this largest/smallest class ratio.
IMBALANCE_RATIO_FOR_WEIGHTS = 1.5
MIN_LEARNING_RATE_FRACTION = 0.01  # cosine decays to this fraction of the stage's rate, not to 0
# Early stopping and reduce-on-plateau start counting only after this many steps of a stage: on a
# small dataset (a few batches per epoch) batch-norm statistics need that long to settle, and the
# validation loss stays flat until they do (measured: 180 images, 5 steps per epoch, validation
# accuracy at chance for 5 epochs, then 100%; without this, early stopping ended the run first).
PATIENCE_WARMUP_STEPS = 100


@dataclass
class LoopState:
    """What a checkpoint must restore for training to continue exactly where it left off."""

    epoch: int = 0  # finished epochs, all stages
    stage: str = FULL
    stage_epoch: int = 0  # finished epochs in this stage
    best_val_loss: float = math.inf  # over the whole run: decides model.keras
    stage_best_val_loss: float = math.inf
    epochs_without_improvement: int = 0
    epochs_since_lr_drop: int = 0
    lr_scale: float = 1.0
    history: list[dict[str, Any]] = field(default_factory=list)


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks after every batch."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(signal_number, self._handle)
            except ValueError:
                pass  # not the main thread (e.g. called from a test thread): no signals there

    def _handle(self, signal_number, frame) -> None:
        self.requested = True


def choose_strategy() -> tf.distribute.Strategy:
    """Several workers in TF_CONFIG: multi-worker; more than one GPU: mirrored; else the default."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if sum(len(addresses) for addresses in cluster.values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def worker_count(strategy: tf.distribute.Strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    cluster = resolver.cluster_spec()
    return max(1, sum(cluster.num_tasks(job) for job in cluster.jobs))


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray | None:
    """Inverse-frequency weights (mean 1 over the samples), or None when not wanted."""
    counts = np.bincount(labels, minlength=num_classes).astype("float64")
    present = counts[counts > 0]
    imbalanced = present.size and present.max() / present.min() > IMBALANCE_RATIO_FOR_WEIGHTS
    if mode == "none" or (mode == "auto" and not imbalanced):
        return None
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype("float32")


EpochListener = Callable[[dict, "keras.Model"], None]


def train_run(
    run_dir: str | os.PathLike,
    stop_request: StopRequest | None = None,
    epoch_listener: EpochListener | None = None,
) -> str:
    """Train (or continue) the run in `run_dir`; returns the final state. Errors end as state "failed".

    `epoch_listener(history_row, model)` is called after each finished epoch (benchmarks use it to
    measure test accuracy per epoch); the loop itself never draws or prints.
    """
    run_dir = Path(run_dir)
    chief = runs.is_chief()
    stop_request = stop_request or StopRequest()
    stop_request.install()
    try:
        return _train(run_dir, chief, stop_request, epoch_listener)
    except BaseException as error:
        if chief:
            _record_failure(run_dir, error)
        raise


def _record_failure(run_dir: Path, error: BaseException) -> None:
    """status.json says why the run failed, even when the failure is a full disk."""
    message = f"{type(error).__name__}: {error}" if not isinstance(error, KeyboardInterrupt) else "interrupted"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:  # h5py's own words for it are hard to read
        message = f"the disk is full (No space left on device) under {run_dir}; the last saved model is kept"
    try:
        runs.write_status(run_dir, runs.FAILED, message=message.splitlines()[0][:500], in_place_if_disk_full=True)
    except OSError as status_error:
        print(f"imgclf: could not record the failure in {run_dir / 'status.json'}: {status_error}",
              file=sys.stderr, flush=True)


def _train(run_dir: Path, chief: bool, stop_request: StopRequest, epoch_listener: EpochListener | None) -> str:
    document = runs.read_run_document(run_dir)
    config = runs.read_run_config(run_dir)
    spec = MODEL_REGISTRY.get(config.model.name)
    if spec is None:
        raise DatasetError(f"unknown model {config.model.name!r} in {run_dir / 'config.json'}")
    # Kept from an earlier trainer of this run (resume), so the pages keep saying a model is ready.
    usable_model = runs.read_status(run_dir).get("usable_model")
    if chief:
        # The CLI refuses a run another trainer holds, so temp files here are a killed writer's leftovers.
        for folder in (run_dir, run_dir / "checkpoint"):
            remove_stale_temp_files(folder)
        runs.write_status(run_dir, runs.RUNNING, message="scanning the dataset", usable_model=usable_model)
    index = scan_dataset(config.data_dir)
    class_names = list(index.class_names)
    if document.get("class_names") and document["class_names"] != class_names:
        raise DatasetError(
            f"the classes in {config.data_dir} changed since this run started "
            f"({document['class_names']} -> {class_names}); start a new run"
        )
    if chief and not document.get("class_names"):
        runs.write_run_config(run_dir, config, class_names, created_at=document.get("created_at"))

    # Same seed, same split, same initial weights, same batches: a run can be repeated.
    keras.utils.set_random_seed(config.data.seed)
    strategy = choose_strategy()
    splits = split_records(index.records, config.data.validation_split, config.data.seed)
    check_trainable_classes(splits, class_names)
    labels = np.array([class_names.index(record.label) for record in splits.train])
    weights = class_weights(labels, len(class_names), config.training.class_weighting)

    state = _read_checkpoint_state(run_dir)
    stages = _stages(config, spec.pretrained)
    with strategy.scope():
        model = create_model(config.model, len(class_names), config.data.image_size, config.data.channels)
    loop = _Loop(run_dir, chief, config, model, class_names, strategy, weights, stop_request, state)
    loop.epoch_listener, loop.usable_model = epoch_listener, usable_model
    if weights is not None and chief:
        loop.notes.append("classes are imbalanced: training with inverse-frequency class weights")
    if _head_trains_on_features(config, spec.pretrained, stages, loop.state, strategy):
        if loop.train_head_on_features(index.root, splits, stages[0][1]) == runs.STOPPED:
            return runs.STOPPED
    if chief:
        runs.write_status(run_dir, runs.RUNNING, message="decoding images", usable_model=loop.usable_model)
    loop.data = build_training_data(index, config.data, config.augmentation, splits=splits)
    return loop.run(stages)


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


class _Loop:
    """The epoch loop with its strategy-compiled steps; one instance per trainer process."""

    def __init__(self, run_dir, chief, config, model, class_names, strategy, weights, stop_request, state):
        self.run_dir, self.chief, self.config, self.model = run_dir, chief, config, model
        self.data: TrainingData | None = None  # decoded images: set before run()
        self.strategy, self.stop_request = strategy, stop_request
        self.state: LoopState = state or LoopState()
        self.notes: list[str] = []
        self.usable_model: dict[str, Any] | None = None  # {"val_accuracy", "epoch", "seconds"} once written
        self.total_epochs = config.training.total_epochs
        class_weight_vector = weights if weights is not None else np.ones(len(class_names), "float32")
        self.class_weight_vector = tf.constant(class_weight_vector)
        self.class_names = list(class_names)
        self.optimizer = None
        self.epoch_listener: EpochListener | None = None
        self.summary_writer = tf.summary.create_file_writer(str(run_dir / "tensorboard")) if chief else None

    # ------------------------------------------------------------ stages and epochs

    def run(self, stages: list[tuple[str, int]]) -> str:
        restored = self.state.epoch > 0
        for stage, stage_epochs in stages:
            if restored and _stage_done(self.state, stages, stage):
                continue
            if self.state.stage != stage:
                self.state = _next_stage(self.state, stage)
            self._prepare_stage(stage, restore=restored)
            restored = False
            while self.state.stage_epoch < stage_epochs and not self._should_stop_early():
                if self._run_epoch(stage, stage_epochs) == runs.STOPPED:
                    return self._finish_stopped()
        return self._finish()

    def train_head_on_features(self, root: Path, splits: SplitRecords, head_epochs: int) -> str:
        """The head stage on cached backbone features; writes the first usable model.keras when it ends."""
        self.state = LoopState(stage=HEAD)  # a head stage cut short is simply redone: it takes seconds
        self._prepare_stage(HEAD, restore=False)
        features_started = time.monotonic()
        train, validation = self._features_of(root, splits)
        features_seconds = time.monotonic() - features_started

        def on_epoch(epoch_index: int, values: dict) -> bool:
            now = time.monotonic()
            row = {"epoch": epoch_index + 1, "stage": HEAD, **values, "seconds": round(now - epoch_started[0], 3)}
            epoch_started[0] = now
            self.state.epoch = self.state.stage_epoch = epoch_index + 1
            self.state.history.append(row)
            if self.epoch_listener is not None:
                self.epoch_listener(row, self.model)
            if self.chief:
                self._write_status(runs.RUNNING, f"training the head on features: epoch {row['epoch']}/{head_epochs}")
            return self.stop_request.requested

        epoch_started = [time.monotonic()]
        best = train_head_on_features(
            self.model, self.optimizer, train, validation, head_epochs, self.config.data.batch_size,
            self.class_weight_vector.numpy(),
            lambda epoch_index, step, steps: self._learning_rate(HEAD, head_epochs, step, steps, epoch_index),
            self.config.data.seed, on_epoch,
        )
        self.state.best_val_loss = self.state.stage_best_val_loss = best
        return self._save_usable_model(head_epochs, features_seconds)

    def seconds_since_start(self) -> float:
        """Seconds since the run was created (Start pressed, or `imgclf train` run), to the second."""
        created = runs.read_run_document(self.run_dir).get("created_at")
        return time.time() - datetime.fromisoformat(created).timestamp() if created else math.nan

    def _features_of(self, root: Path, splits: SplitRecords) -> tuple[FeatureSplit, FeatureSplit | None]:
        data_config = self.config.data
        cache_key = feature_cache_key(self.config.model.name, data_config.image_size, data_config.color_mode,
                                      self.config.model.weights)
        records = splits.train + splits.validation
        if self.chief:
            self._write_status(runs.RUNNING, "backbone features: reading the cache")

        def make_embed():
            backbone = keras.Model(self.model.inputs, self.model.get_layer(feature_layer_name(self.model)).output)
            return compiled_embed_function(backbone, data_config.image_size, data_config.channels)

        def report(done: int, total: int) -> None:  # only the images the cache lacks are computed
            if self.chief:
                self._write_status(runs.RUNNING, f"computing backbone features: {done}/{total} images",
                                   step=done, steps=total)

        features = cached_features(root, records, cache_key, data_config, make_embed, report)
        labels = encode_labels(records, self.class_names)
        count = len(splits.train)
        validation = FeatureSplit(features[count:], labels[count:]) if splits.validation else None
        return FeatureSplit(features[:count], labels[:count]), validation

    def _save_usable_model(self, head_epochs: int, features_seconds: float) -> str:
        stopped = self.stop_request.requested
        if not self.chief:
            return runs.STOPPED if stopped else runs.RUNNING
        atomic_write_with(self.run_dir / "model.keras", self.model.save)
        if not stopped:  # a stopped head stage is redone on resume, so it leaves no checkpoint
            self._write_checkpoint()
        runs.write_history(self.run_dir, self.state.history)
        best_accuracy = max((row["val_accuracy"] for row in self.state.history
                             if math.isfinite(row["val_accuracy"])), default=None)
        # seconds: from Start; features_seconds: of that, decoding and embedding the images not cached yet.
        self.usable_model = {"val_accuracy": best_accuracy, "epoch": self.state.epoch,
                             "seconds": round(self.seconds_since_start(), 1),
                             "features_seconds": round(features_seconds, 1)}
        if stopped:
            return self._finish_stopped()
        self._write_status(runs.RUNNING, "usable model ready: fine-tuning goes on" if head_epochs < self.total_epochs
                           else "usable model ready")
        return runs.RUNNING

    def _prepare_stage(self, stage: str, restore: bool) -> None:
        with self.strategy.scope():
            if stage == HEAD:
                set_trainable_top(self.model, 0.0)
            elif stage == FINE_TUNE:
                set_trainable_top(self.model, self.config.model.fine_tune_fraction)
            rate = self._stage_learning_rate(stage)
            self.optimizer = keras.optimizers.Adam(learning_rate=rate)
            self.optimizer.build(self.model.trainable_variables)
        if restore:
            self._restore_weights_and_optimizer()
        self._compile_steps()

    def _stage_learning_rate(self, stage: str) -> float:
        training = self.config.training
        return training.fine_tune_learning_rate if stage == FINE_TUNE else training.learning_rate

    def _run_epoch(self, stage: str, stage_epochs: int) -> str:
        epoch = self.state.epoch + 1
        started = time.monotonic()
        steps = self._steps_per_epoch(self.data.train)
        totals = np.zeros(3)  # weighted loss sum, correct, count
        iterator = iter(self.strategy.experimental_distribute_dataset(_shard_by_batch(self.data.train)))
        every = self.config.training.progress_every_batches
        for step in range(1, steps + 1):
            self.optimizer.learning_rate.assign(self._learning_rate(stage, stage_epochs, step - 1, steps))
            totals += np.array([float(value) for value in self.train_step(next(iterator))])
            if step % every == 0 or step == steps:
                self._report_progress(epoch, step, steps, totals, started)
            if self.stop_request.requested:
                return runs.STOPPED
        val_loss, val_accuracy = self._validate()
        row = {
            "epoch": epoch, "stage": stage,
            "loss": totals[0] / max(totals[2], 1), "accuracy": totals[1] / max(totals[2], 1),
            "val_loss": val_loss, "val_accuracy": val_accuracy,
            "lr": float(self.optimizer.learning_rate.numpy()), "seconds": round(time.monotonic() - started, 3),
        }
        self._end_epoch(row)
        if self.epoch_listener is not None:
            self.epoch_listener(row, self.model)
        return runs.RUNNING

    def _learning_rate(
        self, stage: str, stage_epochs: int, step: int, steps: int, stage_epoch: int | None = None
    ) -> float:
        base = self._stage_learning_rate(stage) * self.state.lr_scale
        if self.config.training.schedule == "constant":
            return base
        stage_epoch = self.state.stage_epoch if stage_epoch is None else stage_epoch
        progress = (stage_epoch * steps + step) / max(stage_epochs * steps, 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return base * (MIN_LEARNING_RATE_FRACTION + (1 - MIN_LEARNING_RATE_FRACTION) * cosine)

    def _steps_per_epoch(self, dataset: tf.data.Dataset) -> int:
        batches = int(dataset.cardinality().numpy())
        # Workers each get every n-th batch; all must take the same number of steps, or the
        # collective ops wait forever for the one that ran out.
        return max(1, batches // worker_count(self.strategy))

    def _end_epoch(self, row: dict[str, Any]) -> None:
        state = self.state
        state.epoch += 1
        state.stage_epoch += 1
        state.history.append(row)
        # Without a validation split, training loss is all there is to watch.
        monitored = row["val_loss"] if math.isfinite(row["val_loss"]) else row["loss"]
        improved_run = monitored < state.best_val_loss
        warming_up = state.stage_epoch * self._steps_per_epoch(self.data.train) < PATIENCE_WARMUP_STEPS
        if monitored < state.stage_best_val_loss or warming_up:
            state.stage_best_val_loss = min(monitored, state.stage_best_val_loss)
            state.epochs_without_improvement = 0
            state.epochs_since_lr_drop = 0
        else:
            state.epochs_without_improvement += 1
            state.epochs_since_lr_drop += 1
            patience = self.config.training.reduce_lr_patience
            if patience and state.epochs_since_lr_drop >= patience:
                state.lr_scale *= self.config.training.reduce_lr_factor
                state.epochs_since_lr_drop = 0
        if improved_run:
            state.best_val_loss = monitored
        if not self.chief:
            return
        if improved_run or not (self.run_dir / "model.keras").exists():
            atomic_write_with(self.run_dir / "model.keras", self.model.save)
        self._write_checkpoint()
        runs.write_history(self.run_dir, state.history)
        with self.summary_writer.as_default():
            for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
                tf.summary.scalar(key, row[key], step=row["epoch"])
        self.summary_writer.flush()
        self._write_status(runs.RUNNING, f"epoch {row['epoch']} done: validation accuracy {row['val_accuracy']:.1%}")

    def _should_stop_early(self) -> bool:
        patience = self.config.training.early_stopping_patience
        return bool(patience) and self.state.epochs_without_improvement >= patience

    # ------------------------------------------------------------ compiled steps

    def _compile_steps(self) -> None:
        model, optimizer, strategy = self.model, self.optimizer, self.strategy
        class_weight_vector = self.class_weight_vector

        def train_one(images, labels):
            sample_weights = tf.gather(class_weight_vector, labels)
            with tf.GradientTape() as tape:
                probabilities = model(images, training=True)
                per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities) * sample_weights
                loss = tf.nn.compute_average_loss(per_example)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return batch_totals(per_example, probabilities, labels)

        def validate_one(images, labels):
            probabilities = model(images, training=False)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            return batch_totals(per_example, probabilities, labels)

        @tf.function
        def train_step(batch):
            totals = strategy.run(train_one, args=batch)
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in totals]

        @tf.function
        def validate_step(batch):
            totals = strategy.run(validate_one, args=batch)
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in totals]

        self.train_step, self.validate_step = train_step, validate_step

    def _validate(self) -> tuple[float, float]:
        if self.data.validation is None:
            return math.nan, math.nan
        totals = np.zeros(3)
        iterator = iter(self.strategy.experimental_distribute_dataset(_shard_by_batch(self.data.validation)))
        for _ in range(self._steps_per_epoch(self.data.validation)):
            totals += np.array([float(value) for value in self.validate_step(next(iterator))])
        return totals[0] / max(totals[2], 1), totals[1] / max(totals[2], 1)

    # ------------------------------------------------------------ run folder

    def _report_progress(self, epoch: int, step: int, steps: int, totals: np.ndarray, started: float) -> None:
        if not self.chief:
            return
        record = {
            "epoch": epoch, "step": step, "steps": steps,
            "loss": totals[0] / max(totals[2], 1), "accuracy": totals[1] / max(totals[2], 1),
            "lr": float(self.optimizer.learning_rate.numpy()), "seconds": round(time.monotonic() - started, 3),
            "time": runs.now_iso(),
        }
        runs.append_progress(self.run_dir, record)
        self._write_status(runs.RUNNING, f"epoch {epoch}", epoch=epoch, step=step, steps=steps)

    def _write_status(self, state: str, message: str, **fields: Any) -> None:
        fields.setdefault("epoch", self.state.epoch)
        fields.setdefault("usable_model", self.usable_model)
        runs.write_status(
            self.run_dir, state, message=message, epochs=self.total_epochs, notes=self.notes,
            best_val_loss=_finite_or_none(self.state.best_val_loss), **fields,
        )

    def _write_checkpoint(self) -> None:
        folder = self.run_dir / "checkpoint"
        stem = f"epoch-{self.state.epoch:04d}"
        weights_file = folder / f"{stem}.weights.h5"
        optimizer_file = folder / f"{stem}.optimizer.npz"
        atomic_write_with(weights_file, self.model.save_weights)
        values = {f"v{number}": variable.numpy() for number, variable in enumerate(self.optimizer.variables)}
        atomic_write_with(optimizer_file, lambda path: np.savez(path, **values))
        state = {**vars(self.state), "weights": weights_file.name, "optimizer": optimizer_file.name}
        state["best_val_loss"] = _finite_or_none(state["best_val_loss"])
        state["stage_best_val_loss"] = _finite_or_none(state["stage_best_val_loss"])
        atomic_write_json(folder / "state.json", state)  # the commit point
        for old in folder.glob("epoch-*"):
            if not old.name.startswith(stem):
                old.unlink(missing_ok=True)

    def _restore_weights_and_optimizer(self) -> None:
        folder = self.run_dir / "checkpoint"
        saved = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        self.model.load_weights(folder / saved["weights"])
        with np.load(folder / saved["optimizer"]) as stored:
            values = [stored[f"v{number}"] for number in range(len(stored.files))]
        if len(values) != len(self.optimizer.variables):
            raise ValueError(f"checkpoint optimizer state does not match the model: {folder}")
        for variable, value in zip(self.optimizer.variables, values):
            variable.assign(value)

    def _finish_stopped(self) -> str:
        if self.chief:
            if not (self.run_dir / "model.keras").exists():
                atomic_write_with(self.run_dir / "model.keras", self.model.save)
            self._write_status(
                runs.STOPPED,
                f"stopped during epoch {self.state.epoch + 1}; resume continues after epoch {self.state.epoch}",
            )
        return runs.STOPPED

    def _finish(self) -> str:
        if self.chief:
            self._write_status(runs.RUNNING, "evaluating the best model on the held-out images")
            write_run_evaluation(self.run_dir, self.data)
            self._write_status(runs.FINISHED, "finished")
        return runs.FINISHED


def write_run_evaluation(run_dir: Path, data: TrainingData) -> None:
    """evaluation.json (a section per split) and predictions.csv of the run's best model on its held-out images."""
    from imgclf_core.training.evaluation import evaluate_predictions, write_predictions_csv
    from imgclf_core.models.model_io import load_model_checked

    held_out = [(split, dataset, records) for split, dataset, records in (
        (VALIDATION, data.validation, data.validation_records), (TEST, data.test, data.test_records),
    ) if dataset is not None]
    if not held_out:
        return
    model = load_model_checked(run_dir / "model.keras", expected_num_classes=len(data.class_names))
    predict = tf.function(lambda images: model(images, training=False))
    class_names = list(data.class_names)
    evaluation, paths, splits, true_parts, probability_parts = {}, [], [], [], []
    for split, dataset, records in held_out:
        probabilities = np.concatenate([predict(images).numpy() for images, _ in dataset])
        true_indices = np.concatenate([labels.numpy() for _, labels in dataset])
        evaluation[split] = evaluate_predictions(true_indices, probabilities, class_names)
        paths += [record.path for record in records]
        splits += [split] * len(records)
        true_parts.append(true_indices)
        probability_parts.append(probabilities)
    atomic_write_json(run_dir / "evaluation.json", evaluation)
    write_predictions_csv(run_dir / "predictions.csv", paths, np.concatenate(true_parts),
                          np.concatenate(probability_parts), class_names, splits=splits)


def _shard_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Workers take every n-th batch (the data is an in-memory array, not files to split)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _read_checkpoint_state(run_dir: Path) -> LoopState | None:
    path = run_dir / "checkpoint" / "state.json"
    if not path.exists():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    known = {name: saved[name] for name in LoopState.__dataclass_fields__ if name in saved}
    for name in ("best_val_loss", "stage_best_val_loss"):
        known[name] = math.inf if known.get(name) is None else known[name]
    return LoopState(**known)


def _stage_done(state: LoopState, stages: list[tuple[str, int]], stage: str) -> bool:
    """On resume: a stage before the checkpoint's stage is done; the checkpoint's own may be."""
    names = [name for name, _ in stages]
    return names.index(stage) < names.index(state.stage) if state.stage in names else False


def _next_stage(state: LoopState, stage: str) -> LoopState:
    return LoopState(
        epoch=state.epoch, stage=stage, best_val_loss=state.best_val_loss, history=state.history,
    )
