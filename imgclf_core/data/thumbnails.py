"""Thumbnails cached on disk by content hash, so grids of 10k+ images stay fast across restarts."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from imgclf_core.fileio import atomic_write_bytes, user_cache_dir
from imgclf_core.data.images import decode_image

# numpy and Pillow are imported when a thumbnail is made, not here: the app's pages import this
# module before they draw their title (see imgclf_core.data.images).
if TYPE_CHECKING:
    import numpy as np

DEFAULT_THUMBNAIL_SIZE = 128


def thumbnail_cache_dir() -> Path:
    return user_cache_dir() / "thumbnails"


def thumbnail_file(path: str | os.PathLike, sha256: str, size: int = DEFAULT_THUMBNAIL_SIZE) -> Path:
    """A PNG thumbnail (longest side `size`) of the image at `path`, made once per content hash.

    Raises ImageDecodeError when the file can no longer be read.
    """
    cached = thumbnail_cache_dir() / sha256[:2] / f"{sha256}-{size}.png"
    if cached.exists():
        return cached
    from PIL import Image

    buffer = io.BytesIO()
    # A big photo is shrunk while decoding (reduced JPEG scale); a small one is enlarged by whole pixels.
    Image.fromarray(make_thumbnail(decode_image(path, max_side=size), size)).save(buffer, format="PNG")
    atomic_write_bytes(cached, buffer.getvalue())
    return cached


def make_thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """Shrink to fit `size`; small images (28 px) are enlarged by whole pixels, never blurred."""
    import numpy as np
    from PIL import Image

    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale >= 2:
        factor = int(scale)
        return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    if scale >= 1:
        return image
    pil = Image.fromarray(image)
    pil.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(pil)


def display_array(source: str | os.PathLike | bytes, side: int) -> np.ndarray:
    """An image for the screen, longest side near `side`: a big photo is shrunk while decoding, a small
    one (28 px) enlarged by whole pixels (nearest neighbour), so it is drawn pixel-crisp, never blurred.

    Raises ImageDecodeError when the file cannot be read.
    """
    return make_thumbnail(decode_image(source, max_side=side), side)
