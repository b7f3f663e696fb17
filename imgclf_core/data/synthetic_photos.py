"""Folders of phone-like photos, made offline from scikit-image's bundled real photos.

Tests and benchmarks need big JPEGs that behave like a phone's: 12 megapixels, real image content,
sensor noise, and some portrait shots stored sideways with EXIF Orientation 6. Each class is one
real source photo; each file is a different random crop of it, upscaled, flipped, colour-jittered
and noised, so no two files are the same (not even across splits).
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageEnhance

# (class name, skimage.data loader). Colour photos first; the grey ones still become RGB JPEGs.
SOURCE_PHOTOS = (
    ("cat", "chelsea"),
    ("coffee", "coffee"),
    ("astronaut", "astronaut"),
    ("rocket", "rocket"),
    ("motorcycle", "stereo_motorcycle"),
    ("galaxy", "hubble_deep_field"),
    ("tissue", "immunohistochemistry"),
    ("retina", "retina"),
    ("cameraman", "camera"),
    ("moon", "moon"),
    ("coins", "coins"),
    ("clock", "clock"),
)
PHOTO_CLASSES = tuple(name for name, _ in SOURCE_PHOTOS)
PHONE_SIZE = (4032, 3024)  # (width, height) of a 12-megapixel phone photo, landscape as stored
EXIF_ORIENTATION_TAG = 0x0112
# Orientation 6: the stored pixels must turn 90 degrees clockwise to stand upright (a portrait shot).
ROTATED_ORIENTATION = 6
CROP_AREA_RANGE = (0.5, 0.9)
JITTER = 0.2  # brightness, contrast and saturation factors drawn from [1 - JITTER, 1 + JITTER]
NOISE_SIGMA_RANGE = (2.0, 4.0)  # grey levels, like a phone sensor in good light
# Noise is drawn on a tile this big and repeated: drawing 36 M normals per photo dominated the time.
NOISE_TILE = 512


@dataclass(frozen=True)
class _PhotoJob:
    path: Path
    class_index: int
    number: int
    rotated: bool


def write_photo_folder(
    out_dir: str | os.PathLike,
    *,
    classes: int = 4,
    per_class: int = 40,
    size: tuple[int, int] = PHONE_SIZE,
    seed: int = 0,
    exif_rotated_fraction: float = 0.25,
    quality: int = 90,
    splits: dict[str, int] | None = None,
    workers: int | None = None,
) -> dict:
    """Write out_dir/<class>/IMG_<n>.jpg (or out_dir/<split>/<class>/...) phone photos; return the counts.

    `size` is (width, height) of an upright landscape photo; EXIF-rotated ones are portrait shots,
    stored as `size` with Orientation 6 and shown as (height, width). With `splits` ({"train": 30,
    "validation": 10}, per class) `per_class` is ignored and the counts come back per split.
    """
    width, height = _check_arguments(classes, per_class, size, exif_rotated_fraction, quality)
    plan = _check_splits(splits) if splits is not None else {"": per_class}
    jobs, counts = _plan_jobs(Path(out_dir), classes, plan, exif_rotated_fraction)
    for folder in {job.path.parent for job in jobs}:
        folder.mkdir(parents=True, exist_ok=True)
    write = functools.partial(_write_photo, size=(width, height), seed=seed, quality=quality)
    # Pillow lets go of the GIL while it resizes, adds and encodes, so threads use every core.
    with ThreadPoolExecutor(max_workers=max(1, workers or os.cpu_count() or 1)) as pool:
        list(pool.map(write, jobs))
    return counts[""] if splits is None else counts


def _check_arguments(classes, per_class, size, exif_rotated_fraction, quality) -> tuple[int, int]:
    if not isinstance(classes, int) or not 1 <= classes <= len(SOURCE_PHOTOS):
        raise ValueError(f"classes must be an int from 1 to {len(SOURCE_PHOTOS)}, got {classes!r}")
    if not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive int, got {per_class!r}")
    if len(size) != 2 or not all(isinstance(side, int) and side >= 16 for side in size):
        raise ValueError(f"size must be (width, height) in pixels, each at least 16, got {size!r}")
    if not 0.0 <= exif_rotated_fraction <= 1.0:
        raise ValueError(f"exif_rotated_fraction must be within [0, 1], got {exif_rotated_fraction!r}")
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an int from 1 to 100, got {quality!r}")
    return size[0], size[1]


def _check_splits(splits: dict[str, int]) -> dict[str, int]:
    if not isinstance(splits, dict) or not splits:
        raise ValueError(f"splits must be a non-empty dict like {{'train': 30, 'validation': 10}}, got {splits!r}")
    for name, count in splits.items():
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ValueError(f"split names must be plain folder names, got {name!r}")
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"split {name!r}: the count per class must be an int >= 0, got {count!r}")
    if not any(splits.values()):
        raise ValueError(f"splits must ask for at least one photo, got {splits!r}")
    return dict(splits)


def _plan_jobs(out_dir: Path, classes: int, plan: dict[str, int], rotated_fraction: float):
    """One job per file; photo numbers run on across splits, so every split gets different crops."""
    jobs: list[_PhotoJob] = []
    counts: dict[str, dict[str, int]] = {split: {} for split in plan}
    for class_index, class_name in enumerate(PHOTO_CLASSES[:classes]):
        number = 0
        for split, count in plan.items():
            folder = out_dir / split / class_name if split else out_dir / class_name
            for _ in range(count):
                number += 1
                path = folder / f"IMG_{number:04d}.jpg"
                jobs.append(_PhotoJob(path, class_index, number, _is_rotated(number, rotated_fraction)))
            counts[split][class_name] = count
    return jobs, counts


def _is_rotated(number: int, fraction: float) -> bool:
    """Spread exactly round-down(fraction * n) rotated photos evenly over photos 1..n."""
    return math.floor(number * fraction) > math.floor((number - 1) * fraction)


def _write_photo(job: _PhotoJob, *, size: tuple[int, int], seed: int, quality: int) -> None:
    rng = np.random.default_rng([seed, job.class_index, job.number])
    width, height = size
    # A portrait shot is framed upright as (height, width), then stored sideways like a phone does.
    upright_size = (height, width) if job.rotated else (width, height)
    photo = _add_sensor_noise(_framed_photo(job.class_index, upright_size, rng), rng)
    exif = Image.Exif()
    if job.rotated:
        # ROTATE_90 turns counter-clockwise; Orientation 6 tells viewers to turn it back clockwise.
        photo = photo.transpose(Image.Transpose.ROTATE_90)
        exif[EXIF_ORIENTATION_TAG] = ROTATED_ORIENTATION
    photo.save(job.path, "JPEG", quality=quality, exif=exif.tobytes())


def _framed_photo(class_index: int, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A random crop of the class's source photo, flipped and colour-jittered, upscaled to size."""
    source = _source_photo(class_index)
    if rng.random() < 0.5:
        source = source.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # Jitter at the source's resolution: the factors are per-pixel, so upscaling afterwards is the same.
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        source = enhancer(source).enhance(rng.uniform(1 - JITTER, 1 + JITTER))
    box = _crop_box(source.size, size[0] / size[1], rng)
    return source.resize(size, Image.Resampling.BICUBIC, box=box)


