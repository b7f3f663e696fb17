"""The epoch loop's writers, one part each: model, checkpoint, history, TensorBoard, progress,
status and the final evaluation; and the checkpoint's reader beside its writer.

Only the chief writes into the run folder: on every other worker each writer's hooks do nothing.
Each writer writes through the run folder (RunFolder), which names the files and writes them atomically.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import tensorflow as tf

from imgclf_core.training.loop_parts import EpochEnd, LoopPart, LoopState, StepPosition
from imgclf_core.training.run_folder import FINISHED, RUNNING, STOPPED, RunFolder, now_iso

if TYPE_CHECKING:
    import keras

    from imgclf_core.data.pipeline import TrainingData
    from imgclf_core.training.loop import EpochLoop

TENSORBOARD_SCALARS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")


def finite_or_none(value: float | None) -> float | None:
    """The value as a float, or None for None, nan and infinity (JSON has no infinity)."""
    return None if value is None or not math.isfinite(value) else float(value)


def write_loop_status(loop: EpochLoop, state: str, message: str, **fields: Any) -> None:
    """status.json with what every status of the loop carries: planned epochs, notes, best loss, usable model."""
    fields.setdefault("epoch", loop.state.epoch)
    fields.setdefault("usable_model", loop.usable_model)
    loop.setup.folder.write_status(
        state, message=message, epochs=loop.setup.config.training.total_epochs, notes=loop.notes,
        best_val_loss=finite_or_none(loop.state.best_val_loss), **fields,
    )


# ---------------------------------------------------------------- weights kept in memory


def snapshot_weights(model: keras.Model) -> list[np.ndarray]:
    """A copy of every weight of the model, in model.weights order."""
    return [weight.numpy() for weight in model.weights]


@contextmanager
def weights_held(model: keras.Model, values: list[np.ndarray]) -> Iterator[None]:
    """Inside the block the model holds `values` (a snapshot of it); after it, its own weights again."""
    own = snapshot_weights(model)
    for weight, value in zip(model.weights, values):
        weight.assign(value)
    try:
        yield
    finally:
        for weight, value in zip(model.weights, own):
            weight.assign(value)


class WriteTimer:
    """Writes at most every `seconds`: whether one is due, counted from the last (or from the start)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.seconds

    def wrote(self) -> None:
        self.last = time.monotonic()


# ---------------------------------------------------------------- checkpoint


@dataclass(frozen=True)
class CheckpointSnapshot:
    """What checkpoint/ keeps of one epoch's end, copied into memory: weights, optimizer and average, loop state."""

    weights: list[np.ndarray]
    variables: list[np.ndarray]
    state: dict[str, Any]


def checkpoint_snapshot(loop: EpochLoop) -> CheckpointSnapshot:
    """The loop as it is now, in memory (the training goes on changing the model, not this)."""
    state = copy.deepcopy(vars(loop.state))
    state["best_val_loss"] = finite_or_none(state["best_val_loss"])
    state["stage_best_val_loss"] = finite_or_none(state["stage_best_val_loss"])
    return CheckpointSnapshot(snapshot_weights(loop.setup.model),
                              [variable.numpy() for variable in loop.training_variables()], state)


def save_checkpoint(loop: EpochLoop, snapshot: CheckpointSnapshot | None = None) -> None:
    """checkpoint/: the model's weights, the optimizer's (and weight average's) variables and the loop state
    of `snapshot` (an earlier epoch's end), or of the loop as it is now."""
    snapshot = snapshot or checkpoint_snapshot(loop)
    model = loop.setup.model

    def write_weights(path: Path) -> None:
        with weights_held(model, snapshot.weights):
            model.save_weights(path)

    values = {f"v{number}": value for number, value in enumerate(snapshot.variables)}
    loop.setup.folder.write_checkpoint(
        snapshot.state["epoch"], write_weights, lambda path: np.savez(path, **values), snapshot.state,
    )


def read_checkpoint_state(folder: RunFolder) -> LoopState | None:
    """The loop state of the run's checkpoint, or None when it has none."""
    saved = folder.read_checkpoint_state()
    if saved is None:
        return None
    known = {name: saved[name] for name in LoopState.__dataclass_fields__ if name in saved}
    for name in ("best_val_loss", "stage_best_val_loss"):
        known[name] = math.inf if known.get(name) is None else known[name]
    return LoopState(**known)


def restore_checkpoint(loop: EpochLoop) -> None:
    """Load the checkpoint's weights into the model and its variables into the optimizer and weight average
    (built for them)."""
    folder = loop.setup.folder
    saved = folder.read_checkpoint_state()
    loop.setup.model.load_weights(folder.checkpoint_file(saved["weights"]))
    with np.load(folder.checkpoint_file(saved["optimizer"])) as stored:
        values = [stored[f"v{number}"] for number in range(len(stored.files))]
    variables = loop.training_variables()
    if len(values) != len(variables):
        raise ValueError(f"checkpoint optimizer state does not match the model: {folder.checkpoint_dir}")
    for variable, value in zip(variables, values):
        variable.assign(value)


# ---------------------------------------------------------------- writer parts


