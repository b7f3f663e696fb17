"""The epoch loop's parts on their own: the patience policies, the learning-rate schedule and the writers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from imgclf_core.config import RunConfig, TrainingConfig  # noqa: E402
from imgclf_core.training.loop import EpochLoop, LoopSetup, StopRequest  # noqa: E402
from imgclf_core.training.loop_parts import FINE_TUNE, FULL, EpochEnd, LoopPart, StepPosition  # noqa: E402
from imgclf_core.training.loop_policies import (  # noqa: E402
    MIN_LEARNING_RATE_FRACTION, PATIENCE_WARMUP_STEPS, EarlyStopping, LearningRateSchedule, ReduceOnPlateau,
    record_epoch_losses,
)
from imgclf_core.training.loop_writers import (  # noqa: E402
    CheckpointWriter, EvaluationWriter, HistoryWriter, ModelWriter, ProgressWriter, StatusWriter,
    TensorBoardWriter, read_checkpoint_state, restore_checkpoint,
)
from imgclf_core.training.run_folder import RunFolder  # noqa: E402


def make_loop(run_dir: Path, chief: bool = True, parts: list[LoopPart] | None = None, **training) -> EpochLoop:
    """A real loop over a two-class Dense model, its optimizer built for the full stage; no data."""
    run_dir.mkdir(parents=True, exist_ok=True)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    setup = LoopSetup(
        folder=RunFolder(run_dir), chief=chief,
        config=RunConfig(data_dir=str(run_dir), training=TrainingConfig(**{"epochs": 4, **training})),
        model=model, class_names=("a", "b"), strategy=tf.distribute.get_strategy(), stop_request=StopRequest(),
    )
    loop = EpochLoop(setup, parts or [])
    loop.prepare_stage(FULL, restore=False)
    return loop


def epoch_end(loop: EpochLoop, improved: bool, val_loss: float = 0.5) -> EpochEnd:
    """Count one more epoch in the loop's state, as the loop does before calling its parts."""
    loop.state.epoch += 1
    loop.state.stage_epoch += 1
    row = {"epoch": loop.state.epoch, "stage": FULL, "loss": 0.7, "accuracy": 0.5, "val_loss": val_loss,
           "val_accuracy": 0.75, "lr": 1e-3, "seconds": 0.1}
    loop.state.history.append(row)
    return EpochEnd(row, improved_run=improved, improved_in_stage=improved)


# ---------------------------------------------------------------- policies


def test_early_stopping_ends_the_stage_after_patience_epochs_without_improvement(tmp_path):
    stopping = EarlyStopping(patience=2)
    loop = make_loop(tmp_path / "run")
    ends = []
    for improved in (False, True, False, False, False):
        stopping.on_epoch_end(loop, epoch_end(loop, improved))
        ends.append(stopping.ends_stage(loop))
    assert ends == [False, False, False, True, True]
    assert loop.state.epochs_without_improvement == 3
    assert not EarlyStopping(patience=0).ends_stage(loop)  # 0: never stop early


