"""The pages on a dataset with its own train/validation/test folders, recommended settings and a usable model
early, under Streamlit's AppTest: real folders, runs written as the trainer writes them (and one really trained)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.files import SHAPES, png_bytes, shapes_tree, write
from helpers.pages import metrics, open_page
from helpers.runs import copy_run_with_its_data, evaluation, fake_run

from imgclf_app.views import accuracy_text
from imgclf_core.training import run_catalog, run_folder, run_process
from imgclf_core.training.run_folder import RunFolder
from imgclf_core.config import NO_AUGMENTATION, DataConfig, ModelConfig, RunConfig, TrainingConfig
from imgclf_core.data.dataset import scan_dataset
from imgclf_core.models.registry import suggested_input

SPLIT_NAMES = ("train", "validation", "test")


def grid_captions(app) -> list[str]:
    return [image.captions[0] for image in app.get("image") if image.captions and "·" in image.captions[0]]


# ---------------------------------------------------------------- dataset page


@pytest.fixture
def split_dataset(tmp_path) -> Path:
    """cat in every split, dog without validation images, bird only in test, one cat image in train and test."""
    root = tmp_path / "data"
    for number in range(6):
        write(root, f"Train/cat/{number}.png", png_bytes(number, (20, 10)))
        write(root, f"Train/dog/{number}.png", png_bytes(100 + number, (20, 10)))
    for number in range(3):
        write(root, f"val/cat/{number}.png", png_bytes(200 + number, (20, 10)))
        write(root, f"test/dog/{number}.png", png_bytes(300 + number, (20, 10)))
    write(root, "test/cat/leaked.png", png_bytes(0, (20, 10)))  # the same bytes as Train/cat/0.png
    write(root, "test/bird/0.png", png_bytes(400, (20, 10)))
    return root


def test_dataset_page_shows_counts_per_split_gaps_and_leaked_images(split_dataset):
    app = open_page("app_pages/dataset.py", split_dataset)
    assert "Splits" in [header.value for header in app.subheader]
    counts = next(frame.value for frame in app.dataframe if "total" in frame.value.columns)
    assert list(counts.columns) == ["train", "validation", "test", "total"]
    assert counts.loc["cat"].tolist() == [6, 3, 1, 10]
    assert counts.loc["dog"].tolist() == [6, 0, 3, 9]
    assert counts.loc["bird"].tolist() == [0, 0, 1, 1]
    assert counts.loc["total"].tolist() == [12, 3, 5, 20]
    warnings = [warning.value for warning in app.warning]
    for expected in ("test-only class: 'bird'", "class 'dog' has no images in the validation split", "leakage: 1"):
        assert sum(expected in warning for warning in warnings) == 1, (expected, warnings)  # once, not twice
    leaked = next(frame.value for frame in app.dataframe if list(frame.value.columns) == list(SPLIT_NAMES))
    assert leaked.to_dict("records") == [{"train": "Train/cat/0.png", "validation": "", "test": "test/cat/leaked.png"}]


def test_home_page_stacks_the_images_per_class_by_split_train_first(split_dataset):
    import io

    import pyarrow as pa

    app = open_page("app_pages/home.py", split_dataset)
    assert not app.exception, app.exception
    (chart,) = app.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    table = pa.ipc.open_stream(io.BytesIO(chart.proto.data.data)).read_all().to_pylist()
    assert spec["encoding"]["color"]["sort"] == list(SPLIT_NAMES)  # legend: train, validation, test
    assert spec["encoding"]["order"]["field"] == "stack"  # stacked in that order, train at the bottom
    by_split = {(row["class"], row["split"]): (row["images"], row["stack"]) for row in table}
    assert by_split[("cat", "train")] == (6, 0) and by_split[("cat", "validation")] == (3, 1)
    assert by_split[("dog", "test")] == (3, 2) and by_split[("bird", "test")] == (1, 2)
    assert sum(images for images, _ in by_split.values()) == 20


def test_dataset_grid_filters_by_split_and_names_the_split_of_each_image(split_dataset):
    app = open_page("app_pages/dataset.py", split_dataset)
    assert app.selectbox(key="grid_split").options == ["All splits", *SPLIT_NAMES]
    assert "cat · test · leaked.png" in grid_captions(app)
    app.selectbox(key="grid_split").set_value("test").run()
    captions = grid_captions(app)
    assert len(captions) == 5 and all(" · test · " in caption for caption in captions)
    app.selectbox(key="grid_class").set_value("dog").run()
    assert grid_captions(app) == ["dog · test · 0.png", "dog · test · 1.png", "dog · test · 2.png"]
    app.button(key="inspect:test/dog/1.png").click().run()
    assert any("split: `test`" in markdown.value for markdown in app.markdown)


def test_dataset_page_without_split_folders_has_no_split_section(tmp_path):
    for number in range(3):
        write(tmp_path / "data", f"cat/{number}.png", png_bytes(number))
        write(tmp_path / "data", f"dog/{number}.png", png_bytes(10 + number))
    app = open_page("app_pages/dataset.py", tmp_path / "data")
    assert "Splits" not in [header.value for header in app.subheader]
    assert not [box for box in app.selectbox if box.key == "grid_split"]
    assert "cat · 0.png" in grid_captions(app)


# ---------------------------------------------------------------- train page: the form


@pytest.fixture
def started_configs(monkeypatch) -> list[RunConfig]:
    """Start training records the RunConfig and writes a finished run instead of launching a trainer."""
    started = []

    def start_run(run_config: RunConfig, run_dir: Path) -> run_process.RunHandle:
        started.append(run_config)
        run_dir.mkdir(parents=True)
        RunFolder(run_dir).write_config(run_config)
        RunFolder(run_dir).write_status(run_folder.FINISHED, message="finished")
        return run_process.RunHandle(run_dir)

    monkeypatch.setattr(run_process, "start_run", start_run)
    return started


def number_inputs(app) -> dict:
    return {box.key: box.value for box in app.number_input}


def test_train_form_starts_on_the_recommended_pretrained_model_for_colour_images(tmp_path, started_configs):
    for number in range(5):
        for label in ("cat", "dog"):
            write(tmp_path / "data", f"{label}/{number}.png", png_bytes(number + (50 if label == "dog" else 0), (20, 10)))
    app = open_page("app_pages/train.py", tmp_path / "data")
    model = app.selectbox(key="train_model")
    assert model.value == "efficientnet_lite0"
    assert not any("px" in option for option in model.options)  # the size field alone says the size
    assert "efficientnet_lite0 (pretrained, recommended)" in model.options
    assert any(info.value.startswith("Recommended for this data: Colour images") for info in app.info)
    inputs = number_inputs(app)
    assert (inputs["train_size:efficientnet_lite0"], inputs["train_epochs:efficientnet_lite0"],
            inputs["train_fine_tune:efficientnet_lite0"]) == (224, 20, 5)

    app.number_input(key="train_epochs:efficientnet_lite0").set_value(7).run()
    app.number_input(key="train_batch:efficientnet_lite0").set_value(16).run()  # another widget's rerun keeps the edit
    app.button(key="train_start").click().run()
    assert not app.exception, app.exception
    config = started_configs[-1]
    assert (config.model.name, config.model.weights, config.data.image_size, config.data.color_mode) == (
        "efficientnet_lite0", "imagenet", 224, "rgb")
    assert (config.training.epochs, config.training.fine_tune_epochs, config.data.batch_size) == (7, 5, 16)


def test_train_form_gives_another_model_its_own_defaults(tmp_path, started_configs):
    for number in range(5):
        for label in ("cat", "dog"):
            write(tmp_path / "data", f"{label}/{number}.png", png_bytes(number + (50 if label == "dog" else 0), (40, 40)))
    app = open_page("app_pages/train.py", tmp_path / "data")
    app.selectbox(key="train_model").set_value("small_cnn").run()
    size, _ = suggested_input("small_cnn", scan_dataset(tmp_path / "data"))
    inputs = number_inputs(app)
    assert (inputs["train_size:small_cnn"], inputs["train_epochs:small_cnn"], inputs["train_fine_tune:small_cnn"]) == (
        size, TrainingConfig().epochs, 0)
    assert app.number_input(key="train_fine_tune:small_cnn").disabled
    app.button(key="train_start").click().run()
    config = started_configs[-1]
    assert (config.model.name, config.model.weights, config.data.image_size, config.training.fine_tune_epochs) == (
        "small_cnn", "none", size, 0)


def test_train_form_recommends_small_cnn_for_many_small_grayscale_images(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=100, size=32)
    app = open_page("app_pages/train.py", data)
    assert app.selectbox(key="train_model").value == "small_cnn"
    assert "small_cnn (from scratch, recommended)" in app.selectbox(key="train_model").options
    inputs = number_inputs(app)
    assert (inputs["train_size:small_cnn"], inputs["train_epochs:small_cnn"]) == (32, 15)
    assert any("Small grayscale images (32 px)" in info.value for info in app.info)


def test_train_form_uses_the_datasets_own_validation_folder(split_dataset, started_configs):
    shutil.rmtree(split_dataset / "test" / "bird")  # a test-only class cannot be trained: tested below
    app = open_page("app_pages/train.py", split_dataset)
    assert not [slider for slider in app.slider if slider.key.startswith("train_val:")]
    assert any("the dataset's validation folder" in markdown.value for markdown in app.markdown)
    app.button(key="train_start").click().run()
    assert not app.exception and len(started_configs) == 1


def test_train_page_refuses_a_class_that_only_the_test_folder_has(split_dataset, started_configs):
    app = open_page("app_pages/train.py", split_dataset)
    app.button(key="train_start").click().run()
    assert any("class 'bird' has no training images" in error.value for error in app.error)
    assert not started_configs


# ---------------------------------------------------------------- train page: a run


def test_train_page_says_when_a_usable_model_is_ready_during_fine_tuning(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=3)
    run_dir = fake_run(run_catalog.default_runs_root(), "20260101-000000-efficientnet_lite0", data,
                       state=run_folder.RUNNING)
    RunFolder(run_dir).write_status(run_folder.RUNNING, message="computing backbone features: 3/12 images",
                                    step=3, steps=12, epochs=25)  # this test process stands for the live trainer
    app = open_page("app_pages/train.py", data)
    assert [bar.text for bar in app.get("progress")] == ["computing backbone features: 3/12 images"]
    assert not any(message.value.startswith("Usable model ready") for message in app.success)

    usable = {"val_accuracy": 0.875, "epoch": 20, "seconds": 9.4}
    RunFolder(run_dir).write_status(run_folder.RUNNING, message="decoding images", epochs=25, usable_model=usable)
    app.run()
    ready = [message.value for message in app.success if message.value.startswith("Usable model ready")]
    assert ready and ready[0].startswith("Usable model ready (validation accuracy 87.5%) after 9s: the Predict page")
    assert any(info.value == "decoding images" for info in app.info)

    RunFolder(run_dir).write_status(run_folder.FINISHED, message="finished", epochs=25, usable_model=usable)
    app.run()
    assert not any(message.value.startswith("Usable model ready") for message in app.success)


def test_train_page_shows_the_test_figures_beside_the_validation_ones(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=3)
    root = run_catalog.default_runs_root()
    older = fake_run(root, "20260101-000000-small_cnn", data)
    (older / "evaluation.json").write_text(json.dumps(evaluation(0.5, [[1, 1], [1, 1]])))  # before test splits
    newer = fake_run(root, "20260101-000001-small_cnn", data)
    (newer / "evaluation.json").write_text(json.dumps({
        "validation": evaluation(0.9, [[5, 0], [1, 4]]), "test": evaluation(0.75, [[3, 1], [1, 3]]),
    }))
    app = open_page("app_pages/train.py", data)
    assert "Evaluation of the best model" in [header.value for header in app.subheader]
    shown = metrics(app)
    assert (shown["Validation accuracy"], shown["Validation images"]) == ("90.0%", "10")
    assert (shown["Test accuracy"], shown["Test images"]) == ("75.0%", "8")
    assert any("Test (held out, never trained on)" in markdown.value for markdown in app.markdown)
    assert len(app.get("vega_lite_chart")) >= 2  # a confusion matrix per split
    table = next(frame.value for frame in app.dataframe if "run" in frame.value.columns)
    by_run = dict(zip(table["run"], table["test_accuracy"]))
    assert by_run[newer.name] == "75.0%"
    assert by_run[older.name] is None or by_run[older.name] != by_run[older.name]  # None or NaN: no test split

    app.selectbox(key="train_run_choice").set_value(older.name).run()
    assert "Test accuracy" not in metrics(app)
    assert "Evaluation of the best model on the validation images" in [header.value for header in app.subheader]


def test_runs_table_has_no_test_column_when_no_run_has_a_test_split(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=3)
    run_dir = fake_run(run_catalog.default_runs_root(), "20260101-000000-small_cnn", data)
    (run_dir / "evaluation.json").write_text(json.dumps({"validation": evaluation(0.5, [[1, 1], [1, 1]])}))
    app = open_page("app_pages/train.py", data)
    table = next(frame.value for frame in app.dataframe if "run" in frame.value.columns)
    assert "test_accuracy" not in table.columns


def test_home_page_names_the_test_accuracy_beside_the_validation_one(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=3)
    run_dir = fake_run(run_catalog.default_runs_root(), "20260101-000000-small_cnn", data)
    app = open_page("app_pages/home.py", data)
    assert "test accuracy" not in app.get("page_link")[0].proto.label
    (run_dir / "evaluation.json").write_text(json.dumps({
        "validation": evaluation(0.9, [[5, 0], [1, 4]]), "test": evaluation(0.75, [[3, 1], [1, 3]]),
    }))
    app.run()
    label = app.get("page_link")[0].proto.label
    assert "validation accuracy 90.0%, test accuracy 75.0% (held out)" in label  # the saved model's, as everywhere


# ---------------------------------------------------------------- a run really trained on split folders


def split_shapes_tree(root: Path) -> Path:
    """The three shapes at 16 px in train/validation/test folders (12/6/4 per class), no file in two splits."""
    pool = shapes_tree(root.parent / "pool", per_class=22)
    for label in SHAPES:
        for number, path in enumerate(sorted((pool / label).iterdir())):
            split = "train" if number < 12 else "validation" if number < 18 else "test"
            (root / split / label).mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), root / split / label / path.name)
    return root


@pytest.fixture(scope="module")
def split_run_template(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, dataset) of a small_cnn trained for 2 epochs on split shapes: trained once per module."""
    from imgclf_core.training.trainer import train_run

    base = tmp_path_factory.mktemp("split-template")
    data = split_shapes_tree(base / "data")
    run_dir = base / "runs" / "20260101-000000-small_cnn"
    run_dir.mkdir(parents=True)
    RunFolder(run_dir).write_config(RunConfig(
        data_dir=str(data.resolve()), data=DataConfig(image_size=16, color_mode="grayscale", batch_size=8),
        augmentation=NO_AUGMENTATION, model=ModelConfig(name="small_cnn"), training=TrainingConfig(epochs=2),
    ))
    assert train_run(run_dir) == run_folder.FINISHED
    return run_dir, data


