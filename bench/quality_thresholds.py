"""The figures behind imgclf_core.data.quality's thresholds: real photos against spoiled copies of them.

    .venv/bin/python bench/quality_thresholds.py [--photos N]

Real: scikit-image's colour photos, a synthetic phone-photo folder (12 MP JPEGs made from them, with
sensor noise) and the Fashion-MNIST sample. Spoiled: each skimage photo darkened (x0.15), brightened
(washed out to 80% white), blurred (Gaussian, radius 6 px at 512 px), flattened (a uniform grey with
+-2 noise) and copied into three equal channels. Prints each image's figures, the issues it gets, and
whether every real image is clean and every spoiled one gets its issue.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imgclf_core.data.images import decode_image  # noqa: E402
from imgclf_core.data.quality import (  # noqa: E402
    BLURRY, GRAY_AS_RGB, LOW_INFORMATION, QUALITY_SIDE, TOO_BRIGHT, TOO_DARK, measure_image, pixel_issues,
)

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "cat")


def skimage_photos() -> dict[str, Image.Image]:
    import skimage.data

    photos = {}
    for name in PHOTOS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        pixels = np.asarray(loader(), dtype=np.uint8)
        if pixels.ndim == 3 and pixels.shape[2] >= 3:
            photos[name] = Image.fromarray(pixels[..., :3])
    return photos


def spoiled(photo: Image.Image) -> dict[str, tuple[Image.Image, str]]:
    pixels = np.asarray(photo, np.float32)
    rng = np.random.default_rng(0)
    small = photo.copy()
    small.thumbnail((QUALITY_SIDE, QUALITY_SIDE))
    gray = np.asarray(photo.convert("L"))
    return {
        "dark": (Image.fromarray((pixels * 0.15).astype(np.uint8)), TOO_DARK),
        "bright": (Image.fromarray((pixels * 0.2 + 255 * 0.8).astype(np.uint8)), TOO_BRIGHT),
        "blurred": (small.filter(ImageFilter.GaussianBlur(6)), BLURRY),
        "flat": (Image.fromarray(np.clip(128 + rng.integers(-2, 3, pixels.shape), 0, 255).astype(np.uint8)),
                 LOW_INFORMATION),
        "gray as rgb": (Image.fromarray(np.stack([gray] * 3, axis=-1)), GRAY_AS_RGB),
    }


def figures_of(image: Image.Image, fmt: str = "PNG"):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=92) if fmt == "JPEG" else image.save(buffer, format=fmt)
    pixels = decode_image(buffer.getvalue(), color_mode="rgb", max_side=QUALITY_SIDE)
    return measure_image(pixels), image.mode


def line(name: str, figures, issues: list[str]) -> str:
    blur = ("-" if figures.laplacian_variance is None
            else f"{figures.laplacian_variance / max(figures.luma_std, 1e-6) ** 2:9.4f}")
    return (f"  {name:<34} mean {figures.luma_mean:6.1f} std {figures.luma_std:5.1f} p05 {figures.luma_p05:6.1f} "
            f"p99 {figures.luma_p99:6.1f} sharpness {blur:>9} channels {figures.max_channel_difference:3d}  "
            f"{', '.join(issues) or 'clean'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8, help="synthetic phone photos per class (4 classes)")
    args = parser.parse_args()
    ok = True
    print("real images (must be clean):")
    reals = [(name, *figures_of(photo, "JPEG")) for name, photo in skimage_photos().items()]
    with tempfile.TemporaryDirectory() as folder:
        from imgclf_core.data.synthetic_photos import write_photo_folder

        write_photo_folder(folder, classes=4, per_class=args.photos)
        for path in sorted(Path(folder).rglob("*.jpg")):
            pixels = decode_image(path, color_mode="rgb", max_side=QUALITY_SIDE)
            reals.append((f"phone/{path.parent.name}/{path.name}", measure_image(pixels), "RGB"))
    sample = Path(__file__).resolve().parent.parent / "sample_data" / "fashion_mnist"
    for path in sorted(sample.rglob("*.png"))[::40]:
        pixels = decode_image(path, color_mode="rgb", max_side=QUALITY_SIDE)
        reals.append((f"fashion_mnist/{path.parent.name}/{path.name}", measure_image(pixels), "L"))
    for name, figures, mode in reals:
        issues = pixel_issues(figures, mode)
        ok &= not issues
        print(line(name, figures, issues))
    print("spoiled copies of the skimage photos (must get their issue):")
    for name, photo in skimage_photos().items():
        for kind, (image, expected) in spoiled(photo).items():
            figures, mode = figures_of(image)
            issues = pixel_issues(figures, mode)
            ok &= expected in issues
            print(line(f"{name} {kind}", figures, issues) + ("" if expected in issues else f"   MISSED {expected}"))
    print("every real image clean and every spoiled one caught:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
