"""Training benchmark: the seeds' two recipes against our default CNN and pipeline, to test accuracy.

Reproduce (CPU; timings swing 2-4x between runs on a small machine, so compare the ratios printed
by ONE run, never absolute numbers across runs):

    .venv/bin/imgclf fashion-mnist /tmp/fmnist-tree      # 60k train + 10k test PNGs, ~1 minute
    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_training.py --json /tmp/bench_training.json

(With no arguments the defaults are exactly those, except --json: all 60k training images, the
seeds' plain recipe for --epochs-seeds-plain epochs, their augmented one for up to
--epochs-seeds-augmented epochs, ours for our default number of epochs, then the GFLOP/s
measurement; about an hour on 2 cores. A quick trial on a balanced subset: --train-limit 10000
--epochs-seeds-plain 3 --epochs-seeds-augmented 3 --epochs-ours 3.)

What is measured, in one process, on the same files, one recipe after the other (in this order):

(a) seeds_plain: ImageDataGenerator(rescale=1/255).flow_from_directory(TRAIN, target_size=(28, 28),
    color_mode="grayscale", batch_size=32, class_mode="sparse") + the `seed_cnn` network + Adam
    (Keras defaults) + `model.fit`: the seeds' recipe without augmentation. The seeds' network took
    the generator's 0..1 images; the registry's seed_cnn rescales by 1/255 inside, so that one
    layer is swapped for an identity here (scaling twice would cripple it).
(b) seeds_augmented: the same with ImageDataGenerator(rescale=1/255, rotation_range=20,
    zoom_range=0.2, horizontal_flip=True), the seeds' other recipe. It may stop early: once its
    training time has passed the plain variant's time to 90% without any of its epochs having
    reached 90%, it can no longer be the faster seeds' variant, so it stops at that epoch's end
    (--full-seeds-augmented trains every epoch). Only then are its epochs so far classified
    during the run (outside its clock); the reason is recorded as "stopped_early".
(c) ours: exactly what `imgclf train TRAIN --out RUN [--epochs N]` does: the CLI's
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
the first epoch with test accuracy >= 90%. The faster seeds' variant is the one with the shorter
time to 90% (one that never got there counts as infinitely slow); the speedup is its time to 90%
over ours. If neither seeds' variant got there, the ratio is reported as a bound: the longer of
their two whole training times over ours.

Then (unless --no-gflops) the achieved GFLOP/s of ours' network and of the seeds' network against
the machine's peak (measured clock x 32 FP32 FLOP per cycle per core x os.cpu_count()): FLOPs
counted from the Keras model (Conv2D and Dense), throughput of a compiled train step alone on one
in-memory batch (at the recipe's batch size and at 256), and in the run (epochs 2..N).

Targets (from the issue): ours reaches >= 94% final test accuracy, and reaches 90% in at most one
third of the faster seeds' variant's wall time (its time-to-90 / ours >= 3).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
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
TARGET_ACCURACY = 0.94  # ours' final test accuracy
TARGET_SPEEDUP = 3.0
PREDICT_BATCH = 1000
SEEDS_AUGMENTATION = {"rotation_range": 20, "zoom_range": 0.2, "horizontal_flip": True}
SEEDS_RECIPES = ("seeds_plain", "seeds_augmented")  # run in this order, then ours
RECIPE_NAMES = {
    "seeds_plain": "seeds' recipe, no augmentation",
    "seeds_augmented": "seeds' recipe with augmentation",
    "ours": "imgclf train defaults",
}
# GFLOP/s: Zen 3 / AVX2, two 256-bit FMA units per core: 2 x 8 FP32 lanes x 2 FLOP per FMA.
FP32_FLOP_PER_CYCLE = 32
STEP_SECONDS = 5.0
STEP_WARMUP = 5
STEP_BIG_BATCH = 256


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

    def measure_test_accuracy(self, model: keras.Model | None = None) -> None:
        """Classify the test images with the weights of each epoch not classified yet.

        After the recipe (the default, `model` None: the recipe's own model) this is not timed.
        During the recipe pass a separate model of the same architecture (the training model's
        weights are left alone); the time spent is then taken out of the clock like a snapshot.
        """
        during = model is not None
        model = model if during else self.model
        started_all = time.perf_counter()
        for row, weights in zip(self.epochs, self.snapshots):
            if "test_accuracy" in row:
                continue
            model.set_weights(weights)
            started = time.perf_counter()
            row["test_accuracy"] = self.test.accuracy(model, self.class_names, self.scale)
            row["test_measure_s"] = time.perf_counter() - started
            if during:
                row["measured_during_run"] = True
            log(f"  epoch {row['epoch']}: test accuracy {row['test_accuracy']:.4f}"
                + (" (measured during the run, excluded from its clock)" if during else ""))
        if during:
            self.excluded += time.perf_counter() - started_all

    def summary(self) -> dict:
        self.measure_test_accuracy()
        self.snapshots.clear()
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
# The three recipes


def seeds_network(num_classes: int) -> keras.Model:
    """The seeds' CNN as they trained it: on 0..1 images (the registry's seed_cnn rescales inside)."""
    registered = create_model(ModelConfig(name="seed_cnn"), num_classes, IMAGE_SIZE, 1)

    def clone(layer):
        if layer.name == "preprocess_rescale":
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(registered, clone_function=clone)


def run_seeds(directory: Path, epochs: int, test: TestSet, augment: bool, race: dict | None = None) -> dict:
    """One of the seeds' recipes: with or without their augmentation.

    `race`: the plain variant's result, when it reached 90%. This variant then stops at the end of
    the first epoch whose training time has passed the plain one's time to 90%, unless one of its
    epochs so far reached 90% (those epochs are classified there, with a separate copy of the
    network, outside the clock): from then on it can no longer be the faster seeds' variant.
    """
    keras.utils.set_random_seed(SEED)
    clock = EpochClock(test, [], scale=1 / 255)
    generator = tf.keras.preprocessing.image.ImageDataGenerator(
        rescale=1 / 255, **(SEEDS_AUGMENTATION if augment else {})
    ).flow_from_directory(
        str(directory), target_size=(IMAGE_SIZE, IMAGE_SIZE), color_mode="grayscale",
        batch_size=SEEDS_BATCH_SIZE, class_mode="sparse", seed=SEED,
    )
    clock.class_names = sorted(generator.class_indices, key=generator.class_indices.get)
    model = seeds_network(len(clock.class_names))
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    deadline = race["time_to_90_s"] if race and race.get("time_to_90_s") is not None else None
    outcome: dict = {}

    class Measure(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            clock.epoch_end(self.model, loss=logs.get("loss"), train_accuracy=logs.get("accuracy"))
            if deadline is None or "checked" in outcome or clock.epochs[-1]["cum_s"] <= deadline:
                return
            outcome["checked"] = True  # the first epoch past the plain variant's time to 90%
            log(f"  past the plain variant's time to 90% ({deadline:.1f} s): classifying the epochs so far ...")
            clock.measure_test_accuracy(seeds_network(len(clock.class_names)))
            accuracies = [row["test_accuracy"] for row in clock.epochs]
            if max(accuracies) >= REACH_ACCURACY:
                log("  reached 90% by then: trains on")
                return
            row = clock.epochs[-1]
            outcome["stopped_early"] = (
                f"stopped after epoch {row['epoch']} of {epochs}: its {row['cum_s']:.0f} s of training passed the"
                f" plain variant's time to 90% ({deadline:.0f} s, epoch {race['reached_90_epoch']}) with no epoch at"
                f" 90% test accuracy (best {max(accuracies):.2%}), so it could no longer be the faster variant"
                " (--full-seeds-augmented trains every epoch)")
            log(f"  {outcome['stopped_early']}")
            self.model.stop_training = True

    model.fit(generator, epochs=epochs, callbacks=[Measure()], verbose=0)
    result = {
        "images": generator.samples, "batch_size": SEEDS_BATCH_SIZE, "epochs_asked": epochs,
        "augmentation": dict(SEEDS_AUGMENTATION) if augment else None, **clock.summary(),
    }
    if "stopped_early" in outcome:
        result["stopped_early"] = outcome["stopped_early"]
    return result


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
# GFLOP/s: the networks' arithmetic against the machine's peak

CLOCK_PROGRAM = r"""
#include <stdio.h>
#include <time.h>

