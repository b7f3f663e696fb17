"""Grad-CAM on every registry model, on a model whose evidence we know, and the overlay drawing."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf_core.inspection.overlay import colorize_heatmap, overlay_heatmap

tf = pytest.importorskip("tensorflow")

import keras  # noqa: E402

from imgclf_core.config import ModelConfig  # noqa: E402
from imgclf_core.inspection.gradcam import GradCam  # noqa: E402
from imgclf_core.models.registry import create_model, last_conv_layer_name  # noqa: E402

REGISTRY_CASES = [("small_cnn", 32, 3), ("seed_cnn", 28, 1), ("mobilenet_v2", 32, 3)]


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")  # MobileNetV2 below 96 px
@pytest.mark.parametrize("name, size, channels", REGISTRY_CASES)
def test_registry_models_give_finite_heatmaps_in_0_1(name, size, channels):
    keras.utils.set_random_seed(0)
    model = create_model(ModelConfig(name=name, weights="none"), 4, size, channels)
    images = np.random.default_rng(0).integers(0, 256, (3, size, size, channels)).astype(np.float32)
    probabilities, heatmaps = GradCam(model)(images)
    feature_shape = model.get_layer(last_conv_layer_name(model)).output.shape
    assert probabilities.shape == (3, 4)
    assert heatmaps.shape == (3, feature_shape[1], feature_shape[2])
    assert heatmaps.dtype == np.float32
    assert np.isfinite(heatmaps).all()
    assert heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0
    # Each map is normalised by its own peak (or is all zero).
    assert all(np.isclose(peak, 1.0) or peak == 0.0 for peak in heatmaps.max(axis=(1, 2)))
    np.testing.assert_allclose(probabilities, model(images, training=False).numpy(), atol=1e-5)


def test_default_class_is_each_images_top_class_and_one_trace_serves_all_batch_sizes():
    keras.utils.set_random_seed(1)
    model = create_model(ModelConfig(name="small_cnn", weights="none"), 3, 32, 3)
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    gradcam = GradCam(model)
    probabilities, heatmaps = gradcam(images)
    top = probabilities.argmax(axis=1)
    _, explicit = gradcam(images, class_index=top)
    np.testing.assert_allclose(heatmaps, explicit, atol=1e-6)
    for count in (1, 2, 5):
        gradcam(np.concatenate([images, images])[:count], class_index=1)
    assert gradcam._compiled.experimental_get_tracing_count() == 1


def test_bad_class_index_and_shapes_are_refused():
    model = create_model(ModelConfig(name="seed_cnn", weights="none"), 3, 28, 1)
    gradcam = GradCam(model)
    with pytest.raises(ValueError, match=r"class_index must be in 0\.\.2"):
        gradcam(np.zeros((1, 28, 28, 1), np.float32), class_index=3)
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28, 1\)"):
        gradcam(np.zeros((1, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        GradCam(model, layer_name="nope")
    with pytest.raises(ValueError, match="4D"):
        GradCam(model, layer_name="head_dense")


def bright_square_model() -> keras.Model:
    """Class 1 = 'there is something bright': a box-blur feature map, averaged, weighed +1 (class 0: -1)."""
    inputs = keras.Input((32, 32, 1), name="image")
    features = keras.layers.Conv2D(1, 3, padding="same", activation="relu", name="evidence")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("evidence").set_weights([np.full((3, 3, 1, 1), 1 / 9, np.float32), np.zeros(1, np.float32)])
    model.get_layer("predictions").set_weights([np.array([[-0.1, 0.1]], np.float32), np.zeros(2, np.float32)])
    return model


def image_with_square(top: int, left: int, seed: int) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 60, (32, 32, 1)).astype(np.float32)
    image[top:top + 8, left:left + 8] = 255.0
    return image


def test_heatmap_peaks_where_the_evidence_is():
    model = bright_square_model()
    # Lower-left square in the first image, upper-right in the second: each map must find its own.
    images = np.stack([image_with_square(20, 4, seed=0), image_with_square(4, 20, seed=1)])
    probabilities, heatmaps = GradCam(model)(images)
    assert (probabilities.argmax(axis=1) == 1).all()
    lower_left = np.unravel_index(heatmaps[0].argmax(), heatmaps[0].shape)
    upper_right = np.unravel_index(heatmaps[1].argmax(), heatmaps[1].shape)
    assert lower_left[0] >= 16 and lower_left[1] < 16
    assert upper_right[0] < 16 and upper_right[1] >= 16
    assert heatmaps[0][20:28, 4:12].mean() > 3 * heatmaps[0][:16, 16:].mean()


def test_a_class_with_only_negative_evidence_gives_an_all_zero_map_not_nan():
    model = bright_square_model()
    _, heatmaps = GradCam(model)(image_with_square(20, 4, seed=0)[None], class_index=0)
    assert np.isfinite(heatmaps).all()
    assert (heatmaps == 0).all()


def test_a_feature_map_computed_without_weights_still_gets_gradients():
    """Nothing trainable lies between the input and the pooled grid: the tape must record it anyway."""
    inputs = keras.Input((32, 32, 1), name="image")
    grid = keras.layers.AveragePooling2D(4, name="evidence")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pool")(grid)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("predictions").set_weights([np.array([[-0.1, 0.1]], np.float32), np.zeros(2, np.float32)])
    _, heatmaps = GradCam(model, layer_name="evidence")(image_with_square(20, 4, seed=0)[None])
    assert heatmaps.shape == (1, 8, 8)
    # The square (rows 20-27, columns 4-11) fills exactly grid cells 5-6 x 1-2: the peak.
    np.testing.assert_allclose(heatmaps[0][5:7, 1:3], 1.0, atol=1e-5)
    assert heatmaps[0][:4].max() < 0.5


# ---------------------------------------------------------------- overlay


def test_overlay_shape_dtype_and_resizing():
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    heatmap = np.random.default_rng(1).random((4, 5)).astype(np.float32)
    result = overlay_heatmap(image, heatmap)
    assert result.shape == (30, 40, 3) and result.dtype == np.uint8


def test_overlay_with_opacity_zero_is_the_image_and_one_is_the_colours():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    heatmap = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    np.testing.assert_array_equal(overlay_heatmap(image, heatmap, opacity=0.0), image)
    np.testing.assert_array_equal(overlay_heatmap(image, heatmap, opacity=1.0), colorize_heatmap(heatmap, "jet"))


def test_overlay_of_a_grayscale_image_is_rgb_and_the_heatmap_is_resized_bilinearly():
    image = np.full((20, 40, 1), 100, dtype=np.uint8)
    heatmap = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)  # cold left, hot right
    result = overlay_heatmap(image, heatmap, opacity=1.0, colormap="gray")
    assert result.shape == (20, 40, 3)
    brightness = result[:, :, 0].astype(int).mean(axis=0)
    assert brightness[0] < 10 and brightness[-1] > 245
    assert (np.diff(brightness) >= 0).all()  # a ramp, not a step: bilinear, not nearest
    assert 40 < brightness[20] < 215


@pytest.mark.parametrize(
    "image, heatmap, options, message",
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((2, 2)), {}, "uint8"),
        (np.zeros((8, 8, 4), np.uint8), np.zeros((2, 2)), {}, r"\(H, W, 3\)"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((2, 2, 1)), {}, r"heatmap must have shape \(h, w\)"),
        (np.zeros((8, 8, 3), np.uint8), np.full((2, 2), np.nan), {}, "NaN"),
        (np.zeros((8, 8, 3), np.uint8), np.full((2, 2), 3.0), {}, "in 0..1"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((2, 2)), {"opacity": 1.5}, "opacity"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((2, 2)), {"colormap": "nope"}, "unknown colormap 'nope'"),
    ],
)
def test_overlay_bad_inputs(image, heatmap, options, message):
    with pytest.raises(ValueError, match=message):
        overlay_heatmap(image, heatmap, **options)