def test_reduce_on_plateau_scales_the_rate_after_its_patience_and_starts_counting_again(tmp_path):
    plateau = ReduceOnPlateau(patience=2, factor=0.5)
    loop = make_loop(tmp_path / "run")
    scales = []
    for improved in (False, False, False, False, True, False):
        plateau.on_epoch_end(loop, epoch_end(loop, improved))
        scales.append(loop.state.lr_scale)
    assert scales == [1.0, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert loop.state.epochs_since_lr_drop == 1
    never = make_loop(tmp_path / "never")
    for _ in range(5):
        ReduceOnPlateau(patience=0, factor=0.5).on_epoch_end(never, epoch_end(never, False))
    assert never.state.lr_scale == 1.0


def test_epoch_losses_count_the_warm_up_as_improvement_and_fall_back_to_training_loss(tmp_path):
    state = make_loop(tmp_path / "run").state
    first = record_epoch_losses(state, {"loss": 0.9, "val_loss": 0.5}, stage_steps_done=10)
    assert (first.improved_run, first.improved_in_stage, state.best_val_loss) == (True, True, 0.5)
    worse_in_warm_up = record_epoch_losses(state, {"loss": 0.9, "val_loss": 0.6}, PATIENCE_WARMUP_STEPS - 1)
    assert (worse_in_warm_up.improved_run, worse_in_warm_up.improved_in_stage) == (False, True)
    worse_after = record_epoch_losses(state, {"loss": 0.9, "val_loss": 0.6}, PATIENCE_WARMUP_STEPS)
    assert (worse_after.improved_run, worse_after.improved_in_stage) == (False, False)
    no_validation = record_epoch_losses(state, {"loss": 0.2, "val_loss": math.nan}, PATIENCE_WARMUP_STEPS)
    assert no_validation.improved_run and state.best_val_loss == state.stage_best_val_loss == 0.2


def test_the_schedule_decays_each_stage_by_cosine_and_sets_the_optimizer_rate(tmp_path):
    training = TrainingConfig(learning_rate=1e-2, fine_tune_learning_rate=1e-4)
    schedule = LearningRateSchedule(training)
    assert schedule.rate(FULL, 4, 0, 0, 10) == pytest.approx(1e-2)
    assert schedule.rate(FULL, 4, 2, 0, 10) == pytest.approx(1e-2 * (MIN_LEARNING_RATE_FRACTION + 0.99 * 0.5))
    assert schedule.rate(FULL, 4, 4, 0, 10) == pytest.approx(1e-2 * MIN_LEARNING_RATE_FRACTION)
    assert schedule.rate(FINE_TUNE, 4, 0, 0, 10, lr_scale=0.5) == pytest.approx(0.5e-4)
    constant = LearningRateSchedule(TrainingConfig(learning_rate=1e-2, schedule="constant"))
    assert constant.rate(FULL, 4, 3, 9, 10, lr_scale=0.25) == pytest.approx(0.25e-2)

    loop = make_loop(tmp_path / "run", learning_rate=1e-2)
    loop.state.stage_epoch, loop.state.lr_scale = 1, 0.5
    schedule.on_step_start(loop, StepPosition(epoch=2, stage=FULL, stage_epochs=4, step=6, steps=10, started=0.0))
    assert float(loop.optimizer.learning_rate.numpy()) == pytest.approx(schedule.rate(FULL, 4, 1, 5, 10, 0.5))


# ---------------------------------------------------------------- writers


def writers(folder: RunFolder, chief: bool, evaluated: list[Path]) -> list[LoopPart]:
    """Every writer, in the loop's order; the evaluation only notes the run it was asked to evaluate."""
    return [ProgressWriter(every=1), ModelWriter(), CheckpointWriter(), HistoryWriter(),
            TensorBoardWriter(folder, chief), EvaluationWriter(lambda path, data: evaluated.append(path)),
            StatusWriter()]


def call_every_hook(loop: EpochLoop) -> None:
    """One step, one epoch end, a stop and a finish, every part at each, as the loop calls them."""
    position = StepPosition(epoch=1, stage=FULL, stage_epochs=4, step=1, steps=1, started=0.0)
    for part in loop.parts:
        part.on_step_start(loop, position)
        part.on_step_end(loop, position, np.array([0.7, 1.0, 2.0]))
    end = epoch_end(loop, improved=True)
    for part in loop.parts:
        part.on_epoch_end(loop, end)
    for part in loop.parts:
        part.on_stop(loop)
        part.on_finish(loop)


def test_writers_on_a_worker_that_is_not_the_chief_write_nothing(tmp_path):
    folder = RunFolder(tmp_path / "run")
    loop = make_loop(folder.path, chief=False)
    evaluated = []
    loop.parts = writers(folder, chief=False, evaluated=evaluated)
    call_every_hook(loop)
    assert list(folder.path.iterdir()) == [] and evaluated == []


def test_writers_on_the_chief_leave_a_checkpoint_that_restores_the_loop(tmp_path):
    folder = RunFolder(tmp_path / "run")
    loop = make_loop(folder.path, chief=True)
    evaluated = []
    loop.parts = writers(folder, chief=True, evaluated=evaluated)
    loop.state.best_val_loss, loop.state.lr_scale = 0.5, 0.25
    call_every_hook(loop)
    assert sorted(path.name for path in folder.path.iterdir()) == [
        "checkpoint", "history.csv", "model.keras", "progress.jsonl", "status.json", "tensorboard"]
    assert [row["epoch"] for row in folder.read_history()] == [1]
    assert json.loads(folder.status_path.read_text())["state"] == "finished"
    assert evaluated == [folder.path]
    assert read_checkpoint_state(folder) == loop.state

    resumed = make_loop(folder.path)  # a fresh model: other initial weights until restored
    kernel = resumed.setup.model.weights[0]
    assert not np.array_equal(kernel.numpy(), loop.setup.model.weights[0].numpy())
    restore_checkpoint(resumed)
    for restored, saved in zip(resumed.setup.model.weights, loop.setup.model.weights):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())


