"""Files the tests write: small PNGs, class folders of shapes, zips, copies of the shipped sample."""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]  # the repository
SAMPLE = ROOT / "sample_data" / "fashion_mnist"


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


SHAPES = ("square", "cross", "ring")


def shapes_tree(root: Path, per_class: int = 20, size: int = 16, counts: dict[str, int] | None = None) -> Path:
    """Three learnable classes of grey images (a square, a cross, a ring) with random noise and offsets."""
    rng = np.random.default_rng(0)
    for label in SHAPES:
        (root / label).mkdir(parents=True)
        for number in range((counts or {}).get(label, per_class)):
            pixels = rng.integers(0, 60, (size, size), dtype=np.uint8)
            offset = rng.integers(0, 3)
            low, high = 3 + offset, size - 4 + offset
            if label == "square":
                pixels[low:high, low:high] = 220
            elif label == "cross":
                pixels[size // 2 - 1:size // 2 + 1, :] = 220
                pixels[:, size // 2 - 1:size // 2 + 1] = 220
            else:
                pixels[low:high, low:high] = 220
                pixels[low + 2:high - 2, low + 2:high - 2] = 30
            Image.fromarray(pixels).save(root / label / f"{number:03d}.png")
    return root


def zip_of(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> io.BytesIO:
    """An in-memory .zip of `entries` (name -> bytes), plus symbolic links (name -> target)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    buffer.seek(0)
    return buffer


def sample_with_a_mislabelled_bag(data: Path) -> Path:
    """12 sample images per class copied to `data`, plus a trouser filed as "bag/mislabelled.png"."""
    for folder in sorted(SAMPLE.iterdir()):
        (data / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.png"))[:12]:
            shutil.copy(image, data / folder.name / image.name)
    (data / "bag" / "mislabelled.png").write_bytes(next((SAMPLE / "trouser").glob("*.png")).read_bytes())
    return data


def copy_with_flipped_labels(source: Path, root: Path, per_class: int, fraction: float, seed: int) -> set[str]:
    """`per_class` images per class of `source` copied to `root`, `fraction` of them into a wrong class.

    The benchmark plants its errors the same way (bench/bench_audit.py); returns the flipped paths.
    """
    from bench_audit import copy_with_flipped_labels as plant  # here, not at the top: importing it sets TF_CPP_MIN_LOG_LEVEL

    return plant(source, root, per_class, fraction, seed)


def photos_with_quality_issues(root: Path) -> Path:
    """Real photos (scikit-image's astronaut, turned) in two classes, and among them one too dark
    (cat/night.jpg), one blurry (dog/shaky.jpg) and one blank (dog/lens-cap.png)."""
    import skimage.data
    from PIL import ImageFilter

    photo = Image.fromarray(skimage.data.astronaut()).resize((256, 256))
    for number in range(4):
        for label in ("cat", "dog"):
            path = root / label / f"{number}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            photo.rotate(number * 90 + (label == "dog") * 45).save(path, quality=92)
    photo.point(lambda value: value * 0.12).save(root / "cat" / "night.jpg", quality=92)
    photo.filter(ImageFilter.GaussianBlur(6)).save(root / "dog" / "shaky.jpg", quality=92)
    Image.new("RGB", (256, 256), (200, 190, 180)).save(root / "dog" / "lens-cap.png")
    return root
