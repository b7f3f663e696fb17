"""Widgets that build the core's frozen config dataclasses (the same ones the CLI builds)."""

from __future__ import annotations

import streamlit as st

from imgclf_app.session_keys import AUGMENTATION
from imgclf_core.config import AugmentationConfig


def current_augmentation() -> AugmentationConfig:
    """The augmentation chosen on the Dataset page this session (the trainer's default until then)."""
    return st.session_state.get(AUGMENTATION) or AugmentationConfig()


def augmentation_form(container=st) -> AugmentationConfig:
    """Augmentation widgets -> AugmentationConfig, remembered for the Train page."""
    saved = current_augmentation()
    # Widget keys are dropped when another page runs; seed them again from the saved config.
    defaults = {
        "aug_flip": saved.horizontal_flip, "aug_rotation": saved.rotation_degrees, "aug_zoom": saved.zoom,
        "aug_translation": saved.translation, "aug_contrast": saved.contrast, "aug_brightness": saved.brightness,
    }
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)
    columns = container.columns(3)
    flip = columns[0].checkbox("Horizontal flip", key="aug_flip")
    rotation = columns[0].slider("Rotation (±degrees)", 0.0, 45.0, step=1.0, format="%.0f°", key="aug_rotation")
    zoom = columns[1].slider("Zoom (±fraction)", 0.0, 0.5, step=0.05, key="aug_zoom")
    translation = columns[1].slider("Translation (±fraction)", 0.0, 0.5, step=0.05, key="aug_translation")
    contrast = columns[2].slider("Contrast (±fraction)", 0.0, 0.9, step=0.05, key="aug_contrast")
    brightness = columns[2].slider("Brightness (±fraction)", 0.0, 0.9, step=0.05, key="aug_brightness")
    config = AugmentationConfig(
        horizontal_flip=flip, rotation_degrees=rotation, zoom=zoom,
        translation=translation, contrast=contrast, brightness=brightness,
    )
    st.session_state[AUGMENTATION] = config
    return config


def describe_augmentation(config: AugmentationConfig) -> str:
    """One line: what the trainer will do to each training image."""
    if config.is_identity:
        return "none"
    parts = ["horizontal flip"] if config.horizontal_flip else []
    parts += [
        f"{label} ±{value:g}{unit}"
        for label, value, unit in (
            ("rotation", config.rotation_degrees, "°"), ("zoom", config.zoom, ""),
            ("translation", config.translation, ""), ("contrast", config.contrast, ""),
            ("brightness", config.brightness, ""),
        )
        if value
    ]
    return ", ".join(parts)
