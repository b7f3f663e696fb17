"""Single-image predict + Grad-CAM latency: our compiled path against the keras-io recipe.

Reproduce (CPU; timings swing between runs on a small machine, so compare the ratios printed by
ONE run, never absolute numbers across runs):

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_predict.py [--calls 50] [--json out.json]

Cases: small_cnn (3 classes, untrained: speed does not depend on the weights) at 32 px RGB, and
the built-in ImageNet EfficientNet-Lite0 at 224 px when imgclf_core.models.efficientnet_lite and its
weights are available. For each, the median of --calls warm calls (after --warmup calls) of:

(a) ours, predict: `Predictor.predict_arrays(image[None])`, a tf.function traced once (uint8 in).
(b) ours, predict + Grad-CAM: `Predictor.explain(image)`, one compiled call that returns the
    probabilities and the heatmap (the path `predict_files(..., gradcam_dir=...)` takes).
(c) keras-io, predict: `model.predict(x)` (x = the image as float32, batch of one).
(d) keras-io, predict + Grad-CAM, as the keras-io "Grad-CAM class activation visualization"
    example is written: `model.predict(x)`, then `make_gradcam_heatmap` which builds the
    two-output grad model on every call and runs it eagerly under tf.GradientTape.
    (The example also sets the last layer's activation to None; that changes no timing and
    would change the model, so it is not done here.)
(e) diagnostics: eager `model(x, training=False)`, and (d) with the grad model built once.
Ratios printed: (d)/(b) and (c)/(a).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as imgclf_core sets it: both recipes run with it
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

from imgclf_core.config import ModelConfig  # noqa: E402
from imgclf_core.models.registry import create_model, last_conv_layer_name  # noqa: E402
from imgclf_core.inspection.predict import Predictor  # noqa: E402


def keras_io_make_gradcam_heatmap(img_array, model, last_conv_layer_name, pred_index=None):
    """The keras-io example's function, verbatim apart from names of imports."""
    grad_model = keras.models.Model(model.inputs, [model.get_layer(last_conv_layer_name).output, model.output])
    return _keras_io_heatmap(grad_model, img_array, pred_index)


def _keras_io_heatmap(grad_model, img_array, pred_index=None):
    with tf.GradientTape() as tape:
        last_conv_layer_output, preds = grad_model(img_array)
        if pred_index is None:
            pred_index = tf.argmax(preds[0])
        class_channel = preds[:, pred_index]
    grads = tape.gradient(class_channel, last_conv_layer_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    last_conv_layer_output = last_conv_layer_output[0]
    heatmap = last_conv_layer_output @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap)
    heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
    return heatmap.numpy()


def median_milliseconds(function, calls: int, warmup: int) -> float:
    for _ in range(warmup):
        function()
    durations = []
    for _ in range(calls):
        started = time.perf_counter()
        function()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations) * 1000.0


def bench_case(label: str, predictor: Predictor, calls: int, warmup: int) -> dict:
    model = predictor.model
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, predictor.input_shape, dtype=np.uint8)
    x = image[None].astype(np.float32)
    layer = last_conv_layer_name(model)
    grad_model_once = keras.models.Model(model.inputs, [model.get_layer(layer).output, model.output])

    def keras_io_predict():
        return model.predict(x, verbose=0)

    def keras_io_predict_and_gradcam():
        model.predict(x, verbose=0)
        return keras_io_make_gradcam_heatmap(x, model, layer)

    def keras_io_gradcam_model_once():
        model.predict(x, verbose=0)
        return _keras_io_heatmap(grad_model_once, x)

    timings = {
        "ours_predict_ms": median_milliseconds(lambda: predictor.predict_arrays(image[None]), calls, warmup),
        "ours_predict_gradcam_ms": median_milliseconds(lambda: predictor.explain(image), calls, warmup),
        "keras_io_predict_ms": median_milliseconds(keras_io_predict, calls, warmup),
        "keras_io_predict_gradcam_ms": median_milliseconds(keras_io_predict_and_gradcam, calls, warmup),
        "eager_call_ms": median_milliseconds(lambda: model(x, training=False), calls, warmup),
        "keras_io_gradcam_model_built_once_ms": median_milliseconds(keras_io_gradcam_model_once, calls, warmup),
    }
    timings["speedup_predict"] = timings["keras_io_predict_ms"] / timings["ours_predict_ms"]
    timings["speedup_predict_gradcam"] = timings["keras_io_predict_gradcam_ms"] / timings["ours_predict_gradcam_ms"]
    _check_same_heatmap(predictor, image, x, grad_model_once)
    print_case(label, timings)
    return timings


def _check_same_heatmap(predictor: Predictor, image: np.ndarray, x: np.ndarray, grad_model) -> None:
    """Both recipes must agree on the predicted class, or the comparison is meaningless."""
    ours, _ = predictor.explain(image)
    theirs = predictor.model.predict(x, verbose=0)[0]
    if ours.argmax() != theirs.argmax() or not np.allclose(ours, theirs, atol=1e-4):
        raise SystemExit("the two paths disagree on the probabilities: benchmark aborted")


def print_case(label: str, timings: dict) -> None:
    print(f"\n{label}: median of warm single-image calls (ms)")
    print(f"  predict            ours {timings['ours_predict_ms']:8.2f}   keras-io model.predict "
          f"{timings['keras_io_predict_ms']:8.2f}   ratio {timings['speedup_predict']:5.1f}x")
    print(f"  predict + Grad-CAM ours {timings['ours_predict_gradcam_ms']:8.2f}   keras-io recipe        "
          f"{timings['keras_io_predict_gradcam_ms']:8.2f}   ratio {timings['speedup_predict_gradcam']:5.1f}x")
    print(f"  (eager model(x): {timings['eager_call_ms']:.2f} ms; keras-io with the grad model built once: "
          f"{timings['keras_io_gradcam_model_built_once_ms']:.2f} ms)")


def imagenet_predictor() -> Predictor | None:
    try:
        return Predictor.imagenet()
    except (ImportError, FileNotFoundError, ValueError) as error:
        print(f"efficientnet_lite0 skipped: {type(error).__name__}: {error}", file=sys.stderr)
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip-imagenet", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the timings as JSON")
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU(s), "
          f"devices: {[device.device_type for device in tf.config.list_logical_devices()]}")
    results = {}
    keras.utils.set_random_seed(0)
    small = create_model(ModelConfig(name="small_cnn", weights="none"), 3, 32, 3)
    results["small_cnn_32"] = bench_case("small_cnn 32 px", Predictor(small, ["a", "b", "c"], 32, "rgb"),
                                         args.calls, args.warmup)
    if not args.skip_imagenet:
        predictor = imagenet_predictor()
        if predictor is not None:
            results["efficientnet_lite0_224"] = bench_case("efficientnet_lite0 (ImageNet) 224 px", predictor,
                                                           args.calls, args.warmup)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
