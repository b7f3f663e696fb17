"""Which run the pages work on: the one picked this session, else the dataset's training or newest run."""

from __future__ import annotations

from pathlib import Path

from imgclf_app.session_keys import select_run, selected_run
from imgclf_core.training.run_catalog import default_runs_root, runs_of_dataset
from imgclf_core.training.run_folder import RunFolder


def current_run_dir(folder: Path | None) -> Path | None:
    """The run picked this session if it belongs to `folder`; else the folder's run that is
    training, else its newest run (so a reload or a second tab finds the running job)."""
    if folder is None:
        return None
    dataset_runs = runs_of_dataset(default_runs_root(), folder)
    chosen = selected_run()
    if chosen in map(str, dataset_runs):
        return Path(chosen)
    if not dataset_runs:
        select_run(None)
        return None
    active = [run_dir for run_dir in dataset_runs if RunFolder(run_dir).is_active()]
    picked = (active or dataset_runs)[0]
    select_run(picked)
    return picked
