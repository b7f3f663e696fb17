"""build_run_config: the one way a new run's config is made (CLI, Train page, tests), and its defaults."""

from __future__ import annotations

import pytest
from helpers.files import png_bytes, shapes_tree, write

from imgclf_core.config import NO_AUGMENTATION, AugmentationConfig, TrainingConfig
from imgclf_core.data.dataset import DatasetError, scan_dataset
from imgclf_core.models.errors import ModelError
from imgclf_core.models.registry import suggested_input
from imgclf_core.training.recommend import recommend_settings
from imgclf_core.training.run_setup import RunChoices, build_run_config, check_can_train


@pytest.fixture(scope="module")
def few_shapes(tmp_path_factory):
    """12 grey 16 px images per class: few enough that the recommendation is the pretrained model."""
    data = shapes_tree(tmp_path_factory.mktemp("setup") / "data", per_class=12)
    return data, scan_dataset(data)


def test_no_choices_give_the_recommendation_with_imagenet_weights(few_shapes):
    data, index = few_shapes
    recommended = recommend_settings(index)
    config = build_run_config(data, index)
    assert (config.model.name, config.model.weights) == (recommended.model, "imagenet")
    assert (config.data.image_size, config.data.color_mode) == (recommended.image_size, recommended.color_mode)
    assert (config.training.epochs, config.training.fine_tune_epochs) == (
        recommended.epochs, recommended.fine_tune_epochs)
    assert config.data_dir == str(data.resolve()) and config.augmentation == AugmentationConfig()


def test_a_model_trained_from_scratch_has_no_weights_and_the_default_epochs(few_shapes):
    data, index = few_shapes
    config = build_run_config(data, index, RunChoices(model="small_cnn", weights="imagenet"))
    assert (config.model.name, config.model.weights) == ("small_cnn", "none")
    assert (config.training.epochs, config.training.fine_tune_epochs) == (
        TrainingConfig().epochs, TrainingConfig().fine_tune_epochs)
    assert (config.data.image_size, config.data.color_mode) == suggested_input("small_cnn", index)


def test_every_choice_given_is_kept(few_shapes):
    data, index = few_shapes
    choices = RunChoices(model="efficientnet_lite0", weights="none", image_size=64, color_mode="rgb", epochs=3,
                         fine_tune_epochs=0, learning_rate=5e-4, batch_size=4, validation_split=0.3, seed=7,
                         augmentation=NO_AUGMENTATION)
    config = build_run_config(data, index, choices)
    assert (config.model.name, config.model.weights, config.data.image_size, config.data.color_mode) == (
        "efficientnet_lite0", "none", 64, "rgb")
    assert (config.training.epochs, config.training.fine_tune_epochs, config.training.learning_rate) == (3, 0, 5e-4)
    assert (config.data.batch_size, config.data.validation_split, config.data.seed) == (4, 0.3, 7)
    assert config.augmentation == NO_AUGMENTATION


def test_an_unknown_model_is_refused_with_the_registry_named(few_shapes):
    data, index = few_shapes
    with pytest.raises(ModelError, match="unknown model 'nope'; choose one of: small_cnn"):
        build_run_config(data, index, RunChoices(model="nope"))


def test_a_class_without_training_images_is_refused_before_training(tmp_path):
    for number, relative in enumerate(["train/ant/0.png", "train/ant/1.png", "train/bee/0.png", "train/bee/1.png",
                                       "test/cat/0.png"]):
        write(tmp_path / "data", relative, png_bytes(number))
    check_can_train(scan_dataset(tmp_path / "data" / "train"), validation_split=0.2, seed=0)
    with pytest.raises(DatasetError, match="cat"):
        check_can_train(scan_dataset(tmp_path / "data"), validation_split=0.2, seed=0)


def grayscale_index(count: int):
    """A scanned-looking index of `count` 28 px grayscale images in 10 classes (no files needed)."""
    from pathlib import Path

    from imgclf_core.data.dataset import DatasetIndex, ImageRecord

    records = tuple(ImageRecord(f"c{number % 10}/{number}.png", f"c{number % 10}", f"{number:064x}", 28, 28, "L", "PNG")
                    for number in range(count))
    return DatasetIndex(Path("/data"), records, (), {f"c{label}": count // 10 for label in range(10)})


def test_many_small_images_from_scratch_get_large_batches_a_scaled_rate_and_a_smaller_validation_share():
    from imgclf_core.training.recommend import (
        FROM_SCRATCH_TRAINING, LARGE_BATCH_LEARNING_RATE, LARGE_BATCH_SIZE, LARGE_DATASET, LARGE_VALIDATION_SPLIT,
    )

    small, large = grayscale_index(LARGE_DATASET - 10), grayscale_index(LARGE_DATASET)
    small_config = build_run_config("/data", small)
    assert (small_config.model.name, small_config.data.batch_size, small_config.data.validation_split) == (
        "small_cnn", 32, 0.2)
    assert small_config.training == FROM_SCRATCH_TRAINING
    assert small_config.training.weight_average_decay > 0 and small_config.training.label_smoothing > 0
    large_config = build_run_config("/data", large)
    assert (large_config.data.batch_size, large_config.data.validation_split, large_config.training.learning_rate) == (
        LARGE_BATCH_SIZE, LARGE_VALIDATION_SPLIT, LARGE_BATCH_LEARNING_RATE)
    # The user's choices win over every recommended value.
    chosen = build_run_config("/data", large, RunChoices(batch_size=16, learning_rate=1e-4, validation_split=0.3))
    assert (chosen.data.batch_size, chosen.training.learning_rate, chosen.data.validation_split) == (16, 1e-4, 0.3)
    assert chosen.training.weight_average_decay == FROM_SCRATCH_TRAINING.weight_average_decay
    # Another model than the recommended one gets the plain defaults, recipe included.
    other = build_run_config("/data", large, RunChoices(model="seed_cnn"))
    assert other.training == TrainingConfig() and other.data.batch_size == 32


@pytest.mark.parametrize("mode", ["LA", "I;16B"])
def test_grey_images_with_alpha_or_in_big_endian_16_bit_train_in_grayscale(tmp_path, mode):
    """Grey PNGs with an alpha channel (icons, sketches) and big-endian 16-bit TIFFs (scanners, microscopes) hold
    no colour: a folder of them is recommended small_cnn in grayscale, not the colour-image model."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    for label, level in (("dark", 60), ("light", 190)):
        for number in range(100):
            pixels = np.clip(rng.normal(level, 30, (28, 28)), 0, 255)
            if mode == "LA":
                image = Image.fromarray(np.dstack([pixels, np.full((28, 28), 255.0)]).astype(np.uint8), "LA")
                name, image_format = f"{number}.png", "PNG"
            else:
                image = Image.frombytes("I;16B", (28, 28), (pixels * 257).astype(">u2").tobytes())
                name, image_format = f"{number}.tif", "TIFF"
            buffer = io.BytesIO()
            image.save(buffer, format=image_format)
            write(tmp_path / "data", f"{label}/{name}", buffer.getvalue())
    index = scan_dataset(tmp_path / "data")
    assert {record.mode for record in index.records} == {mode}
    recommended = recommend_settings(index)
    assert (recommended.model, recommended.color_mode) == ("small_cnn", "grayscale"), recommended.reason
    assert suggested_input("small_cnn", index) == (28, "grayscale")
