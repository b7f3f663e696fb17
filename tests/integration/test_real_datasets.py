"""Datasets as people bring them: split layouts, a wrapping folder, settings recommended from the data,
the held-out test split, and the head trained on cached features of a pretrained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import run_imgclf
from helpers.files import SAMPLE, png_bytes, shapes_tree, write
from PIL import Image

from imgclf_core.data.dataset import DatasetError, TEST, TRAIN, VALIDATION, scan_dataset
from imgclf_core.training.recommend import recommend_settings
from imgclf_core.inspection.relabel import RelabelJournal
from imgclf_core.data.split import check_trainable_classes, split_records


def split_tree(root: Path, counts: dict[str, dict[str, int]], seed: int = 0) -> Path:
    """root/<split folder>/<class>/<n>.png with distinct random images (no file repeats across splits)."""
    number = seed * 10_000
    for split_folder, per_class in counts.items():
        for label, count in per_class.items():
            for _ in range(count):
                number += 1
                write(root, f"{split_folder}/{label}/{number}.png", png_bytes(number))
    return root


TUTORIAL = {"train": {"cats": 4, "dogs": 4}, "validation": {"cats": 2, "dogs": 2}, "test": {"cats": 2, "dogs": 3}}


@pytest.mark.parametrize("names", [
    ("train", "validation", "test"), ("Training", "Val", "Testing"), ("train", "valid", "test"), ("TRAIN", "VALID", "TEST"),
])
def test_split_folders_are_splits_not_classes(tmp_path, names):
    root = split_tree(tmp_path / "data", {folder: counts for folder, counts in zip(names, TUTORIAL.values())})
    index = scan_dataset(root)
    assert index.class_names == ["cats", "dogs"]
    assert index.class_counts == {"cats": 8, "dogs": 9}
    assert index.split_counts == {TRAIN: {"cats": 4, "dogs": 4}, VALIDATION: {"cats": 2, "dogs": 2},
                                  TEST: {"cats": 2, "dogs": 3}}
    assert {record.split for record in index.records if record.path.startswith(names[2] + "/")} == {TEST}
    assert not index.warnings and not index.leakage_groups
    document = index.to_json_dict(path_prefix="")
    assert document["splits"]["test"] == {"cats": 2, "dogs": 3}


def test_given_splits_are_kept_and_only_a_missing_validation_part_is_made_by_hash(tmp_path):
    given = scan_dataset(split_tree(tmp_path / "given", TUTORIAL))
    splits = split_records(given.records, 0.5, seed=1)
    assert [len(splits.train), len(splits.validation), len(splits.test)] == [8, 4, 5]
    assert {record.split for record in splits.validation} == {VALIDATION}
    no_validation = scan_dataset(split_tree(tmp_path / "no_val", {"train": {"a": 10, "b": 10}, "test": {"a": 3, "b": 3}}))
    splits = split_records(no_validation.records, 0.2, seed=1)
    assert [len(splits.train), len(splits.validation), len(splits.test)] == [16, 4, 6]
    assert {record.split for record in splits.validation} == {TRAIN}  # taken from the train folder
    assert not {record.path for record in splits.test} & {record.path for record in splits.train + splits.validation}


def test_a_class_missing_from_a_split_warns_and_a_test_only_class_cannot_be_trained(tmp_path):
    counts = {"train": {"cats": 3, "dogs": 3}, "test": {"cats": 2, "birds": 2}}
    index = scan_dataset(split_tree(tmp_path / "data", counts))
    assert index.class_names == ["birds", "cats", "dogs"]
    assert "class 'dogs' has no images in the test split" in index.warnings
    assert any(warning.startswith("test-only class: 'birds'") for warning in index.warnings)
    with pytest.raises(DatasetError, match="class 'birds' has no training images .*test split"):
        check_trainable_classes(split_records(index.records, 0.2, 0), index.class_names)


def test_an_identical_image_in_two_splits_is_leakage_not_a_conflicting_label(tmp_path):
    root = split_tree(tmp_path / "data", {"train": {"cats": 3, "dogs": 3}, "validation": {"cats": 1, "dogs": 1}})
    write(root, "validation/cats/copy.png", (root / "train/cats/1.png").read_bytes())
    index = scan_dataset(root)
    assert index.leakage_groups == [["train/cats/1.png", "validation/cats/copy.png"]]
    assert not any("conflicting" in warning for warning in index.warnings)
    assert any(warning.startswith("leakage: 1 identical image(s)") for warning in index.warnings)
    assert index.to_json_dict(path_prefix="")["leakage"] == [["train/cats/1.png", "validation/cats/copy.png"]]


def test_one_wrapping_folder_is_looked_through(tmp_path):
    root = tmp_path / "download"
    split_tree(root / "cats_vs_dogs", TUTORIAL)
    write(root, "cats_vs_dogs/README.txt", b"from a tutorial")
    write(root, ".DS_Store", b"x")
    index = scan_dataset(root)
    assert index.class_names == ["cats", "dogs"] and index.num_images == 17
    assert index.records[0].path.startswith("cats_vs_dogs/")
    assert index.layout.prefix == "cats_vs_dogs"
    reasons = {item.path: item.reason for item in index.skipped}
    assert reasons["cats_vs_dogs/README.txt"].startswith("not in a split folder")
    write(root, "_inbox/unlabelled.png", png_bytes(500))  # an inbox added beside it later changes nothing
    assert scan_dataset(root).class_names == ["cats", "dogs"]
    # A plain class-folder dataset inside a wrapping folder is opened at the right level too.
    plain = shapes_tree(tmp_path / "zip" / "shapes", per_class=2)
    assert scan_dataset(plain.parent).class_names == ["cross", "ring", "square"]


def test_a_class_called_train_without_class_folders_inside_stays_a_class(tmp_path):
    write(tmp_path / "data", "train/a.png", png_bytes(1))
    write(tmp_path / "data", "other/b.png", png_bytes(2))
    index = scan_dataset(tmp_path / "data")
    assert index.class_names == ["other", "train"] and not index.split_counts


def test_relabel_in_the_split_layout_stays_in_the_split_and_labelling_files_into_train(tmp_path):
    root = split_tree(tmp_path / "data", TUTORIAL)
    journal = RelabelJournal(root)
    move = journal.move("test/cats/13.png", "dogs")
    assert move.target == "test/dogs/13.png" and (root / "test/dogs/13.png").is_file()
    with pytest.raises(ValueError, match="already in"):
        journal.move("test/dogs/13.png", "dogs")
    inbox_image = write(tmp_path, "inbox/new.png", png_bytes(99))
    assert journal.label(inbox_image, "cats").target == "train/cats/new.png"
    journal.move("train/cats/1.png", "_quarantine")
    index = scan_dataset(root)
    assert index.class_names == ["cats", "dogs"]  # train/_quarantine is not a class
    assert "train/_quarantine" in index.reserved_folders


def photo_like_tree(root: Path, per_class: int, size: int, mode: str) -> Path:
    """Colour or grey images of `size` px, `per_class` in each of two classes."""
    rng = np.random.default_rng(3)
    for label in ("a", "b"):
        for number in range(per_class):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            path = root / label / f"{number}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            (image.convert("L") if mode == "L" else image).save(path)
    return root


@pytest.mark.parametrize("per_class, size, mode, model, image_size, color_mode, words", [
    (120, 28, "L", "small_cnn", 28, "grayscale", "Small grayscale"),
    (120, 80, "L", "efficientnet_lite0", 224, "rgb", "photos (80 px"),
    (120, 20, "RGB", "efficientnet_lite0", 224, "rgb", "colour images"),
    (30, 24, "L", "efficientnet_lite0", 224, "rgb", "only 30 images in the smallest class"),
])
def test_settings_are_recommended_from_the_data(tmp_path, per_class, size, mode, model, image_size, color_mode, words):
    recommendation = recommend_settings(scan_dataset(photo_like_tree(tmp_path / "data", per_class, size, mode)))
    assert (recommendation.model, recommendation.image_size, recommendation.color_mode) == (model, image_size, color_mode)
    assert words.lower() in recommendation.reason.lower()
    pretrained = model == "efficientnet_lite0"
    assert (recommendation.fine_tune_epochs > 0) == pretrained and recommendation.epochs > 0


def test_the_shipped_sample_recommends_small_cnn_at_its_own_size():
    recommendation = recommend_settings(scan_dataset(SAMPLE))
    assert (recommendation.model, recommendation.image_size, recommendation.color_mode) == ("small_cnn", 28, "grayscale")


def colour_split_tree(root: Path, per_split: dict[str, int], size: int = 40) -> Path:
    """Two easy colour classes (reddish, bluish) in train/validation/test folders."""
    rng = np.random.default_rng(5)
    for split_folder, count in per_split.items():
        for label, channel in (("red", 0), ("blue", 2)):
            for number in range(count):
                pixels = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
                pixels[..., channel] += 150
                path = root / split_folder / label / f"{number}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path, quality=92)
    return root


def test_default_cli_run_on_a_split_dataset_trains_the_head_on_features_and_reports_the_test_split(tmp_path):
    """No --model: the recommended pretrained model; a usable model from features; validation and test figures."""
    from imgclf_core.training.run_folder import RunFolder
    from imgclf_core.models.features import feature_cache_file, feature_cache_key
    from imgclf_core.inspection.predict import Predictor

    data = colour_split_tree(tmp_path / "data", {"train": 8, "validation": 3, "test": 3})
    run_dir = tmp_path / "run"
    result = run_imgclf("train", str(data), "--out", str(run_dir), "--image-size", "64", "--epochs", "4",
                     "--fine-tune-epochs", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imgclf train: efficientnet_lite0 at 224 px: " in result.stderr  # the recommendation and its reason
    config = json.loads((run_dir / "config.json").read_text())["run"]
    assert config["model"] == {**config["model"], "name": "efficientnet_lite0", "weights": "imagenet"}
    history = RunFolder(run_dir).read_history()
    assert [row["stage"] for row in history] == ["head"] * 4 + ["fine_tune"]
    status = RunFolder(run_dir).read_status()
    assert status["state"] == "finished" and status["usable_model"]["epoch"] == 4
    assert 0.0 <= status["usable_model"]["val_accuracy"] <= 1.0
    # The head's features are in the shared cache (16 train + validation images: 22 vectors).
    with np.load(feature_cache_file(feature_cache_key("efficientnet_lite0", 64))) as stored:
        assert stored["vectors"].shape == (22, 1280)
    validation, test = RunFolder(run_dir).read_evaluation("validation"), RunFolder(run_dir).read_evaluation("test")
    assert sum(map(sum, validation["confusion_matrix"])) == 6 and sum(map(sum, test["confusion_matrix"])) == 6
    assert "test accuracy" in result.stdout and "validation accuracy" in result.stdout
    evaluated = run_imgclf("evaluate", str(run_dir), "--json")  # no DATA_DIR: the run's own test split
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads(evaluated.stdout)["confusion_matrix"] == test["confusion_matrix"]
    predictor = Predictor.from_run(run_dir)
    image = predictor.load_image(data / "test" / "red" / "0.jpg")
    heatmap, _ = predictor.explain(image)
    assert np.isfinite(heatmap).all() and heatmap.max() > 0


def test_head_on_features_writes_a_usable_model_whose_grad_cam_works_and_a_stopped_fine_tune_resumes(tmp_path):
    """The features stage leaves a loadable model; a stop during fine-tuning resumes after it, not from scratch."""
    from imgclf_core.training import run_folder
    from imgclf_core.training.run_folder import RunFolder
    from imgclf_core.config import NO_AUGMENTATION, DataConfig, ModelConfig, RunConfig, TrainingConfig
    from imgclf_core.inspection.predict import Predictor
    from imgclf_core.training.trainer import StopRequest, train_run

    data = colour_split_tree(tmp_path / "data", {"train": 6})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = RunConfig(str(data), DataConfig(image_size=48, validation_split=0.3), NO_AUGMENTATION,
                       ModelConfig("efficientnet_lite0", "imagenet"), TrainingConfig(epochs=6, fine_tune_epochs=2))
    RunFolder(run_dir).write_config(config)
    stop = StopRequest()
    usable_at_first_fine_tune_epoch = []

    def stop_in_fine_tuning(row, model):
        if row["stage"] == "fine_tune":
            usable_at_first_fine_tune_epoch.append(RunFolder(run_dir).read_status().get("usable_model"))
            stop.requested = True

    assert train_run(run_dir, stop_request=stop, epoch_listener=stop_in_fine_tuning) == run_folder.STOPPED
    assert usable_at_first_fine_tune_epoch[0]["epoch"] == 6
    model, class_names, _ = RunFolder(run_dir).load_trained_model()
    assert class_names == ["blue", "red"]
    predictor = Predictor.from_run(run_dir)
    images = np.stack([predictor.load_image(data / "train" / label / "5.jpg") for label in ("blue", "red")])
    assert predictor.predict_arrays(images).argmax(axis=1).tolist() == [0, 1]
    heatmap, _ = predictor.explain(images[1])
    assert heatmap.size and np.isfinite(heatmap).all()

    assert train_run(run_dir) == run_folder.FINISHED
    history = RunFolder(run_dir).read_history()
    assert [row["stage"] for row in history] == ["head"] * 6 + ["fine_tune"] * 2
    assert [row["epoch"] for row in history] == list(range(1, 9))
    assert RunFolder(run_dir).read_status()["usable_model"]["epoch"] == 6  # still said after the resume
    assert RunFolder(run_dir).read_evaluation("test") is None  # no test folder, no test figures


def test_the_audit_and_a_pretrained_run_at_224_px_share_one_features_cache(tmp_path):
    """Same key, and the audit's ImageNet embedding is the training model's feature output, vector for vector."""
    from imgclf_core.inspection import audit
    from imgclf_core.config import ModelConfig
    from imgclf_core.models.features import compiled_embed_function, feature_cache_key
    from imgclf_core.data.images import decode_image
    from imgclf_core.models.registry import create_model

    assert audit.AUDIT_FEATURES_KEY == feature_cache_key("efficientnet_lite0", 224, "rgb", "imagenet")
    assert feature_cache_key("efficientnet_lite0", 224, "rgb", "none") is None  # random weights: nothing cached
    data = colour_split_tree(tmp_path / "data", {"train": 2})
    images = np.stack([decode_image(path, size=224) for path in sorted(data.rglob("*.jpg"))])
    model = create_model(ModelConfig("efficientnet_lite0", "imagenet"), 2, 224, 3)
    training_features = compiled_embed_function(model)(images)
    audit_features = audit.embedding_function()(images)
    assert training_features.shape == (4, 1280)
    np.testing.assert_allclose(training_features, audit_features, rtol=1e-5, atol=1e-5)


def test_features_computed_before_a_crash_are_kept_in_the_cache(tmp_path, monkeypatch):
    """A long extraction saves the cache as it goes: what was computed before a failure is not computed again."""
    from imgclf_core.models import features
    from imgclf_core.config import DataConfig

    monkeypatch.setattr(features, "DECODE_CHUNK", 4)
    monkeypatch.setattr(features, "CACHE_SAVE_SECONDS", 0.0)
    root = split_tree(tmp_path / "data", {"train": {"a": 6, "b": 6}})
    records = scan_dataset(root).records
    embedded: list[int] = []

    def failing_after_two_chunks():
        def embed(images):
            if len(embedded) >= 8:
                raise RuntimeError("killed")
            embedded.extend([1] * len(images))
            return images.reshape(len(images), -1)[:, :5].astype(np.float32)
        return embed

    config = DataConfig(image_size=8, color_mode="rgb", cache="memory")
    with pytest.raises(RuntimeError, match="killed"):
        features.cached_features(root, records, "toy-8", config, failing_after_two_chunks)
    kept = features.load_feature_cache(features.feature_cache_file("toy-8"))
    assert len(kept) == 8  # the first two chunks, saved as they were made
    embedded.clear()
    again = features.cached_features(root, records, "toy-8", config, failing_after_two_chunks)
    assert again.shape == (12, 5) and len(embedded) == 4  # only the last chunk was computed this time