def test_the_model_writer_replaces_the_model_only_when_the_run_improved(tmp_path):
    folder = RunFolder(tmp_path / "run")
    loop = make_loop(folder.path)
    writer = ModelWriter()
    writer.on_epoch_end(loop, epoch_end(loop, improved=False))  # no model yet: the first one is kept
    assert folder.has_model()
    first = folder.model_path.stat().st_ino  # every save replaces the file: a new inode
    writer.on_epoch_end(loop, epoch_end(loop, improved=False))
    writer.on_stop(loop)
    assert folder.model_path.stat().st_ino == first
    writer.on_epoch_end(loop, epoch_end(loop, improved=True))
    assert folder.model_path.stat().st_ino != first


def test_within_save_every_seconds_the_best_weights_wait_in_memory_and_finish_writes_them(tmp_path):
    from imgclf_core.models.model_io import load_model_checked

    folder = RunFolder(tmp_path / "run")
    loop = make_loop(folder.path)
    writer = ModelWriter(save_every_seconds=3600)
    writer.on_epoch_end(loop, epoch_end(loop, improved=True))  # the first model: written at once
    first = folder.model_path.stat().st_ino
    kernel = loop.setup.model.weights[0]
    kernel.assign(kernel.numpy() + 1.0)
    best = kernel.numpy().copy()
    writer.on_epoch_end(loop, epoch_end(loop, improved=True))  # better, but the last write was just now
    kernel.assign(best + 5.0)
    writer.on_epoch_end(loop, epoch_end(loop, improved=False))
    assert folder.model_path.stat().st_ino == first
    writer.on_finish(loop)
    np.testing.assert_array_equal(load_model_checked(folder.model_path).weights[0].numpy(), best)
    np.testing.assert_array_equal(kernel.numpy(), best + 5.0)  # the model got its own weights back
    written = folder.model_path.stat().st_ino
    writer.on_finish(loop)  # nothing waits any more
    assert folder.model_path.stat().st_ino == written


def test_an_error_in_training_still_writes_the_last_finished_epochs_checkpoint(tmp_path):
    from imgclf_core.data.pipeline import TrainingData, make_dataset

    images = np.random.default_rng(1).integers(0, 255, (32, 3)).astype("uint8")
    labels = (images.mean(axis=1) > 127).astype("int32")

    class FailInEpochThree(LoopPart):
        def on_step_end(self, loop, position, totals):
            if position.epoch == 3:
                raise RuntimeError("out of memory, say")

    folder = RunFolder(tmp_path / "run")
    loop = make_loop(folder.path, parts=[CheckpointWriter(save_every_seconds=3600), FailInEpochThree()])
    data = TrainingData(make_dataset(images, labels, 16, shuffle=False, seed=0), None, ("a", "b"), (), ())
    with pytest.raises(RuntimeError, match="out of memory"):
        loop.run(data, [(FULL, 4)])
    assert read_checkpoint_state(folder).epoch == 2


def test_progress_lines_come_every_few_batches_and_at_the_last(tmp_path):
    folder = RunFolder(tmp_path / "run")
    loop = make_loop(folder.path)
    writer = ProgressWriter(every=2)
    for step in range(1, 6):
        position = StepPosition(epoch=1, stage=FULL, stage_epochs=4, step=step, steps=5, started=0.0)
        writer.on_step_end(loop, position, np.array([0.5 * step, step, 2.0 * step]))
    assert [(line["step"], line["loss"]) for line in folder.read_progress()] == [(2, 0.25), (4, 0.25), (5, 0.25)]
    status = json.loads(folder.status_path.read_text())
    assert (status["message"], status["step"], status["steps"]) == ("epoch 1", 5, 5)