def _crop_box(source_size: tuple[int, int], aspect: float, rng: np.random.Generator) -> tuple[float, ...]:
    """A box of the target aspect over 50-90% of the source's area (less when the aspects differ), anywhere."""
    source_width, source_height = source_size
    area = rng.uniform(*CROP_AREA_RANGE) * source_width * source_height
    crop_width = min(source_width, math.sqrt(area * aspect))
    crop_height = min(source_height, crop_width / aspect)
    crop_width = crop_height * aspect
    left = rng.uniform(0, source_width - crop_width)
    top = rng.uniform(0, source_height - crop_height)
    return (left, top, left + crop_width, top + crop_height)


def _add_sensor_noise(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Gaussian noise of a few grey levels per channel, drawn on a tile and repeated over the photo."""
    sigma = rng.uniform(*NOISE_SIGMA_RANGE)
    tile = np.clip(np.rint(rng.normal(128.0, sigma, (NOISE_TILE, NOISE_TILE, 3))), 0, 255).astype(np.uint8)
    width, height = photo.size
    repeats = (-(-height // NOISE_TILE), -(-width // NOISE_TILE), 1)
    noise = np.tile(tile, repeats)[:height, :width]
    # add(a, b, offset=-128) is a + b - 128 clipped to 0..255, in C: no int16 copy of the photo.
    return ImageChops.add(photo, Image.fromarray(noise), scale=1.0, offset=-128)


@functools.lru_cache(maxsize=None)
def _source_photo(class_index: int) -> Image.Image:
    import skimage.data  # heavy: only when photos are made

    loader_name = SOURCE_PHOTOS[class_index][1]
    pixels = getattr(skimage.data, loader_name)()
    if isinstance(pixels, tuple):  # stereo_motorcycle gives (left, right, disparity)
        pixels = pixels[0]
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    return image.convert("RGB")
