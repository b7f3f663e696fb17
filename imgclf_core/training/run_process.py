"""The trainer process: start it, find out whether it is alive, stop it, resume it.

`start_run` writes a new run folder and launches `python -m imgclf_core.training RUN_DIR`
as its own process (own session), so a closed browser tab or a Streamlit rerun never stops it;
`RunHandle.stop` sends SIGTERM, which the trainer turns into "finish this batch, save, state
stopped". This module never imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf_core.config import RunConfig
from imgclf_core.training.run_catalog import new_run_dir
from imgclf_core.training.run_folder import ACTIVE_STATES, QUEUED, RunError, RunFolder

# `python -m` runs training/__main__.py: it imports TensorFlow quietly, then calls trainer.main.
TRAINER_MODULE = "imgclf_core.training"


def is_chief() -> bool:
    """Whether this process writes the run folder: the chief, or worker 0 when TF_CONFIG has no chief."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task") or {}
    if not task or task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in tf_config.get("cluster", {})


def process_is_trainer(pid: int | None) -> bool:
    """True when `pid` is alive and (where /proc tells) is a Python or imgclf process, not a reused pid."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc here: trust the pid
    return b"python" in command or b"imgclf" in command


@dataclass(frozen=True)
class RunHandle:
    """A run folder and the trainer process behind it (which may belong to an earlier app session)."""

    run_dir: Path

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    def status(self) -> dict[str, Any]:
        """The run's status (see RunFolder.read_status)."""
        return self.folder.read_status()

    def history(self) -> list[dict[str, Any]]:
        """The run's finished epochs."""
        return self.folder.read_history()

    def progress(self) -> list[dict[str, Any]]:
        """The run's progress lines."""
        return self.folder.read_progress()

    def is_active(self) -> bool:
        """Whether the trainer is working on the run right now (or about to)."""
        return self.status()["state"] in ACTIVE_STATES

    def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Ask the trainer to finish its batch, save and stop; wait up to `timeout_s` for it."""
        status = self.status()
        if status["state"] not in ACTIVE_STATES:
            return status
        try:
            os.kill(status["pid"], signal.SIGTERM)
        except ProcessLookupError:
            return self.status()
        return self.wait(timeout_s)

    def resume(self) -> "RunHandle":
        """Start the trainer again; it continues after the last finished epoch."""
        if self.is_active():
            raise RunError(f"run is already active: {self.run_dir}")
        return launch_trainer(self.run_dir)

    def wait(self, timeout_s: float | None = None, poll_s: float = 0.2) -> dict[str, Any]:
        """Poll the status until the run is no longer active or `timeout_s` has passed; the last status."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = self.status()
            if status["state"] not in ACTIVE_STATES:
                return status
            if deadline is not None and time.monotonic() > deadline:
                return status
            time.sleep(poll_s)


def start_run(run_config: RunConfig, run_dir: str | os.PathLike) -> RunHandle:
    """Create a run folder for `run_config` and start training it in a separate process."""
    folder = RunFolder(run_dir)
    if folder.config_path.exists():
        raise RunError(f"run folder already holds a run: {folder.path} (resume it, or choose a new folder)")
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.write_config(run_config)
    folder.write_status(QUEUED, message="starting", pid=None)
    return launch_trainer(folder.path)


def launch_trainer(run_dir: str | os.PathLike) -> RunHandle:
    """Start the trainer on an existing run folder in its own session; its output goes to the run's log."""
    folder = RunFolder(Path(run_dir).resolve())
    log = folder.open_log()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", TRAINER_MODULE, str(folder.path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or a dying parent does not reach the trainer
        )
    finally:
        log.close()
    # Someone must wait() for the trainer, or its exit leaves a zombie under a long-lived parent (the app server).
    threading.Thread(target=process.wait, name=f"reap trainer {process.pid}", daemon=True).start()
    # Until the trainer writes its own status, point at its pid so watchers see it as active.
    folder.write_status(QUEUED, message="starting", pid=process.pid)
    return RunHandle(folder.path)


def retrain_run(run_dir: str | os.PathLike, runs_root: str | os.PathLike) -> RunHandle:
    """Start a new run with the same config as `run_dir` (after relabeling), remembering where it came from."""
    parent = RunFolder(run_dir)
    run_config = parent.read_config()
    new_folder = RunFolder(new_run_dir(runs_root, run_config.model.name))
    new_folder.path.mkdir(parents=True)
    new_folder.write_lineage(parent.name)
    return start_run(run_config, new_folder.path)


def check_can_resume(run_dir: str | os.PathLike) -> RunFolder:
    """The run folder to continue training; RunError when it holds no run or another trainer holds it."""
    folder = RunFolder(run_dir)
    if not folder.is_run():
        folder.read_raw_config()  # raises the error that says why it is not a run folder
    status = folder.read_status()
    # A launcher writes the trainer's own pid before it starts; any other live pid is a second trainer.
    busy = status["state"] in ACTIVE_STATES and status.get("pid") not in (None, os.getpid())
    if busy and is_chief():  # the other workers of a multi-worker run join the chief
        raise RunError(f"{run_dir} is being trained right now by process {status['pid']}")
    return folder
