"""tf.data pipeline: shapes, dtypes, labels, decode-once, disk store, augmentation previews."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

import imgclf_core.data.pipeline as pipeline  # noqa: E402
import tensorflow as tf  # noqa: E402
from imgclf_core.data.augmentation import (  # noqa: E402
    RandomGeometry,
    make_augmenter,
    preview_augmentations,
    resample_bilinear,
)
from imgclf_core.config import NO_AUGMENTATION, AugmentationConfig, DataConfig  # noqa: E402
from imgclf_core.data.dataset import DatasetError, encode_labels, scan_dataset  # noqa: E402

CLASS_VALUES = {"dark": 40, "light": 210}


@pytest.fixture
def two_class_tree(tmp_path):
    """Two classes of flat-grey 20x30 PNGs whose value tells the class; one distinct value per file."""
    root = tmp_path / "data"
    for name, value in CLASS_VALUES.items():
        (root / name).mkdir(parents=True)
        for number in range(12):
            pixels = np.full((20, 30), value + number, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{number:02d}.png")
    return root


@pytest.fixture
def counted_decodes(monkeypatch):
    calls = []
    original = pipeline.decode_image

    def counting_decode(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "decode_image", counting_decode)
    return calls


@pytest.mark.parametrize("color_mode, channels", [("grayscale", 1), ("rgb", 3)])
def test_batches_have_model_shape_dtype_and_matching_labels(two_class_tree, color_mode, channels):
    index = scan_dataset(two_class_tree)
    config = DataConfig(image_size=16, color_mode=color_mode, validation_split=0.25, batch_size=5)
    data = pipeline.build_training_data(index, config, NO_AUGMENTATION)
    assert data.class_names == ("dark", "light")
    assert len(data.train_records) == 18 and len(data.validation_records) == 6
    seen = 0
    for images, labels in data.train:
        assert images.dtype.name == "float32" and labels.dtype.name == "int32"
        assert tuple(images.shape[1:]) == (16, 16, channels)
        # Flat grey images stay flat after resizing: the value tells which class the label must be.
        values = images.numpy().reshape(len(images), -1)
        assert np.all(values.min(axis=1) == values.max(axis=1))
        expected = (values[:, 0] >= CLASS_VALUES["light"]).astype(np.int32)
        np.testing.assert_array_equal(labels.numpy(), expected)
        seen += len(labels)
    assert seen == 18


def test_each_file_is_decoded_once_across_epochs(two_class_tree, counted_decodes):
    index = scan_dataset(two_class_tree)
    data = pipeline.build_training_data(
        index, DataConfig(image_size=16, batch_size=4), AugmentationConfig(rotation_degrees=20, zoom=0.2)
    )
    for _ in range(3):
        assert sum(len(labels) for _, labels in data.train) == len(data.train_records)
        assert sum(len(labels) for _, labels in data.validation) == len(data.validation_records)
    assert len(counted_decodes) == index.num_images == 24


def test_training_batches_are_reshuffled_but_validation_is_fixed(two_class_tree):
    data = pipeline.build_training_data(
        scan_dataset(two_class_tree), DataConfig(image_size=8, batch_size=6), NO_AUGMENTATION
    )
    first_batches = [tuple(next(iter(data.train))[0].numpy()[:, 0, 0, 0]) for _ in range(4)]
    assert len(set(first_batches)) > 1
    epoch_values = sorted(value for images, _ in data.train for value in images.numpy()[:, 0, 0, 0])
    assert len(set(epoch_values)) == len(data.train_records)  # each image exactly once per epoch
    val_a, val_b = (next(iter(data.validation))[0].numpy() for _ in range(2))
    np.testing.assert_array_equal(val_a, val_b)


def test_disk_store_is_reused_without_decoding(two_class_tree, counted_decodes):
    index = scan_dataset(two_class_tree)
    config = DataConfig(image_size=12, cache="disk")
    first = pipeline.decode_records(index.root, index.records, config)
    assert isinstance(first, np.memmap) and len(counted_decodes) == 24
    second = pipeline.decode_records(index.root, index.records, config)
    assert len(counted_decodes) == 24
    np.testing.assert_array_equal(first, second)
    in_memory = pipeline.decode_records(index.root, index.records, DataConfig(image_size=12, cache="memory"))
    np.testing.assert_array_equal(first, in_memory)


def test_a_file_broken_after_the_scan_names_the_file(two_class_tree):
    index = scan_dataset(two_class_tree)
    (two_class_tree / "dark" / "03.png").write_bytes(b"not a png any more")
    with pytest.raises(DatasetError, match=r"dark/03\.png: not an image"):
        pipeline.decode_records(index.root, index.records, DataConfig(image_size=8))


def test_one_class_is_refused(tmp_path):
    (tmp_path / "only").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "only" / "a.png")
    with pytest.raises(DatasetError, match="at least two classes"):
        pipeline.build_training_data(scan_dataset(tmp_path), DataConfig(), NO_AUGMENTATION)


def test_preview_augmentations_vary_and_keep_shape():
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[4:12, 4:20] = 255  # an off-centre bar, so a flip or rotation moves it
    previews = preview_augmentations(image, AugmentationConfig(rotation_degrees=30, zoom=0.2), 6, seed=3)
    assert previews.shape == (6, 32, 32, 3) and previews.dtype == np.uint8
    assert len({preview.tobytes() for preview in previews}) > 1
    assert any(not np.array_equal(preview, image) for preview in previews)


def test_preview_without_augmentation_is_the_image():
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    np.testing.assert_array_equal(preview_augmentations(image, NO_AUGMENTATION, 2)[1], image)


@pytest.mark.parametrize(
    "field, value",
    [("rotation_degrees", -1.0), ("zoom", 1.5), ("brightness", 2.0)],
)
def test_augmentation_config_rejects_out_of_range(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentationConfig(**{field: value})


def test_random_geometry_flip_only_mirrors_exactly():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(16, 9, 7, 3), dtype=np.uint8)
    flipped = np.asarray(RandomGeometry(horizontal_flip=True, seed=5)(batch, training=True))
    assert flipped.dtype == np.float32 and flipped.shape == batch.shape
    mirrored = [np.array_equal(out, image[:, ::-1]) for out, image in zip(flipped, batch)]
    unchanged = [np.array_equal(out, image) for out, image in zip(flipped, batch)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert any(mirrored) and any(unchanged)


def test_random_geometry_is_identity_when_not_training():
    batch = np.arange(2 * 5 * 5 * 1, dtype=np.float32).reshape(2, 5, 5, 1)
    layer = RandomGeometry(True, 45.0, 0.3, 0.2, seed=1)
    np.testing.assert_array_equal(np.asarray(layer(batch, training=False)), batch)


def test_random_geometry_moves_an_off_centre_square_and_fills_from_edges():
    batch = np.zeros((8, 32, 32, 1), dtype=np.uint8)
    batch[:, 2:10, 2:10] = 255
    out = np.asarray(RandomGeometry(rotation_degrees=40, zoom=0.2, translation=0.2, seed=2)(batch))
    assert not any(np.array_equal(image, batch[0]) for image in out)
    # Nearest-edge fill: the bottom-right corner region of every output stays black, never garbage.
    assert (out[:, -3:, -3:] == 0).all()


def test_random_geometry_rotation_matches_the_projective_transform_kernel():
    """Our XLA resampler and TensorFlow's ImageProjectiveTransformV3 agree on the same transforms."""
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 256, size=(4, 20, 24, 3)).astype(np.float32)
    layer = RandomGeometry(True, 30.0, 0.2, 0.1, seed=7)
    transforms = layer._random_transforms(tf.shape(batch))
    ours = np.asarray(resample_bilinear(batch, transforms))
    reference = tf.raw_ops.ImageProjectiveTransformV3(
        images=batch, transforms=transforms, output_shape=[20, 24], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="NEAREST",
    ).numpy()
    # Interior pixels agree to rounding; the kernel's nearest fill differs from clamping only at borders.
    np.testing.assert_allclose(ours[:, 3:-3, 3:-3], reference[:, 3:-3, 3:-3], atol=0.05)


