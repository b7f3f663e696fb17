"""Images drawn for the screen: a 28 px image is enlarged by whole pixels (crisp), a photo shrunk."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from imgclf_core.data.thumbnails import display_array


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_small_image_is_enlarged_by_whole_pixels_never_interpolated():
    pixels = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    shown = display_array(png(pixels), 512)
    assert shown.shape[:2] == (28 * 18, 28 * 18)  # 512 // 28 = 18 screen pixels per image pixel
    for dy, dx in ((0, 0), (17, 17), (5, 11)):
        assert (shown[dy::18, dx::18, 0] == pixels).all()


def test_a_big_photo_is_shrunk_to_the_side_keeping_its_shape(tmp_path):
    photo = np.random.default_rng(2).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo).save(path, "JPEG")
    assert display_array(path, 768).shape == (576, 768, 3)
