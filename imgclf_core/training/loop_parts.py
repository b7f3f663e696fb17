"""What the epoch loop and its parts share: the loop state a checkpoint restores, the points the loop
calls its parts at, and the part base class.

A part has one job: a policy (the learning-rate schedule, reduce-on-plateau, early stopping) or a
writer (model, checkpoint, history, TensorBoard, progress, status, evaluation). The loop calls every
part at each point in the order it was given (policies first, so the writers save what the policies
decided), and a part overrides only the hooks it needs. A new part is added to the list without
touching the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from imgclf_core.training.loop import EpochLoop

HEAD, FINE_TUNE, FULL = "head", "fine_tune", "full"


@dataclass
class LoopState:
    """What a checkpoint must restore for training to continue exactly where it left off."""

    epoch: int = 0  # finished epochs, all stages
    stage: str = FULL
    stage_epoch: int = 0  # finished epochs in this stage
    best_val_loss: float = math.inf  # over the whole run: decides model.keras
    stage_best_val_loss: float = math.inf
    epochs_without_improvement: int = 0  # early stopping's count
    epochs_since_lr_drop: int = 0  # reduce-on-plateau's count
    lr_scale: float = 1.0  # what reduce-on-plateau has made of the stage's learning rate
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StepPosition:
    """Where a training step is: its epoch (1-based, all stages), stage, and step (1-based) of the epoch's."""

    epoch: int
    stage: str
    stage_epochs: int  # the stage's planned epochs
    step: int
    steps: int
    started: float  # time.monotonic() when the epoch began


@dataclass(frozen=True)
class EpochEnd:
    """A finished epoch: its history row and whether its monitored loss improved."""

    row: dict[str, Any]
    improved_run: bool  # lower than every earlier epoch of the run: the best model so far
    # Lower than the stage's best so far, or still within the warm-up: the patience counts start over.
    improved_in_stage: bool


class LoopPart:
    """One job in the epoch loop; every hook does nothing unless the part overrides it."""

    def on_step_start(self, loop: EpochLoop, position: StepPosition) -> None:
        """Before each training step."""

    def on_step_end(self, loop: EpochLoop, position: StepPosition, totals: np.ndarray) -> None:
        """After each training step; `totals` is the epoch's (weighted loss sum, correct, count) so far."""

    def on_epoch_end(self, loop: EpochLoop, epoch: EpochEnd) -> None:
        """After validation, once loop.state counts the epoch and its best losses."""

    def ends_stage(self, loop: EpochLoop) -> bool:
        """Asked before each epoch: True ends the stage early."""
        return False

    def on_stop(self, loop: EpochLoop) -> None:
        """A stop was requested: the batch in progress has finished and training ends here."""

    def on_finish(self, loop: EpochLoop) -> None:
        """Every stage has run to its end (or ended early)."""

    def on_failure(self, loop: EpochLoop) -> None:
        """Training raised: write what waits in memory, if anything; the error goes on up afterwards."""