def test_augmented_dataset_keeps_labels_and_range(two_class_tree):
    index = scan_dataset(two_class_tree)
    config = DataConfig(image_size=16, batch_size=4, validation_split=0.0)
    images = pipeline.decode_records(index.root, index.records, config)
    labels = encode_labels(index.records, index.class_names)
    augmentation = AugmentationConfig(rotation_degrees=30, zoom=0.2, contrast=0.3, brightness=0.3)
    dataset = pipeline.make_dataset(images, labels, 4, shuffle=True, seed=1, augmentation=augmentation)
    seen = []
    for batch_images, batch_labels in dataset:
        assert batch_images.dtype.name == "float32" and batch_images.shape[1:] == (16, 16, 3)
        assert float(np.min(batch_images)) >= 0.0 and float(np.max(batch_images)) <= 255.0
        seen.extend(np.asarray(batch_labels).tolist())
    assert sorted(seen) == sorted(labels.tolist())


def test_augmenter_composes_geometry_and_photometric_layers():
    augmenter = make_augmenter(AugmentationConfig(True, 10.0, 0.1, 0.1, 0.1, 0.1))
    assert [layer.name for layer in augmenter.layers] == ["random_geometry", "photometric"]
    assert [layer.name for layer in make_augmenter(AugmentationConfig()).layers] == ["random_geometry"]
    assert make_augmenter(AugmentationConfig(False, 0, 0, 0, 0.2, 0)).layers[0].name == "photometric"
