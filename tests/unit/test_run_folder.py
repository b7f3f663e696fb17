"""RunFolder: every reader gives back what its writer wrote, writes are atomic, a bad folder is one RunError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgclf_core.config import DataConfig, ModelConfig, RunConfig, TrainingConfig
from imgclf_core.training.run_folder import (
    FAILED, FINISHED, INTERRUPTED, QUEUED, RUNNING, RunError, RunFolder,
)

CLASS_NAMES = ["ant", "bee", "cat"]


def run_config(tmp_path: Path) -> RunConfig:
    return RunConfig(data_dir=str(tmp_path / "data"), data=DataConfig(image_size=16, color_mode="grayscale"),
                     model=ModelConfig(name="small_cnn", weights="none"), training=TrainingConfig(epochs=3))


@pytest.fixture
def folder(tmp_path: Path) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    return run


def test_config_round_trip_with_and_without_class_names(folder, tmp_path):
    config = run_config(tmp_path)
    folder.write_config(config, created_at="2026-01-01T00:00:00+00:00")
    document = folder.read_document()
    assert (document.config, document.class_names, document.created_at) == (config, None, "2026-01-01T00:00:00+00:00")
    assert "python" in document.versions
    with pytest.raises(RunError, match="class_names must be a list of at least two names"):
        folder.read_trained_config()  # the trainer has not scanned the data yet
    folder.write_config(config, CLASS_NAMES, created_at=document.created_at)
    assert folder.read_trained_config() == (config, CLASS_NAMES)
    assert folder.read_config() == config and folder.is_run()


@pytest.mark.parametrize("content, message", [
    (None, "not a run folder"), ("{not json", "unreadable run config"), ('{"run": {}}', "unreadable run config"),
    ("[1, 2]", "unreadable run config"), ('{"run": {"data_dir": "x"}, "class_names": "ab"}', "class_names"),
])
def test_a_folder_that_holds_no_readable_run_is_one_run_error(folder, content, message):
    if content is not None:
        folder.config_path.write_text(content)
    with pytest.raises(RunError, match=message):
        folder.read_document()


def test_a_missing_folder_is_a_run_error_too(tmp_path):
    missing = RunFolder(tmp_path / "nowhere")
    for read in (missing.read_document, missing.read_config, missing.read_trained_config, missing.read_raw_config):
        with pytest.raises(RunError, match="run folder not found"):
            read()
    assert not missing.is_run() and not missing.has_model() and missing.read_evaluation() is None


def test_status_round_trip_and_a_dead_trainer_reads_as_interrupted(folder, tmp_path):
    assert folder.read_status() == {"state": "missing"}
    folder.write_config(run_config(tmp_path))
    assert folder.read_status() == {"state": QUEUED}  # config written, trainer not started yet
    folder.write_status(RUNNING, message="epoch 1", epoch=1)  # pid: this process, which is alive
    status = folder.read_status()
    assert (status["state"], status["message"], status["epoch"], status["pid"]) == (RUNNING, "epoch 1", 1, os.getpid())
    assert folder.is_active()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder.write_status(RUNNING, pid=int(finished.stdout))  # a process that has ended
    assert folder.read_status()["state"] == INTERRUPTED and not folder.is_active()
    folder.status_path.write_text("{half")
    assert folder.read_status() == {"state": "unreadable"}


def test_history_round_trip_keeps_numbers_as_numbers(folder):
    rows = [{"epoch": 1, "stage": "full", "loss": 0.5, "accuracy": 0.75, "val_loss": float("nan"),
             "val_accuracy": 1.0, "lr": 1e-3, "seconds": 2.0, "not a column": "dropped"}]
    assert folder.read_history() == []
    folder.write_history(rows)
    [row] = folder.read_history()
    assert {key: row[key] for key in ("epoch", "stage", "loss", "accuracy", "lr")} == {
        "epoch": 1, "stage": "full", "loss": 0.5, "accuracy": 0.75, "lr": 1e-3}
    assert np.isnan(row["val_loss"]) and "not a column" not in row


def test_progress_skips_a_line_being_written(folder):
    assert folder.read_progress() == []
    folder.append_progress({"epoch": 1, "step": 1})
    folder.append_progress({"epoch": 1, "step": 2})
    with open(folder.path / RunFolder.PROGRESS, "a", encoding="utf-8") as stream:
        stream.write('{"epoch": 1, "st')
    assert folder.read_progress() == [{"epoch": 1, "step": 1}, {"epoch": 1, "step": 2}]


def test_evaluation_per_split_and_the_old_validation_only_format(folder):
    assert folder.read_evaluation() is None
    folder.write_evaluation({"validation": {"accuracy": 0.5}, "test": {"accuracy": 0.25}})
    assert folder.read_evaluation()["accuracy"] == 0.5 and folder.read_evaluation("test")["accuracy"] == 0.25
    (folder.path / RunFolder.EVALUATION).write_text(json.dumps({"accuracy": 0.75}))
    assert folder.read_evaluation() == {"accuracy": 0.75} and folder.read_evaluation("test") is None


def test_predictions_round_trip_by_split(folder):
    assert folder.read_predictions() is None and not folder.has_predictions()
    probabilities = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]], np.float32)
    folder.write_predictions(["a.png", "b.png", "c.png"], np.array([0, 2, 2]), probabilities, CLASS_NAMES,
                             ["validation", "validation", "test"])
    validation = folder.read_predictions()
    assert [(row["path"], row["true"], row["predicted"]) for row in validation] == [
        ("a.png", "ant", "ant"), ("b.png", "cat", "bee")]
    assert [row["path"] for row in folder.read_predictions("test")] == ["c.png"]


def test_checkpoint_commits_with_its_state_and_drops_older_files(folder):
    assert folder.read_checkpoint_state() is None
    for epoch in (1, 2):
        folder.write_checkpoint(epoch, lambda path: path.write_bytes(b"weights"),
                                lambda path: path.write_bytes(b"optimizer"), {"epoch": epoch})
    state = folder.read_checkpoint_state()
    assert state == {"epoch": 2, "weights": "epoch-0002.weights.h5", "optimizer": "epoch-0002.optimizer.npz"}
    assert folder.checkpoint_file(state["weights"]).read_bytes() == b"weights"
    assert sorted(path.name for path in folder.checkpoint_dir.iterdir()) == [
        "epoch-0002.optimizer.npz", "epoch-0002.weights.h5", RunFolder.CHECKPOINT_STATE]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(folder):
    folder.write_checkpoint(1, lambda path: path.write_bytes(b"old"), lambda path: path.write_bytes(b"old"),
                            {"epoch": 1})

    def crash(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        folder.write_checkpoint(2, lambda path: path.write_bytes(b"new"), crash, {"epoch": 2})
    assert folder.read_checkpoint_state()["epoch"] == 1  # state.json is the commit point
    assert folder.checkpoint_file("epoch-0001.weights.h5").read_bytes() == b"old"
    assert not [path for path in folder.checkpoint_dir.iterdir() if path.name.startswith(".tmp-")]


def test_save_model_is_atomic_and_load_model_checks_it(folder, monkeypatch):
    import keras

    with pytest.raises(RunError, match="no trained model"):
        folder.load_model()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    folder.save_model(model)
    saved = folder.model_path.read_bytes()
    assert folder.load_model(expected_num_classes=3).outputs[0].shape[-1] == 3

    def killed_while_saving(model, path, **kwargs) -> None:
        Path(path).write_bytes(b"half a model")
        raise OSError("killed while saving")

    monkeypatch.setattr(keras.saving, "save_model", killed_while_saving)
    with pytest.raises(OSError, match="killed while saving"):
        folder.save_model(model)
    assert folder.model_path.read_bytes() == saved
    assert sorted(path.name for path in folder.path.iterdir()) == [RunFolder.MODEL]


def test_lineage_names_only_a_sibling_run(tmp_path):
    parent, child = RunFolder(tmp_path / "parent"), RunFolder(tmp_path / "child")
    for run in (parent, child):
        run.path.mkdir()
    assert child.retrained_from() is None
    child.write_lineage("parent")
    assert child.retrained_from() is None  # the parent is not a run (no config) yet
    parent.write_config(run_config(tmp_path))
    assert child.retrained_from() == parent
    child.write_lineage("../parent")
    assert child.retrained_from() is None


def test_delete_refuses_an_active_run_and_a_folder_that_is_no_run(folder, tmp_path):
    with pytest.raises(RunError, match="not a run folder"):
        folder.delete()
    folder.write_config(run_config(tmp_path))
    folder.write_status(RUNNING)  # this process: alive
    with pytest.raises(RunError, match="training right now"):
        folder.delete()
    folder.write_status(FAILED)
    folder.delete()
    assert not folder.path.exists()


def test_run_files_have_the_names_the_design_gives_them(folder):
    assert (folder.config_path.name, folder.status_path.name, folder.model_path.name) == (
        "config.json", "status.json", "model.keras")
    assert (folder.checkpoint_dir.name, folder.tensorboard_dir.name, folder.log_path.name) == (
        "checkpoint", "tensorboard", "train.log")
    assert folder.export_dir("tflite") == folder.path / "exports" / "tflite"
    assert FINISHED == "finished"
