"""The epoch loop's policies, one part each: the learning-rate schedule, reduce-on-plateau and early
stopping, and the measure of improvement the two patience policies share.

Policies change only the loop state (or the optimizer's learning rate); they never write files.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from imgclf_core.config import TrainingConfig
from imgclf_core.training.loop_parts import FINE_TUNE, EpochEnd, LoopPart, LoopState, StepPosition

if TYPE_CHECKING:
    from imgclf_core.training.loop import EpochLoop

MIN_LEARNING_RATE_FRACTION = 0.01  # cosine decays to this fraction of the stage's rate, not to 0
# Early stopping and reduce-on-plateau start counting only after this many steps of a stage: on a
# small dataset (a few batches per epoch) batch-norm statistics need that long to settle, and the
# validation loss stays flat until they do (measured: 180 images, 5 steps per epoch, validation
# accuracy at chance for 5 epochs, then 100%; without this, early stopping ended the run first).
PATIENCE_WARMUP_STEPS = 100


def record_epoch_losses(state: LoopState, row: dict[str, Any], stage_steps_done: int) -> EpochEnd:
    """Lower the run's and the stage's best loss to this epoch's where it is better; say which improved.

    `stage_steps_done` is the number of training steps the stage has taken, this epoch's included.
    """
    # Without a validation split, training loss is all there is to watch.
    monitored = row["val_loss"] if math.isfinite(row["val_loss"]) else row["loss"]
    improved_run = monitored < state.best_val_loss
    improved_in_stage = monitored < state.stage_best_val_loss or stage_steps_done < PATIENCE_WARMUP_STEPS
    if improved_in_stage:
        state.stage_best_val_loss = min(monitored, state.stage_best_val_loss)
    if improved_run:
        state.best_val_loss = monitored
    return EpochEnd(row, improved_run=improved_run, improved_in_stage=improved_in_stage)


def stage_learning_rate(training: TrainingConfig, stage: str) -> float:
    """The configured learning rate of `stage`, before any schedule or plateau scaling."""
    return training.fine_tune_learning_rate if stage == FINE_TUNE else training.learning_rate


class LearningRateSchedule(LoopPart):
    """Sets each step's learning rate: the stage's rate times the plateau scale, rising linearly over
    the stage's warm-up epochs, then cosine-decayed over the rest of the stage unless the schedule is
    "constant"."""

    def __init__(self, training: TrainingConfig) -> None:
        self.training = training

    def rate(self, stage: str, stage_epochs: int, stage_epoch: int, step: int, steps: int,
             lr_scale: float = 1.0) -> float:
        """The rate of zero-based `step` of `steps` in zero-based `stage_epoch` of the stage's `stage_epochs`."""
        base = stage_learning_rate(self.training, stage) * lr_scale
        done = stage_epoch * steps + step
        warmup = min(self.training.warmup_epochs, stage_epochs) * steps
        if done < warmup:
            return base * (done + 1) / warmup
        if self.training.schedule == "constant":
            return base
        progress = (done - warmup) / max(stage_epochs * steps - warmup, 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return base * (MIN_LEARNING_RATE_FRACTION + (1 - MIN_LEARNING_RATE_FRACTION) * cosine)

    def on_step_start(self, loop: EpochLoop, position: StepPosition) -> None:
        state = loop.state
        rate = self.rate(position.stage, position.stage_epochs, state.stage_epoch, position.step - 1,
                         position.steps, state.lr_scale)
        loop.optimizer.learning_rate.assign(rate)


class ReduceOnPlateau(LoopPart):
    """Multiplies the stage's learning rate by `factor` after `patience` epochs without improvement (0: never)."""

    def __init__(self, patience: int, factor: float) -> None:
        self.patience, self.factor = patience, factor

    def on_epoch_end(self, loop: EpochLoop, epoch: EpochEnd) -> None:
        state = loop.state
        if epoch.improved_in_stage:
            state.epochs_since_lr_drop = 0
            return
        state.epochs_since_lr_drop += 1
        if self.patience and state.epochs_since_lr_drop >= self.patience:
            state.lr_scale *= self.factor
            state.epochs_since_lr_drop = 0


class EarlyStopping(LoopPart):
    """Ends a stage after `patience` epochs without improvement of the monitored loss (0: never)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_epoch_end(self, loop: EpochLoop, epoch: EpochEnd) -> None:
        state = loop.state
        state.epochs_without_improvement = 0 if epoch.improved_in_stage else state.epochs_without_improvement + 1

    def ends_stage(self, loop: EpochLoop) -> bool:
        return bool(self.patience) and loop.state.epochs_without_improvement >= self.patience
