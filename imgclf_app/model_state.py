"""Models for the Predict and Mistakes pages: loaded once per model file and kept warm (st.cache_resource)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from imgclf_core.training.run_folder import RunError, RunFolder

if TYPE_CHECKING:  # numpy comes with the model, not with the page's imports
    import numpy as np

IMAGENET = "imagenet"
IMAGENET_LABEL = "Built-in ImageNet classifier (EfficientNet-Lite0, 1000 classes, offline)"


def model_file_stamp(source: str) -> int:
    """The model file's mtime: a retrained or replaced model gets a new cache entry."""
    return 0 if source == IMAGENET else RunFolder(source).model_mtime_ns()


def model_cache_key(source: str) -> str:
    """The key the pages cache a model's results under: its source and its file's mtime."""
    return f"{source}:{model_file_stamp(source)}"


@st.cache_resource(max_entries=4, show_spinner="Loading the model (once; later predictions reuse it)…")
def _cached_predictor(source: str, stamp: int):
    from imgclf_core.inspection.predict import Predictor

    return Predictor.imagenet() if source == IMAGENET else Predictor.from_run(source)


def predictor_or_report(source: str):
    """The Predictor of a run folder (or IMAGENET), cached by path and mtime; None with a message if it fails."""
    from imgclf_core.models.errors import ModelError

    try:
        return _cached_predictor(source, model_file_stamp(source))
    except (ModelError, RunError, OSError, ValueError) as error:
        st.error(f"Cannot load the model of {Path(source).name}: {error}")
        return None


@st.cache_data(max_entries=512, show_spinner=False)
def explain_bytes(_predictor, model_key: str, data: bytes, class_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, Grad-CAM heatmap) of one image's bytes; cached so sliders only redraw the overlay."""
    return _predictor.explain(_predictor.load_image(data), class_index)


@st.cache_data(max_entries=512, show_spinner=False)
def judge_bytes(_predictor, model_key: str, data: bytes, flip: bool) -> tuple[np.ndarray | None, dict | None]:
    """(the test-time-flip probabilities when `flip`, else None; the unfamiliar-image verdict, or None for a model
    without one) of one image's bytes, decoded once; cached like explain_bytes, so a slider move reruns neither."""
    image = _predictor.load_image(data)[None]
    flipped = _predictor.predict_arrays(image, flip_average=True)[0] if flip else None
    verdict = _predictor.unfamiliar(image)
    return flipped, verdict[0] if verdict else None