int main(void) {
    const long n = 400000000L;
    unsigned long x = 0;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < n; i++) {
        /* a dependent chain: one add per cycle, whatever the core's width */
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    double seconds = (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) * 1e-9;
    printf("%.1f %lu\n", 4.0 * n / seconds / 1e6, x);
    return 0;
}
"""


def measure_clock_mhz() -> dict:
    """The core clock: a timed chain of dependent integer adds (gcc), else /proc/cpuinfo's "cpu MHz"."""
    gcc = shutil.which("gcc")
    problem = "gcc not on PATH"
    if gcc:
        try:
            with tempfile.TemporaryDirectory(prefix="imgclf-clock-") as folder:
                source, program = Path(folder) / "clock.c", Path(folder) / "clock"
                source.write_text(CLOCK_PROGRAM, encoding="utf-8")
                subprocess.run([gcc, "-O2", "-o", str(program), str(source)], check=True, capture_output=True,
                               timeout=120)
                runs = [float(subprocess.run([str(program)], check=True, capture_output=True, text=True,
                                             timeout=120).stdout.split()[0]) for _ in range(3)]
            return {"mhz": statistics.median(runs), "runs_mhz": runs,
                    "method": "gcc: 400M x 4 dependent integer adds timed with CLOCK_MONOTONIC, median of 3"}
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as error:
            problem = f"gcc measurement failed: {error}"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("cpu mhz"):
                return {"mhz": float(line.split(":", 1)[1]), "method": f"/proc/cpuinfo cpu MHz ({problem})"}
    except (OSError, ValueError):
        pass
    return {"mhz": None, "method": f"unknown ({problem}; no cpu MHz in /proc/cpuinfo)"}


