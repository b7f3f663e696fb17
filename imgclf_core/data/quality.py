"""Image quality: the photos a person should look at before training on them, each with its reason.

A cheap pass after the scan decodes every image once at most QUALITY_SIDE px on its longer side (a
12-megapixel JPEG at 1/8 scale) and keeps a few figures per image, cached by content hash like the
scan. From those figures and the dataset's own sizes, an image has an issue when it is:

- too dark: even its brightest pixels are dim (99th percentile of luma < DARK_P99);
- too bright: even its darkest pixels are pale (luma mean > BRIGHT_MEAN and 5th percentile > BRIGHT_P05);
- blurry: little fine detail for its contrast: the variance of its Laplacian (at QUALITY_SIDE px) over the
  variance of its luma is below BLUR_RATIO (so a dark but sharp photo is not called blurry); only for images
  at least BLUR_MIN_SIDE px on the shorter side (a 28 px thumbnail has no fine detail to lose);
- low information: near-uniform (luma standard deviation < FLAT_STD);
- odd size: its pixel count is below 1/ODD_SIZE_FACTOR or above ODD_SIZE_FACTOR times the dataset's median;
- odd aspect ratio: wider or taller than ODD_ASPECT_FACTOR times the dataset's median aspect ratio, or
  beyond MAX_ASPECT either way;
- grayscale stored as RGB: a colour file whose three channels never differ by more than GRAY_TOLERANCE.

Thresholds were chosen on scikit-image's photos (astronaut, coffee, chelsea, rocket, ...), the
synthetic phone-photo folder and the Fashion-MNIST sample: none of those is flagged, while darkened,
brightened, blurred, blank, resized and channel-copied versions of them are (tests/unit/test_quality.py;
`bench/quality_thresholds.py` prints the figures they rest on).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from imgclf_core.data.dataset import DatasetIndex, ImageRecord
from imgclf_core.data.images import GRAYSCALE_MODES, ImageDecodeError, decode_image
from imgclf_core.fileio import atomic_write_json, user_cache_dir
from imgclf_core.parallel import decode_thread_count, map_in_threads

ProgressCallback = Callable[[int, int], None]

QUALITY_SIDE = 512
DARK_P99 = 60.0
BRIGHT_MEAN = 200.0
BRIGHT_P05 = 180.0
BLUR_RATIO = 0.01
BLUR_MIN_SIDE = 128
FLAT_STD = 4.0
ODD_SIZE_FACTOR = 4.0
ODD_ASPECT_FACTOR = 2.0
MAX_ASPECT = 3.0
GRAY_TOLERANCE = 2

TOO_DARK, TOO_BRIGHT, BLURRY, LOW_INFORMATION = "too dark", "too bright", "blurry", "low information"
ODD_SIZE, ODD_ASPECT, GRAY_AS_RGB = "odd size", "odd aspect ratio", "grayscale stored as RGB"
ISSUES = (TOO_DARK, TOO_BRIGHT, BLURRY, LOW_INFORMATION, ODD_SIZE, ODD_ASPECT, GRAY_AS_RGB)
_CACHE_FORMAT = 1
_TINY_PIXELS = 64 * 64


@dataclass(frozen=True)
class ImageFigures:
    """What the pass measures of one image (cached by content hash)."""

    luma_mean: float
    luma_std: float
    luma_p05: float
    luma_p99: float
    laplacian_variance: float | None  # None below BLUR_MIN_SIDE
    max_channel_difference: int  # 0 for a grayscale file


def measure_image(pixels: np.ndarray) -> ImageFigures:
    """The figures of one uint8 RGB image (H, W, 3), decoded at most QUALITY_SIDE px."""
    rgb = pixels.astype(np.float32)
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    p05, p99 = np.percentile(luma, [5, 99])
    laplacian = None
    if min(luma.shape) >= BLUR_MIN_SIDE:
        center = luma[1:-1, 1:-1]
        laplacian = float((luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * center).var())
    spread = int(np.max(pixels.max(axis=2).astype(np.int16) - pixels.min(axis=2))) if pixels.shape[2] == 3 else 0
    return ImageFigures(float(luma.mean()), float(luma.std()), float(p05), float(p99), laplacian, spread)


def pixel_issues(figures: ImageFigures, mode: str) -> list[str]:
    """The issues one image has on its own (size and aspect need the dataset: see quality_report)."""
    issues = []
    if figures.luma_p99 < DARK_P99:
        issues.append(TOO_DARK)
    if figures.luma_mean > BRIGHT_MEAN and figures.luma_p05 > BRIGHT_P05:
        issues.append(TOO_BRIGHT)
    if (figures.laplacian_variance is not None and figures.luma_std >= FLAT_STD
            and figures.laplacian_variance / figures.luma_std ** 2 < BLUR_RATIO):
        issues.append(BLURRY)
    if figures.luma_std < FLAT_STD:
        issues.append(LOW_INFORMATION)
    # Only a mode with colour channels can store a grey image as colour (a palette's colours are its own).
    if mode not in GRAYSCALE_MODES and mode not in ("P", "PA") and figures.max_channel_difference <= GRAY_TOLERANCE:
        issues.append(GRAY_AS_RGB)
    return issues


def shape_issues(records: Sequence[ImageRecord]) -> dict[str, list[str]]:
    """{path: [odd size and/or odd aspect ratio]} against the dataset's medians."""
    if not records:
        return {}
    areas = np.array([record.width * record.height for record in records], np.float64)
    aspects = np.array([record.width / max(record.height, 1) for record in records], np.float64)
    median_area, median_aspect = float(np.median(areas)), float(np.median(aspects))
    found: dict[str, list[str]] = {}
    for record, area, aspect in zip(records, areas, aspects):
        issues = []
        if area < median_area / ODD_SIZE_FACTOR or area > median_area * ODD_SIZE_FACTOR:
            issues.append(ODD_SIZE)
        relative = max(aspect / median_aspect, median_aspect / aspect)
        if relative > ODD_ASPECT_FACTOR or max(aspect, 1 / aspect) > MAX_ASPECT:
            issues.append(ODD_ASPECT)
        if issues:
            found[record.path] = issues
    return found


