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


def train_tiny_shapes_run(base: Path, epochs: int) -> tuple[Path, Path]:
    """(run folder, dataset) of a small_cnn trained for `epochs` on 16 px grey shapes (12 per class)."""
    from imgclf_core.training import runs
    from imgclf_core.config import NO_AUGMENTATION, DataConfig, ModelConfig, RunConfig, TrainingConfig
    from imgclf_core.training.trainer import train_run

    data = shapes_tree(base / "data", per_class=12)
    run_dir = base / "runs" / "20260101-000000-small_cnn"
    run_dir.mkdir(parents=True)
    runs.write_run_config(run_dir, RunConfig(
        data_dir=str(data.resolve()),
        data=DataConfig(image_size=16, color_mode="grayscale", batch_size=8, validation_split=0.5),
        augmentation=NO_AUGMENTATION,
        model=ModelConfig(name="small_cnn"),
        training=TrainingConfig(epochs=epochs, progress_every_batches=1),
    ))
    assert train_run(run_dir) == runs.FINISHED
    return run_dir, data


def copy_run_with_its_data(template_run: Path, template_data: Path, run_dir: Path, data: Path) -> tuple[Path, Path]:
    """Private copies of a trained run and of its dataset, the run's config pointing at the copy."""
    import json
    import shutil

    data = Path(shutil.copytree(template_data, data))
    run_dir = Path(shutil.copytree(template_run, run_dir))
    document = json.loads((run_dir / "config.json").read_text())
    document["run"]["data_dir"] = str(data.resolve())
    (run_dir / "config.json").write_text(json.dumps(document))
    return run_dir, data
