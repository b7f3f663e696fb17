"""Core pieces behind the Dataset and Train pages: zip upload, recent folders, dataset report,
disk thumbnails and the runs list helpers. None of these import TensorFlow or Streamlit."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from helpers.files import png_bytes, write, zip_of
from helpers.runs import fake_run
from PIL import Image

from imgclf_core.training import run_catalog, run_folder
from imgclf_core.training.run_folder import RunFolder

from imgclf_core import settings
from imgclf_core.data.archive import ArchiveError, extract_dataset_zip
from imgclf_core.data.dataset import dataset_health_warnings, scan_dataset
from imgclf_core.data.dataset_report import mode_distribution, size_distribution
from imgclf_core.fileio import user_config_dir
from imgclf_core.data.thumbnails import make_thumbnail, thumbnail_file


# ---------------------------------------------------------------- zip upload


def test_zip_of_a_folder_unpacks_to_its_inner_dataset_root(tmp_path):
    source = zip_of({"pets/cat/a.png": png_bytes(1), "pets/dog/b.png": png_bytes(2),
                     "__MACOSX/pets/._a.png": b"junk"})
    root = extract_dataset_zip(source, tmp_path / "out")
    assert root == tmp_path / "out" / "pets"
    assert scan_dataset(root).class_counts == {"cat": 1, "dog": 1}
    assert not (tmp_path / "out" / "__MACOSX").exists()


def test_zip_of_class_folders_unpacks_to_the_target(tmp_path):
    root = extract_dataset_zip(zip_of({"cat/a.png": png_bytes(1), "dog/b.png": png_bytes(2)}), tmp_path / "out")
    assert root == tmp_path / "out"


@pytest.mark.parametrize("name", ["../evil.png", "/etc/evil.png", "cat/../../evil.png", "C:/evil.png",
                                  "..\\evil.png"])
def test_zip_entries_that_escape_the_target_are_refused_and_nothing_is_left(tmp_path, name):
    source = zip_of({"cat/a.png": png_bytes(1), name: png_bytes(2)})
    with pytest.raises(ArchiveError, match="unsafe path"):
        extract_dataset_zip(source, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.png").exists()


def test_zip_symlinks_are_refused(tmp_path):
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract_dataset_zip(zip_of({"cat/a.png": png_bytes(1)}, {"cat/link.png": "/etc/passwd"}), tmp_path / "out")


def test_zip_bomb_is_stopped_by_bytes_actually_written(tmp_path):
    source = zip_of({"cat/big.bin": bytes(5_000_000)})  # compresses to a few kB
    with pytest.raises(ArchiveError, match="archive too large"):
        extract_dataset_zip(source, tmp_path / "out", max_total_bytes=1_000_000)
    assert not (tmp_path / "out").exists()


def test_zip_file_count_cap(tmp_path):
    source = zip_of({f"cat/{number}.png": png_bytes(number) for number in range(6)})
    with pytest.raises(ArchiveError, match="too many files"):
        extract_dataset_zip(source, tmp_path / "out", max_files=5)


def test_not_a_zip_and_an_existing_target_are_refused(tmp_path):
    with pytest.raises(ArchiveError, match="not a readable .zip"):
        extract_dataset_zip(io.BytesIO(b"hello"), tmp_path / "out")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ArchiveError, match="already exists"):
        extract_dataset_zip(zip_of({"cat/a.png": png_bytes(1)}), tmp_path / "taken")


# ---------------------------------------------------------------- recent folders


def test_recent_folders_are_newest_first_unique_and_capped(tmp_path):
    folders = [tmp_path / f"d{number}" for number in range(settings.MAX_RECENT_FOLDERS + 2)]
    for folder in folders:
        folder.mkdir()
        settings.remember_dataset_folder(folder)
    settings.remember_dataset_folder(folders[3])
    recent = settings.recent_dataset_folders()
    assert recent[0] == str(folders[3].resolve())
    assert len(recent) == settings.MAX_RECENT_FOLDERS == len(set(recent))
    assert str(folders[0].resolve()) not in recent  # the oldest fell off


def test_unreadable_recent_file_counts_as_empty():
    path = user_config_dir() / "recent_folders.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert settings.recent_dataset_folders() == []


# ---------------------------------------------------------------- dataset report


def test_report_counts_sizes_modes_and_warns(tmp_path):
    for number in range(40):
        write(tmp_path, f"big/{number}.png", png_bytes(number, (8, 6)))
    for number in range(3):
        write(tmp_path, f"small/{number}.png", png_bytes(100 + number, (4, 4)))
    write(tmp_path, "small/copy.png", png_bytes(100, (4, 4)))
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small" / "gray.png")
    index = scan_dataset(tmp_path)
    assert size_distribution(index) == [("8x6", 40), ("4x4", 4), ("5x5", 1)]
    assert mode_distribution(index) == [("RGB", 44), ("L", 1)]
    warnings = dataset_health_warnings(index)
    assert any(w.startswith("imbalance: 'big' has 8.0x the images of 'small'") for w in warnings)
    assert any(w.startswith("tiny classes: 'small'") for w in warnings)
    assert any(w.startswith("leakage risk: 1 file(s) are exact copies") for w in warnings)


def test_balanced_clean_dataset_has_no_health_warnings(tmp_path):
    for offset, label in enumerate(("a", "b")):
        # 24 distinct seeds, the same every run (seeds from hash() repeated in about 1 run in 80: exact copies)
        for number in range(12):
            write(tmp_path, f"{label}/{number}.png", png_bytes(100 * offset + number))
    assert dataset_health_warnings(scan_dataset(tmp_path)) == []


# ---------------------------------------------------------------- thumbnails


def test_thumbnail_is_made_once_per_content_hash(tmp_path):
    path = write(tmp_path, "a/one.png", png_bytes(1, (300, 150)))
    index = scan_dataset(tmp_path)
    first = thumbnail_file(path, index.records[0].sha256, size=64)
    assert Image.open(first).size == (64, 32)
    stamp = first.stat().st_mtime_ns
    assert thumbnail_file(path, index.records[0].sha256, size=64) == first and first.stat().st_mtime_ns == stamp


def test_small_images_are_enlarged_by_whole_pixels():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1).repeat(3, axis=2)
    enlarged = make_thumbnail(image, 16)
    assert enlarged.shape == (16, 16, 3)
    assert set(np.unique(enlarged)) == set(np.unique(image))  # no blended pixel values


# ---------------------------------------------------------------- runs list helpers


def test_runs_of_a_dataset_and_their_summary(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "other").mkdir()
    mine = fake_run(tmp_path / "runs", "20260101-000000-small_cnn", tmp_path / "data")
    fake_run(tmp_path / "runs", "20260101-000001-small_cnn", tmp_path / "other")
    (tmp_path / "runs" / "not-a-run").mkdir()
    assert run_catalog.runs_of_dataset(tmp_path / "runs", tmp_path / "data") == [mine]
    summary = run_catalog.summarize_run(mine)
    assert (summary["run"], summary["model"], summary["state"], summary["epochs"]) == (
        mine.name, "small_cnn", run_folder.FINISHED, "3/3")
    assert summary["val_accuracy"] == pytest.approx(0.63)  # no evaluation yet: the best epoch's
    assert summary["test_accuracy"] is None
    (mine / "evaluation.json").write_text('{"validation": {"accuracy": 0.6}, "test": {"accuracy": 0.55}}')
    summary = run_catalog.summarize_run(mine)  # evaluated: the saved model's figures, the same on every page
    assert (summary["val_accuracy"], summary["test_accuracy"]) == (0.6, 0.55)


def test_new_run_dirs_never_collide(tmp_path):
    first = run_catalog.new_run_dir(tmp_path, "small_cnn")
    first.mkdir()
    second = run_catalog.new_run_dir(tmp_path, "small_cnn")
    assert second != first and second.name.startswith(first.name)


def test_delete_run_removes_a_finished_run_and_refuses_an_active_one(tmp_path):
    (tmp_path / "data").mkdir()
    finished = fake_run(tmp_path / "runs", "done", tmp_path / "data")
    RunFolder(finished).delete()
    assert not finished.exists()
    active = fake_run(tmp_path / "runs", "busy", tmp_path / "data", state=run_folder.RUNNING)  # pid: this process
    with pytest.raises(run_folder.RunError, match="training right now"):
        RunFolder(active).delete()
    assert active.exists()
    assert run_catalog.active_runs(tmp_path / "runs") == [active]
    with pytest.raises(run_folder.RunError, match="not a run folder"):
        RunFolder(tmp_path / "data").delete()
    assert (tmp_path / "data").exists()


def test_remaining_seconds_from_the_pace_of_the_latest_batch():
    status = {"state": run_folder.RUNNING, "epochs": 3, "pid": os.getpid()}
    progress = [{"epoch": 2, "step": 10, "steps": 40, "seconds": 5.0}]
    assert run_catalog.remaining_seconds(status, progress) == pytest.approx(0.5 * (30 + 40))
    assert run_catalog.remaining_seconds({**status, "state": run_folder.FINISHED}, progress) is None
    assert run_catalog.remaining_seconds(status, []) is None
    json.dumps(status)  # statuses stay JSON
