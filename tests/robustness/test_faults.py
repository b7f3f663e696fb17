"""Faults: a full disk under a model save, kill -9 in the middle of writes and of a journal move.

Each kill is a real SIGKILL of a real process at a chosen point (a small wrapper script patches the
one write or file call where the process dies), and the next start must resume or report clearly
with no half-written file in place.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers.files import ROOT, png_bytes, shapes_tree, write

from imgclf_core.training import run_folder
from imgclf_core.training.run_folder import RunFolder
from imgclf_core.config import NO_AUGMENTATION, DataConfig, ModelConfig, RunConfig, TrainingConfig
from imgclf_core.fileio import TEMP_FILE_PREFIX
from imgclf_core.inspection.relabel import RelabelJournal

def run_python(script: str, *arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `script` (Python source) in a fresh interpreter; the repository is importable as usual."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob(f"{TEMP_FILE_PREFIX}*"))


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def small_filesystem(tmp_path):
    """A 16 MiB tmpfs mounted for this test (only root may mount; skipped with the reason elsewhere)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8); the full-disk test cannot run here")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_disk_leaving(folder: Path, free_bytes: int) -> None:
    """Write a filler file so that only about `free_bytes` stay free on the filesystem of `folder`."""
    stats = os.statvfs(folder)
    available = stats.f_bavail * stats.f_frsize
    with open(folder / "filler", "wb") as filler:
        filler.write(b"\0" * max(0, available - free_bytes))
        filler.flush()
        os.fsync(filler.fileno())


def test_a_model_save_onto_a_full_disk_keeps_the_old_model_loadable_and_leaves_no_temp_file(small_filesystem):
    import keras

    from imgclf_core.models.model_io import load_model_checked, save_model_atomically
    from imgclf_core.models.registry import create_model

    def model_with_seed(seed: int):
        keras.utils.set_random_seed(seed)
        return create_model(ModelConfig(name="small_cnn"), 3, 32, 1)

    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1)).astype("float32")
    path = small_filesystem / "model.keras"
    old_model = model_with_seed(1)
    save_model_atomically(old_model, path)
    expected = old_model.predict(images, verbose=0)
    old_bytes = path.read_bytes()

    fill_disk_leaving(small_filesystem, len(old_bytes) // 4)  # room for a quarter of a new model
    with pytest.raises(OSError) as caught:
        save_model_atomically(model_with_seed(2), path)
    assert caught.value.errno == errno.ENOSPC or "No space left" in str(caught.value), caught.value

    assert path.read_bytes() == old_bytes
    np.testing.assert_allclose(load_model_checked(path).predict(images, verbose=0), expected, rtol=0, atol=1e-6)
    assert temp_files(small_filesystem) == []


def test_training_onto_a_full_disk_fails_with_a_clear_status_and_keeps_the_last_model(small_filesystem, tmp_path):
    """The trainer cannot write its next checkpoint: the run says why, and the saved model still loads."""
    from imgclf_core.models.model_io import load_model_checked
    from imgclf_core.training.trainer import train_run

    data = shapes_tree(tmp_path / "data", per_class=10)
    run_dir = small_filesystem / "run"
    run_dir.mkdir()
    RunFolder(run_dir).write_config(_tiny_run_config(data, epochs=1))
    assert train_run(run_dir) == run_folder.FINISHED

    RunFolder(run_dir).write_config(_tiny_run_config(data, epochs=3))  # two more epochs, on a full disk
    fill_disk_leaving(small_filesystem, 16 * 1024)
    # In its own process, as the app runs it: HDF5 keeps the handle whose close failed until exit.
    trainer = run_python("import sys; from imgclf_core.cli import main; sys.exit(main(sys.argv[1:]))",
                         "train", "--resume", str(run_dir))
    assert trainer.returncode != 0, trainer.stderr[-2000:]
    (small_filesystem / "filler").unlink()  # the user frees space and looks at the run

    status = RunFolder(run_dir).read_status()
    assert status["state"] == run_folder.FAILED and "disk is full (No space left on device)" in status["message"]
    load_model_checked(run_dir / "model.keras")
    assert temp_files(run_dir) == []


def _tiny_run_config(data: Path, epochs: int) -> RunConfig:
    return RunConfig(
        data_dir=str(data),
        data=DataConfig(image_size=16, color_mode="grayscale", batch_size=8),
        augmentation=NO_AUGMENTATION,
        model=ModelConfig(name="small_cnn"),
        # Every epoch writes: the kills below count writes, and a resume goes on from the last epoch.
        training=TrainingConfig(epochs=epochs, progress_every_batches=1, save_every_seconds=0),
    )


# ---------------------------------------------------------------- kill -9 while the trainer writes

# Runs `imgclf train --resume RUN_DIR`, but SIGKILLs the process in the middle of the Nth write of
# the file named FILE_SUFFIX: the temp file holds half of what was written, os.replace never ran.
KILLED_TRAINER = """
    import os, signal, sys
    from pathlib import Path
    import imgclf_core.fileio as fileio
    import imgclf_core.models.model_io as model_io
    import imgclf_core.training.run_folder as run_folder

    run_dir, file_suffix, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    real_write, writes = fileio.atomic_write_with, []

    def write_then_die_halfway(path, write):
        if not str(path).endswith(file_suffix):
            return real_write(path, write)
        writes.append(path)
        if len(writes) < kill_at:
            return real_write(path, write)

        def half_then_kill(temp_path):
            write(temp_path)
            data = Path(temp_path).read_bytes()
            Path(temp_path).write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)

        return real_write(path, half_then_kill)

    # RunFolder and model_io imported the name; atomic_write_json and friends look it up in fileio.
    fileio.atomic_write_with = run_folder.atomic_write_with = model_io.atomic_write_with = write_then_die_halfway
    from imgclf_core.cli import main
    sys.exit(main(["train", "--resume", run_dir]))
"""


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory) -> Path:
    return shapes_tree(tmp_path_factory.mktemp("faults") / "data", per_class=16)


