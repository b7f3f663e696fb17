"""Small file makers shared by the test modules (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(seed: int, size: tuple[int, int] = (6, 4)) -> bytes:
    """A small PNG whose bytes differ for every seed (random pixels)."""
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def write(root: Path, relative: str, data: bytes) -> Path:
    """Write `data` at root/relative, creating folders."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
