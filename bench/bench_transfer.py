"""Transfer-learning benchmark: imgclf's two stages against `keras.Model.fit`, efficientnet_lite0 at 224 px.

Reproduce (CPU; timings swing between runs on a small machine, so compare the ratios printed by
ONE run, never absolute numbers across runs):

    .venv/bin/python bench/bench_transfer.py --json /tmp/bench_transfer.json     # 300 photos, 20 + 5 epochs
    .venv/bin/python bench/bench_transfer.py --photos 40 --classes 2 --head-epochs 2 --fine-tune-epochs 1

The photos are made by imgclf_core.data.synthetic_photos.write_photo_folder (12 MP phone JPEGs, a
quarter stored sideways with EXIF Orientation 6), --photos N over --classes C classes, in a temporary
folder, or read from --data DIR (a folder per class, or imgclf's train/validation/test layout).

Everything runs in this one process, on the same files, one after the other, in this order. The
whole process uses its own fresh IMGCLF_CACHE_DIR (the converted ImageNet weights are copied in from
the user's cache when there, so their one-time conversion is not timed); nothing is written to the
user's caches.

(1) ours, cold: exactly `imgclf train DATA --out RUN --model efficientnet_lite0 --image-size 224
    --epochs E --fine-tune-epochs F`, in-process: build_run_config on the scanned folder, then
    `train_run(RUN)` with an empty feature cache. Measured by wrapping (timing only, nothing changed)
    trainer.run_head_on_features (the head stage, start to end: backbone features decoded and computed
    once, the head trained on them for E epochs, the first usable model + checkpoint saved),
    feature_head_stage.cached_features (the features part of it) and trainer.build_training_data
    (decoding every photo once into the uint8 array the fine-tune stage trains from), plus an epoch
    listener's clock. Fine-tune epoch 1 = from the start of that decoding to the end of epoch 1 (so it
    includes the one decode, the stage's set-up and tracing); epochs 2..F = between consecutive
    epoch ends. Both include what the trainer does at each epoch end (model.keras when better,
    checkpoint, history, status); history.csv's own `seconds` (training + validation only) are in
    the JSON as well.
(2) ours, warm: the same again in a new run folder with the cache of (1) (features cached), head
    stage only (fine_tune_epochs=0; what the trainer does after the head stage is not timed).
(3) baseline: `keras.utils.image_dataset_from_directory(DIR, image_size=(224, 224), batch_size=32,
    seed=...)` + `.prefetch(tf.data.AUTOTUNE)`; `create_model(ModelConfig(name="efficientnet_lite0"),
    classes, 224, 3)`; head: `set_trainable_top(model, 0.0)`, Adam at our head learning rate, sparse
    categorical cross-entropy (+ accuracy), `model.fit(train_ds, validation_data=val_ds, epochs=E)`;
    fine-tune: the same model, `set_trainable_top(model, ModelConfig().fine_tune_fraction)`, recompiled
    with Adam at our fine-tune learning rate, `model.fit(..., epochs=F)`. Each stage is timed from
    set_trainable_top to the end of fit; per-epoch times by a callback (epoch 1 from the start of fit).
    Before that, one pass over train_ds alone (no model) gives the input pipeline's own speed.

Validation (--validation): `same` (default) gives the baseline exactly our split: our train and
validation records, linked into two folders (DIR/train/<class>, DIR/validation/<class>) that
image_dataset_from_directory reads, so both train on the same images and validate on the same
images every epoch (inside both clocks). `keras` gives the baseline `validation_split=<our share>,
subset="both"` on the photo folder: the same share held out, but Keras picks which images. `none`:
both train on every image and never validate.

Images/s = (epochs x training images) / wall seconds of the stage (or of the epoch). Target: ours
>= 2x the baseline in each stage. --baseline-cache adds `.cache()` before prefetch (decoded
images kept in memory after the baseline's first epoch): not the baseline asked for, a fairer one.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_photos import add_photo_arguments, photo_folder  # noqa: E402  (the same photos, the same flags)
from imgclf_core.data.synthetic_photos import PHOTO_CLASSES  # noqa: E402

BACKBONE = "efficientnet_lite0"
IMAGE_SIZE = 224
BATCH_SIZE = 32  # DataConfig().batch_size, what the recommendation uses for pretrained models
SEED = 0  # of the photos; the training seed is the run config's (DataConfig().seed)
TARGET_RATIO = 2.0
VALIDATION_MODES = ("same", "keras", "none")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


# ---------------------------------------------------------------------------------------------
# Data


def read_all(root: Path, records) -> int:
    """Read every file once, so every contender reads from the OS page cache; returns the bytes."""
    return sum(len((root / record.path).read_bytes()) for record in records)


def link_split(records, root: Path, target: Path, class_names) -> Path:
    """target/<class>/<file>: a link to each record's file (a hard link when possible), every class folder made."""
    for name in class_names:
        (target / name).mkdir(parents=True, exist_ok=True)
    for number, record in enumerate(records):
        source = (root / record.path).resolve()
        link = target / record.label / f"{number:06d}_{source.name}"
        try:
            os.link(source, link)
        except OSError:
            link.symlink_to(source)
    return target


