"""Models for the Predict and Mistakes pages: loaded once per model file and kept warm (st.cache_resource)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from imgclf_core.training import runs

if TYPE_CHECKING:  # numpy comes with the model, not with the page's imports
    import numpy as np

IMAGENET = "imagenet"
IMAGENET_LABEL = "Built-in ImageNet classifier (EfficientNet-Lite0, 1000 classes, offline)"


def model_file_stamp(source: str) -> int:
    """The model file's mtime: a retrained or replaced model.keras gets a new cache entry."""
    return 0 if source == IMAGENET else (Path(source) / "model.keras").stat().st_mtime_ns


@st.cache_resource(max_entries=4, show_spinner="Loading the model (once; later predictions reuse it)…")
def _cached_predictor(source: str, stamp: int):
    from imgclf_core.inspection.predict import Predictor

    return Predictor.imagenet() if source == IMAGENET else Predictor.from_run(source)


def predictor_or_report(source: str):
    """The Predictor of a run folder (or IMAGENET), cached by path and mtime; None with a message if it fails."""
    from imgclf_core.models.registry import ModelError

    try:
        return _cached_predictor(source, model_file_stamp(source))
    except (ModelError, runs.RunError, OSError, ValueError) as error:
        st.error(f"Cannot load the model of {Path(source).name}: {error}")
        return None


@st.cache_data(max_entries=512, show_spinner=False)
def explain_bytes(_predictor, model_key: str, data: bytes, class_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, Grad-CAM heatmap) of one image's bytes; cached so sliders only redraw the overlay."""
    return _predictor.explain(_predictor.load_image(data), class_index)


def runs_with_models(runs_root: Path) -> list[Path]:
    """Runs (newest first) that have a best model saved: finished, or stopped with at least one epoch."""
    return [run_dir for run_dir in runs.list_runs(runs_root) if (run_dir / "model.keras").is_file()]
