"""Model files: atomic saves, checked loads (missing, corrupt, Lambda, wrong class count, too big), a run's model."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import keras  # noqa: E402

from imgclf_core.config import DataConfig, ModelConfig, RunConfig  # noqa: E402
from imgclf_core.models.model_io import (  # noqa: E402
    load_model_checked,
    save_model_atomically,
)
from imgclf_core.models.errors import ModelError  # noqa: E402
from imgclf_core.models.registry import create_model  # noqa: E402
from imgclf_core.training.run_folder import RunError, RunFolder  # noqa: E402

IMAGE_SIZE = 28
CLASS_NAMES = ["ant", "bee", "cat"]


def tiny_model(num_classes: int = 3, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return create_model(ModelConfig(name="seed_cnn", weights="none"), num_classes, IMAGE_SIZE, 1)


def sample_images(count: int = 4) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (count, IMAGE_SIZE, IMAGE_SIZE, 1)).astype("float32")


@pytest.fixture(scope="module")
def saved_model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    save_model_atomically(tiny_model(), path)
    return path


def test_round_trip_gives_identical_predictions(tmp_path):
    model = tiny_model()
    path = tmp_path / "model.keras"
    save_model_atomically(model, path)
    loaded = load_model_checked(path, expected_num_classes=3)
    images = sample_images()
    np.testing.assert_array_equal(loaded(images, training=False).numpy(), model(images, training=False).numpy())


def test_atomic_save_replaces_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "model.keras"
    save_model_atomically(tiny_model(seed=0), path)
    second = tiny_model(seed=1)
    save_model_atomically(second, path)
    assert os.listdir(tmp_path) == ["model.keras"]
    images = sample_images()
    np.testing.assert_array_equal(load_model_checked(path)(images).numpy(), second(images).numpy())


def test_failed_save_keeps_the_old_file_and_removes_the_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    save_model_atomically(tiny_model(), path)
    before = path.read_bytes()

    def crash_half_way(model, temp_path, **kwargs):
        open(temp_path, "wb").write(b"PK\x03\x04 half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.saving, "save_model", crash_half_way)
    with pytest.raises(OSError, match="No space left"):
        save_model_atomically(tiny_model(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.keras"]


def test_save_refuses_a_name_without_keras_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.keras"):
        save_model_atomically(tiny_model(), tmp_path / "model.h5")


def test_missing_file_is_reported_as_missing(tmp_path):
    with pytest.raises(ModelError, match="model file not found: .*nothing.keras"):
        load_model_checked(tmp_path / "nothing.keras")


def _random_bytes(path, real_model):
    path.write_bytes(np.random.default_rng(0).bytes(5000))


def _truncated_zip(path, real_model):
    data = real_model.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zip_without_config(path, real_model):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")


def _damaged_weights(path, real_model):
    """A whole zip whose weights member is flipped in the middle: the CRC check must catch it."""
    data = bytearray(real_model.read_bytes())
    with zipfile.ZipFile(real_model) as archive:
        info = archive.getinfo("model.weights.h5")
    middle = info.header_offset + 100 + info.compress_size // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def _empty_file(path, real_model):
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "make_corrupt", [_random_bytes, _truncated_zip, _zip_without_config, _damaged_weights, _empty_file]
)
def test_corrupt_files_are_reported_as_corrupt_not_missing(tmp_path, saved_model_file, make_corrupt):
    path = tmp_path / "model.keras"
    make_corrupt(path, saved_model_file)
    with pytest.raises(ModelError, match="corrupt model file") as caught:
        load_model_checked(path)
    assert "not found" not in str(caught.value)


def test_lambda_layer_is_refused(tmp_path):
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1))
    doubled = keras.layers.Lambda(lambda tensor: tensor * 2, name="sneaky")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(keras.layers.Flatten()(doubled))
    path = tmp_path / "lambda.keras"
    keras.saving.save_model(keras.Model(inputs, outputs), path)
    with pytest.raises(ModelError, match="Lambda layers run arbitrary code.*sneaky"):
        load_model_checked(path)


@keras.saving.register_keras_serializable(package="untrusted")
class Doubler(keras.layers.Layer):
    """A custom layer: its code lives outside Keras, so a loaded file would have to import and run it."""

    def call(self, inputs):
        return inputs * 2


def test_a_model_with_a_custom_layer_is_refused_before_keras_imports_anything(tmp_path):
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1))
    doubled = Doubler(name="doubler")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(doubled))
    path = tmp_path / "custom.keras"
    keras.saving.save_model(keras.Model(inputs, outputs), path)
    with pytest.raises(ModelError, match=r"custom objects are code from outside Keras \(Doubler"):
        load_model_checked(path)


def test_a_config_naming_a_foreign_module_is_refused(tmp_path, saved_model_file):
    """A hand-edited archive whose layer points Keras at another module (e.g. os) never reaches Keras."""
    path = tmp_path / "edited.keras"
    with zipfile.ZipFile(saved_model_file) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][1]["module"] = "os"
                config["config"]["layers"][1]["class_name"] = "system"
                data = json.dumps(config).encode()
            target.writestr(item, data)
    with pytest.raises(ModelError, match=r"system \(os\)"):
        load_model_checked(path)


def test_class_count_mismatch_names_both_numbers(saved_model_file):
    with pytest.raises(ModelError, match="predicts 3 classes but 5 class names"):
        load_model_checked(saved_model_file, expected_num_classes=5)


def test_file_size_cap(saved_model_file):
    with pytest.raises(ModelError, match="too large"):
        load_model_checked(saved_model_file, max_bytes=1000)


def test_non_keras_suffix_is_refused(tmp_path, saved_model_file):
    path = tmp_path / "model.h5"
    path.write_bytes(saved_model_file.read_bytes())
    with pytest.raises(ModelError, match="not a .keras model file"):
        load_model_checked(path)


def write_run_config(run_dir, class_names=CLASS_NAMES):
    run_config = RunConfig(
        data_dir="/data", data=DataConfig(image_size=IMAGE_SIZE, color_mode="grayscale"),
        model=ModelConfig(name="seed_cnn", weights="none"),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    RunFolder(run_dir).write_config(run_config, class_names)
    return run_config


def test_load_trained_model_returns_model_class_names_and_config(tmp_path, saved_model_file):
    run_dir = tmp_path / "run"
    run_config = write_run_config(run_dir)
    (run_dir / "model.keras").write_bytes(saved_model_file.read_bytes())
    model, class_names, loaded_config = RunFolder(run_dir).load_trained_model()
    assert class_names == CLASS_NAMES
    assert loaded_config == run_config
    assert model.outputs[0].shape[-1] == 3


def test_run_without_model_yet(tmp_path):
    run_dir = tmp_path / "run"
    write_run_config(run_dir)
    with pytest.raises(RunError, match=f"no trained model in {run_dir} yet"):
        RunFolder(run_dir).load_trained_model()


def test_run_whose_model_disagrees_with_its_class_names(tmp_path, saved_model_file):
    run_dir = tmp_path / "run"
    write_run_config(run_dir, class_names=["ant", "bee"])
    (run_dir / "model.keras").write_bytes(saved_model_file.read_bytes())
    with pytest.raises(ModelError, match="predicts 3 classes but 2 class names"):
        RunFolder(run_dir).load_trained_model()
