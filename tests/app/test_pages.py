"""The Dataset and Train pages under Streamlit's AppTest: real folders, a real trainer process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers.files import photos_with_quality_issues, png_bytes, shapes_tree, write, zip_of
from helpers.pages import APP, TIMEOUT, chart_rows, metrics, open_page, wait_until
from helpers.runs import fake_run
from streamlit.testing.v1 import AppTest

from imgclf_app.session_keys import CURRENT_RUN, RECENT_FOLDER_CHOICE, SAVED_DATASET_DIR
from imgclf_core.training import run_catalog, run_folder, run_process
from imgclf_core.training.run_folder import RunFolder
from imgclf_core.config import RunConfig
from imgclf_core.fileio import user_data_dir


# ---------------------------------------------------------------- dataset page


@pytest.fixture
def odd_dataset(tmp_path) -> Path:
    root = tmp_path / "data"
    for number in range(12):
        write(root, f"cat/{number:02d}.png", png_bytes(number, (20, 10)))
    for number in range(3):
        write(root, f"dog/{number:02d}.png", png_bytes(100 + number, (20, 10)))
    write(root, "dog/copy.png", png_bytes(100, (20, 10)))
    write(root, "dog/empty.png", b"")
    write(root, "cat/notes.jpg", b"just text")
    return root


def test_dataset_page_counts_warnings_and_skipped_files(odd_dataset):
    app = open_page("app_pages/dataset.py", odd_dataset)
    shown = metrics(app)
    assert {name: shown[name] for name in ("Images", "Classes", "Skipped files", "Duplicate groups")} == {
        "Images": "16", "Classes": "2", "Skipped files": "2", "Duplicate groups": "1"}
    # png_bytes draws flat colours: every image is nearly blank, and the quality section says so
    # random pixels: no quality issue; every issue is listed with its count
    assert [shown[name] for name in ("Too dark", "Too bright", "Blurry", "Low information", "Odd size",
                                     "Odd aspect ratio", "Grayscale stored as RGB")] == ["0"] * 7
    warnings = " ".join(warning.value for warning in app.warning)
    assert "tiny classes: 'dog'" in warnings and "leakage risk" in warnings
    skipped = next(frame.value for frame in app.dataframe if "reason" in frame.value.columns)
    assert sorted(skipped["path"]) == ["cat/notes.jpg", "dog/empty.png"]
    assert [button.label for button in app.get("download_button")] == ["Download as CSV"]
    grid = [image for image in app.get("image") if image.captions and "·" in image.captions[0]]
    assert len(grid) == 16


def test_dark_blurry_and_blank_photos_are_listed_under_their_issue_and_the_grid_filters_by_it(tmp_path):
    root = photos_with_quality_issues(tmp_path / "data")
    app = open_page("app_pages/dataset.py", root)
    shown = metrics(app)
    assert (shown["Too dark"], shown["Blurry"], shown["Low information"]) == ("1", "1", "1")
    expanders = {expander.label: expander for expander in app.expander}
    for title, path in (("Too dark (1)", "cat/night.jpg"), ("Blurry (1)", "dog/shaky.jpg"),
                        ("Low information (1)", "dog/lens-cap.png")):
        assert [image.captions[0] for image in expanders[title].get("image")] == [path]
    captions = lambda: [image.captions[0] for image in app.get("image") if image.captions]  # noqa: E731
    assert {"cat/night.jpg", "dog/shaky.jpg", "dog/lens-cap.png"} <= set(captions())
    app.selectbox(key="grid_quality").set_value("blurry").run()
    assert [caption for caption in captions() if " · " in caption] == ["dog · shaky.jpg"]


def test_dataset_grid_filters_by_class_and_inspects_an_image(odd_dataset):
    app = open_page("app_pages/dataset.py", odd_dataset)
    app.selectbox(key="grid_class").set_value("dog").run()
    captions = [image.captions[0] for image in app.get("image") if image.captions and "·" in image.captions[0]]
    assert len(captions) == 4 and all(caption.startswith("dog · ") for caption in captions)
    def shown_as(caption: str) -> int:  # the duplicates section shows dog/copy.png too
        return sum(1 for image in app.get("image") if image.captions == [caption])

    before = shown_as("dog/copy.png")
    app.button(key="inspect:dog/copy.png").click().run()
    details = " ".join(markdown.value for markdown in app.markdown)
    assert "copy.png" in details and "20×10" in details and "sha256" in details
    # the dialog shows the image itself, and the augmentation preview switches to it
    assert shown_as("dog/copy.png") == before + 1
    assert app.selectbox(key="preview_image").value == "dog/copy.png"
    app.button(key="inspect:dog/00.png").click().run()
    assert app.selectbox(key="preview_image").value == "dog/00.png"
    app.selectbox(key="grid_class").set_value("cat").run()  # any other rerun: the dialog is not reopened
    assert not [markdown for markdown in app.markdown if "sha256" in markdown.value]


def test_the_preview_offers_the_grid_page_and_the_page_sees_files_added_since_the_last_click(tmp_path):
    root = tmp_path / "data"
    for number in range(40):
        write(root, f"{'cat' if number % 2 else 'dog'}/{number:02d}.png", png_bytes(number, (20, 10)))
    os.utime(root / "dog", ns=(10**9, 10**9))  # so that the file added below surely moves the folder's time
    app = open_page("app_pages/dataset.py", root)
    options = app.selectbox(key="preview_image").options
    assert len(options) == 24  # the preview's image and the 24 of the grid's first page (it is one of them)
    app.number_input(key="grid_page").set_value(2).run()
    second_page = app.selectbox(key="preview_image").options
    assert len(second_page) == 17 and second_page[0] == options[0]  # the image kept, then the 16 of page 2
    # A file added (or moved by a relabel) changes its folder's time: the next rerun scans again.
    write(root, "dog/new.png", png_bytes(200, (20, 10)))
    app.number_input(key="grid_page").set_value(1).run()
    assert metrics(app)["Images"] == "41"


def show_augmented_versions(app) -> None:
    """Click "Show the augmented versions" when this process has not loaded TensorFlow yet (else they show)."""
    if any(button.key == "preview_show" for button in app.button):
        app.button(key="preview_show").click().run()


def test_augmentation_preview_renders_the_chosen_number_of_versions(odd_dataset):
    app = open_page("app_pages/dataset.py", odd_dataset)
    show_augmented_versions(app)
    app.selectbox(key="preview_count").set_value(4).run()
    preview = [image for image in app.get("image") if image.captions and image.captions[0] == "original"]
    assert len(preview) == 1 and preview[0].captions == ["original", "#1", "#2", "#3", "#4"]
    first = list(preview[0].value)
    app.slider(key="aug_rotation").set_value(30.0).run()
    assert not app.exception
    assert app.slider(key="aug_rotation").proto.format == "%.0f°"  # "30°", not "30.00"
    app.button(key="preview_reshuffle").click().run()
    reshuffled = [image for image in app.get("image") if image.captions and image.captions[0] == "original"]
    assert len(reshuffled[0].value) == 5 and list(reshuffled[0].value) != first


def test_augmentation_settings_carry_over_to_the_train_page(odd_dataset):
    app = open_page("app_pages/dataset.py", odd_dataset)
    app.slider(key="aug_zoom").set_value(0.2).run()
    app.switch_page("app_pages/train.py").run()
    assert any("zoom ±0.2" in caption.value for caption in app.caption)


# ---------------------------------------------------------------- train page


def test_train_page_starts_a_run_shows_live_curves_stops_and_resumes(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=60)
    app = open_page("app_pages/train.py", data)
    app.selectbox(key="train_model").set_value("small_cnn").run()  # 60 per class: the recommendation is pretrained
    app.number_input(key="train_epochs:small_cnn").set_value(200).run()
    app.button(key="train_start").click().run()
    assert not app.exception, app.exception
    run_dir = Path(app.session_state[CURRENT_RUN])
    assert RunFolder(run_dir).read_config().training.epochs == 200

    wait_until(app, lambda page: len(RunFolder(run_dir).read_history()) >= 2, "two finished epochs")
    rows_before = sum(chart_rows(app))
    wait_until(app, lambda page: sum(chart_rows(page)) > rows_before, "the curves to grow")
    assert metrics(app)["State"] == run_folder.RUNNING

    app.button(key="train_stop").click().run()
    wait_until(app, lambda page: metrics(page)["State"] == run_folder.STOPPED, "state stopped")
    stopped_at = len(RunFolder(run_dir).read_history())
    assert stopped_at < 200 and (run_dir / "model.keras").exists()

    app.button(key="train_resume").click().run()
    wait_until(app, lambda page: len(RunFolder(run_dir).read_history()) > stopped_at, "training to continue")
    epochs = [row["epoch"] for row in RunFolder(run_dir).read_history()]
    assert epochs == list(range(1, len(epochs) + 1))  # no gap, no duplicate
    run_process.RunHandle(run_dir).stop(timeout_s=60)


def test_a_second_run_is_refused_while_one_trains(tmp_path):
    import os

    data = shapes_tree(tmp_path / "data", per_class=5)
    busy = run_catalog.default_runs_root() / "busy"
    busy.mkdir(parents=True)
    RunFolder(busy).write_config(RunConfig(data_dir=str(data.resolve())))
    RunFolder(busy).write_status(run_folder.RUNNING, pid=os.getpid())  # this test process stands for a live trainer
    app = open_page("app_pages/train.py", data)
    app.button(key="train_start").click().run()
    assert any("already training (busy)" in error.value for error in app.error)
    assert [path.name for path in run_catalog.list_runs(run_catalog.default_runs_root())] == ["busy"]


def test_finished_runs_are_listed_compared_and_deleted(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=5)
    root = run_catalog.default_runs_root()
    first = fake_run(root, "20260101-000000-small_cnn", data)
    second = fake_run(root, "20260101-000001-seed_cnn", data, epochs=4)
    evaluation = {"accuracy": 0.9, "macro_f1": 0.88, "class_names": ["cross", "ring", "square"],
                  "per_class": {name: {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 3}
                                for name in ("cross", "ring", "square")},
                  "confusion_matrix": [[3, 0, 0], [0, 3, 0], [1, 0, 2]]}
    from imgclf_core.training.calibration import calibration_report

    probabilities = np.array([[0.9, 0.05, 0.05]] * 5 + [[0.05, 0.9, 0.05]] * 4, np.float32)
    evaluation["calibration"] = calibration_report(np.array([0, 0, 0, 1, 1, 1, 1, 2, 2]), probabilities, 1.7)
    for run_dir in (first, second):
        (run_dir / "evaluation.json").write_text(json.dumps(evaluation))
    from imgclf_core.training.manifest import ManifestRow

    images = [ManifestRow(f"{label}/{number}.png", f"{label}{number}", label, "train")
              for label in ("cross", "ring", "square") for number in range(3)]
    RunFolder(first).write_manifest(images)
    RunFolder(second).write_manifest([ManifestRow("ring/0.png", "cross0", "ring", "train"), *images[1:],
                                      ManifestRow("ring/new.png", "new", "ring", "train")])
    app = open_page("app_pages/train.py", data)
    listed = next(frame.value for frame in app.dataframe if "run" in frame.value.columns)
    assert sorted(listed["run"]) == sorted([first.name, second.name])
    shown = metrics(app)
    assert shown["Validation accuracy"] == "90.0%"
    calibration = evaluation["calibration"]
    assert (shown["ECE before"], shown["ECE calibrated"], shown["Temperature"]) == (
        f"{calibration['ece_before']:.1%}", f"{calibration['ece_after']:.1%}", "1.700")
    assert any("calibrated model gives 80% confidence" in caption.value for caption in app.caption)
    app.multiselect(key="train_compare").set_value([first.name, second.name]).run()
    f1 = next(frame.value for frame in app.dataframe if first.name in frame.value.columns)
    assert list(f1.index) == ["cross", "ring", "square"]
    summary = f"{first.name} → {second.name}: 1 added, 0 removed, 1 relabelled, 8 unchanged"
    assert any(markdown.value == summary for markdown in app.markdown)
    relabelled = next(frame.value for frame in app.dataframe if "before" in frame.value.columns)
    assert relabelled.to_dict("records") == [
        {"path": "ring/0.png", "before": "cross", "after": "ring", "before_path": "cross/0.png"}]
    app.selectbox(key="train_delete_choice").set_value(first.name).run()
    app.checkbox(key=f"train_delete_confirm:{first.name}").check().run()
    app.button(key="train_delete").click().run()
    assert not first.exists() and second.exists()


# ---------------------------------------------------------------- sidebar


def test_uploading_a_zip_opens_it_as_the_dataset_and_a_bad_zip_is_reported(tmp_path):
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    archive = zip_of({"pets/cat/a.png": png_bytes(1), "pets/dog/b.png": png_bytes(2)}).getvalue()
    app.sidebar.file_uploader(key="dataset_zip").set_value(("pets.zip", archive, "application/zip")).run()
    assert not app.exception, app.exception
    assert [header.value for header in app.header] == ["Dataset: pets"]
    assert metrics(app)["Images"] == "2"
    assert Path(app.session_state[SAVED_DATASET_DIR]).is_relative_to(user_data_dir() / "datasets")

    evil = zip_of({"../evil.png": png_bytes(3)}).getvalue()
    app.sidebar.file_uploader(key="dataset_zip").set_value(("evil.zip", evil, "application/zip")).run()
    assert any("evil.zip: unsafe path in archive" in error.value for error in app.sidebar.error)
    assert [header.value for header in app.header] == ["Dataset: pets"]  # the last good dataset stays


def test_recent_folders_are_remembered_and_offered(odd_dataset, tmp_path):
    app = open_page("app_pages/home.py", odd_dataset)
    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT).run()  # a new session, as after a restart
    assert fresh.session_state[SAVED_DATASET_DIR] == str(odd_dataset.resolve())  # it reopens the folder used last
    recent = fresh.sidebar.selectbox(key=RECENT_FOLDER_CHOICE)
    assert str(odd_dataset.resolve()) in recent.options
    recent.set_value(str(odd_dataset.resolve())).run()
    assert metrics(fresh)["Images"] == "16"
    assert app.session_state[SAVED_DATASET_DIR] == str(odd_dataset)


def test_grid_pages_through_a_large_class_and_survives_a_narrower_filter(tmp_path):
    for number in range(30):
        write(tmp_path / "data", f"cat/{number:02d}.png", png_bytes(number, (12, 8)))
    write(tmp_path / "data", "dog/00.png", png_bytes(99, (12, 8)))
    app = open_page("app_pages/dataset.py", tmp_path / "data")
    app.number_input(key="grid_page").set_value(2).run()
    captions = [image.captions[0] for image in app.get("image") if image.captions and "·" in image.captions[0]]
    assert captions[0] == "cat · 24.png" and len(captions) == 7  # 31 images, 24 per page
    app.selectbox(key="grid_class").set_value("dog").run()
    assert not app.exception, app.exception
    captions = [image.captions[0] for image in app.get("image") if image.captions and "·" in image.captions[0]]
    assert captions == ["dog · 00.png"]


def test_an_inspect_click_during_the_first_quality_pass_keeps_its_dialog_open(odd_dataset):
    """The quality pass ends in a rerun (so the grid gets its quality filter); the dialog the same run opened
    must open again after it, not close under the user."""
    from imgclf_app import dataset_loaders

    app = open_page("app_pages/dataset.py", odd_dataset)
    with dataset_loaders._lock:
        dataset_loaders._per_scan.clear()  # as on a first visit: the click's run computes the quality report
    app.button(key="inspect:dog/copy.png").click().run()
    assert not app.exception, app.exception
    assert any("sha256" in markdown.value for markdown in app.markdown)  # the Inspect dialog
    assert app.selectbox(key="grid_quality")  # and the grid's quality filter


def test_a_rescan_that_finds_the_same_images_keeps_what_was_computed_from_the_scan(tmp_path):
    from imgclf_app.dataset_loaders import compute_for_scan, kept_for_scan
    from imgclf_core.data.dataset import scan_dataset

    root = shapes_tree(tmp_path / "shapes", per_class=3)
    first = scan_dataset(root)
    compute_for_scan("test-kind", first, lambda progress: "result", "Testing", "once", depends_on=("model", 1))
    again = scan_dataset(root)  # the periodic rescan: a new index object, the same records
    assert again is not first and kept_for_scan("test-kind", again, ("model", 1)) == "result"
    assert kept_for_scan("test-kind", again, ("model", 2)) is None  # another model
    write(root, "ring/new.png", png_bytes(9, (16, 16)))
    assert kept_for_scan("test-kind", scan_dataset(root), ("model", 1)) is None  # another image
