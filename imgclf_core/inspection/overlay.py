"""Draw a Grad-CAM heatmap over its image (numpy, Pillow and matplotlib colormaps; no TensorFlow)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from imgclf_core.data.images import decode_image

# Overlays are drawn on the original photo, shrunk to at most this many pixels on its long side.
OVERLAY_MAX_SIDE = 512


def overlay_heatmap(
    image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.4, colormap: str = "jet"
) -> np.ndarray:
    """Blend a 0..1 heatmap (h, w), resized bilinearly and coloured, over a uint8 image; returns (H, W, 3) uint8."""
    rgb = _as_rgb(image)
    values = _checked_heatmap(heatmap)
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    colours = colorize_heatmap(_resize(values, rgb.shape[:2]), colormap)
    blended = (1.0 - opacity) * rgb.astype(np.float32) + opacity * colours.astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def colorize_heatmap(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A 0..1 heatmap (h, w) as uint8 RGB colours (h, w, 3) from a matplotlib colormap."""
    from matplotlib import colormaps

    if colormap not in colormaps:
        raise ValueError(f"unknown colormap {colormap!r}; try 'jet', 'viridis', 'inferno' or 'turbo'")
    rgba = colormaps[colormap](np.clip(heatmap, 0.0, 1.0), bytes=True)
    return np.ascontiguousarray(rgba[..., :3])


def display_image(data: bytes) -> np.ndarray:
    """The photo as RGB uint8 for an overlay: shrunk so its long side is at most OVERLAY_MAX_SIDE, or,
    when small (a 28 px image), enlarged by whole pixels toward it, so it is drawn crisp, never blurred."""
    from imgclf_core.data.thumbnails import make_thumbnail

    return make_thumbnail(decode_image(data, color_mode="rgb", max_side=OVERLAY_MAX_SIDE), OVERLAY_MAX_SIDE)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W), (H, W, 1) or (H, W, 3), got {pixels.shape}")
    return pixels


def _checked_heatmap(heatmap: np.ndarray) -> np.ndarray:
    values = np.asarray(heatmap, dtype=np.float32)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"heatmap must have shape (h, w), got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("heatmap contains NaN or infinite values")
    # A little float slack: normalised maps can land a hair outside 0..1.
    if values.min() < -1e-3 or values.max() > 1.0 + 1e-3:
        raise ValueError(f"heatmap values must be in 0..1, got {values.min():.3g}..{values.max():.3g}")
    return values


def _resize(values: np.ndarray, height_width: tuple[int, int]) -> np.ndarray:
    if values.shape == tuple(height_width):
        return values
    height, width = height_width
    resized = Image.fromarray(np.ascontiguousarray(values)).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)
