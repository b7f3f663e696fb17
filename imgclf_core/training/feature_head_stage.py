"""The head stage of a run trained on cached backbone features (see feature_head), inside the epoch loop.

It reads or computes the features, trains the head on them with the loop's learning-rate schedule,
and then writes what an epoch of the loop writes (model, checkpoint, history, status) once, with the
first usable model. The loop's parts are not called per epoch here: the feature epochs take about a
second each and are redone whole when cut short.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path

from imgclf_core.data.dataset import encode_labels
from imgclf_core.data.split import SplitRecords
from imgclf_core.models.features import cached_features, compiled_embed_function, feature_cache_key
from imgclf_core.training.feature_head import EpochCallback, FeatureSplit, train_head_on_features
from imgclf_core.training.loop import EpochLoop
from imgclf_core.training.loop_parts import HEAD, LoopState
from imgclf_core.training.loop_policies import LearningRateSchedule
from imgclf_core.training.loop_writers import save_checkpoint, write_loop_status
from imgclf_core.training.run_folder import RUNNING, STOPPED


def run_head_on_features(loop: EpochLoop, root: Path, splits: SplitRecords, head_epochs: int) -> str:
    """The head stage on cached backbone features; writes the first usable model.keras when it ends."""
    setup = loop.setup
    loop.state = LoopState(stage=HEAD)  # a head stage cut short is simply redone: it takes seconds
    loop.prepare_stage(HEAD, restore=False)
    features_started = time.monotonic()
    train, validation = _features_of(loop, root, splits)
    features_seconds = time.monotonic() - features_started
    schedule = LearningRateSchedule(setup.config.training)

    def learning_rate(epoch_index: int, step: int, steps: int) -> float:
        return schedule.rate(HEAD, head_epochs, epoch_index, step, steps, loop.state.lr_scale)

    best = train_head_on_features(
        setup.model, loop.optimizer, train, validation, head_epochs, setup.config.data.batch_size,
        loop.class_weight_vector.numpy(), learning_rate, setup.config.data.seed, _epoch_recorder(loop, head_epochs),
    )
    loop.state.best_val_loss = loop.state.stage_best_val_loss = best
    return _save_usable_model(loop, head_epochs, features_seconds)


def _epoch_recorder(loop: EpochLoop, head_epochs: int) -> EpochCallback:
    """After each feature epoch: count it, keep its row, tell the listener and the status; True stops."""
    epoch_started = time.monotonic()

    def on_epoch(epoch_index: int, values: dict) -> bool:
        nonlocal epoch_started
        now = time.monotonic()
        row = {"epoch": epoch_index + 1, "stage": HEAD, **values, "seconds": round(now - epoch_started, 3)}
        epoch_started = now
        loop.state.epoch = loop.state.stage_epoch = epoch_index + 1
        loop.state.history.append(row)
        if loop.setup.epoch_listener is not None:
            loop.setup.epoch_listener(row, loop.setup.model)
        if loop.setup.chief:
            write_loop_status(loop, RUNNING, f"training the head on features: epoch {row['epoch']}/{head_epochs}")
        return loop.setup.stop_request.requested

    return on_epoch


def _features_of(loop: EpochLoop, root: Path, splits: SplitRecords) -> tuple[FeatureSplit, FeatureSplit | None]:
    setup = loop.setup
    data_config = setup.config.data
    cache_key = feature_cache_key(setup.config.model.name, data_config.image_size, data_config.color_mode,
                                  setup.config.model.weights)
    records = splits.train + splits.validation
    if setup.chief:
        write_loop_status(loop, RUNNING, "backbone features: reading the cache")

    def make_embed():
        return compiled_embed_function(setup.model)

    def report(done: int, total: int) -> None:  # only the images the cache lacks are computed
        if setup.chief:
            write_loop_status(loop, RUNNING, f"computing backbone features: {done}/{total} images",
                              step=done, steps=total)

    features = cached_features(root, records, cache_key, data_config, make_embed, report)
    labels = encode_labels(records, setup.class_names)
    count = len(splits.train)
    validation = FeatureSplit(features[count:], labels[count:]) if splits.validation else None
    return FeatureSplit(features[:count], labels[:count]), validation


def _save_usable_model(loop: EpochLoop, head_epochs: int, features_seconds: float) -> str:
    setup, state = loop.setup, loop.state
    stopped = setup.stop_request.requested
    if not setup.chief:
        return STOPPED if stopped else RUNNING
    setup.folder.save_model(setup.model)
    if not stopped:  # a stopped head stage is redone on resume, so it leaves no checkpoint
        save_checkpoint(loop)
    setup.folder.write_history(state.history)
    best_accuracy = max((row["val_accuracy"] for row in state.history
                         if math.isfinite(row["val_accuracy"])), default=None)
    # seconds: from Start; features_seconds: of that, decoding and embedding the images not cached yet.
    loop.usable_model = {"val_accuracy": best_accuracy, "epoch": state.epoch,
                         "seconds": round(_seconds_since_start(setup.created_at), 1),
                         "features_seconds": round(features_seconds, 1)}
    if stopped:
        return loop.stop()
    write_loop_status(loop, RUNNING, "usable model ready: fine-tuning goes on"
                      if head_epochs < setup.config.training.total_epochs else "usable model ready")
    return RUNNING


def _seconds_since_start(created_at: str | None) -> float:
    """Seconds since the run was created (Start pressed, or `imgclf train` run), to the second."""
    return time.time() - datetime.fromisoformat(created_at).timestamp() if created_at else math.nan
