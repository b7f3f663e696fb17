"""The run folder: the API between a trainer process and everything that watches it.

```
RUN_DIR/config.json      {"run": RunConfig, "class_names": [...], "versions": {...}, "created_at": ...}
RUN_DIR/status.json      state, epoch, epochs, step, steps, message, pid, updated_at
RUN_DIR/history.csv      one row per finished epoch
RUN_DIR/progress.jsonl   a line every few batches
RUN_DIR/checkpoint/      state.json + the files it names (last finished epoch)
RUN_DIR/model.keras      best model by validation loss
RUN_DIR/evaluation.json  a section per held-out split; predictions.csv: one row per held-out image
RUN_DIR/lineage.json     the run this one retrains; exports/, tensorboard/, train.log
```
`RunFolder` is the one place that names these files, reads and writes them. Every file that
others read while the trainer runs is replaced atomically (temp file, fsync, os.replace), so a
reader sees the old version or the new one, never half of one. This module never imports
TensorFlow: the app reads runs with it while a trainer runs elsewhere; the model methods load it
only when called.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from imgclf_core.config import RunConfig, config_to_dict, run_config_from_dict
from imgclf_core.fileio import atomic_write_json, atomic_write_text, atomic_write_with, remove_stale_temp_files

if TYPE_CHECKING:
    import keras
    import numpy as np

QUEUED, RUNNING, FINISHED, STOPPED, FAILED = "queued", "running", "finished", "stopped", "failed"
# Not written by anyone: read_status reports it when status says running but the process is gone.
INTERRUPTED = "interrupted"
ACTIVE_STATES = (QUEUED, RUNNING)
HISTORY_COLUMNS = ("epoch", "stage", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


class RunError(ValueError):
    """A run folder is missing, unreadable or in the wrong state for what was asked."""


def now_iso() -> str:
    """The current UTC time as ISO 8601 to the second, as every run file records times."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a run's results depend on (those installed)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0]}
    for package in ("imgclf", "tensorflow", "keras", "numpy", "pillow"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


@dataclass(frozen=True)
class RunDocument:
    """What config.json holds: the run's config, its class order once known, when and with what it was made."""

    config: RunConfig
    class_names: list[str] | None = None  # None until the trainer has scanned the dataset
    created_at: str | None = None
    versions: dict[str, str] = field(default_factory=dict)


class RunFolder:
    """One run folder: its file names, typed readers and writers, and their atomic-write rules."""

    CONFIG = "config.json"
    STATUS = "status.json"
    HISTORY = "history.csv"
    PROGRESS = "progress.jsonl"
    CHECKPOINT = "checkpoint"
    CHECKPOINT_STATE = "state.json"
    MODEL = "model.keras"
    EVALUATION = "evaluation.json"
    PREDICTIONS = "predictions.csv"
    LINEAGE = "lineage.json"
    CALIBRATION = "calibration.json"
    FAMILIARITY = "familiarity.npz"
    MANIFEST = "manifest.csv"
    EXPORTS = "exports"
    TENSORBOARD = "tensorboard"
    LOG = "train.log"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunFolder) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------ paths

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def status_path(self) -> Path:
        return self.path / self.STATUS

    @property
    def model_path(self) -> Path:
        return self.path / self.MODEL

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def log_path(self) -> Path:
        return self.path / self.LOG

    @property
    def predictions_path(self) -> Path:
        return self.path / self.PREDICTIONS

    def export_dir(self, format: str) -> Path:
        """Where an export of the run's model in `format` goes by default."""
        return self.path / self.EXPORTS / format

    def is_run(self) -> bool:
        """Whether the folder holds a run (its config.json)."""
        return self.config_path.is_file()

    def has_model(self) -> bool:
        """Whether a model has been saved yet."""
        return self.model_path.is_file()

    def has_predictions(self) -> bool:
        """Whether the final evaluation has written its predictions."""
        return self.predictions_path.is_file()

    def config_mtime(self) -> float:
        """When config.json last changed: runs are listed newest first by it."""
        return self.config_path.stat().st_mtime

    def model_mtime_ns(self) -> int:
        """The latest mtime of the model file and what is fitted to it (temperature, unfamiliar-image model),
        written when training ends: a retrained, replaced or newly calibrated model is a new model."""
        stamps = [self.model_path.stat().st_mtime_ns]
        for fitted in (self.CALIBRATION, self.FAMILIARITY):
            try:
                stamps.append((self.path / fitted).stat().st_mtime_ns)
            except FileNotFoundError:
                pass
        return max(stamps)

    # ------------------------------------------------------------ config

    def write_config(
        self, run_config: RunConfig, class_names: list[str] | None = None, created_at: str | None = None,
    ) -> None:
        """config.json: the full config, the class order once known, package versions and when the run was made."""
        document = {
            "run": config_to_dict(run_config),
            "class_names": list(class_names) if class_names else None,
            "versions": package_versions(),
            "created_at": created_at or now_iso(),
        }
        atomic_write_json(self.config_path, document)

    def read_document(self) -> RunDocument:
        """config.json as a RunDocument; RunError when the folder is no run or its config cannot be read."""
        raw = self.read_raw_config()
        try:
            run_config = run_config_from_dict(raw["run"])
            class_names = raw.get("class_names")
            versions = raw.get("versions") or {}
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise RunError(f"unreadable run config {self.config_path}: {type(error).__name__}: {error}") from error
        if class_names is not None and not (isinstance(class_names, list)
                                            and all(isinstance(name, str) for name in class_names)):
            raise RunError(f"{self.config_path}: class_names must be a list of names")
        return RunDocument(run_config, class_names, raw.get("created_at"), dict(versions))

    def read_config(self) -> RunConfig:
        """The run's RunConfig (RunError when there is none)."""
        return self.read_document().config

    def read_trained_config(self) -> tuple[RunConfig, list[str]]:
        """The RunConfig and the class order the run's model predicts in; RunError before the trainer has
        scanned the dataset (no class names yet)."""
        document = self.read_document()
        if not document.class_names or len(document.class_names) < 2:
            raise RunError(f"{self.config_path}: class_names must be a list of at least two names")
        return document.config, document.class_names

    def read_raw_config(self) -> dict[str, Any]:
        """config.json as stored, for lists that show a run even when its config no longer parses."""
        if not self.path.is_dir():
            raise RunError(f"run folder not found: {self.path}")
        try:
            raw = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"not a run folder (no {self.CONFIG}): {self.path}") from None
        except (OSError, ValueError) as error:
            raise RunError(f"unreadable run config {self.config_path}: {type(error).__name__}: {error}") from error
        if not isinstance(raw, dict):
            raise RunError(f"unreadable run config {self.config_path}: not a JSON object")
        return raw

    # ------------------------------------------------------------ status

    def write_status(self, state: str, *, in_place_if_disk_full: bool = False, **fields: Any) -> None:
        """Replace status.json atomically; `in_place_if_disk_full` lets a last word (a failure) through a full disk."""
        status = {"state": state, "pid": os.getpid(), "updated_at": now_iso(), **fields}
        try:
            atomic_write_json(self.status_path, status)
        except OSError as error:
            if not (in_place_if_disk_full and error.errno == errno.ENOSPC and self.status_path.is_file()):
                raise
            # No room for a temp file: rewrite the old status in its own blocks (a few hundred bytes).
            with open(self.status_path, "r+b") as stream:
                stream.truncate(0)
                stream.write(json.dumps(status).encode("utf-8"))
                stream.flush()
                os.fsync(stream.fileno())

    def read_status(self) -> dict[str, Any]:
        """status.json, with state "interrupted" when it claims to be active but its process is gone."""
        from imgclf_core.training.run_process import process_is_trainer

        try:
            status = json.loads(self.status_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"state": QUEUED if self.config_path.exists() else "missing"}
        except (OSError, ValueError):
            return {"state": "unreadable"}
        if status.get("state") in ACTIVE_STATES and not process_is_trainer(status.get("pid")):
            status["state"] = INTERRUPTED
        return status

    def is_active(self) -> bool:
        """Whether a trainer is working on the run right now (or about to)."""
        return self.read_status()["state"] in ACTIVE_STATES

    # ------------------------------------------------------------ history and progress

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        """history.csv, all rows so far, replaced atomically."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path / self.HISTORY, buffer.getvalue())

    def read_history(self) -> list[dict[str, Any]]:
        """One dict per finished epoch, numbers as numbers; [] before the first."""
        try:
            text = (self.path / self.HISTORY).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [{key: _number_or_text(value) for key, value in row.items()} for row in csv.DictReader(io.StringIO(text))]

    def append_progress(self, record: dict[str, Any]) -> None:
        """One line of progress.jsonl (appended: a reader skips a line still being written)."""
        with open(self.path / self.PROGRESS, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")

    def read_progress(self) -> list[dict[str, Any]]:
        """Every complete line of progress.jsonl (a line being written right now is skipped)."""
        try:
            text = (self.path / self.PROGRESS).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    # ------------------------------------------------------------ evaluation and predictions

    def write_evaluation(self, evaluation: dict[str, dict[str, Any]]) -> None:
        """evaluation.json: one section per held-out split ("validation", "test")."""
        atomic_write_json(self.path / self.EVALUATION, evaluation)

    def read_evaluation(self, split: str = "validation") -> dict[str, Any] | None:
        """One split's section of evaluation.json ("validation" or "test"), or None when the run has none (yet)."""
        try:
            document = json.loads((self.path / self.EVALUATION).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if "accuracy" in document:  # a run made before the per-split sections: validation only
            return document if split == "validation" else None
        return document.get(split)

    def write_predictions(
        self, paths: list[str], true_indices: "np.ndarray", probabilities: "np.ndarray",
        class_names: list[str], splits: list[str],
    ) -> None:
        """predictions.csv: one row per held-out image (see evaluation.write_predictions_csv)."""
        from imgclf_core.training.evaluation import write_predictions_csv

        write_predictions_csv(self.predictions_path, paths, true_indices, probabilities, class_names, splits=splits)

    def read_predictions(self, split: str = "validation") -> list[dict] | None:
        """The predictions.csv rows of one split, or None before the run has finished."""
        from imgclf_core.training.evaluation import read_predictions_csv

        if not self.has_predictions():
            return None
        return [row for row in read_predictions_csv(self.predictions_path) if row["split"] == split]

    # ------------------------------------------------------------ model

    def save_model(self, model: "keras.Model") -> None:
        """model.keras, written to a temp file, fsynced and moved over the old one; the old model's
        temperature and unfamiliar-image model (calibration.json, familiarity.npz) go with it."""
        from imgclf_core.models.model_io import save_model_atomically

        save_model_atomically(model, self.model_path)
        for fitted_to_the_old_model in (self.CALIBRATION, self.FAMILIARITY):
            (self.path / fitted_to_the_old_model).unlink(missing_ok=True)

    def load_model(self, expected_num_classes: int | None = None) -> "keras.Model":
        """The run's best model, loaded safely (see model_io); RunError while the run has none yet."""
        from imgclf_core.models.model_io import load_model_checked

        if not self.model_path.exists():
            raise RunError(f"no trained model in {self.path} yet (no {self.MODEL})")
        return load_model_checked(self.model_path, expected_num_classes=expected_num_classes)

    def load_trained_model(self) -> tuple["keras.Model", list[str], RunConfig]:
        """The best model, calibrated (its temperature folded into the last layer, see training.calibration),
        with its class names and RunConfig, checked to predict those classes."""
        from imgclf_core.training.calibration import fold_temperature

        run_config, class_names = self.read_trained_config()
        model = self.load_model(expected_num_classes=len(class_names))
        return fold_temperature(model, self.read_temperature()), class_names, run_config

    # ------------------------------------------------------------ calibration

    def write_calibration(self, temperature: float, validation_images: int) -> None:
        """calibration.json: the temperature fitted on `validation_images` images of the validation split."""
        atomic_write_json(self.path / self.CALIBRATION, {"temperature": temperature, "fitted_on": "validation",
                                                         "images": validation_images})

    def write_manifest(self, rows) -> None:
        """manifest.csv: the images the run trains on (see training.manifest)."""
        from imgclf_core.training.manifest import write_manifest

        write_manifest(self.path / self.MANIFEST, rows)

    def read_manifest(self):
        """The run's manifest rows, or None (a run made before manifests)."""
        from imgclf_core.training.manifest import read_manifest

        return read_manifest(self.path / self.MANIFEST)

    def write_familiarity(self, familiarity) -> None:
        """familiarity.npz: the unfamiliar-image model (see training.familiarity)."""
        atomic_write_with(self.path / self.FAMILIARITY, familiarity.save)

    def read_familiarity(self):
        """The run's unfamiliar-image model, or None (not evaluated yet, or a run made before it)."""
        from imgclf_core.training.familiarity import Familiarity

        return Familiarity.load(self.path / self.FAMILIARITY)

    def read_temperature(self) -> float:
        """The run's fitted temperature; 1.0 (no scaling) before its evaluation or for runs made before it."""
        try:
            value = float(json.loads((self.path / self.CALIBRATION).read_text(encoding="utf-8"))["temperature"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return 1.0
        return value if math.isfinite(value) and value > 0 else 1.0

    # ------------------------------------------------------------ checkpoint

    def write_checkpoint(
        self, epoch: int, write_weights: Callable[[Path], object], write_optimizer: Callable[[Path], object],
        state: dict[str, Any],
    ) -> None:
        """checkpoint/: the weights and optimizer files of `epoch`, then state.json naming them (the commit
        point: a checkpoint cut short leaves the previous state.json and its files), then older files go."""
        folder = self.checkpoint_dir
        stem = f"epoch-{epoch:04d}"
        weights_file, optimizer_file = folder / f"{stem}.weights.h5", folder / f"{stem}.optimizer.npz"
        atomic_write_with(weights_file, write_weights)
        atomic_write_with(optimizer_file, write_optimizer)
        atomic_write_json(folder / self.CHECKPOINT_STATE,
                          {**state, "weights": weights_file.name, "optimizer": optimizer_file.name})
        for old in folder.glob("epoch-*"):
            if not old.name.startswith(stem):
                old.unlink(missing_ok=True)

    def read_checkpoint_state(self) -> dict[str, Any] | None:
        """The last checkpoint's state.json, or None when the run has no checkpoint."""
        try:
            return json.loads((self.checkpoint_dir / self.CHECKPOINT_STATE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def checkpoint_file(self, name: str) -> Path:
        """A file that the checkpoint's state.json names (weights or optimizer)."""
        return self.checkpoint_dir / name

    def remove_stale_temp_files(self) -> None:
        """Delete temp files a killed writer left; only while no other trainer writes here."""
        for folder in (self.path, self.checkpoint_dir):
            remove_stale_temp_files(folder)

    # ------------------------------------------------------------ lineage, log, deletion

    def write_lineage(self, retrained_from: str) -> None:
        """lineage.json: the name of the sibling run this one retrains."""
        atomic_write_json(self.path / self.LINEAGE, {"retrained_from": retrained_from})

    def retrained_from(self) -> "RunFolder | None":
        """The run that this one retrains (a sibling folder), or None."""
        try:
            name = str(json.loads((self.path / self.LINEAGE).read_text(encoding="utf-8"))["retrained_from"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if "/" in name or os.sep in name or name in ("", ".", ".."):
            return None  # only a sibling run folder, never a path elsewhere
        parent = RunFolder(self.path.parent / name)
        return parent if parent.is_run() else None

    def open_log(self):
        """train.log opened for appending bytes: the trainer process's stdout and stderr."""
        return open(self.log_path, "ab")

    def delete(self) -> None:
        """Remove the run folder for good; a run that is training right now is refused."""
        self.read_raw_config()  # only run folders are ever deleted
        if self.is_active():
            raise RunError(f"run is training right now: stop it before deleting it ({self.name})")
        shutil.rmtree(self.path)


def _number_or_text(value: str | None) -> Any:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