def machine_peak() -> dict:
    clock = measure_clock_mhz()
    cores = os.cpu_count() or 1
    peak = clock["mhz"] * 1e6 * FP32_FLOP_PER_CYCLE * cores / 1e9 if clock["mhz"] else None
    return {**clock, "cores": cores, "flop_per_cycle_per_core": FP32_FLOP_PER_CYCLE, "gflops": peak,
            "assumes": "Zen 3 / AVX2, two FMA units per core (2 x 8 FP32 lanes x 2); cores = os.cpu_count()"}


def _weighted_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _weighted_layers(layer)
        else:
            yield layer


def count_flops(model: keras.Model) -> dict:
    """FLOPs per image of Conv2D and Dense layers: forward, and a training step (forward + both gradients).

    MACs = output elements x kernel h x kernel w x input channels (Dense: in x out); forward = 2 x MACs;
    a training step = 3 x forward (forward, weight gradient, input gradient), except the first weighted
    layer, which needs no input gradient (2 x). BN, ReLU, pooling and the optimizer are not counted.
    """
    layers, ignored = [], []
    for layer in _weighted_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            out_h, out_w, out_c = layer.output.shape[1:]
            kernel_h, kernel_w = layer.kernel_size
            macs = out_h * out_w * out_c * kernel_h * kernel_w * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            macs = layer.input.shape[-1] * layer.units
        else:
            if layer.weights and not isinstance(layer, keras.layers.BatchNormalization):
                ignored.append(layer.name)
            continue
        forward = 2 * macs
        layers.append({"name": layer.name, "type": type(layer).__name__, "macs": int(macs),
                       "forward_flops": int(forward), "train_flops": int((2 if not layers else 3) * forward)})
    return {
        "forward_flops_per_image": sum(row["forward_flops"] for row in layers),
        "train_flops_per_image": sum(row["train_flops"] for row in layers),
        "layers": layers, "ignored_weighted_layers": ignored,
    }


def step_throughput(model: keras.Model, batch_size: int, num_classes: int, input_max: float) -> dict:
    """A compiled train step (forward, sparse CE, gradient, Adam) on one fixed in-memory batch, ~5 s."""
    rng = np.random.default_rng(SEED)
    shape = (batch_size, *model.input_shape[1:])
    images = tf.constant(rng.uniform(0.0, input_max, shape).astype("float32"))
    labels = tf.constant(rng.integers(0, num_classes, batch_size).astype("int32"))
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    for _ in range(STEP_WARMUP):
        float(step(images, labels))
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < STEP_SECONDS:
        loss = step(images, labels)
        steps += 1
    float(loss)
    seconds = time.perf_counter() - started
    return {"batch_size": batch_size, "steps": steps, "seconds": seconds, "img_s": steps * batch_size / seconds}


