"""Training benchmark: the seeds' recipe against our default CNN and pipeline, to test accuracy.

Reproduce (CPU; timings swing 2-4x between runs on a small machine, so compare the ratios printed
by ONE run, never absolute numbers across runs):

    .venv/bin/imgclf fashion-mnist /tmp/fmnist-tree      # 60k train + 10k test PNGs, ~1 minute
    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_training.py --json /tmp/bench_training.json

(With no arguments the defaults are exactly those, except --json: all 60k training images, the
seeds for --epochs-seeds epochs, ours for our default number of epochs; ~80 minutes on 2 cores. A quick trial on a
balanced subset: --train-limit 10000 --epochs-seeds 3 --epochs-ours 3.)

What is measured, in one process, on the same files, one recipe after the other:

(a) seeds: ImageDataGenerator(rescale=1/255, rotation_range=20, zoom_range=0.2, horizontal_flip=True)
    .flow_from_directory(TRAIN, target_size=(28, 28), color_mode="grayscale", batch_size=32,
    class_mode="sparse") + the `seed_cnn` network + Adam (Keras defaults) + `model.fit`. The
    seeds' network took the generator's 0..1 images; the registry's seed_cnn rescales by 1/255
    inside, so that one layer is swapped for an identity here (scaling twice would cripple it).
(b) ours: exactly what `imgclf train TRAIN --out RUN [--epochs N]` does: the CLI's
    `run_config_from_args` (which scans, with a fresh empty IMGCLF_CACHE_DIR: a cold scan, and
    picks 28 px grayscale from the data), then `train_run` (scan again, split off the validation
    images, decode once, small_cnn, our augmentation, cosine schedule, checkpoints, model.keras,
    evaluation.json). Nothing here is special-cased: change the defaults in imgclf_core.
    With the default validation split ours trains on 48k of the 60k images (and validates on the
    other 12k every epoch, inside its clock); the seeds train on all 60k and never validate.

The clock of each recipe starts before its first step (for ours: before the scan; for the seeds:
before the generator is built) and stops at the end of each epoch. After every epoch the model's
weights are copied (timed and subtracted); when the recipe has finished, the test images (decoded
once up front with our decode_records; the seeds get the same uint8 array / 255) are classified
with each epoch's weights by a compiled predict. So "cum s" is training wall time only, and the
measuring cannot slow the training down (see EpochClock). Time to 90% = "cum s" at the end of
the first epoch with test accuracy >= 90%. If the seeds never get there, the ratio is reported
as a lower bound (their whole training time / ours).

Targets (from the issue): ours reaches >= 93% test accuracy, and reaches 90% in at most one third
of the seeds' wall time (seeds' time-to-90 / ours >= 3).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as imgclf_core sets it: both recipes run with it

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

from bench_pipeline import DEFAULT_TREE, balanced_subset, fresh_cache_dir  # noqa: E402
from imgclf_core.training.run_folder import RunFolder  # noqa: E402
from imgclf_core.cli import build_parser, run_config_from_args  # noqa: E402
from imgclf_core.config import DataConfig, ModelConfig, TrainingConfig, config_to_dict  # noqa: E402
from imgclf_core.data.dataset import encode_labels, scan_dataset  # noqa: E402
from imgclf_core.models.registry import create_model  # noqa: E402
from imgclf_core.data.pipeline import decode_records  # noqa: E402
from imgclf_core.training.trainer import train_run  # noqa: E402

IMAGE_SIZE = 28
SEEDS_BATCH_SIZE = 32
SEED = 1337
REACH_ACCURACY = 0.90
TARGET_ACCURACY = 0.93
TARGET_SPEEDUP = 3.0
PREDICT_BATCH = 1000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Test set and the per-epoch measurement


class TestSet:
    """The test images, decoded once (our decode), and a compiled accuracy measurement."""

    def __init__(self, directory: Path):
        index = scan_dataset(directory)
        data_config = DataConfig(image_size=IMAGE_SIZE, color_mode="grayscale")
        self.images = decode_records(index.root, index.records, data_config)
        self.class_names = list(index.class_names)
        self.labels = encode_labels(index.records, self.class_names)

    def accuracy(self, model: keras.Model, class_names: list[str], scale: float = 1.0) -> float:
        """Top-1 accuracy of `model` (whose outputs are ordered as `class_names`) on inputs * scale."""
        order = np.array([class_names.index(name) for name in self.class_names])
        expected = order[self.labels]  # the test labels in the model's class order

        @tf.function
        def predict(images):
            return tf.argmax(model(images * scale, training=False), axis=-1, output_type=tf.int32)

        predicted = np.concatenate([
            predict(tf.constant(self.images[start:start + PREDICT_BATCH], tf.float32)).numpy()
            for start in range(0, len(self.images), PREDICT_BATCH)
        ])
        return float(np.mean(predicted == expected))


class EpochClock:
    """Per-epoch wall times from a recipe's start, and test accuracy after each epoch.

    At the end of an epoch only the weights are copied (timed, and taken out of the clock); the
    test images are classified after the recipe has finished. Classifying them inside the epoch
    listener, while the trainer's tf.data iterator was still alive, made that iterator's teardown
    stall for ~9 s in about half of the epochs here: a cost of measuring, not of training.
    """

    def __init__(self, test: TestSet, class_names: list[str], scale: float):
        self.test, self.class_names, self.scale = test, class_names, scale
        self.start = time.perf_counter()
        self.excluded = 0.0  # seconds spent taking weight snapshots so far
        self.epochs: list[dict] = []
        self.snapshots: list[list[np.ndarray]] = []
        self.model: keras.Model | None = None

    def epoch_end(self, model: keras.Model, **extra) -> None:
        ended = time.perf_counter()
        cumulative = ended - self.start - self.excluded
        self.model = model
        self.snapshots.append([np.array(value) for value in model.get_weights()])
        measured = time.perf_counter() - ended
        self.excluded += measured
        previous = self.epochs[-1]["cum_s"] if self.epochs else 0.0
        self.epochs.append({
            "epoch": len(self.epochs) + 1, "seconds": cumulative - previous, "cum_s": cumulative,
            "snapshot_s": measured, **extra,
        })
        log(f"  epoch {len(self.epochs)}: {cumulative - previous:.1f} s (cum {cumulative:.1f} s)"
            f"  [weights copied in {measured:.2f} s, excluded]")

    def measure_test_accuracy(self) -> None:
        """Classify the test images with each epoch's weights (after the recipe: not timed)."""
        for row, weights in zip(self.epochs, self.snapshots):
            self.model.set_weights(weights)
            started = time.perf_counter()
            row["test_accuracy"] = self.test.accuracy(self.model, self.class_names, self.scale)
            row["test_measure_s"] = time.perf_counter() - started
            log(f"  epoch {row['epoch']}: test accuracy {row['test_accuracy']:.4f}")
        self.snapshots.clear()

    def summary(self) -> dict:
        self.measure_test_accuracy()
        reached = next((row for row in self.epochs if row["test_accuracy"] >= REACH_ACCURACY), None)
        total = self.epochs[-1]["cum_s"] if self.epochs else 0.0
        return {
            "epochs": self.epochs,
            "reached_90_epoch": reached["epoch"] if reached else None,
            "time_to_90_s": reached["cum_s"] if reached else None,
            "trained_s": total,
            "best_test_accuracy": max((row["test_accuracy"] for row in self.epochs), default=None),
            "final_test_accuracy": self.epochs[-1]["test_accuracy"] if self.epochs else None,
        }


