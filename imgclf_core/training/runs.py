"""The run folder: the API between a trainer process and everything that watches it.

```
RUN_DIR/config.json      {"run": RunConfig, "class_names": [...], "versions": {...}, "created_at": ...}
RUN_DIR/status.json      state, epoch, epochs, step, steps, message, pid, updated_at
RUN_DIR/history.csv      one row per finished epoch
RUN_DIR/progress.jsonl   a line every few batches
RUN_DIR/checkpoint/      state.json + the files it names (last finished epoch)
RUN_DIR/model.keras      best model by validation loss
RUN_DIR/evaluation.json, predictions.csv, tensorboard/, train.log
```
This module never imports TensorFlow: the app reads runs with it while a trainer runs elsewhere.
`start_run` launches `imgclf train --resume RUN_DIR` as its own process (own session), so a closed
browser tab or a Streamlit rerun never stops it; `RunHandle.stop` sends SIGTERM, which the trainer
turns into "finish this batch, save, state stopped".
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from imgclf_core.config import RunConfig, config_to_dict, run_config_from_dict
from imgclf_core.fileio import atomic_write_json, atomic_write_text, unique_path, user_data_dir

QUEUED, RUNNING, FINISHED, STOPPED, FAILED = "queued", "running", "finished", "stopped", "failed"
# Not written by anyone: read_status reports it when status says running but the process is gone.
INTERRUPTED = "interrupted"
ACTIVE_STATES = (QUEUED, RUNNING)
HISTORY_COLUMNS = ("epoch", "stage", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


class RunError(ValueError):
    """A run folder is missing, unreadable or in the wrong state for what was asked."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- config


def write_run_config(
    run_dir: str | os.PathLike, run_config: RunConfig, class_names: list[str] | None = None,
    created_at: str | None = None,
) -> None:
    """config.json: the full config, the class order once known, package versions and when the run was made."""
    document = {
        "run": config_to_dict(run_config),
        "class_names": list(class_names) if class_names else None,
        "versions": package_versions(),
        "created_at": created_at or now_iso(),
    }
    atomic_write_json(Path(run_dir) / "config.json", document)


def read_run_document(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"not a run folder (no config.json): {run_dir}") from None
    except (OSError, ValueError) as error:
        raise RunError(f"unreadable run config {path}: {error}") from error