def _with_gflops(row: dict, flops_per_image: float, peak: float | None) -> dict:
    row["gflops"] = row["img_s"] * flops_per_image / 1e9
    row["pct_peak"] = 100 * row["gflops"] / peak if peak else None
    return row


def _in_run(epochs: list[dict], train_images: int, train_flops: float, validation_images: int = 0,
            forward_flops: float = 0.0, peak: float | None = None) -> dict | None:
    """Median over epochs 2..N of the arithmetic done per epoch second (validation's forward passes included)."""
    later = [row for row in epochs[1:] if row.get("seconds")]
    if not later:
        return None
    flops = train_images * train_flops + validation_images * forward_flops
    gflops = statistics.median(flops / row["seconds"] / 1e9 for row in later)
    return {
        "epochs": [row["epoch"] for row in later], "train_images": train_images,
        "validation_images": validation_images,
        "img_s": statistics.median(train_images / row["seconds"] for row in later),
        "gflops": gflops, "pct_peak": 100 * gflops / peak if peak else None,
    }


def _network_gflops(label: str, model: keras.Model, recipe_batch: int, num_classes: int, input_max: float,
                    peak: float | None, in_run: dict) -> dict:
    counted = count_flops(model)
    train_flops = counted["train_flops_per_image"]
    log(f"gflops: {label}: {counted['forward_flops_per_image'] / 1e6:.1f} MFLOP forward, "
        f"{train_flops / 1e6:.1f} MFLOP a training step per image; step-only throughput ...")
    big = _with_gflops(step_throughput(model, STEP_BIG_BATCH, num_classes, input_max), train_flops, peak)
    small = (dict(big) if recipe_batch == STEP_BIG_BATCH else
             _with_gflops(step_throughput(model, recipe_batch, num_classes, input_max), train_flops, peak))
    log(f"  batch {STEP_BIG_BATCH}: {big['gflops']:.1f} GFLOP/s; batch {recipe_batch}: {small['gflops']:.1f} GFLOP/s")
    result = {"network": model.name, "label": label, "batch_size": recipe_batch, **counted,
              "step_batch_256": big, "step_recipe_batch": small, "in_run": in_run}
    if peak:
        result["lost_pct_of_peak"] = {
            "kernels": 100 - big["pct_peak"],
            "small_batches": big["pct_peak"] - small["pct_peak"],
            "pipeline": {recipe: small["pct_peak"] - row["pct_peak"] for recipe, row in in_run.items() if row},
        }
    return result


def measure_gflops(results: dict) -> dict:
    """Achieved GFLOP/s of ours' network and the seeds' against the machine's peak."""
    peak = machine_peak()
    log(f"gflops: clock {peak['mhz']} MHz ({peak['method']}); peak {peak['gflops']} GFLOP/s")
    peak_gflops = peak["gflops"]
    networks = {}
    ours = results.get("ours")
    if ours and ours.get("epochs"):
        config = ours["config"]
        data = config["data"]
        channels = 3 if data["color_mode"] == "rgb" else 1
        model = create_model(ModelConfig(name=config["model"]["name"]), 10, data["image_size"], channels)
        counted = count_flops(model)
        validation = ours.get("validation_images") or 0
        in_run = {"ours": _in_run(ours["epochs"], results["train_images"] - validation,
                                  counted["train_flops_per_image"], validation,
                                  counted["forward_flops_per_image"], peak_gflops)}
        networks["ours"] = _network_gflops(f"ours ({model.name})", model, data["batch_size"], 10, 255.0,
                                           peak_gflops, in_run)
    seeds = [key for key in SEEDS_RECIPES if results.get(key, {}).get("epochs")]
    if seeds:
        model = seeds_network(10)
        counted = count_flops(model)
        in_run = {key: _in_run(results[key]["epochs"], results[key]["images"], counted["train_flops_per_image"],
                               peak=peak_gflops) for key in seeds}
        networks["seeds"] = _network_gflops("seeds (seed_cnn)", model, SEEDS_BATCH_SIZE, 10, 1.0, peak_gflops,
                                            in_run)
    return {"peak": peak, "networks": networks}


# ---------------------------------------------------------------------------------------------
# Report


def _time_to_90(recipe: dict) -> float:
    value = recipe.get("time_to_90_s")
    return math.inf if value is None else value