@dataclass(frozen=True)
class QualityReport:
    issues_by_path: dict[str, list[str]]  # only images with an issue
    unreadable: list[str]  # changed since the scan and no longer decodable

    def paths_with(self, issue: str) -> list[str]:
        return [path for path, issues in self.issues_by_path.items() if issue in issues]

    def counts(self) -> dict[str, int]:
        return {issue: len(self.paths_with(issue)) for issue in ISSUES}

    def to_json_dict(self, path_prefix: str | None = None) -> dict[str, list[str]]:
        """{issue: [paths]} for every issue (the `scan --json` "quality" section)."""
        def shown(path: str) -> str:
            return os.path.join(path_prefix, path) if path_prefix else path

        return {issue: [shown(path) for path in self.paths_with(issue)] for issue in ISSUES}


def quality_report(index: DatasetIndex, progress: ProgressCallback | None = None) -> QualityReport:
    """Every image's issues: its figures from the cache or one decode, and the dataset's size medians."""
    cache_file = user_cache_dir() / "quality" / "figures.json"
    cached = _load_cache(cache_file)
    distinct = {record.sha256: record for record in index.records}
    missing = [record for sha, record in distinct.items() if sha not in cached]
    if progress:
        progress(len(distinct) - len(missing), len(distinct))
    unreadable: list[str] = []
    if missing:
        tiny = float(np.median([record.width * record.height for record in missing])) < _TINY_PIXELS

        def measure(record: ImageRecord):
            try:
                pixels = decode_image(index.absolute_path(record.path), color_mode="rgb", max_side=QUALITY_SIDE)
            except (ImageDecodeError, OSError):
                return None
            return measure_image(pixels)

        done_before = len(distinct) - len(missing)
        report = (lambda done, total: progress(done_before + done, len(distinct))) if progress else None
        for record, figures in zip(missing, map_in_threads(measure, missing, decode_thread_count(tiny), report)):
            if figures is None:
                unreadable.append(record.path)
            else:
                cached[record.sha256] = figures
        _save_cache(cache_file, cached)
    issues_by_path = shape_issues(index.records)
    for record in index.records:
        figures = cached.get(record.sha256)
        if figures is not None:
            found = pixel_issues(figures, record.mode)
            if found:
                issues_by_path[record.path] = found + issues_by_path.get(record.path, [])
    ordered = {record.path: issues_by_path[record.path] for record in index.records if record.path in issues_by_path}
    return QualityReport(ordered, unreadable)


def _load_cache(path: Path) -> dict[str, ImageFigures]:
    import json

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != _CACHE_FORMAT:
            return {}
        return {sha: ImageFigures(*values) for sha, values in document["figures"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _save_cache(path: Path, figures: dict[str, ImageFigures]) -> None:
    def rounded(value):
        return None if value is None else (round(value, 3) if isinstance(value, float) and math.isfinite(value) else value)

    atomic_write_json(path, {"format": _CACHE_FORMAT, "figures": {
        sha: [rounded(value) for value in vars(item).values()] for sha, item in figures.items()}})