@pytest.mark.parametrize(
    "file_suffix, kill_at",
    [("model.keras", 1), (".weights.h5", 2), ("checkpoint/state.json", 2)],
    ids=["model.keras", "checkpoint-weights", "checkpoint-state"],
)
def test_kill_9_while_writing_then_resume_finishes_with_no_half_written_file(shapes_data, tmp_path, file_suffix, kill_at):
    from imgclf_core.models.model_io import load_model_checked

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    epochs = 4
    RunFolder(run_dir).write_config(_tiny_run_config(shapes_data, epochs=epochs))

    killed = run_python(KILLED_TRAINER, str(run_dir), file_suffix, str(kill_at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    leftovers = temp_files(run_dir)
    assert leftovers, "the kill should have come in the middle of a write"
    assert RunFolder(run_dir).read_status()["state"] == run_folder.INTERRUPTED  # status.json names a dead trainer

    # Nothing in place is half-written: a model file in place loads; the checkpoint's commit point names whole files.
    if (run_dir / "model.keras").exists():
        load_model_checked(run_dir / "model.keras")
    else:
        assert file_suffix == "model.keras"  # killed while writing the first one: only its temp file exists
    state_file = run_dir / "checkpoint" / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        assert (state_file.parent / state["weights"]).is_file() and (state_file.parent / state["optimizer"]).is_file()
    finished_before = _history_epochs(run_dir)

    resumed = run_python("import sys; from imgclf_core.cli import main; sys.exit(main(sys.argv[1:]))",
                         "train", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert RunFolder(run_dir).read_status()["state"] == run_folder.FINISHED
    assert _history_epochs(run_dir) == list(range(1, epochs + 1))
    assert _history_epochs(run_dir)[: len(finished_before)] == finished_before
    load_model_checked(run_dir / "model.keras")
    assert temp_files(run_dir) == []  # the resumed trainer cleared the killed writer's temp files


def _history_epochs(run_dir: Path) -> list[int]:
    if not (run_dir / "history.csv").exists():
        return []  # killed before the first epoch was recorded
    with open(run_dir / "history.csv", encoding="utf-8") as stream:
        return [int(row["epoch"]) for row in csv.DictReader(stream)]


# ---------------------------------------------------------------- kill -9 during a journal move

# Moves bird/one.png to the class "cat" with the real journal, SIGKILLing the process at one point.
KILLED_MOVE = """
    import os, signal, sys
    from pathlib import Path
    import imgclf_core.inspection.relabel as relabel

    root, point = sys.argv[1], sys.argv[2]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "before-link":
        relabel.os.link = die
    elif point == "between-link-and-unlink":
        real_unlink = Path.unlink
        Path.unlink = lambda self, *a, **k: die() if self.name == "one.png" else real_unlink(self, *a, **k)
    elif point == "before-done-line":
        relabel._fsync_both = die
    relabel.RelabelJournal(root).move("bird/one.png", "cat")
"""


@pytest.mark.parametrize(
    "point, final_place",
    [("before-link", "bird/one.png"), ("between-link-and-unlink", "cat/one.png"), ("before-done-line", "cat/one.png")],
)
def test_kill_9_during_a_journal_move_is_finished_or_rolled_back_on_the_next_open(tmp_path, point, final_place):
    root = tmp_path / "data"
    image = png_bytes(7)
    write(root, "bird/one.png", image)
    write(root, "cat/two.png", png_bytes(8))

    killed = run_python(KILLED_MOVE, str(root), point, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    journal = RelabelJournal(root)  # opening it completes or rolls back the interrupted move
    images = sorted(str(path.relative_to(root)) for path in root.rglob("*.png"))
    assert images == sorted([final_place, "cat/two.png"])  # one copy of the image, never zero or two
    assert (root / final_place).read_bytes() == image
    assert journal.can_undo() == (final_place == "cat/one.png")
    if journal.can_undo():
        journal.undo()
        assert (root / "bird/one.png").read_bytes() == image and not (root / "cat/one.png").exists()
    # The journal is whole again: a new move works and leaves one more line per step, no broken line.
    journal.move("cat/two.png", "bird")
    for line in (root / ".imgclf" / "relabel.jsonl").read_text().splitlines():
        json.loads(line)