def faster_seeds(results: dict) -> str | None:
    """The seeds' variant with the shorter time to 90% (never reached = infinitely slow).

    When neither reached 90%, the one that trained longer: the ratio is then its whole training time
    over ours, a bound, and run[faster_seeds] is the variant that bound was taken from.
    """
    present = [key for key in SEEDS_RECIPES if results.get(key)]
    if not present:
        return None
    if all(results[key].get("time_to_90_s") is None for key in present):
        return max(present, key=lambda key: results[key]["trained_s"])
    return min(present, key=lambda key: _time_to_90(results[key]))  # a tie goes to the plain variant


def _speedup(results: dict) -> dict:
    """The faster seeds' variant's time to 90% over ours (a lower bound when neither variant got there)."""
    ours = results["ours"]
    faster = results[results["faster_seeds"]]
    ours_t = ours.get("time_to_90_s")
    if ours_t is None:
        return {"value": None, "bound": "ours never reached 90%"}
    if faster.get("time_to_90_s") is None:
        longest = max(results[key]["trained_s"] for key in SEEDS_RECIPES if results.get(key))
        return {"value": longest / ours_t, "bound": "lower"}
    return {"value": faster["time_to_90_s"] / ours_t, "bound": "exact"}


def _reach_text(recipe: dict) -> str:
    if recipe.get("time_to_90_s") is None:
        return f"not reached in {len(recipe['epochs'])} epochs ({recipe['trained_s']:.0f} s)"
    return f"{recipe['time_to_90_s']:.0f} s (epoch {recipe['reached_90_epoch']})"


def _epoch_cells(rows: list[dict], number: int, loop: bool = False) -> str:
    width = 34 if loop else 25
    if number >= len(rows):
        return " " * width
    row = rows[number]
    text = f"{row['seconds']:>8.1f} {row['cum_s']:>7.1f} {row['test_accuracy']:>8.4f}"
    return text + (f" {row['loop_s']:>8.1f}" if loop else "")


def gflops_lines(gflops: dict) -> list[str]:
    """The GFLOP/s tables: peak, step only at batch 256 and at the recipe's batch, in the run."""
    peak = gflops["peak"]
    peak_value = peak.get("gflops")
    out = []
    if peak_value:
        out.append(f"peak: {peak['mhz']:.0f} MHz x {peak['flop_per_cycle_per_core']} FP32 FLOP/cycle x "
                   f"{peak['cores']} cores = {peak_value:.1f} GFLOP/s   (clock: {peak['method']})")
    else:
        out.append(f"peak: unknown (clock: {peak['method']})")

    def pct(value):
        return f"{value:>9.1f}%" if value is not None else f"{'-':>10}"

    for network in gflops["networks"].values():
        out += ["", f"{network['label']}: {network['forward_flops_per_image'] / 1e6:.2f} MFLOP forward, "
                    f"{network['train_flops_per_image'] / 1e6:.2f} MFLOP a training step, per image "
                    f"(Conv2D + Dense only)"]
        header = f"  {'':<40} {'img/s':>9} {'GFLOP/s':>9} {'% of peak':>10}"
        out += [header, "  " + "-" * (len(header) - 2)]
        if peak_value:
            out.append(f"  {'peak':<40} {'':>9} {peak_value:>9.1f} {100.0:>9.1f}%")
        big, small = network["step_batch_256"], network["step_recipe_batch"]
        out.append(f"  {'step only, batch %d' % big['batch_size']:<40} {big['img_s']:>9,.0f} "
                   f"{big['gflops']:>9.1f} {pct(big['pct_peak'])}")
        out.append(f"  {'step only, batch %d (the recipe)' % small['batch_size']:<40} {small['img_s']:>9,.0f} "
                   f"{small['gflops']:>9.1f} {pct(small['pct_peak'])}")
        for recipe, row in network["in_run"].items():
            if not row:
                out.append(f"  {'in the run, ' + recipe:<40} (needs 2+ epochs)")
                continue
            epochs = row["epochs"]
            label = f"in the run, {recipe} (epochs {epochs[0]}-{epochs[-1]})"
            out.append(f"  {label:<40} {row['img_s']:>9,.0f} {row['gflops']:>9.1f} {pct(row['pct_peak'])}")
        lost = network.get("lost_pct_of_peak")
        if lost:
            rest = "; ".join(
                f"input pipeline, Python loop{' and validation' if network['in_run'][recipe]['validation_images'] else ''}"
                f" ({recipe}) {value:.1f} pp" for recipe, value in lost["pipeline"].items())
            out.append(f"  where the rest of the peak goes: kernels {lost['kernels']:.1f} pp (peak -> batch-256 step);"
                       f" small batches {lost['small_batches']:.1f} pp (batch 256 -> {small['batch_size']})"
                       + (f"; {rest} (recipe step -> in run)" if rest else ""))
    return out