class DeferredWriter(LoopPart):
    """A writer whose latest value waits in memory (`pending`): written when `save_every_seconds` have passed
    since the last write, and on stop, finish or an error. A subclass sets `pending` and says how to `write` it."""

    def __init__(self, save_every_seconds: float = 0.0) -> None:
        self.timer = WriteTimer(save_every_seconds)
        self.pending: Any = None

    def write(self, loop: EpochLoop, value: Any) -> None:
        raise NotImplementedError

    def write_if_due(self, loop: EpochLoop) -> None:
        if self.timer.due():
            self.write_pending(loop)

    def write_pending(self, loop: EpochLoop) -> None:
        if self.pending is None:
            return
        self.write(loop, self.pending)
        self.pending = None
        self.timer.wrote()

    def write_pending_as_chief(self, loop: EpochLoop) -> None:
        if loop.setup.chief:
            self.write_pending(loop)

    on_stop = on_finish = on_failure = write_pending_as_chief


class ModelWriter(DeferredWriter):
    """model.keras: the best epoch by monitored loss, and always a model once an epoch or a stop has passed.

    The first model is written at once; a better epoch's weights after it (`pending`) wait in memory and are
    written when `save_every_seconds` have passed since the last write, and on stop, finish or an error.
    """

    def on_epoch_end(self, loop: EpochLoop, epoch: EpochEnd) -> None:
        if not loop.setup.chief:
            return
        if not loop.setup.folder.has_model():  # the first usable model: at once
            loop.setup.folder.save_model(loop.setup.model)
            self.timer.wrote()
            return
        if epoch.improved_run:
            self.pending = snapshot_weights(loop.setup.model)
        self.write_if_due(loop)

    def on_stop(self, loop: EpochLoop) -> None:
        super().on_stop(loop)
        if loop.setup.chief and not loop.setup.folder.has_model():
            loop.setup.folder.save_model(loop.setup.model)

    def write(self, loop: EpochLoop, value: list[np.ndarray]) -> None:
        with weights_held(loop.setup.model, value):
            loop.setup.folder.save_model(loop.setup.model)


class CheckpointWriter(DeferredWriter):
    """checkpoint/ for resume: every epoch's end is kept in memory (`pending`), written when `save_every_seconds`
    have passed since the last write, and on stop, finish or an error."""

    def on_epoch_end(self, loop: EpochLoop, epoch: EpochEnd) -> None:
        if loop.setup.chief:
            self.pending = checkpoint_snapshot(loop)
            self.write_if_due(loop)

    def write(self, loop: EpochLoop, value: CheckpointSnapshot) -> None:
        save_checkpoint(loop, value)


class HistoryWriter(LoopPart):
    """history.csv after every epoch: all rows so far."""

    def on_epoch_end(self, loop: EpochLoop, epoch: EpochEnd) -> None:
        if loop.setup.chief:
            loop.setup.folder.write_history(loop.state.history)


class TensorBoardWriter(LoopPart):
    """The epoch's figures as TensorBoard scalars under tensorboard/."""

    def __init__(self, folder: RunFolder, chief: bool) -> None:
        self.summary_writer = tf.summary.create_file_writer(str(folder.tensorboard_dir)) if chief else None

    def on_epoch_end(self, loop: EpochLoop, epoch: EpochEnd) -> None:
        if self.summary_writer is None:
            return
        with self.summary_writer.as_default():
            for key in TENSORBOARD_SCALARS:
                tf.summary.scalar(key, epoch.row[key], step=epoch.row["epoch"])
        self.summary_writer.flush()


class ProgressWriter(LoopPart):
    """A progress.jsonl line and a status every `every` batches and at an epoch's last batch: live curves."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_step_end(self, loop: EpochLoop, position: StepPosition, totals: np.ndarray) -> None:
        step, steps = position.step, position.steps
        if not loop.setup.chief or not (step % self.every == 0 or step == steps):
            return
        loop.setup.folder.append_progress({
            "epoch": position.epoch, "step": step, "steps": steps,
            "loss": totals[0] / max(totals[2], 1), "accuracy": totals[1] / max(totals[2], 1),
            "lr": float(loop.optimizer.learning_rate.numpy()),
            "seconds": round(time.monotonic() - position.started, 3), "time": now_iso(),
        })
        write_loop_status(loop, RUNNING, f"epoch {position.epoch}", epoch=position.epoch, step=step, steps=steps)


class EvaluationWriter(LoopPart):
    """evaluation.json and predictions.csv of the best model on the held-out images, when training ends."""

    def __init__(self, evaluate_run: Callable[[Path, TrainingData], None]) -> None:
        self.evaluate_run = evaluate_run

    def on_finish(self, loop: EpochLoop) -> None:
        if loop.setup.chief:
            write_loop_status(loop, RUNNING, "evaluating the best model on the held-out images")
            self.evaluate_run(loop.setup.folder.path, loop.data)


class StatusWriter(LoopPart):
    """status.json after every epoch, and the final state: stopped or finished."""

    def on_epoch_end(self, loop: EpochLoop, epoch: EpochEnd) -> None:
        if loop.setup.chief:
            row = epoch.row
            message = f"epoch {row['epoch']} done: validation accuracy {row['val_accuracy']:.1%}"
            write_loop_status(loop, RUNNING, message)

    def on_stop(self, loop: EpochLoop) -> None:
        if loop.setup.chief:
            epoch = loop.state.epoch
            write_loop_status(loop, STOPPED, f"stopped during epoch {epoch + 1}; resume continues after epoch {epoch}")

    def on_finish(self, loop: EpochLoop) -> None:
        if loop.setup.chief:
            write_loop_status(loop, FINISHED, "finished")