def test_the_warm_up_rises_linearly_then_the_cosine_decays_the_rest_of_the_stage():
    schedule = LearningRateSchedule(TrainingConfig(learning_rate=1e-2, warmup_epochs=0.5))
    assert schedule.rate(FULL, 4, 0, 0, 10) == pytest.approx(1e-2 / 5)  # step 1 of a 5-step warm-up
    assert schedule.rate(FULL, 4, 0, 4, 10) == pytest.approx(1e-2)  # its last step: the full rate
    assert schedule.rate(FULL, 4, 0, 5, 10) == pytest.approx(1e-2)  # the cosine starts from the top
    # step 22 is the 17th of the 35 steps after the warm-up
    cosine = 0.5 * (1 + math.cos(math.pi * 17 / 35))
    assert schedule.rate(FULL, 4, 2, 2, 10) == pytest.approx(1e-2 * (MIN_LEARNING_RATE_FRACTION + 0.99 * cosine))
    assert schedule.rate(FULL, 4, 4, 0, 10) == pytest.approx(1e-2 * MIN_LEARNING_RATE_FRACTION)
    constant = LearningRateSchedule(TrainingConfig(learning_rate=1e-2, schedule="constant", warmup_epochs=1))
    assert constant.rate(FULL, 4, 0, 1, 10) == pytest.approx(2e-3)
    assert constant.rate(FULL, 4, 1, 0, 10) == pytest.approx(1e-2)


# ---------------------------------------------------------------- weight averaging


def test_weight_average_follows_the_weights_with_a_ramped_decay_and_swaps_in_and_out():
    from imgclf_core.training.weight_average import WeightAverage

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    kernel = model.weights[0]
    start = kernel.numpy().copy()
    average = WeightAverage(model, decay=0.999)
    kernel.assign(start + 1.0)
    average.update()  # first update: decay (1 + 0) / (10 + 0) = 0.1
    np.testing.assert_allclose(average.averages[0].numpy(), start + 0.9, rtol=1e-6)
    average.update()  # decay 2 / 11
    np.testing.assert_allclose(average.averages[0].numpy(), start + 1.0 - 0.1 * 2 / 11, rtol=1e-6)
    assert float(average.updates.numpy()) == 2.0
    averaged = average.averages[0].numpy().copy()
    average.swap()
    np.testing.assert_array_equal(kernel.numpy(), averaged)
    np.testing.assert_array_equal(average.averages[0].numpy(), start + 1.0)
    average.swap()
    np.testing.assert_array_equal(kernel.numpy(), start + 1.0)


def test_an_averaging_loop_validates_the_averaged_weights_and_resumes_exactly(tmp_path):
    """Two epochs straight, against one epoch, a checkpoint, a fresh process's loop and the second epoch."""
    from imgclf_core.data.pipeline import TrainingData, make_dataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (64, 8, 8, 1)).astype("uint8")
    labels = (images.mean(axis=(1, 2, 3)) > 127).astype("int32")

    def averaging_loop(run_dir: Path) -> EpochLoop:
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(2, activation="softmax")])
        training = TrainingConfig(epochs=2, learning_rate=1e-2, weight_average_decay=0.99, label_smoothing=0.1,
                                  early_stopping_patience=0)
        setup = LoopSetup(folder=RunFolder(run_dir), chief=True,
                          config=RunConfig(data_dir=str(run_dir), training=training), model=model,
                          class_names=("dark", "light"), strategy=tf.distribute.get_strategy(),
                          stop_request=StopRequest())
        return EpochLoop(setup, [LearningRateSchedule(training), CheckpointWriter()],
                         state=read_checkpoint_state(RunFolder(run_dir)))

    def data() -> TrainingData:
        train = make_dataset(images, labels, 16, shuffle=False, seed=0)
        return TrainingData(train, make_dataset(images, labels, 32, shuffle=False, seed=0), ("dark", "light"), (), ())

    straight = averaging_loop(tmp_path / "straight")
    straight.run(data(), [(FULL, 2)])
    # After the run the model holds the averaged weights, and validation measured those.
    straight_weights = [weight.numpy() for weight in straight.setup.model.weights]
    averaged = [average.numpy() for average in straight.weight_average.averages]
    assert not all(np.array_equal(a, b) for a, b in zip(straight_weights, averaged))  # the training ones are held
    assert straight.state.history[-1]["val_loss"] == pytest.approx(straight._validate()[0])

    class StopInEpochTwo(LoopPart):
        def on_step_end(self, loop, position, totals):
            loop.setup.stop_request.requested = position.epoch == 2

    first = averaging_loop(tmp_path / "resumed")
    first.parts.append(StopInEpochTwo())
    first.run(data(), [(FULL, 2)])  # stopped in epoch 2: the checkpoint is epoch 1's
    resumed = averaging_loop(tmp_path / "resumed")
    assert resumed.state.epoch == 1
    resumed.run(data(), [(FULL, 2)])
    for mine, theirs in zip(resumed.setup.model.weights, straight.setup.model.weights):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)
    assert [row["val_loss"] for row in resumed.state.history] == pytest.approx(
        [row["val_loss"] for row in straight.state.history])