def print_report(results: dict) -> None:
    recipes = {key: results.get(key) for key in (*SEEDS_RECIPES, "ours")}
    plain, augmented, ours = recipes["seeds_plain"], recipes["seeds_augmented"], recipes["ours"]
    env = results["environment"]
    out = ["", f"imgclf training benchmark  ({env['cpus']} CPUs, TF {env['tensorflow']}, Keras {env['keras']}, "
                f"{results['train_images']} train images, {results['test_images']} test images)", ""]
    if plain:
        out.append("seeds_plain:     seed_cnn, 28 px grayscale, batch 32, Adam 1e-3, "
                   "ImageDataGenerator(rescale=1/255) only, model.fit")
    if augmented:
        out.append("seeds_augmented: the same + ImageDataGenerator rotation 20, zoom 0.2, horizontal flip")
    if ours:
        data, aug, training = ours["config"]["data"], ours["config"]["augmentation"], ours["config"]["training"]
        out.append(f"ours:            {ours['config']['model']['name']}, {data['image_size']} px {data['color_mode']}, "
                   f"batch {data['batch_size']}, validation split {data['validation_split']} "
                   f"({ours['validation_images']} held out), "
                   f"{training['epochs']} epochs, lr {training['learning_rate']} {training['schedule']}")
        out.append("                 augmentation " + ", ".join(f"{key} {value}" for key, value in aug.items()))
    out.append("")
    groups = [(key, recipe) for key, recipe in recipes.items() if recipe]
    header = f"{'epoch':>5} | " + " | ".join(
        (f"{key[:15] + ' s':>17} {'cum s':>7} {'test acc':>8}" if key != "ours" else
         f"{'ours s':>8} {'cum s':>7} {'test acc':>8} {'(loop s)':>8}") for key, _ in groups)
    out += [header, "-" * len(header)]
    longest = max((len(recipe["epochs"]) for _, recipe in groups), default=0)
    for number in range(longest):
        cells = []
        for key, recipe in groups:
            text = _epoch_cells(recipe["epochs"], number, loop=key == "ours")
            cells.append(text if key == "ours" else " " * 9 + text)
        out.append(f"{number + 1:>5} | " + " | ".join(cells))
    out.append("")
    out.append("epoch 1 includes each recipe's setup; test-accuracy measurement time is excluded everywhere.")
    if ours and ours["epochs"]:
        out.append(f"ours epoch 1 = CLI config + cold scan {ours['config_and_cold_scan_s']:.1f} s"
                   f" + train_run setup (warm scan, split, decode, build; epoch-1 saves)"
                   f" {ours['train_run_setup_s']:.1f} s"
                   f" + loop {ours['epochs'][0]['loop_s']:.1f} s; after the last epoch: evaluation files"
                   f" {ours['finish_s']:.1f} s (not counted)")
    out.append("")
    for key in SEEDS_RECIPES:
        recipe = recipes[key]
        if recipe:
            out.append(f"{key + ':':<16} time to 90% test accuracy  {_reach_text(recipe)};"
                       f"  final test accuracy {recipe['final_test_accuracy']:.4f}"
                       f" (best {recipe['best_test_accuracy']:.4f})")
    if augmented and augmented.get("stopped_early"):
        out.append(f"                 {augmented['stopped_early']}")
    if ours:
        verdict = "PASS" if ours["final_test_accuracy"] >= TARGET_ACCURACY else "MISS"
        out.append(f"{'ours:':<16} time to 90% test accuracy  {_reach_text(ours)};"
                   f"  final test accuracy {ours['final_test_accuracy']:.4f}"
                   f" (best {ours['best_test_accuracy']:.4f})   target final >= {TARGET_ACCURACY:.0%}: {verdict}")
    if results.get("faster_seeds"):
        faster = results["faster_seeds"]
        why = ("the shorter time to 90%" if recipes[faster].get("time_to_90_s") is not None
               else "neither reached 90%: the one that trained longer, for the bound")
        out.append(f"faster seeds' variant: {faster} ({why})")
    speedup = results.get("speedup")
    if speedup and speedup["value"] is not None:
        bound = ">= " if speedup["bound"] == "lower" else ""
        if speedup["value"] >= TARGET_SPEEDUP:
            verdict = "PASS"
        else:
            verdict = "MISS" if speedup["bound"] == "exact" else "UNDECIDED (the seeds need more epochs)"
        out.append(f"faster seeds' variant's time to 90% / ours: {bound}{speedup['value']:.2f}x"
                   f"   target >= {TARGET_SPEEDUP:.0f}x (ours in <= 1/3 of its time): {verdict}")
    elif speedup:
        out.append(f"faster seeds' variant's time to 90% / ours: n/a ({speedup['bound']})")
    if results.get("gflops"):
        out += ["", "GFLOP/s achieved against the machine's peak", ""] + gflops_lines(results["gflops"])
    out.append("")
    out.append(f"total bench time {results['total_s']:.0f} s")
    print("\n".join(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_TREE / "train"), help="training tree (default: %(default)s)")
    parser.add_argument("--test", default=str(DEFAULT_TREE / "test"), help="test tree (default: %(default)s)")
    parser.add_argument("--epochs-seeds-plain", type=int, default=10,
                        help="epochs of the seeds' recipe without augmentation; 0 skips it (default: %(default)s)")
    parser.add_argument("--epochs-seeds-augmented", type=int, default=15,
                        help="epochs of the seeds' recipe with augmentation (at most: it stops early once it can no "
                             "longer be the faster variant); 0 skips it (default: %(default)s)")
    parser.add_argument("--full-seeds-augmented", action="store_true",
                        help="train the augmented seeds' recipe for all its epochs, never stopping it early")
    parser.add_argument("--epochs-ours", type=int, default=None,
                        help=f"epochs of ours (default: our default, {TrainingConfig().epochs}); 0 skips it")
    parser.add_argument("--train-limit", type=int, default=0,
                        help="a balanced copied subset of --data of this many images; 0 = all (default: %(default)s)")
    parser.add_argument("--no-gflops", action="store_true", help="skip the GFLOP/s measurement after the recipes")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    if min(args.epochs_seeds_plain, args.epochs_seeds_augmented) < 0 or (
            args.epochs_ours is not None and args.epochs_ours < 0):
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
        "targets": {"final_test_accuracy": TARGET_ACCURACY, "speedup_to_90": TARGET_SPEEDUP},
    }
    workdir = Path(tempfile.mkdtemp(prefix="imgclf-bench-training-"))
    try:
        directory, files = balanced_subset(Path(args.data), args.train_limit, workdir, "train-subset")
        results["train_images"] = files
        log(f"test set: decoding {args.test} once ...")
        test = TestSet(Path(args.test))
        results["test_images"] = len(test.images)
        if args.epochs_seeds_plain:
            log(f"seeds_plain: {args.epochs_seeds_plain} epochs on {files} images in {directory} ...")
            results["seeds_plain"] = run_seeds(directory, args.epochs_seeds_plain, test, augment=False)
        if args.epochs_seeds_augmented:
            race = None if args.full_seeds_augmented else results.get("seeds_plain")
            log(f"seeds_augmented: up to {args.epochs_seeds_augmented} epochs on {files} images in {directory} ...")
            results["seeds_augmented"] = run_seeds(directory, args.epochs_seeds_augmented, test, augment=True,
                                                   race=race)
        if args.epochs_ours != 0:
            log(f"ours: `imgclf train` defaults on {files} images in {directory} ...")
            results["ours"] = run_ours(directory, args.epochs_ours, test, workdir)
        results["faster_seeds"] = faster_seeds(results)
        if results["faster_seeds"] and "ours" in results:
            results["speedup"] = _speedup(results)
            results["targets_met"] = {
                "final_test_accuracy": results["ours"]["final_test_accuracy"] >= TARGET_ACCURACY,
                "speedup_to_90": (results["speedup"]["value"] or 0) >= TARGET_SPEEDUP,
            }
        if not args.no_gflops and any(key in results for key in (*SEEDS_RECIPES, "ours")):
            results["gflops"] = measure_gflops(results)
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