@contextmanager
def replaced(module, name: str, value) -> Iterator[None]:
    previous = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, previous)


@contextmanager
def kept_signal_handlers() -> Iterator[None]:
    """train_run turns SIGINT/SIGTERM into its stop flag: give them back afterwards (Ctrl-C works again)."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def timed(function: Callable, spans: list[tuple[float, float]]) -> Callable:
    """`function`, appending (start, end) perf_counter times of every call to `spans`."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spans.append((start, time.perf_counter()))
    return wrapper


def images_per_second(images: float, seconds: float | None) -> float | None:
    return images / seconds if seconds and seconds > 0 else None


# ---------------------------------------------------------------------------------------------
# Ours: the real trainer


def run_ours(folder: Path, index, run_dir: Path, head_epochs: int, fine_tune_epochs: int,
             validation_split: float) -> dict:
    """One `imgclf train` run in-process, with its head stage, features, decoding and epochs timed."""
    from imgclf_core.training import feature_head_stage, trainer
    from imgclf_core.training.run_folder import RunFolder
    from imgclf_core.training.run_setup import RunChoices, build_run_config, check_can_train
    from imgclf_core.data.split import split_records

    choices = RunChoices(model=BACKBONE, image_size=IMAGE_SIZE, epochs=head_epochs,
                         fine_tune_epochs=fine_tune_epochs, validation_split=validation_split)
    config = build_run_config(folder, index, choices)
    check_can_train(index, config.data.validation_split, config.data.seed)
    splits = split_records(index.records, config.data.validation_split, config.data.seed)
    run = RunFolder(run_dir)
    run.path.mkdir(parents=True)
    run.write_config(config)

    head_spans: list = []
    feature_spans: list = []
    decode_spans: list = []
    epoch_ends: list[tuple[float, str, int]] = []

    def listener(row: dict, model) -> None:
        epoch_ends.append((time.perf_counter(), row["stage"], int(row["epoch"])))
        log(f"[ours] {row['stage']} epoch {row['epoch']}: {row['seconds']:.2f} s, loss {row['loss']:.3f}, "
            f"val_accuracy {row['val_accuracy']:.3f}")

    load_before = load_average()
    started = time.perf_counter()
    with kept_signal_handlers(), \
            replaced(trainer, "run_head_on_features", timed(trainer.run_head_on_features, head_spans)), \
            replaced(trainer, "build_training_data", timed(trainer.build_training_data, decode_spans)), \
            replaced(feature_head_stage, "cached_features", timed(feature_head_stage.cached_features, feature_spans)):
        state = trainer.train_run(run_dir, epoch_listener=listener)
    wall = time.perf_counter() - started
    history = run.read_history()
    train_count = len(splits.train)
    result: dict = {
        "state": state, "run_wall_s": wall, "load_average_before": load_before, "load_average_after": load_average(),
        "train_images": train_count, "validation_images": len(splits.validation), "test_images": len(splits.test),
        "config": {"model": config.model.name, "image_size": config.data.image_size,
                   "batch_size": config.data.batch_size, "validation_split": config.data.validation_split,
                   "seed": config.data.seed, "epochs": config.training.epochs,
                   "fine_tune_epochs": config.training.fine_tune_epochs,
                   "learning_rate": config.training.learning_rate,
                   "fine_tune_learning_rate": config.training.fine_tune_learning_rate,
                   "fine_tune_fraction": config.model.fine_tune_fraction,
                   "augmentation": vars(config.augmentation)},
        "history": history,
    }
    if state != "finished":
        raise RuntimeError(f"our run ended {state!r}: {run.read_status().get('message')}")
    if len(head_spans) != 1:
        raise RuntimeError("the trainer did not train the head on cached features (run_head_on_features not called)")

    head_start, head_end = head_spans[0]
    head_rows = [row for row in history if row["stage"] == "head"]
    features_s = sum(end - start for start, end in feature_spans)
    head_epochs_s = sum(float(row["seconds"]) for row in head_rows)
    head_wall = head_end - head_start
    result["head"] = {
        "epochs": len(head_rows), "wall_s": head_wall, "features_s": features_s,
        "epochs_s": head_epochs_s, "epoch_seconds": [float(row["seconds"]) for row in head_rows],
        "save_and_other_s": head_wall - features_s - head_epochs_s,
        "images_per_s": images_per_second(len(head_rows) * train_count, head_wall),
        "best_val_accuracy": max_finite(row["val_accuracy"] for row in head_rows),
        "usable_model": run.read_status().get("usable_model"),
    }
    fine_rows = [row for row in history if row["stage"] == "fine_tune"]
    if fine_rows:
        if len(decode_spans) != 1:
            raise RuntimeError("build_training_data was not called once before fine-tuning")
        decode_start, decode_end = decode_spans[0]
        ends = [moment for moment, stage, _ in epoch_ends if stage == "fine_tune"]
        walls = [ends[0] - decode_start] + [later - earlier for earlier, later in zip(ends, ends[1:])]
        later = walls[1:]
        history_seconds = [float(row["seconds"]) for row in fine_rows]
        result["fine_tune"] = {
            "epochs": len(fine_rows), "wall_s": ends[-1] - decode_start, "decode_s": decode_end - decode_start,
            "decoded_images": train_count + len(splits.validation) + len(splits.test),
            "epoch_wall_s": walls, "history_seconds": history_seconds,
            "epoch_end_writes_s": [wall_s - seconds for wall_s, seconds in zip(walls[1:], history_seconds[1:])],
            "first_epoch_s": walls[0], "later_epochs_median_s": statistics.median(later) if later else None,
            "images_per_s": images_per_second(len(fine_rows) * train_count, ends[-1] - decode_start),
            "first_epoch_images_per_s": images_per_second(train_count, walls[0]),
            "first_epoch_without_decode_images_per_s": images_per_second(
                train_count, walls[0] - (decode_end - decode_start)),
            "later_epochs_images_per_s": images_per_second(train_count, statistics.median(later)) if later else None,
            "later_epochs_history_images_per_s": (images_per_second(train_count, statistics.median(history_seconds[1:]))
                                                  if len(history_seconds) > 1 else None),
            "best_val_accuracy": max_finite(row["val_accuracy"] for row in fine_rows),
        }
    return result