def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    return run_config_from_dict(read_run_document(run_dir)["run"])


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0]}
    for package in ("imgclf", "tensorflow", "keras", "numpy", "pillow"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


def is_chief() -> bool:
    """Whether this process writes the run folder: the chief, or worker 0 when TF_CONFIG has no chief."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task") or {}
    if not task or task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in tf_config.get("cluster", {})


# ---------------------------------------------------------------- status, history, progress


def write_status(run_dir: str | os.PathLike, state: str, *, in_place_if_disk_full: bool = False, **fields: Any) -> None:
    """Replace status.json atomically; `in_place_if_disk_full` lets a last word (a failure) through a full disk."""
    path = Path(run_dir) / "status.json"
    status = {"state": state, "pid": os.getpid(), "updated_at": now_iso(), **fields}
    try:
        atomic_write_json(path, status)
    except OSError as error:
        if not (in_place_if_disk_full and error.errno == errno.ENOSPC and path.is_file()):
            raise
        # No room for a temp file: rewrite the old status in its own blocks (a few hundred bytes).
        with open(path, "r+b") as stream:
            stream.truncate(0)
            stream.write(json.dumps(status).encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())


def read_status(run_dir: str | os.PathLike) -> dict[str, Any]:
    """status.json, with state "interrupted" when it claims to be active but its process is gone."""
    path = Path(run_dir) / "status.json"
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"state": QUEUED if (Path(run_dir) / "config.json").exists() else "missing"}
    except (OSError, ValueError):
        return {"state": "unreadable"}
    if status.get("state") in ACTIVE_STATES and not process_is_trainer(status.get("pid")):
        status["state"] = INTERRUPTED
    return status


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


def write_history(run_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(run_dir) / "history.csv", buffer.getvalue())


def read_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    try:
        text = (Path(run_dir) / "history.csv").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append({key: _number_or_text(value) for key, value in row.items()})
    return rows


def read_evaluation(run_dir: str | os.PathLike, split: str = "validation") -> dict[str, Any] | None:
    """One split's section of evaluation.json ("validation" or "test"), or None when the run has none (yet)."""
    try:
        document = json.loads((Path(run_dir) / "evaluation.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if "accuracy" in document:  # a run made before the per-split sections: validation only
        return document if split == "validation" else None
    return document.get(split)


def append_progress(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    with open(Path(run_dir) / "progress.jsonl", "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")


def read_progress(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete line of progress.jsonl (a line being written right now is skipped)."""
    try:
        text = (Path(run_dir) / "progress.jsonl").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _number_or_text(value: str | None) -> Any:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


# ---------------------------------------------------------------- processes


@dataclass(frozen=True)
class RunHandle:
    """A run folder and the trainer process behind it (which may belong to an earlier app session)."""

    run_dir: Path

    def status(self) -> dict[str, Any]:
        return read_status(self.run_dir)

    def history(self) -> list[dict[str, Any]]:
        return read_history(self.run_dir)

    def progress(self) -> list[dict[str, Any]]:
        return read_progress(self.run_dir)

    def is_active(self) -> bool:
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
    folder = Path(run_dir)
    if (folder / "config.json").exists():
        raise RunError(f"run folder already holds a run: {folder} (resume it, or choose a new folder)")
    folder.mkdir(parents=True, exist_ok=True)
    write_run_config(folder, run_config)
    write_status(folder, QUEUED, message="starting", pid=None)
    return launch_trainer(folder)


def launch_trainer(run_dir: str | os.PathLike) -> RunHandle:
    folder = Path(run_dir).resolve()
    log = open(folder / "train.log", "ab")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "imgclf_core.cli", "train", "--resume", str(folder)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or a dying parent does not reach the trainer
        )
    finally:
        log.close()
    # Someone must wait() for the trainer, or its exit leaves a zombie under a long-lived parent (the app server).
    threading.Thread(target=process.wait, name=f"reap trainer {process.pid}", daemon=True).start()
    # Until the trainer writes its own status, point at its pid so watchers see it as active.
    write_status(folder, QUEUED, message="starting", pid=process.pid)
    return RunHandle(folder)


def list_runs(runs_root: str | os.PathLike) -> list[Path]:
    """Run folders directly under `runs_root`, newest first."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    runs = [path for path in root.iterdir() if (path / "config.json").is_file()]
    return sorted(runs, key=lambda path: (path / "config.json").stat().st_mtime, reverse=True)


# ---------------------------------------------------------------- runs of the app


def default_runs_root() -> Path:
    """IMGCLF_RUNS_DIR, else the user data folder's runs/ (~/.local/share/imgclf/runs)."""
    configured = os.environ.get("IMGCLF_RUNS_DIR")
    return Path(configured) if configured else user_data_dir() / "runs"


def new_run_dir(runs_root: str | os.PathLike, model_name: str) -> Path:
    """A fresh run folder name under `runs_root`: date, time and model, made unique."""
    return unique_path(runs_root, f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{model_name}")


def runs_of_dataset(runs_root: str | os.PathLike, data_dir: str | os.PathLike) -> list[Path]:
    """The runs under `runs_root` trained on `data_dir` (compared resolved), newest first."""
    wanted = str(Path(data_dir).expanduser().resolve())
    matching = []
    for run_dir in list_runs(runs_root):
        try:
            if read_run_config(run_dir).data_dir == wanted:
                matching.append(run_dir)
        except (RunError, ValueError, KeyError, TypeError):
            continue  # a half-written or foreign folder is not a run of this dataset
    return matching


def active_runs(runs_root: str | os.PathLike) -> list[Path]:
    """Runs under `runs_root` whose trainer is alive right now."""
    return [run_dir for run_dir in list_runs(runs_root) if read_status(run_dir)["state"] in ACTIVE_STATES]


def summarize_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """One row of a runs list: name, model, date, state, epochs done/total, validation and test accuracy."""
    folder = Path(run_dir)
    document = read_run_document(folder)
    run = document.get("run", {})
    status = read_status(folder)
    history = read_history(folder)
    training = run.get("training", {})
    return {
        "run": folder.name,
        "model": run.get("model", {}).get("name"),
        "created": document.get("created_at"),
        "state": status["state"],
        "epochs": f"{len(history)}/{training.get('epochs', 0) + training.get('fine_tune_epochs', 0)}",
        "val_accuracy": run_accuracy(folder, history),
        "test_accuracy": run_accuracy(folder, history, "test"),
        "message": status.get("message", ""),
    }


def run_accuracy(run_dir: str | os.PathLike, history: list[dict[str, Any]] | None = None,
                 split: str = "validation") -> float | None:
    """The one accuracy every page shows for a run: its model's on `split` as evaluated at the end
    (evaluation.json), else, while it trains, the best epoch's validation accuracy; None before any.
    The test split has no per-epoch figure (it is held out), so only its evaluation counts."""
    evaluation = read_evaluation(run_dir, split)
    if evaluation is not None:
        return float(evaluation["accuracy"])
    if split != "validation":
        return None
    rows = read_history(run_dir) if history is None else history
    accuracies = [row["val_accuracy"] for row in rows if isinstance(row.get("val_accuracy"), (int, float))]
    return max(accuracies) if accuracies else None


def delete_run(run_dir: str | os.PathLike) -> None:
    """Remove a run folder for good; a run that is training right now is refused."""
    folder = Path(run_dir)
    read_run_document(folder)  # only run folders are ever deleted
    if read_status(folder)["state"] in ACTIVE_STATES:
        raise RunError(f"run is training right now: stop it before deleting it ({folder.name})")
    shutil.rmtree(folder)


LINEAGE_FILE = "lineage.json"


def retrain_run(run_dir: str | os.PathLike, runs_root: str | os.PathLike) -> RunHandle:
    """Start a new run with the same config as `run_dir` (after relabeling), remembering where it came from."""
    parent = Path(run_dir)
    run_config = read_run_config(parent)
    new_dir = new_run_dir(runs_root, run_config.model.name)
    new_dir.mkdir(parents=True)
    atomic_write_json(new_dir / LINEAGE_FILE, {"retrained_from": parent.name})
    return start_run(run_config, new_dir)


def retrained_from(run_dir: str | os.PathLike) -> Path | None:
    """The run that `run_dir` retrains (a sibling folder), or None."""
    try:
        name = str(json.loads((Path(run_dir) / LINEAGE_FILE).read_text(encoding="utf-8"))["retrained_from"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if "/" in name or os.sep in name or name in ("", ".", ".."):
        return None  # only a sibling run folder, never a path elsewhere
    parent = Path(run_dir).parent / name
    return parent if (parent / "config.json").is_file() else None


def remaining_seconds(status: dict[str, Any], progress: list[dict[str, Any]]) -> float | None:
    """Seconds until the last epoch ends, from the pace of the latest progress line; None if unknown."""
    if status.get("state") not in ACTIVE_STATES or not progress:
        return None
    latest = progress[-1]
    step, steps, seconds = latest.get("step"), latest.get("steps"), latest.get("seconds")
    epochs = status.get("epochs")
    if not (step and steps and seconds and epochs):
        return None
    per_step = seconds / step
    epochs_after_this = max(epochs - latest["epoch"], 0)
    return per_step * ((steps - step) + epochs_after_this * steps)
