"""EfficientNet-Lite0: the torch-free .pth reader, the conversion and its cache, the Keras model.

The packaged checkpoint is converted once per session into the shared weights folder (conftest.py),
which every test's cache folder links to; the tests of the cache itself take a private one.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")
skimage_data = pytest.importorskip("skimage.data")

from imgclf_core.models import efficientnet_lite
from imgclf_core.models.efficientnet_lite import (
    BLOCK_NAMES,
    HEAD_LAYER_NAMES,
    LAST_CONV_LAYER,
    checkpoint_path,
    convert_state_dict,
    create_efficientnet_lite0,
    imagenet_class_names,
    imagenet_efficientnet_lite0,
    load_efficientnet_lite0_weights,
    untrained_efficientnet_lite0,
    weights_cache_path,
)
from imgclf_core.models.registry import base_layers, head_layers
from imgclf_core.data.images import decode_image
from imgclf_core.models.torch_weights import (
    LEGACY_MAGIC_NUMBER,
    LEGACY_PROTOCOL_VERSION,
    CheckpointError,
    load_torch_state_dict,
)

# ImageNet indices: tabby, tiger cat, Egyptian cat / cup, espresso, coffee mug.
CAT_CLASSES = {281, 282, 285}
COFFEE_CLASSES = {967, 968, 504}


# ---------------------------------------------------------------- checkpoint writers


class _TorchGlobal:
    """Pickles as the global `module.name`, without torch being importable."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __reduce__(self):
        return self.name  # a string makes the pickler call save_global

    def __call__(self, *args):  # the pickler only accepts callables as reduce functions
        raise NotImplementedError


REBUILD_TENSOR_V2 = _TorchGlobal("torch._utils", "_rebuild_tensor_v2")
STORAGE_TYPES = {
    np.dtype("float32"): _TorchGlobal("torch", "FloatStorage"),
    np.dtype("float16"): _TorchGlobal("torch", "HalfStorage"),
    np.dtype("int64"): _TorchGlobal("torch", "LongStorage"),
}


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return REBUILD_TENSOR_V2, self.args


class _TorchStylePickler(pickle._Pickler):
    """Writes what torch.save writes for a state dict: storages as persistent ids."""

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", STORAGE_TYPES[obj.array.dtype], obj.key, "cpu", obj.array.size)
        return None

    def save_global(self, obj, name=None):
        if isinstance(obj, _TorchGlobal):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
            self.memoize(obj)
            return
        super().save_global(obj, name)


def write_zip_checkpoint(path: Path, state: dict, storages: list[_Storage]) -> Path:
    buffer = io.BytesIO()
    _TorchStylePickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("checkpoint/data.pkl", buffer.getvalue())
        archive.writestr("checkpoint/byteorder", "little")
        for storage in storages:
            archive.writestr(f"checkpoint/data/{storage.key}", storage.array.tobytes())
    return path


class _RunsShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_malicious_checkpoint(path: Path, layout: str, marker: Path) -> Path:
    payload = pickle.dumps(collections.OrderedDict(weight=_RunsShellCommand(marker)), protocol=2)
    if layout == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", payload)
    else:
        system_info = {"protocol_version": LEGACY_PROTOCOL_VERSION, "little_endian": True}
        header = b"".join(
            pickle.dumps(value, protocol=2) for value in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, system_info)
        )
        path.write_bytes(header + payload)
    return path


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- shared fixtures


@pytest.fixture(scope="session")
def packaged_state_dict():
    return load_torch_state_dict(checkpoint_path())


@pytest.fixture(scope="module")
def imagenet_model():
    """The 224 px ImageNet model, built once (its weights converted once per session)."""
    return imagenet_efficientnet_lite0()


# ---------------------------------------------------------------- torch-free reader


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_reader_refuses_a_pickle_that_calls_os_system(tmp_path, layout):
    marker = tmp_path / "ran"
    path = write_malicious_checkpoint(tmp_path / "evil.pth", layout, marker)
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil\.pth.*global (posix|os|nt)\.system"):
        load_torch_state_dict(path)
    assert not marker.exists()


