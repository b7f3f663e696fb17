"""The runs of the app: where they live, finding them, and summing each one up for lists and pages.

Reads run folders only through `RunFolder`; never imports TensorFlow.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from imgclf_core.config import TrainingConfig, config_from_dict
from imgclf_core.fileio import unique_path, user_data_dir
from imgclf_core.training.run_folder import ACTIVE_STATES, RunError, RunFolder


def default_runs_root() -> Path:
    """IMGCLF_RUNS_DIR, else the user data folder's runs/ (~/.local/share/imgclf/runs)."""
    configured = os.environ.get("IMGCLF_RUNS_DIR")
    return Path(configured) if configured else user_data_dir() / "runs"


def new_run_dir(runs_root: str | os.PathLike, model_name: str) -> Path:
    """A fresh run folder name under `runs_root`: date, time and model, made unique."""
    return unique_path(runs_root, f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{model_name}")


def list_runs(runs_root: str | os.PathLike) -> list[Path]:
    """Run folders directly under `runs_root`, newest first."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    folders = [RunFolder(path) for path in root.iterdir() if RunFolder(path).is_run()]
    return [folder.path for folder in sorted(folders, key=RunFolder.config_mtime, reverse=True)]


def runs_with_models(runs_root: str | os.PathLike) -> list[Path]:
    """Runs (newest first) that have a best model saved: finished, or stopped with at least one epoch."""
    return [run_dir for run_dir in list_runs(runs_root) if RunFolder(run_dir).has_model()]


def runs_of_dataset(runs_root: str | os.PathLike, data_dir: str | os.PathLike) -> list[Path]:
    """The runs under `runs_root` trained on `data_dir` (compared resolved), newest first."""
    wanted = str(Path(data_dir).expanduser().resolve())
    matching = []
    for run_dir in list_runs(runs_root):
        try:
            if RunFolder(run_dir).read_config().data_dir == wanted:
                matching.append(run_dir)
        except (RunError, ValueError, KeyError, TypeError):
            continue  # a half-written or foreign folder is not a run of this dataset
    return matching


def active_runs(runs_root: str | os.PathLike) -> list[Path]:
    """Runs under `runs_root` whose trainer is alive right now."""
    return [run_dir for run_dir in list_runs(runs_root) if RunFolder(run_dir).is_active()]


def summarize_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """One row of a runs list: name, model, date, state, epochs done/total, validation and test accuracy."""
    folder = RunFolder(run_dir)
    document = folder.read_raw_config()  # a row even for a run whose config no longer parses
    run = document.get("run", {})
    status = folder.read_status()
    history = folder.read_history()
    training = run.get("training", {})
    return {
        "run": folder.name,
        "model": run.get("model", {}).get("name"),
        "created": document.get("created_at"),
        "state": status["state"],
        "epochs": f"{len(history)}/{_planned_epochs(training)}",
        "val_accuracy": run_accuracy(folder.path, history),
        "test_accuracy": run_accuracy(folder.path, history, "test"),
        "message": status.get("message", ""),
    }


def _planned_epochs(training: dict[str, Any]) -> int | str:
    """TrainingConfig.total_epochs of a run's stored training section; "?" when it no longer parses."""
    try:
        return config_from_dict(TrainingConfig, training).total_epochs
    except (TypeError, ValueError):
        return "?"


def run_accuracy(run_dir: str | os.PathLike, history: list[dict[str, Any]] | None = None,
                 split: str = "validation") -> float | None:
    """The one accuracy every page shows for a run: its model's on `split` as evaluated at the end
    (evaluation.json), else, while it trains, the best epoch's validation accuracy; None before any.
    The test split has no per-epoch figure (it is held out), so only its evaluation counts."""
    folder = RunFolder(run_dir)
    evaluation = folder.read_evaluation(split)
    if evaluation is not None:
        return float(evaluation["accuracy"])
    if split != "validation":
        return None
    rows = folder.read_history() if history is None else history
    accuracies = [row["val_accuracy"] for row in rows if isinstance(row.get("val_accuracy"), (int, float))]
    return max(accuracies) if accuracies else None


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


def epoch_line(row: dict[str, Any]) -> str:
    """One finished epoch as the trainer reports it on stderr (its log)."""
    return (
        f"epoch {row['epoch']} ({row['stage']}): loss {row['loss']:.4f} accuracy {row['accuracy']:.4f}"
        f" val_loss {row['val_loss']:.4f} val_accuracy {row['val_accuracy']:.4f} lr {row['lr']:.2e}"
        f" [{row['seconds']:.1f} s]"
    )


def outcome_lines(run_dir: str | os.PathLike, state: str) -> list[str]:
    """How a training ended: the run and its state, then the saved model's accuracy per split (as pages show it)."""
    folder = RunFolder(run_dir)
    message = folder.read_status().get("message", "")
    lines = [f"{run_dir}: {state}" + (f": {message}" if message and message != state else "")]
    for split in ("validation", "test"):
        evaluation = folder.read_evaluation(split)
        if evaluation is not None:
            images = sum(map(sum, evaluation["confusion_matrix"]))
            lines.append(f"  {split} accuracy {evaluation['accuracy']:.1%} on {images} images")
    return lines
