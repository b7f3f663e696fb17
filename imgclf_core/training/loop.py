"""The epoch loop: stages, epochs and strategy-compiled steps, with its policies and writers as parts.

A custom loop (`strategy.run` over a distributed dataset) rather than `model.fit`, because Keras 3's
fit does not work under MultiWorkerMirroredStrategy; the same loop serves the default strategy,
MirroredStrategy and MultiWorkerMirroredStrategy. The loop itself only trains and validates; at each
point (step start and end, epoch end, stop, finish) it calls its parts in order (see loop_parts), and
they set the learning rate, decide when a stage ends and write the run folder.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf
import keras

from imgclf_core.config import RunConfig
from imgclf_core.data.pipeline import TrainingData
from imgclf_core.models.registry import set_trainable_top
from imgclf_core.training.feature_head import batch_totals
from imgclf_core.training.loop_parts import FINE_TUNE, HEAD, EpochEnd, LoopPart, LoopState, StepPosition
from imgclf_core.training.loop_policies import (
    EarlyStopping, LearningRateSchedule, ReduceOnPlateau, record_epoch_losses, stage_learning_rate,
)
from imgclf_core.training.loop_writers import (
    CheckpointWriter, EvaluationWriter, HistoryWriter, ModelWriter, ProgressWriter, StatusWriter,
    TensorBoardWriter, restore_checkpoint,
)
from imgclf_core.training.run_folder import FINISHED, RUNNING, STOPPED, RunFolder
from imgclf_core.training.weight_average import WeightAverage

# (history row, model) after each finished epoch: benchmarks measure test accuracy per epoch with it.
EpochListener = Callable[[dict, "keras.Model"], None]


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks after every batch."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        """Handle SIGTERM and SIGINT from now on (only possible on the main thread)."""
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(signal_number, self._handle)
            except ValueError:
                pass  # not the main thread (e.g. called from a test thread): no signals there

    def _handle(self, signal_number, frame) -> None:
        self.requested = True


@dataclass(frozen=True, eq=False)
class LoopSetup:
    """What a trainer process's epoch loop works with; fixed for the whole process."""

    folder: RunFolder
    chief: bool  # only the chief writes into the run folder
    config: RunConfig
    model: keras.Model
    class_names: tuple[str, ...]
    strategy: tf.distribute.Strategy
    stop_request: StopRequest
    class_weights: np.ndarray | None = None  # per class; None: every class weighs 1
    epoch_listener: EpochListener | None = None
    notes: tuple[str, ...] = ()  # shown with every status (e.g. "classes are imbalanced: ...")
    created_at: str | None = None  # when the run was made (config.json)


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """How many machines train together under `strategy` (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    cluster = resolver.cluster_spec()
    return max(1, sum(cluster.num_tasks(job) for job in cluster.jobs))


class CallEpochListener(LoopPart):
    """Hands every finished epoch's row and the model to the setup's listener, on every worker."""

    def __init__(self, listener: EpochListener) -> None:
        self.listener = listener

    def on_epoch_end(self, loop: EpochLoop, epoch: EpochEnd) -> None:
        self.listener(epoch.row, loop.setup.model)


def standard_parts(setup: LoopSetup, evaluate_run: Callable[[Path, TrainingData], None]) -> list[LoopPart]:
    """The policies, then the writers, then the listener, in the order the loop calls them."""
    training = setup.config.training
    parts: list[LoopPart] = [
        LearningRateSchedule(training),
        ReduceOnPlateau(training.reduce_lr_patience, training.reduce_lr_factor),
        EarlyStopping(training.early_stopping_patience),
        # Checkpoint before history: history.csv never shows an epoch that a resume would train again,
        # except after a hard kill within save_every_seconds of the last write.
        ProgressWriter(training.progress_every_batches),
        ModelWriter(training.save_every_seconds),
        CheckpointWriter(training.save_every_seconds),
        HistoryWriter(),
        TensorBoardWriter(setup.folder, setup.chief),
        EvaluationWriter(evaluate_run),
        StatusWriter(),
    ]
    if setup.epoch_listener is not None:
        parts.append(CallEpochListener(setup.epoch_listener))
    return parts


class EpochLoop:
    """The stages and epochs of one trainer process, calling its parts at every step, epoch end, stop and finish."""

    def __init__(self, setup: LoopSetup, parts: Sequence[LoopPart], *, state: LoopState | None = None,
                 usable_model: dict[str, Any] | None = None) -> None:
        self.setup = setup
        self.parts = list(parts)
        self.state = state or LoopState()
        # {"val_accuracy", "epoch", "seconds", "features_seconds"} once a usable model is written.
        self.usable_model = usable_model
        self.notes = list(setup.notes)
        self.data: TrainingData | None = None  # decoded images, from run()
        self.optimizer: keras.optimizers.Optimizer | None = None  # one per stage
        # Per stage, when the config asks for it (never in the head stage). Outside the training steps the
        # model holds the averaged weights: validation, the saved model and checkpoints all see them.
        self.weight_average: WeightAverage | None = None
        self._averaged_in_model = False
        weights = setup.class_weights if setup.class_weights is not None else np.ones(len(setup.class_names))
        self.class_weight_vector = tf.constant(np.asarray(weights, "float32"))

    # ------------------------------------------------------------ stages and epochs

    def run(self, data: TrainingData, stages: list[tuple[str, int]]) -> str:
        """Train the stages not done yet (after a checkpoint: from its epoch on); FINISHED or STOPPED."""
        self.data = data
        try:
            return self._run_stages(stages)
        except BaseException:
            self._write_pending_after_failure()
            raise

    def _run_stages(self, stages: list[tuple[str, int]]) -> str:
        restored = self.state.epoch > 0
        for stage, stage_epochs in stages:
            if restored and _stage_done(self.state, stages, stage):
                continue
            if self.state.stage != stage:
                self.state = _next_stage(self.state, stage)
            self.prepare_stage(stage, restore=restored)
            restored = False
            while self.state.stage_epoch < stage_epochs and not self._stage_ends():
                if self._run_epoch(stage, stage_epochs) == STOPPED:
                    return self.stop()
        return self.finish()

    def _write_pending_after_failure(self) -> None:
        """Each part's on_failure; one that fails too is reported, and the run's own error is the one raised."""
        for part in self.parts:
            try:
                part.on_failure(self)
            except Exception as error:  # noqa: BLE001 - e.g. the same full disk; the first error matters
                print(f"imgclf: after the error, {type(part).__name__} could not write: {error}",
                      file=sys.stderr, flush=True)

    def prepare_stage(self, stage: str, restore: bool) -> None:
        """Set what trains in `stage`, a fresh optimizer (restored from the checkpoint if asked) and the steps."""
        model = self.setup.model
        with self.setup.strategy.scope():
            if stage == HEAD:
                set_trainable_top(model, 0.0)
            elif stage == FINE_TUNE:
                set_trainable_top(model, self.setup.config.model.fine_tune_fraction)
            self.optimizer = keras.optimizers.Adam(learning_rate=stage_learning_rate(self.setup.config.training, stage))
            self.optimizer.build(model.trainable_variables)
            decay = self.setup.config.training.weight_average_decay
            self.weight_average = WeightAverage(model, decay) if decay and stage != HEAD else None
        self._averaged_in_model = False
        if restore:
            restore_checkpoint(self)
            # A checkpoint is written at an epoch's end, with the averaged weights in the model.
            self._averaged_in_model = self.weight_average is not None
        self._compile_steps()

    def training_variables(self) -> list:
        """The optimizer's variables and the weight average's: what a checkpoint keeps besides the weights."""
        averaged = self.weight_average.variables if self.weight_average is not None else []
        return [*self.optimizer.variables, *averaged]

    def _hold_averaged_weights(self, averaged: bool) -> None:
        """Put the averaged (True) or the training (False) weights into the model, if averaging."""
        if self.weight_average is not None and self._averaged_in_model != averaged:
            self.weight_average.swap()
            self._averaged_in_model = averaged

    def stop(self) -> str:
        """End on a stop request: the parts save what they must; STOPPED."""
        self._hold_averaged_weights(True)
        for part in self.parts:
            part.on_stop(self)
        return STOPPED

    def finish(self) -> str:
        """End after the last stage: the parts evaluate and record it; FINISHED."""
        for part in self.parts:
            part.on_finish(self)
        return FINISHED

    def _stage_ends(self) -> bool:
        return any(part.ends_stage(self) for part in self.parts)

    def _run_epoch(self, stage: str, stage_epochs: int) -> str:
        epoch, started = self.state.epoch + 1, time.monotonic()
        steps = self._steps_per_epoch(self.data.train)
        totals = np.zeros(3)  # weighted loss sum, correct, count
        iterator = iter(self.setup.strategy.experimental_distribute_dataset(_shard_by_batch(self.data.train)))
        self._hold_averaged_weights(False)
        for step in range(1, steps + 1):
            position = StepPosition(epoch, stage, stage_epochs, step, steps, started)
            for part in self.parts:
                part.on_step_start(self, position)
            totals += np.array([float(value) for value in self.train_step(next(iterator))])
            for part in self.parts:
                part.on_step_end(self, position, totals)
            if self.setup.stop_request.requested:
                return STOPPED
        self._hold_averaged_weights(True)
        val_loss, val_accuracy = self._validate()
        self._end_epoch({
            "epoch": epoch, "stage": stage,
            "loss": totals[0] / max(totals[2], 1), "accuracy": totals[1] / max(totals[2], 1),
            "val_loss": val_loss, "val_accuracy": val_accuracy,
            "lr": float(self.optimizer.learning_rate.numpy()), "seconds": round(time.monotonic() - started, 3),
        })
        return RUNNING

    def _end_epoch(self, row: dict[str, Any]) -> None:
        state = self.state
        state.epoch += 1
        state.stage_epoch += 1
        state.history.append(row)
        epoch = record_epoch_losses(state, row, state.stage_epoch * self._steps_per_epoch(self.data.train))
        for part in self.parts:
            part.on_epoch_end(self, epoch)

    def _steps_per_epoch(self, dataset: tf.data.Dataset) -> int:
        batches = int(dataset.cardinality().numpy())
        # Workers each get every n-th batch; all must take the same number of steps, or the
        # collective ops wait forever for the one that ran out.
        return max(1, batches // worker_count(self.setup.strategy))

    # ------------------------------------------------------------ compiled steps

    def _compile_steps(self) -> None:
        model, optimizer, strategy = self.setup.model, self.optimizer, self.setup.strategy
        class_weight_vector = self.class_weight_vector
        weight_average = self.weight_average
        smoothing = self.setup.config.training.label_smoothing
        classes = len(self.setup.class_names)

        def train_one(images, labels):
            sample_weights = tf.gather(class_weight_vector, labels)
            with tf.GradientTape() as tape:
                probabilities = model(images, training=True)
                per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
                if smoothing:
                    objective = keras.losses.categorical_crossentropy(
                        tf.one_hot(labels, classes), probabilities, label_smoothing=smoothing)
                else:
                    objective = per_example
                loss = tf.nn.compute_average_loss(objective * sample_weights)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            if weight_average is not None:
                weight_average.update()
            # The reported loss is the plain cross-entropy (as validation's), whatever the objective.
            return batch_totals(per_example * sample_weights, probabilities, labels)

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
        iterator = iter(self.setup.strategy.experimental_distribute_dataset(_shard_by_batch(self.data.validation)))
        for _ in range(self._steps_per_epoch(self.data.validation)):
            totals += np.array([float(value) for value in self.validate_step(next(iterator))])
        return totals[0] / max(totals[2], 1), totals[1] / max(totals[2], 1)


def _shard_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Workers take every n-th batch (the data is an in-memory array, not files to split)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _stage_done(state: LoopState, stages: list[tuple[str, int]], stage: str) -> bool:
    """On resume: a stage before the checkpoint's stage is done; the checkpoint's own may be."""
    names = [name for name, _ in stages]
    return names.index(stage) < names.index(state.stage) if state.stage in names else False


def _next_stage(state: LoopState, stage: str) -> LoopState:
    """A new stage starts its own counts and learning rate; the run's epoch, best loss and history go on."""
    return LoopState(epoch=state.epoch, stage=stage, best_val_loss=state.best_val_loss, history=state.history)