def max_finite(values) -> float | None:
    finite = [float(value) for value in values if isinstance(value, (int, float)) and math.isfinite(value)]
    return max(finite) if finite else None


# ---------------------------------------------------------------------------------------------
# Baseline: image_dataset_from_directory + model.fit


def baseline_datasets(mode: str, folder: Path, root: Path, splits, class_names, validation_split: float, seed: int,
                      workdir: Path, cache: bool):
    """(train_ds, val_ds or None, training image count) built the usual way."""
    import keras
    import tensorflow as tf

    options = dict(image_size=(IMAGE_SIZE, IMAGE_SIZE), batch_size=BATCH_SIZE, seed=seed,
                   class_names=list(class_names), verbose=False)
    if mode == "keras":
        train_ds, val_ds = keras.utils.image_dataset_from_directory(
            folder, validation_split=validation_split, subset="both", **options)
    else:
        train_dir = link_split(splits.train, root, workdir / "baseline" / "train", class_names)
        train_ds = keras.utils.image_dataset_from_directory(train_dir, **options)
        val_ds = None
        if mode == "same" and splits.validation:
            val_dir = link_split(splits.validation, root, workdir / "baseline" / "validation", class_names)
            val_ds = keras.utils.image_dataset_from_directory(val_dir, shuffle=False, **options)
    train_count = len(train_ds.file_paths)

    def finish(dataset):
        if dataset is None:
            return None
        return (dataset.cache() if cache else dataset).prefetch(tf.data.AUTOTUNE)

    return finish(train_ds), finish(val_ds), train_count, (len(val_ds.file_paths) if val_ds is not None else 0)


