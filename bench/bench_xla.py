"""Does XLA speed up the training step on this CPU? small_cnn's step compiled with and without it.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_xla.py [--batch 128] [--rounds 4] [--steps 20]

The step is the trainer's arithmetic (forward, cross-entropy, gradients, Adam) on one in-memory batch of
28 x 28 grayscale images, `tf.function` with `jit_compile=False` against `True`, timed in alternating
rounds in one process (CPU timings swing between runs: only the ratio means something). It prints the
first call of each (tracing, and XLA's compilation) and the images/s of every round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def compiled_step(jit_compile: bool, batch: int):
    import keras
    import tensorflow as tf

    from imgclf_core.config import ModelConfig
    from imgclf_core.models.registry import create_model

    model = create_model(ModelConfig(name="small_cnn", weights="none"), 10, 28, 1)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)

    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, model(images, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    return tf.function(step, jit_compile=jit_compile)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="the recipe's batch size on big datasets (default)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    args = parser.parse_args()
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (args.batch, 28, 28, 1)).astype(np.float32))
    labels = tf.constant(rng.integers(0, 10, args.batch).astype(np.int32))
    steps = {jit: compiled_step(jit, args.batch) for jit in (False, True)}
    for jit, step in steps.items():
        started = time.perf_counter()
        float(step(images, labels))
        print(f"jit_compile={jit!s:<5} first call (trace{' + XLA compile' if jit else ''}): "
              f"{time.perf_counter() - started:.2f} s")
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for jit, step in steps.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                loss = step(images, labels)
            float(loss)
            rates[jit].append(args.steps * args.batch / (time.perf_counter() - started))
    for jit, values in rates.items():
        print(f"jit_compile={jit!s:<5} img/s per round: {', '.join(f'{value:,.0f}' for value in values)}; "
              f"median {statistics.median(values):,.0f}")
    print(f"XLA / plain: {statistics.median(rates[True]) / statistics.median(rates[False]):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