def test_reader_rebuilds_strided_tensors_from_a_zip_checkpoint(tmp_path):
    floats = _Storage("0", np.arange(20, dtype=np.float32))
    halves = _Storage("1", np.array([0.5, -2.0, 7.0], dtype=np.float16))
    counter = _Storage("2", np.array([42], dtype=np.int64))
    state = collections.OrderedDict(
        matrix=_Tensor(floats, 2, (3, 4), (4, 1)),
        transposed=_Tensor(floats, 2, (4, 3), (1, 4)),  # a non-contiguous view of the same storage
        halves=_Tensor(halves, 1, (2,), (1,)),
        steps=_Tensor(counter, 0, (), ()),
    )
    path = write_zip_checkpoint(tmp_path / "tiny.pth", state, [floats, halves, counter])

    loaded = load_torch_state_dict(path)

    expected_matrix = np.arange(2, 14, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(loaded["matrix"], expected_matrix)
    np.testing.assert_array_equal(loaded["transposed"], expected_matrix.T)
    assert loaded["transposed"].flags["C_CONTIGUOUS"] and loaded["transposed"].flags["OWNDATA"]
    assert loaded["halves"].dtype == np.float16 and loaded["halves"].tolist() == [-2.0, 7.0]
    assert loaded["steps"].shape == () and loaded["steps"].dtype == np.int64 and int(loaded["steps"]) == 42


def test_reader_refuses_a_tensor_that_reaches_past_its_storage(tmp_path):
    storage = _Storage("0", np.zeros(6, dtype=np.float32))
    state = collections.OrderedDict(weight=_Tensor(storage, 0, (3, 4), (4, 1)))
    path = write_zip_checkpoint(tmp_path / "overrun.pth", state, [storage])
    with pytest.raises(CheckpointError, match="needs 12 elements, storage has 6"):
        load_torch_state_dict(path)


@pytest.mark.parametrize(
    "name, data",
    [
        ("text.pth", b"hello, not a checkpoint\n"),
        ("empty.pth", b""),
        ("picture.pth", png_bytes(np.zeros((4, 4, 3), dtype=np.uint8))),
        ("plain_pickle.pth", pickle.dumps({"weight": [1.0, 2.0]})),
    ],
)
def test_reader_refuses_files_that_are_not_checkpoints(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"not a PyTorch (checkpoint|state dict): .*" + name.replace(".", r"\.")):
        load_torch_state_dict(path)


def test_reader_refuses_a_zip_without_data_pkl(tmp_path):
    path = tmp_path / "other.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match=r"not a PyTorch checkpoint: .*other\.pth"):
        load_torch_state_dict(path)


def test_packaged_checkpoint_loads_without_torch(packaged_state_dict):
    state = packaged_state_dict
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    floats = {name: array for name, array in state.items() if not name.endswith("num_batches_tracked")}
    assert all(array.dtype == np.float32 and np.isfinite(array).all() for array in floats.values())
    assert sum(array.size for array in floats.values()) == 4_694_024
    assert np.abs(state["_fc.weight"]).max() > 0.1  # real weights, not zeros


# ---------------------------------------------------------------- conversion and cache


def test_conversion_uses_every_tensor_once(packaged_state_dict):
    converted = convert_state_dict(packaged_state_dict)
    assert converted.keys() == efficientnet_lite.expected_weight_shapes().keys()
    np.testing.assert_array_equal(
        converted["block2a_dwconv/kernel"][:, :, 5, 0],
        packaged_state_dict["_blocks.1._depthwise_conv.weight"][5, 0],
    )
    np.testing.assert_array_equal(
        converted["stem_conv/kernel"][1, 2, 0, 7], packaged_state_dict["_conv_stem.weight"][7, 0, 1, 2]
    )


def test_conversion_refuses_a_missing_or_extra_tensor(packaged_state_dict):
    missing = dict(packaged_state_dict)
    del missing["_blocks.3._bn1.running_var"]
    with pytest.raises(ValueError, match=r"1 missing weight\(s\) \['block3a_bn/moving_variance'\]"):
        convert_state_dict(missing)
    extra = dict(packaged_state_dict, **{"_blocks.0._se_reduce.weight": np.zeros((8, 32, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"1 unused tensor\(s\) \['_blocks.0._se_reduce.weight'\]"):
        convert_state_dict(extra)


def test_second_load_reads_the_cache_not_the_checkpoint(private_weights_cache, monkeypatch):
    first = load_efficientnet_lite0_weights()
    assert weights_cache_path().is_file()

    def refuse(path):
        raise AssertionError(f"re-read {path} although the converted weights are cached")

    monkeypatch.setattr(efficientnet_lite, "load_torch_state_dict", refuse)
    second = load_efficientnet_lite0_weights()
    assert second.keys() == first.keys()
    assert all(np.array_equal(second[key], first[key]) for key in first)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong arrays"])
def test_a_damaged_cache_is_rebuilt(private_weights_cache, damage):
    cache_path = weights_cache_path()
    good = load_efficientnet_lite0_weights()
    if damage == "garbage":
        cache_path.write_bytes(b"\x00not an npz")
    elif damage == "truncated":
        cache_path.write_bytes(cache_path.read_bytes()[:100_000])
    else:
        buffer = io.BytesIO()
        np.savez(buffer, **{"stem_conv/kernel": np.zeros((3, 3, 3, 32), np.float32)})
        cache_path.write_bytes(buffer.getvalue())

    rebuilt = load_efficientnet_lite0_weights()

    assert np.array_equal(rebuilt["top_bn/gamma"], good["top_bn/gamma"])
    with np.load(cache_path) as archive:
        assert set(archive.files) == set(good)


# ---------------------------------------------------------------- the Keras model


def test_imagenet_class_names_are_1000_distinct_in_checkpoint_order():
    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert (names[0], names[281], names[504], names[967]) == ("tench", "tabby cat", "coffee mug", "espresso")
    assert (names[282], names[638]) == ("tiger cat", "leotard")


def test_normalization_matches_the_stem_batch_norm_statistics():
    """The stem BN remembers the input scale it was trained on: (x - 127) / 128 gives it, ImageNet mean/std not."""
    weights = load_efficientnet_lite0_weights()
    model = untrained_efficientnet_lite0((224, 224, 3), num_classes=None)
    stem = keras.Model(model.input, model.get_layer("stem_conv").output)
    stem.get_layer("stem_conv").set_weights([weights["stem_conv/kernel"]])
    photos = np.stack(
        [decode_image(png_bytes(photo()), size=224) for photo in (skimage_data.chelsea, skimage_data.coffee)]
    )
    outputs = stem(photos.astype("float32")).numpy().reshape(-1, 32)
    running_variance = weights["stem_bn/moving_variance"]
    alive = running_variance > 1e-6
    ratio = np.median(outputs.var(axis=0)[alive] / running_variance[alive])
    assert 0.4 < ratio < 2.0, f"stem output variance is {ratio:.2f}x what the weights were trained on"


def test_imagenet_model_recognises_a_cat_and_an_espresso(imagenet_model):
    names = imagenet_class_names()
    photos = {
        "chelsea": decode_image(png_bytes(skimage_data.chelsea()), size=(224, 224)),
        "coffee": decode_image(png_bytes(skimage_data.coffee()), size=(224, 224)),
    }
    probabilities = imagenet_model(np.stack(list(photos.values())).astype("float32"), training=False).numpy()
    top1 = probabilities.argmax(axis=1)
    assert top1[0] in CAT_CLASSES, f"chelsea predicted {names[top1[0]]!r}"
    assert top1[1] in COFFEE_CLASSES, f"coffee predicted {names[top1[1]]!r}"
    assert probabilities[0, sorted(CAT_CLASSES)].sum() > 0.8
    assert probabilities[1, 967] > 0.5  # espresso, confidently
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_imagenet_model_is_flat_with_a_named_last_conv(imagenet_model):
    assert all(not isinstance(layer, keras.Model) for layer in imagenet_model.layers)
    last_conv = imagenet_model.get_layer(LAST_CONV_LAYER)
    assert tuple(last_conv.output.shape) == (None, 7, 7, 1280)
    assert imagenet_model.count_params() == 4_694_024
    assert [layer.name for layer in imagenet_model.layers[-3:]] == list(HEAD_LAYER_NAMES)


def test_grayscale_transfer_model_round_trips_through_safe_mode(tmp_path):
    model = create_efficientnet_lite0(num_classes=5, image_size=64, channels=1)
    assert all(not isinstance(layer, keras.Model) for layer in model.layers)
    assert model.get_layer(LAST_CONV_LAYER).output.shape[-1] == 1280
    weights = load_efficientnet_lite0_weights()
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0], weights["stem_conv/kernel"])
    np.testing.assert_array_equal(model.get_layer("top_bn").get_weights()[3], weights["top_bn/moving_variance"])

    images = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 1)).astype("float32")
    before = model.predict(images, verbose=0)
    path = tmp_path / "lite0_gray.keras"
    keras.saving.save_model(model, path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    after = reloaded.predict(images, verbose=0)

    assert before.shape == (4, 5)
    np.testing.assert_allclose(before.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(after, before)
    assert [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize("input_shape", [(32, 32, 3), (57, 41, 1), (None, None, 3)])
def test_models_build_for_small_odd_and_unknown_sizes(input_shape):
    model = untrained_efficientnet_lite0(input_shape, num_classes=3)
    height = input_shape[0] or 37
    width = input_shape[1] or 50
    images = np.zeros((2, height, width, input_shape[2]), np.float32)
    assert model(images).shape == (2, 3)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"input_shape": (64, 64, 2)}, "1 \\(grayscale\\) or 3 \\(RGB\\) channels"),
        ({"input_shape": (64, 64)}, "\\(height, width, channels\\)"),
        ({"input_shape": (0, 64, 3)}, "positive integers"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments_raise_value_error(arguments, message):
    with pytest.raises(ValueError, match=message):
        untrained_efficientnet_lite0(**arguments)


@pytest.mark.parametrize("channels", [1, 3])
def test_base_and_head_layers_follow_the_registry_naming_convention(channels):
    """The registry's base (what fine-tuning unfreezes) and head (what the features stage trains) of this model."""
    model = create_efficientnet_lite0(num_classes=2, image_size=32, channels=channels, pretrained=False)
    base = [layer.name for layer in base_layers(model)]
    assert base[0] == "stem_conv" and base[-1] == LAST_CONV_LAYER
    assert not set(base) & set(HEAD_LAYER_NAMES)
    assert [name for name in BLOCK_NAMES if f"{name}_project_conv" in base] == list(BLOCK_NAMES)
    assert [layer.name for layer in head_layers(model)] == list(HEAD_LAYER_NAMES[1:])