def epoch_timer():
    """A Keras callback recording each epoch's wall seconds, the first from the start of fit (`.walls()`)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.fit_start = time.perf_counter()
            self.ends: list[float] = []

        def on_train_begin(self, logs=None):
            self.fit_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())
            logs = logs or {}
            log(f"[baseline] epoch {epoch + 1}: {self.walls()[-1]:.2f} s, loss {logs.get('loss', math.nan):.3f}, "
                f"val_accuracy {logs.get('val_accuracy', math.nan):.3f}")

        def walls(self) -> list[float]:
            moments = [self.fit_start, *self.ends]
            return [later - earlier for earlier, later in zip(moments, moments[1:])]

    return EpochTimer()


def run_baseline(train_ds, val_ds, train_count: int, num_classes: int, head_epochs: int, fine_tune_epochs: int,
                 learning_rate: float, fine_tune_learning_rate: float, fine_tune_fraction: float, seed: int) -> dict:
    import keras

    from imgclf_core.config import ModelConfig
    from imgclf_core.models.registry import create_model, set_trainable_top

    result: dict = {"train_images": train_count, "load_average_before": load_average()}
    # The input pipeline alone: one pass of decoding and resizing, no model.
    started = time.perf_counter()
    batches = sum(1 for _ in train_ds)
    result["pipeline_only"] = {"batches": batches, "s": time.perf_counter() - started}
    result["pipeline_only"]["images_per_s"] = images_per_second(train_count, result["pipeline_only"]["s"])
    log(f"[baseline] input pipeline alone: {result['pipeline_only']['s']:.1f} s for {train_count} images")

    keras.utils.set_random_seed(seed)
    model = create_model(ModelConfig(name=BACKBONE), num_classes, IMAGE_SIZE, 3)
    stages = [("head", 0.0, learning_rate, head_epochs), ("fine_tune", fine_tune_fraction, fine_tune_learning_rate,
                                                          fine_tune_epochs)]
    for stage, fraction, rate, epochs in stages:
        log(f"[baseline] {stage}: {plural(epochs, 'epoch')} of model.fit ...")
        started = time.perf_counter()
        trainable_layers = set_trainable_top(model, fraction)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=rate), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        clock = epoch_timer()
        history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=[clock], verbose=0)
        wall = time.perf_counter() - started
        walls = clock.walls()
        later = walls[1:]
        result[stage] = {
            "epochs": epochs, "wall_s": wall, "epoch_wall_s": walls, "trainable_base_layers": trainable_layers,
            "jit_compile": bool(getattr(model, "jit_compile", False)),
            "images_per_s": images_per_second(epochs * train_count, wall),
            "first_epoch_s": walls[0], "first_epoch_images_per_s": images_per_second(train_count, walls[0]),
            "later_epochs_median_s": statistics.median(later) if later else None,
            "later_epochs_images_per_s": images_per_second(train_count, statistics.median(later)) if later else None,
            "best_val_accuracy": max_finite(history.history.get("val_accuracy", [])),
            "final_loss": float(history.history["loss"][-1]),
        }
    result["load_average_after"] = load_average()
    return result


# ---------------------------------------------------------------------------------------------
# Report


def ratio(ours: float | None, baseline: float | None) -> float | None:
    return ours / baseline if ours and baseline else None


def table_rows(results: dict) -> list[dict]:
    ours, warm, base = results["ours_cold"], results.get("ours_warm"), results["baseline"]
    head_epochs, fine_epochs = ours["head"]["epochs"], ours.get("fine_tune", {}).get("epochs", 0)
    rows = [
        {"stage": f"head, {plural(head_epochs, 'epoch')}, cold feature cache", "baseline": base["head"]["images_per_s"],
         "ours": ours["head"]["images_per_s"], "target": True},
    ]
    if warm:
        rows.append({"stage": f"head, {plural(head_epochs, 'epoch')}, warm feature cache",
                     "baseline": base["head"]["images_per_s"], "ours": warm["head"]["images_per_s"], "target": True})
    fine = ours.get("fine_tune")
    if fine:
        rows += [
            {"stage": f"fine-tune, {plural(fine_epochs, 'epoch')}, whole stage",
             "baseline": base["fine_tune"]["images_per_s"], "ours": fine["images_per_s"], "target": True},
            {"stage": "fine-tune epoch 1 (ours: + decoding once)",
             "baseline": base["fine_tune"]["first_epoch_images_per_s"], "ours": fine["first_epoch_images_per_s"],
             "target": False},
            {"stage": "fine-tune epochs 2.., median (ours: + epoch-end writes)",
             "baseline": base["fine_tune"]["later_epochs_images_per_s"], "ours": fine["later_epochs_images_per_s"],
             "target": False},
            {"stage": "fine-tune epochs 2.., median (ours: history.csv seconds, no writes)",
             "baseline": base["fine_tune"]["later_epochs_images_per_s"],
             "ours": fine["later_epochs_history_images_per_s"], "target": False},
        ]
    for row in rows:
        row["ratio"] = ratio(row["ours"], row["baseline"])
        row["met"] = row["ratio"] >= TARGET_RATIO if row["ratio"] is not None else None
    return rows


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def cell(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def print_report(results: dict) -> None:
    ours, warm, base, photos = results["ours_cold"], results.get("ours_warm"), results["baseline"], results["photos"]
    out = ["", f"imgclf transfer-learning benchmark ({results['environment']['cpus']} CPUs, TensorFlow "
               f"{results['environment']['tensorflow']}): {BACKBONE} at {IMAGE_SIZE} px, {photos['images']} photos "
               f"({photos['size']}) in {photos['classes']} classes",
           f"training images: ours {ours['train_images']}, baseline {base['train_images']}; validation: "
           f"{results['validation_note']}", "",
           "| stage | baseline img/s | ours img/s | ours / baseline |", "|---|---:|---:|---:|"]
    for row in results["table"]:
        mark = ""
        if row["target"] and row["met"] is not None:
            mark = " (>= 2x: met)" if row["met"] else " (>= 2x: NOT met)"
        out.append(f"| {row['stage']} | {cell(row['baseline'])} | {cell(row['ours'])} | "
                   f"{cell(row['ratio'], 2, 'x')}{mark} |")
    targets = [row for row in results["table"] if row["target"]]
    met = all(row["met"] for row in targets)
    verdicts = ", ".join(f"{row['stage']}: {cell(row['ratio'], 2, 'x')}" for row in targets)
    out.append("")
    out.append(f"target: ours >= {TARGET_RATIO:.0f}x the baseline in each stage: "
               f"{'MET' if met else 'NOT MET'} ({verdicts})")
    out.append("")
    out.append("Where the difference comes from:")
    head = ours["head"]
    out.append(f"- head, baseline: {base['head']['wall_s']:.1f} s; every epoch decodes every 12 MP photo in full "
               f"(tf.io decode, then resize) and runs the frozen backbone on it. fit's step is a tf.function, "
               f"jit_compile={base['head']['jit_compile']} (Keras turns XLA off on CPU-only machines).")
    out.append(f"- head, ours cold: {head['wall_s']:.1f} s = features {head['features_s']:.1f} s (each photo decoded "
               f"once at reduced JPEG scale and embedded once, cached by content) + {head['epochs']} head epochs on "
               f"the cached vectors {head['epochs_s']:.2f} s + saving the usable model/checkpoint "
               f"{head['save_and_other_s']:.1f} s.")
    if warm:
        whead = warm["head"]
        out.append(f"- head, ours warm: {whead['wall_s']:.1f} s = features read from the cache "
                   f"{whead['features_s']:.2f} s + head epochs {whead['epochs_s']:.2f} s + saving "
                   f"{whead['save_and_other_s']:.1f} s.")
    fine = ours.get("fine_tune")
    if fine:
        pipeline = base["pipeline_only"]
        out.append(f"- fine-tune, baseline: its input pipeline alone (decode + resize, no model) runs at "
                   f"{cell(pipeline['images_per_s'])} img/s, paid again every epoch; epochs "
                   f"{', '.join(f'{value:.1f}' for value in base['fine_tune']['epoch_wall_s'])} s (epoch 1 with "
                   f"tracing); jit_compile={base['fine_tune']['jit_compile']}.")
        out.append(f"- fine-tune, ours: decoding once into a uint8 array {fine['decode_s']:.1f} s "
                   f"({fine['decoded_images']} images, "
                   f"{cell(images_per_second(fine['decoded_images'], fine['decode_s']))} img/s), then batches "
                   f"gathered from memory; epochs (epoch 1 with the decoding) "
                   f"{', '.join(f'{value:.1f}' for value in fine['epoch_wall_s'])} s, of which training + "
                   f"validation (history.csv) {', '.join(f'{value:.1f}' for value in fine['history_seconds'])} s; "
                   f"its step is a tf.function over strategy.run (no XLA either), so on CPU the compiled step "
                   f"is no gain over fit's; the epochs include the trainer's epoch-end writes (model.keras, "
                   f"checkpoint) and our augmentation (flip, translation), which the baseline does not do.")
        out.append(f"- fine-tune epoch 1 without the decoding, ours: "
                   f"{cell(fine['first_epoch_without_decode_images_per_s'])} img/s (tracing included).")
    accuracy = [f"baseline head {cell(base['head']['best_val_accuracy'], 3)}",
                f"ours head {cell(head['best_val_accuracy'], 3)}"]
    if fine:
        accuracy += [f"baseline fine-tune {cell(base['fine_tune']['best_val_accuracy'], 3)}",
                     f"ours fine-tune {cell(fine['best_val_accuracy'], 3)}"]
    out.append(f"best validation accuracy (a sanity check, not the point): {', '.join(accuracy)}")
    out.append(f"load average (1, 5, 15 min) before ours {ours['load_average_before']}, before baseline "
               f"{base['load_average_before']}, at the end {base['load_average_after']}")
    out.append(f"total bench time {results['total_s']:.0f} s")
    print("\n".join(out), flush=True)


# ---------------------------------------------------------------------------------------------


def prepare_cache_dir(workdir: Path) -> tuple[Path, bool]:
    """A fresh IMGCLF_CACHE_DIR for this process, with the user's converted weights copied in when there."""
    from imgclf_core.fileio import user_cache_dir

    weights = user_cache_dir() / "weights"
    cache_dir = workdir / "cache"
    cache_dir.mkdir()
    copied = weights.is_dir()
    if copied:
        shutil.copytree(weights, cache_dir / "weights")
    os.environ["IMGCLF_CACHE_DIR"] = str(cache_dir)
    return cache_dir, copied