@pytest.fixture
def split_run(split_run_template, tmp_path) -> tuple[Path, Path]:
    """A private copy of the trained split run (in this test's runs folder) and of its dataset."""
    template_run, template_data = split_run_template
    return copy_run_with_its_data(template_run, template_data, run_catalog.default_runs_root() / template_run.name,
                                  tmp_path / "data")


def test_mistakes_page_shows_the_validation_split_and_on_request_the_held_out_test_split(split_run):
    run_dir, data = split_run
    app = open_page("app_pages/mistakes.py", data)
    assert app.radio(key="mistakes_split").value == "validation"
    shown = metrics(app)
    test_accuracy = RunFolder(run_dir).read_evaluation("test")["accuracy"]
    assert shown["Validation images"] == "18" and shown["Test accuracy (held out)"] == accuracy_text(test_accuracy)
    menus = [box.key for box in app.selectbox if box.key and box.key.startswith(("cell:", "losses:"))]
    assert menus and all(key.split(":", 1)[1].startswith("validation/") for key in menus)

    app.radio(key="mistakes_split").set_value("test").run()
    assert not app.exception, app.exception
    shown = metrics(app)
    assert (shown["Test accuracy"], shown["Test images"]) == (accuracy_text(test_accuracy), "12")
    assert "Validation accuracy" in shown
    captions = [caption.value for caption in app.caption]
    assert any(caption.startswith("The test images the model is most confidently wrong about") for caption in captions)
    seen = []
    for true_label in SHAPES:  # whichever cell is chosen, its images (and the top losses) are test images
        app.selectbox(key="mistakes_true").set_value(true_label).run()
        seen += [box.key.split(":", 1)[1] for box in app.selectbox if box.key and box.key.startswith(("cell:", "losses:"))]
    assert seen and all(path.startswith("test/") for path in seen), seen


def test_train_and_home_pages_show_a_trained_runs_test_figures(split_run):
    run_dir, data = split_run
    test = RunFolder(run_dir).read_evaluation("test")
    app = open_page("app_pages/train.py", data)
    shown = metrics(app)
    assert (shown["Test accuracy"], shown["Test images"]) == (accuracy_text(test["accuracy"]), "12")
    assert shown["Validation images"] == "18"
    app.switch_page("app_pages/home.py").run()
    assert f"test accuracy {accuracy_text(test['accuracy'])} (held out)" in app.get("page_link")[0].proto.label
