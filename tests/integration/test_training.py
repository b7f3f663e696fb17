"""The trainer and the run folder: registry models, stop, kill -9 and resume, class weights, two stages."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.files import SHAPES, shapes_tree
from PIL import Image

pytest.importorskip("tensorflow")

import keras  # noqa: E402

from imgclf_core.training import run_folder, run_process
from imgclf_core.training.run_folder import RunFolder  # noqa: E402
from imgclf_core.config import (  # noqa: E402
    NO_AUGMENTATION,
    AugmentationConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
)
from imgclf_core.models.model_io import load_model_checked  # noqa: E402
from imgclf_core.models.errors import ModelError  # noqa: E402
from imgclf_core.models.registry import MODEL_REGISTRY, create_model, last_conv_layer_name  # noqa: E402
from imgclf_core.training.trainer import class_weights, train_run  # noqa: E402


def make_run(tmp_path: Path, data_dir: Path, name: str = "run", **training) -> Path:
    run_dir = tmp_path / name
    run_dir.mkdir()
    config = RunConfig(
        data_dir=str(data_dir),
        data=DataConfig(image_size=16, color_mode="grayscale", batch_size=training.pop("batch_size", 8)),
        augmentation=training.pop("augmentation", NO_AUGMENTATION),
        model=training.pop("model", ModelConfig(name="small_cnn")),
        training=TrainingConfig(**{"epochs": 2, "progress_every_batches": 1, **training}),
    )
    RunFolder(run_dir).write_config(config)
    return run_dir


def history_epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "history.csv", encoding="utf-8") as stream:
        return [int(row["epoch"]) for row in csv.DictReader(stream)]


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize("name", [name for name in MODEL_REGISTRY])
def test_every_registry_model_trains_saves_reloads_and_predicts_the_same(name, tmp_path):
    config = ModelConfig(name=name, weights="imagenet" if name == "efficientnet_lite0" else "none")
    channels = 1 if name in ("small_cnn", "efficientnet_lite0") else 3
    model = create_model(config, 3, 32, channels)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers), "nested model: Grad-CAM cannot reach it"
    model.get_layer(last_conv_layer_name(model))
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, channels)).astype("float32")
    # One eager step changes the weights, the batch-norm statistics and the optimizer state as well as a traced
    # one, without tracing the backward pass (about 20 s for the keras.applications models on 2 cores).
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
    model.train_on_batch(images, np.array([0, 1, 2, 0]))
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = load_model_checked(path, expected_num_classes=3)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)


def test_unknown_model_and_one_class_are_refused():
    with pytest.raises(ModelError, match="unknown model 'nope'.*small_cnn"):
        create_model(ModelConfig(name="nope"), 3, 32, 3)
    with pytest.raises(ModelError, match="at least 2 classes"):
        create_model(ModelConfig(), 1, 32, 3)


def test_offline_imagenet_weights_fail_with_a_message_naming_the_offline_backbone(monkeypatch):
    import keras.src.utils.file_utils as file_utils

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] name resolution")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with pytest.raises(ModelError, match="efficientnet_lite0"):
        create_model(ModelConfig(name="mobilenet_v2", weights="imagenet"), 3, 96, 3)


# ---------------------------------------------------------------- runs


def test_a_run_leaves_the_whole_run_folder(tmp_path):
    run_dir = make_run(tmp_path, shapes_tree(tmp_path / "data", per_class=30), epochs=8, learning_rate=3e-3)
    rows = []
    assert train_run(run_dir, epoch_listener=lambda row, model: rows.append(row)) == run_folder.FINISHED
    for name in ("config.json", "status.json", "history.csv", "progress.jsonl", "model.keras",
                 "evaluation.json", "predictions.csv", "checkpoint/state.json", "manifest.csv", "calibration.json",
                 "familiarity.npz"):
        assert (run_dir / name).exists(), name
    manifest = RunFolder(run_dir).read_manifest()
    assert len(manifest) == 90 and {row.split for row in manifest} == {"train", "validation"}
    assert sum(row.split == "validation" for row in manifest) == 18
    assert list((run_dir / "tensorboard").iterdir())
    assert history_epochs(run_dir) == list(range(1, 9)) == [row["epoch"] for row in rows]
    status = RunFolder(run_dir).read_status()
    assert status["state"] == run_folder.FINISHED and status["epoch"] == 8
    document = json.loads((run_dir / "config.json").read_text())
    assert document["class_names"] == sorted(SHAPES) and "tensorflow" in document["versions"]
    evaluation = json.loads((run_dir / "evaluation.json").read_text())["validation"]
    with open(run_dir / "predictions.csv", encoding="utf-8") as stream:
        predictions = list(csv.DictReader(stream))
    assert sum(map(sum, evaluation["confusion_matrix"])) == len(predictions) == 18  # 20% of 90
    progress = RunFolder(run_dir).read_progress()
    assert progress[-1]["epoch"] == 8 and progress[-1]["step"] == progress[-1]["steps"]
    # The model learns these shapes: the trainer really trains.
    assert evaluation["accuracy"] >= 0.6
    # 18 validation images are too few to fit a temperature: T = 1, the same ECE before and after
    assert RunFolder(run_dir).read_temperature() == 1.0
    assert evaluation["calibration"]["ece_before"] == evaluation["calibration"]["ece_after"] == evaluation["ece"]


def png_of(array) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_fitted_temperature_and_the_unfamiliar_image_model_reach_every_consumer_of_the_run(tmp_path):
    from imgclf_core.inspection.predict import Predictor
    from imgclf_core.training.calibration import apply_temperature

    data = shapes_tree(tmp_path / "data", per_class=60)
    run_dir = make_run(tmp_path, data, epochs=4, learning_rate=3e-3)
    assert train_run(run_dir) == run_folder.FINISHED
    folder = RunFolder(run_dir)
    temperature = folder.read_temperature()
    assert temperature != 1.0 and json.loads((run_dir / "calibration.json").read_text())["images"] == 36
    calibration = folder.read_evaluation("validation")["calibration"]
    assert calibration["temperature"] == temperature
    assert calibration["nll_after"] <= calibration["nll_before"]
    assert sum(row["count"] for row in calibration["reliability_after"]) == 36
    rows = folder.read_predictions()
    paths = [str(data / row["path"]) for row in rows]
    predictor = Predictor.from_run(run_dir)  # the calibrated model
    images, _, _ = predictor.load_images(paths)
    calibrated = predictor.predict_arrays(images)
    raw = folder.load_model().predict(images.astype("float32"), verbose=0)
    np.testing.assert_allclose(calibrated, apply_temperature(raw, temperature), atol=1e-4)
    # predictions.csv holds the calibrated probabilities the Mistakes page shows
    assert [row["probability"] for row in rows] == pytest.approx(calibrated.max(axis=1).tolist(), abs=1e-4)
    # The unfamiliar-image model: most validation images pass, a real photo is flagged.
    assert (run_dir / "familiarity.npz").exists()
    validation_flags = [item["flagged"] for item in predictor.unfamiliar(images)]
    assert sum(validation_flags) <= 0.1 * len(validation_flags) + 1
    import skimage.data

    photo = predictor.load_image(png_of(skimage.data.chelsea()))[None]
    assert predictor.unfamiliar(photo)[0]["flagged"]
    folder.save_model(folder.load_model())  # a new model: the old temperature and familiarity do not apply to it
    assert folder.read_temperature() == 1.0 and folder.read_familiarity() is None


def test_imbalanced_classes_get_weights_and_a_note(tmp_path):
    data = shapes_tree(tmp_path / "data", counts={"square": 30, "cross": 10, "ring": 10})
    run_dir = make_run(tmp_path, data, epochs=1)
    train_run(run_dir)
    assert any("imbalanced" in note for note in RunFolder(run_dir).read_status()["notes"])
    weights = class_weights(np.array([0] * 30 + [1] * 10 + [2] * 10), 3, "auto")
    np.testing.assert_allclose(weights, [50 / 90, 50 / 30, 50 / 30])
    assert class_weights(np.array([0, 1, 2]), 3, "auto") is None


def wait_for(condition, timeout_s: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_stop_finishes_the_batch_saves_and_reports_stopped(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=60)
    config = RunFolder(make_run(tmp_path, data, name="template", epochs=50)).read_config()
    handle = run_process.start_run(config, tmp_path / "run")
    wait_for(lambda: any(record["epoch"] >= 2 for record in handle.progress()), what="epoch 2 to start")
    pid = handle.status()["pid"]
    status = handle.stop(timeout_s=60)
    assert status["state"] == run_folder.STOPPED, status
    assert "resume continues after epoch" in status["message"]
    # The launcher (here pytest, in the app the server) reaps its trainer: no zombie is left behind.
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout_s=30, what="the stopped trainer to be reaped")
    model = load_model_checked(tmp_path / "run" / "model.keras", expected_num_classes=3)
    assert model.output_shape == (None, 3)


def test_kill_9_then_resume_loses_no_finished_epoch(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=60)
    # save_every_seconds=0: every epoch is written (by default a hard kill loses up to 30 s of epochs)
    config = RunFolder(make_run(tmp_path, data, name="template", epochs=12, save_every_seconds=0)).read_config()
    handle = run_process.start_run(config, tmp_path / "run")
    run_dir = handle.run_dir
    wait_for(lambda: len(handle.history()) >= 3, what="three finished epochs")
    os.kill(handle.status()["pid"], signal.SIGKILL)
    wait_for(lambda: handle.status()["state"] == run_folder.INTERRUPTED, timeout_s=20, what="the trainer to die")
    before = handle.history()
    checkpoint_epoch = json.loads((run_dir / "checkpoint" / "state.json").read_text())["epoch"]
    assert checkpoint_epoch >= len(before) >= 3 and checkpoint_epoch < 12

    status = handle.resume().wait(timeout_s=300)
    assert status["state"] == run_folder.FINISHED, status
    after = handle.history()
    assert [row["epoch"] for row in after] == list(range(1, 13))  # no gap, no duplicate
    assert after[: len(before)] == before  # finished epochs kept as they were
    assert not list(run_dir.glob(".tmp-*")) and not list((run_dir / "checkpoint").glob(".tmp-*"))


def test_resume_refuses_a_run_that_is_training_right_now(tmp_path):
    from imgclf_core.cli import main

    import subprocess
    import sys

    run_dir = make_run(tmp_path, shapes_tree(tmp_path / "data"))
    other_trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        RunFolder(run_dir).write_status(run_folder.RUNNING, pid=other_trainer.pid)
        assert main(["train", "--resume", str(run_dir)]) == 2
        assert not (run_dir / "history.csv").exists()
    finally:
        other_trainer.kill()
        other_trainer.wait()


def test_transfer_learning_trains_the_head_then_fine_tunes(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=8, size=32)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    RunFolder(run_dir).write_config(RunConfig(
        data_dir=str(data),
        data=DataConfig(image_size=32, color_mode="grayscale", batch_size=8),
        augmentation=AugmentationConfig(),
        model=ModelConfig(name="efficientnet_lite0"),
        training=TrainingConfig(epochs=1, fine_tune_epochs=1),
    ))
    seen = []

    def trainable_count(row, model):
        seen.append((row["stage"], sum(int(np.prod(w.shape)) for w in model.trainable_weights)))

    assert train_run(run_dir, epoch_listener=trainable_count) == run_folder.FINISHED
    (head_stage, head_trainable), (tune_stage, tune_trainable) = seen
    assert (head_stage, tune_stage) == ("head", "fine_tune")
    assert head_trainable == 1280 * 3 + 3  # only the new Dense head
    assert tune_trainable > head_trainable
    rows = RunFolder(run_dir).read_history()
    assert [row["lr"] <= 1e-4 + 1e-12 for row in rows] == [False, True]


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


def test_two_workers_on_localhost_train_one_run_to_the_end(tmp_path):
    import subprocess
    import sys

    # With the from-scratch recipe's weight averaging, label smoothing and warm-up: replicated variables too.
    run_dir = make_run(tmp_path, shapes_tree(tmp_path / "data"), epochs=2, batch_size=4, weight_average_decay=0.99,
                       label_smoothing=0.1, warmup_epochs=0.5)
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        environment = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
            "CUDA_VISIBLE_DEVICES": "",
        }
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "imgclf_core.cli", "train", "--resume", str(run_dir)],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        ))
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=240)[0].decode(errors="replace"))
        finally:
            process.kill()
    assert [process.returncode for process in processes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    status = RunFolder(run_dir).read_status()
    assert status["state"] == run_folder.FINISHED and status["pid"] == processes[0].pid  # only the chief writes
    assert history_epochs(run_dir) == [1, 2]
    # Each worker took half of the 6 batches of 4 (48 training images / (2 workers x 4)) per epoch.
    assert RunFolder(run_dir).read_progress()[-1]["steps"] == 6
    load_model_checked(run_dir / "model.keras", expected_num_classes=3)