def remove_features(cache_dir: Path) -> None:
    shutil.rmtree(cache_dir / "embeddings", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    from imgclf_core.training.recommend import PRETRAINED_TRAINING

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_photo_arguments(parser, 2, "use this dataset folder instead of making photos")
    parser.add_argument("--head-epochs", type=int, default=PRETRAINED_TRAINING.epochs,
                        help="head epochs, both sides (default: %(default)s, imgclf's recommendation for photos)")
    parser.add_argument("--fine-tune-epochs", type=int, default=PRETRAINED_TRAINING.fine_tune_epochs,
                        help="fine-tune epochs, both sides (default: %(default)s)")
    parser.add_argument("--validation", choices=VALIDATION_MODES, default="same",
                        help="same: the baseline validates on our validation images (default); keras: the "
                             "baseline holds out the same share, picked by image_dataset_from_directory; none: "
                             "neither validates")
    parser.add_argument("--baseline-cache", action="store_true",
                        help="add .cache() to the baseline's datasets (not the usual way; a stronger baseline)")
    parser.add_argument("--skip-warm", action="store_true", help="leave out the warm-cache head stage of ours")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (photos, runs, cache)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the raw figures as JSON here")
    args = parser.parse_args(argv)
    if args.photos < 2:
        parser.error("--photos must be at least 2")
    if not 2 <= args.classes <= len(PHOTO_CLASSES):
        parser.error(f"--classes must be from 2 to {len(PHOTO_CLASSES)}")
    if args.head_epochs < 1 or args.fine_tune_epochs < 1:
        parser.error("--head-epochs and --fine-tune-epochs must be at least 1")

    total_start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="imgclf-bench-transfer-"))
    log(f"[bench] working in {workdir}")
    try:
        results = run_bench(args, parser, workdir, argv)
    finally:
        if args.keep:
            log(f"[bench] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["total_s"] = time.perf_counter() - total_start
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    return 0


def run_bench(args: argparse.Namespace, parser: argparse.ArgumentParser, workdir: Path,
              argv: list[str] | None) -> dict:
    cache_dir, weights_copied = prepare_cache_dir(workdir)
    from imgclf_core.tf_quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    # Keras' fit says shuffle=True is ignored for a tf.data.Dataset (image_dataset_from_directory shuffles).
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    from imgclf_core.config import DataConfig
    from imgclf_core.data.dataset import scan_dataset
    from imgclf_core.data.split import split_records
    from imgclf_core.training.recommend import recommend_settings

    results: dict = {
        "command": [sys.executable, *sys.argv] if argv is None else ["bench/bench_transfer.py", *argv],
        "environment": {"cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
                        "keras": keras.__version__, "machine": platform.machine(), "load_average": load_average()},
        "config": {**vars(args), "size": list(args.size)},
        "weights_cache_copied": weights_copied,
    }
    folder = photo_folder(args, workdir, parser, results)

    started = time.perf_counter()
    index = scan_dataset(folder)
    results["scan_cold_s"] = time.perf_counter() - started
    recommended = recommend_settings(index)
    results["recommended"] = {"model": recommended.model, "image_size": recommended.image_size,
                              "epochs": recommended.epochs, "fine_tune_epochs": recommended.fine_tune_epochs,
                              "validation_split": recommended.validation_split}
    if (recommended.model, recommended.image_size) != (BACKBONE, IMAGE_SIZE):
        log(f"[bench] NOTE: imgclf recommends {recommended.model} at {recommended.image_size} px for this data; "
            f"both sides use {BACKBONE} at {IMAGE_SIZE} px anyway")
    validation_split = 0.0 if args.validation == "none" else recommended.validation_split
    seed = DataConfig().seed
    splits = split_records(index.records, validation_split, seed)
    if args.validation == "keras" and (index.layout.split_folders or splits.test):
        parser.error("--validation keras needs a plain folder per class (no train/validation/test folders)")
    first = index.records[0]
    results["photos"] = {"folder": str(folder), "images": len(index.records), "classes": len(index.class_names),
                         "class_names": list(index.class_names),
                         "size": f"{first.width}x{first.height} (first, upright)",
                         "bytes": read_all(index.root, index.records), "skipped": len(index.skipped)}
    results["validation_note"] = {
        "same": f"both validate on the same {len(splits.validation)} images ({validation_split:.0%} held out by "
                "imgclf's content-hash split; the baseline reads that split from linked folders)",
        "keras": f"{validation_split:.0%} held out on both sides; the baseline's validation_split/subset picks "
                 "other images than ours",
        "none": "neither side validates; both train on every image",
    }[args.validation]

    log("[ours] cold feature cache: imgclf train (head stage on features, then fine-tuning) ...")
    remove_features(cache_dir)
    results["ours_cold"] = run_ours(folder, index, workdir / "run-cold", args.head_epochs, args.fine_tune_epochs,
                                    validation_split)
    free_memory()
    if not args.skip_warm:
        log("[ours] warm feature cache: imgclf train, head stage only ...")
        results["ours_warm"] = run_ours(folder, index, workdir / "run-warm", args.head_epochs, 0, validation_split)
        free_memory()

    log("[baseline] image_dataset_from_directory + model.fit ...")
    train_ds, val_ds, train_count, val_count = baseline_datasets(
        args.validation, folder, index.root, splits, index.class_names, validation_split, seed, workdir,
        args.baseline_cache)
    results["baseline_validation_images"] = val_count
    config = results["ours_cold"]["config"]
    results["baseline"] = run_baseline(
        train_ds, val_ds, train_count, len(index.class_names), args.head_epochs, args.fine_tune_epochs,
        config["learning_rate"], config["fine_tune_learning_rate"], config["fine_tune_fraction"], seed)
    results["baseline"]["dataset_cache"] = args.baseline_cache
    results["table"] = table_rows(results)
    return results


def free_memory() -> None:
    import keras

    gc.collect()
    keras.backend.clear_session()
    gc.collect()


if __name__ == "__main__":
    sys.exit(main())
