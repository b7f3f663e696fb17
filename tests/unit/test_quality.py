"""Image quality: each issue on a constructed image, none on real photos, cached by content, in the scan JSON."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from imgclf_core.data.dataset import scan_dataset
from imgclf_core.data.images import decode_image
from imgclf_core.data.quality import (
    BLURRY, GRAY_AS_RGB, ISSUES, LOW_INFORMATION, ODD_ASPECT, ODD_SIZE, QUALITY_SIDE, TOO_BRIGHT, TOO_DARK,
    measure_image, pixel_issues, quality_report,
)


def photo(side: int = 320) -> np.ndarray:
    import skimage.data

    image = Image.fromarray(skimage.data.astronaut())
    return np.asarray(image.resize((side, side), Image.Resampling.LANCZOS))


def issues_of(pixels: np.ndarray, mode: str = "RGB") -> list[str]:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return pixel_issues(measure_image(decode_image(buffer.getvalue(), max_side=QUALITY_SIDE)), mode)


def test_a_real_photo_has_no_issue_and_each_spoiled_copy_its_own():
    original = photo()
    assert issues_of(original) == []
    assert issues_of((original * 0.15).astype(np.uint8)) == [TOO_DARK]
    assert issues_of((original * 0.2 + 204).astype(np.uint8)) == [TOO_BRIGHT]
    blurred = np.asarray(Image.fromarray(original).filter(ImageFilter.GaussianBlur(6)))
    assert issues_of(blurred) == [BLURRY]
    flat = (np.array([150, 110, 80], np.uint8) + np.random.default_rng(0).integers(0, 3, original.shape)).astype(np.uint8)
    assert issues_of(flat) == [LOW_INFORMATION]
    gray = np.asarray(Image.fromarray(original).convert("L"))
    assert issues_of(np.stack([gray] * 3, axis=-1)) == [GRAY_AS_RGB]
    assert issues_of(np.stack([gray] * 3, axis=-1), mode="L") == []  # a grayscale file is fine as it is


def test_small_images_are_never_called_blurry():
    small = np.asarray(Image.fromarray(photo()).resize((28, 28)).filter(ImageFilter.GaussianBlur(2)))
    assert BLURRY not in issues_of(small)


def test_the_report_of_a_folder_finds_size_and_aspect_outliers_and_caches_by_content(tmp_path, monkeypatch):
    original = photo(200)
    root = tmp_path / "data"
    (root / "people").mkdir(parents=True)
    (root / "other").mkdir()
    for number in range(6):
        shifted = np.roll(original, number * 7, axis=1)
        Image.fromarray(shifted).save(root / "people" / f"{number}.png")
        Image.fromarray(shifted[:, ::-1]).save(root / "other" / f"{number}.png")
    Image.fromarray(original[:, :30]).resize((600, 90)).save(root / "people" / "banner.png")  # 6.7:1
    Image.fromarray(original).resize((40, 40)).save(root / "other" / "tiny.png")
    Image.fromarray((original * 0.1).astype(np.uint8)).save(root / "other" / "night.png")
    index = scan_dataset(root)
    report = quality_report(index)
    assert report.paths_with(ODD_ASPECT) == ["people/banner.png"]
    assert report.paths_with(ODD_SIZE) == ["other/tiny.png"]
    assert report.paths_with(TOO_DARK) == ["other/night.png"]
    assert set(report.issues_by_path) == {"people/banner.png", "other/tiny.png", "other/night.png"}
    document = report.to_json_dict(path_prefix="data")
    assert list(document) == list(ISSUES) and document[TOO_DARK] == ["data/other/night.png"]

    import imgclf_core.data.quality as quality

    monkeypatch.setattr(quality, "decode_image", lambda *args, **kwargs: pytest.fail("decoded a cached image"))
    assert quality_report(index).issues_by_path == report.issues_by_path  # every figure from the cache