# ---------------------------------------------------------------------------------------------
# The two recipes


def seeds_network(num_classes: int) -> keras.Model:
    """The seeds' CNN as they trained it: on 0..1 images (the registry's seed_cnn rescales inside)."""
    registered = create_model(ModelConfig(name="seed_cnn"), num_classes, IMAGE_SIZE, 1)

    def clone(layer):
        if layer.name == "preprocess_rescale":
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(registered, clone_function=clone)


def run_seeds(directory: Path, epochs: int, test: TestSet) -> dict:
    keras.utils.set_random_seed(SEED)
    clock = EpochClock(test, [], scale=1 / 255)
    generator = tf.keras.preprocessing.image.ImageDataGenerator(
        rescale=1 / 255, rotation_range=20, zoom_range=0.2, horizontal_flip=True
    ).flow_from_directory(
        str(directory), target_size=(IMAGE_SIZE, IMAGE_SIZE), color_mode="grayscale",
        batch_size=SEEDS_BATCH_SIZE, class_mode="sparse", seed=SEED,
    )
    clock.class_names = sorted(generator.class_indices, key=generator.class_indices.get)
    model = seeds_network(len(clock.class_names))
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class Measure(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            clock.epoch_end(self.model, loss=logs.get("loss"), train_accuracy=logs.get("accuracy"))

    model.fit(generator, epochs=epochs, callbacks=[Measure()], verbose=0)
    return {"images": generator.samples, "batch_size": SEEDS_BATCH_SIZE, **clock.summary()}


def run_ours(directory: Path, epochs: int | None, test: TestSet, workdir: Path) -> dict:
    keras.utils.set_random_seed(SEED)
    run_dir = workdir / "run"
    argv = ["train", str(directory), "--out", str(run_dir)]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    with fresh_cache_dir(workdir):
        clock = EpochClock(test, [], scale=1.0)
        config = run_config_from_args(build_parser().parse_args(argv))  # what `imgclf train` does
        run = RunFolder(run_dir)
        run.write_config(config)
        configured = time.perf_counter() - clock.start

        def listener(row: dict, model: keras.Model) -> None:
            if not clock.class_names:
                clock.class_names = list(run.read_document().class_names)
            clock.epoch_end(model, loss=row["loss"], train_accuracy=row["accuracy"],
                            val_accuracy=row["val_accuracy"], loop_s=row["seconds"], lr=row["lr"])

        state = train_run(run_dir, epoch_listener=listener)
        finished = time.perf_counter() - clock.start - clock.excluded
    summary = clock.summary()
    first = summary["epochs"][0] if summary["epochs"] else None
    evaluation = run.read_evaluation()
    return {
        "state": state,
        "config": config_to_dict(config),
        "validation_images": _validation_count(run_dir),
        "config_and_cold_scan_s": configured,
        # train_run's own warm scan, split, decode, model build and epoch-1 saves: epoch 1 minus its loop.
        "train_run_setup_s": (first["cum_s"] - configured - first["loop_s"]) if first else None,
        "finish_s": finished - summary["trained_s"],  # evaluation.json + predictions.csv after the last epoch
        "validation_accuracy_best_model": evaluation["accuracy"] if evaluation is not None else None,
        **summary,
    }


def _validation_count(run_dir: Path) -> int | None:
    """How many images train_run held out for validation (one predictions.csv row each)."""
    rows = RunFolder(run_dir).read_predictions()
    return len(rows) if rows is not None else None


# ---------------------------------------------------------------------------------------------
# Report


def _speedup(seeds: dict, ours: dict) -> dict:
    ours_t = ours.get("time_to_90_s")
    seeds_t = seeds.get("time_to_90_s")
    if ours_t is None:
        return {"value": None, "bound": "ours never reached 90%"}
    if seeds_t is None:
        return {"value": seeds["trained_s"] / ours_t, "bound": "lower"}
    return {"value": seeds_t / ours_t, "bound": "exact"}


def _reach_text(recipe: dict) -> str:
    if recipe.get("time_to_90_s") is None:
        return f"not reached in {len(recipe['epochs'])} epochs ({recipe['trained_s']:.0f} s)"
    return f"{recipe['time_to_90_s']:.0f} s (epoch {recipe['reached_90_epoch']})"


def print_report(results: dict) -> None:
    seeds, ours = results.get("seeds"), results.get("ours")
    env = results["environment"]
    out = ["", f"imgclf training benchmark  ({env['cpus']} CPUs, TF {env['tensorflow']}, Keras {env['keras']}, "
                f"{results['train_images']} train images, {results['test_images']} test images)", ""]
    if ours:
        data, aug, training = ours["config"]["data"], ours["config"]["augmentation"], ours["config"]["training"]
        out.append(f"ours:  {ours['config']['model']['name']}, {data['image_size']} px {data['color_mode']}, "
                   f"batch {data['batch_size']}, validation split {data['validation_split']} "
                   f"({ours['validation_images']} held out), "
                   f"{training['epochs']} epochs, lr {training['learning_rate']} {training['schedule']}")
        out.append("       augmentation " + ", ".join(f"{key} {value}" for key, value in aug.items()))
    if seeds:
        out.append("seeds: seed_cnn, 28 px grayscale, batch 32, Adam 1e-3, ImageDataGenerator "
                   "(rotation 20, zoom 0.2, horizontal flip), model.fit")
    out.append("")
    header = (f"{'epoch':>5} | {'seeds s':>8} {'cum s':>7} {'test acc':>8} | "
              f"{'ours s':>8} {'cum s':>7} {'test acc':>8} {'(loop s)':>8}")
    out.append(header)
    out.append("-" * len(header))
    seeds_rows = seeds["epochs"] if seeds else []
    ours_rows = ours["epochs"] if ours else []
    for number in range(max(len(seeds_rows), len(ours_rows))):
        left = (f"{seeds_rows[number]['seconds']:>8.1f} {seeds_rows[number]['cum_s']:>7.1f} "
                f"{seeds_rows[number]['test_accuracy']:>8.4f}" if number < len(seeds_rows) else " " * 25)
        right = (f"{ours_rows[number]['seconds']:>8.1f} {ours_rows[number]['cum_s']:>7.1f} "
                 f"{ours_rows[number]['test_accuracy']:>8.4f} {ours_rows[number]['loop_s']:>8.1f}"
                 if number < len(ours_rows) else "")
        out.append(f"{number + 1:>5} | {left} | {right}")
    out.append("")
    out.append("epoch 1 includes each recipe's setup; test-accuracy measurement time is excluded everywhere.")
    if ours:
        out.append(f"ours epoch 1 = CLI config + cold scan {ours['config_and_cold_scan_s']:.1f} s"
                   f" + train_run setup (warm scan, split, decode, build; epoch-1 saves)"
                   f" {ours['train_run_setup_s']:.1f} s"
                   f" + loop {ours_rows[0]['loop_s']:.1f} s; after the last epoch: evaluation files"
                   f" {ours['finish_s']:.1f} s (not counted)")
    out.append("")
    if seeds:
        out.append(f"seeds: time to 90% test accuracy  {_reach_text(seeds)};"
                   f"  best test accuracy {seeds['best_test_accuracy']:.4f}")
    if ours:
        verdict = "PASS" if ours["best_test_accuracy"] >= TARGET_ACCURACY else "MISS"
        out.append(f"ours:  time to 90% test accuracy  {_reach_text(ours)};"
                   f"  best test accuracy {ours['best_test_accuracy']:.4f}"
                   f" (final {ours['final_test_accuracy']:.4f})   target >= {TARGET_ACCURACY:.0%}: {verdict}")
    speedup = results.get("speedup")
    if speedup and speedup["value"] is not None:
        bound = ">= " if speedup["bound"] == "lower" else ""
        if speedup["value"] >= TARGET_SPEEDUP:
            verdict = "PASS"
        else:
            verdict = "MISS" if speedup["bound"] == "exact" else "UNDECIDED (seeds need more epochs)"
        out.append(f"seeds' time to 90% / ours: {bound}{speedup['value']:.2f}x"
                   f"   target >= {TARGET_SPEEDUP:.0f}x (ours in <= 1/3 of the seeds' time): {verdict}")
    elif speedup:
        out.append(f"seeds' time to 90% / ours: n/a ({speedup['bound']})")
    out.append("")
    out.append(f"total bench time {results['total_s']:.0f} s")
    print("\n".join(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_TREE / "train"), help="training tree (default: %(default)s)")
    parser.add_argument("--test", default=str(DEFAULT_TREE / "test"), help="test tree (default: %(default)s)")
    parser.add_argument("--epochs-seeds", type=int, default=36,
                        help="epochs of the seeds' recipe; 0 skips it (default: %(default)s)")
    parser.add_argument("--epochs-ours", type=int, default=None,
                        help=f"epochs of ours (default: our default, {TrainingConfig().epochs}); 0 skips it")
    parser.add_argument("--train-limit", type=int, default=0,
                        help="a balanced copied subset of --data of this many images; 0 = all (default: %(default)s)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    if args.epochs_seeds < 0 or (args.epochs_ours is not None and args.epochs_ours < 0):
        parser.error("epochs must be >= 0")
    for folder in (args.data, args.test):
        if not Path(folder).is_dir():
            raise SystemExit(f"{folder} does not exist: write it with `.venv/bin/imgclf fashion-mnist {DEFAULT_TREE}`")

    total_start = time.perf_counter()
    results: dict = {
        "environment": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "machine": platform.machine(),
        },
        "options": vars(args),
        "targets": {"best_test_accuracy": TARGET_ACCURACY, "speedup_to_90": TARGET_SPEEDUP},
    }
    workdir = Path(tempfile.mkdtemp(prefix="imgclf-bench-training-"))
    try:
        directory, files = balanced_subset(Path(args.data), args.train_limit, workdir, "train-subset")
        results["train_images"] = files
        log(f"test set: decoding {args.test} once ...")
        test = TestSet(Path(args.test))
        results["test_images"] = len(test.images)
        if args.epochs_seeds:
            log(f"seeds: {args.epochs_seeds} epochs on {files} images in {directory} ...")
            results["seeds"] = run_seeds(directory, args.epochs_seeds, test)
        if args.epochs_ours != 0:
            log(f"ours: `imgclf train` defaults on {files} images in {directory} ...")
            results["ours"] = run_ours(directory, args.epochs_ours, test, workdir)
        if "seeds" in results and "ours" in results:
            results["speedup"] = _speedup(results["seeds"], results["ours"])
            results["targets_met"] = {
                "best_test_accuracy": results["ours"]["best_test_accuracy"] >= TARGET_ACCURACY,
                "speedup_to_90": (results["speedup"]["value"] or 0) >= TARGET_SPEEDUP,
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["total_s"] = time.perf_counter() - total_start

    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
