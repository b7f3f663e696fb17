"""How far to trust a trained run: calibration, unfamiliar images, test-time flip, int8 export.

    .venv/bin/python bench/bench_trust.py RUN_DIR [--test-dir DIR]

For a finished run (e.g. `imgclf train` on the full Fashion-MNIST tree) it prints:
- the expected calibration error before and after temperature scaling, per held-out split (evaluation.json);
- the share of the test images flagged as unlike the training data, and of scikit-image's photos
  (cat, coffee, astronaut, rocket, ...), by the run's unfamiliar-image model;
- accuracy and time of the test split with and without the test-time flip (`imgclf evaluate [--flip-tta]`);
- the int8 TFLite export's size and top-1 agreement against the float model, beside the float32 one;
- how often More like this finds images of the query's class, by the run's model (and the ImageNet
  embeddings with --similar-imagenet).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "camera", "moon", "page", "text", "clock", "horse", "grass", "gravel", "brick")


def imgclf(*arguments: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "imgclf"), *arguments], capture_output=True, text=True)
    return result, time.perf_counter() - started


def calibration_lines(run_dir: Path) -> list[str]:
    from imgclf_core.training.run_folder import RunFolder

    folder, lines = RunFolder(run_dir), []
    for split in ("validation", "test"):
        section = folder.read_evaluation(split)
        if section and "calibration" in section:
            calibration = section["calibration"]
            count = sum(map(sum, section["confusion_matrix"]))
            lines.append(f"  {split:<10} {count:>6} images: ECE {calibration['ece_before']:.2%} -> "
                         f"{calibration['ece_after']:.2%} (temperature {calibration['temperature']:.3f}), "
                         f"NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}")
    return lines


def unfamiliar_lines(run_dir: Path, test_dir: Path | None) -> list[str]:
    import io

    import skimage.data
    from PIL import Image

    from imgclf_core.data.dataset import scan_dataset
    from imgclf_core.data.pipeline import decode_records
    from imgclf_core.config import DataConfig
    from imgclf_core.inspection.predict import Predictor

    predictor = Predictor.from_run(run_dir)
    if predictor.familiarity is None:
        return ["  the run has no unfamiliar-image model (made before it, or not evaluated)"]
    lines = [f"  threshold {predictor.familiarity.threshold:.4f} (95% of the validation images at or below), "
             f"Mahalanobis distance to the nearest of {len(predictor.familiarity.class_means)} classes"]
    if test_dir is not None:
        index = scan_dataset(test_dir)
        images = decode_records(index.root, index.records, DataConfig(image_size=predictor.image_size,
                                                                       color_mode=predictor.color_mode))
        flags = [item["flagged"] for item in predictor.unfamiliar(np.asarray(images))]
        lines.append(f"  {test_dir}: {sum(flags):,} of {len(flags):,} test images flagged ({np.mean(flags):.1%})")
    flagged = []
    for name in PHOTOS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        pixels = np.asarray(loader())
        pixels = pixels[0] if isinstance(loader(), tuple) else pixels
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
        image = predictor.load_image(buffer.getvalue())[None]
        verdict = predictor.unfamiliar(image)[0]
        top = predictor.top_k(predictor.predict_arrays(image)[0], 1)[0]
        flagged.append(verdict["flagged"])
        lines.append(f"    {name:<22} says {top[0]} {top[1]:.0%}; score {verdict['score']:.4f} "
                     + ("FLAGGED unlike the training data" if verdict["flagged"] else "passes"))
    lines.insert(2 if test_dir is not None else 1,
                 f"  scikit-image photos: {sum(flagged)} of {len(flagged)} flagged ({np.mean(flagged):.0%})")
    return lines


def similar_lines(run_dir: Path, data_dir: Path, imagenet: bool) -> list[str]:
    """How often the 8 nearest images share the query's class, by the run's model (and the ImageNet
    embeddings), over every image of `data_dir`; for shirts, how many are shirts or T-shirts/tops."""
    from imgclf_core.data.dataset import scan_dataset
    from imgclf_core.inspection.predict import Predictor
    from imgclf_core.inspection.similar import SimilarityIndex

    index = scan_dataset(data_dir)
    labels = np.array([record.label for record in index.records])
    indexes = [("the run's model", SimilarityIndex.of_run(Predictor.from_run(run_dir), index))]
    if imagenet:
        indexes.append(("ImageNet embeddings", SimilarityIndex.of_dataset(index)))
    lines = [f"  {data_dir}: {len(labels):,} images, each against all the others"]
    for name, similarity in indexes:
        same, shirt_share = [], []
        for start in range(0, len(labels), 1024):
            scores = similarity.unit[start:start + 1024] @ similarity.unit.T
            scores[np.arange(len(scores)), np.arange(start, start + len(scores))] = -np.inf
            nearest = np.argpartition(-scores, 8, axis=1)[:, :8]
            rows = labels[start:start + 1024]
            same.append((labels[nearest] == rows[:, None]).mean(axis=1))
            shirt_share.append(np.isin(labels[nearest], ("shirt", "tshirt_top")).mean(axis=1)[rows == "shirt"])
        same, shirt_share = np.concatenate(same), np.concatenate(shirt_share)
        line = f"    {name:<20} 8 nearest of the same class {same.mean():.1%}"
        if len(shirt_share):
            line += (f"; a shirt's: shirts or tops {shirt_share.mean():.1%}, shirts with >= 5 of 8 "
                     f"{(shirt_share >= 5 / 8).mean():.1%}")
        lines.append(line)
    return lines


def flip_lines(run_dir: Path, data_dir: str | None) -> list[str]:
    target = [str(run_dir)] + ([data_dir] if data_dir else [])
    plain, plain_seconds = imgclf("evaluate", *target, "--json")
    flipped, flipped_seconds = imgclf("evaluate", *target, "--json", "--flip-tta")
    if plain.returncode or flipped.returncode:
        return [f"  evaluate failed: {plain.stderr.strip()[-300:]} {flipped.stderr.strip()[-300:]}"]
    before, after = json.loads(plain.stdout)["accuracy"], json.loads(flipped.stdout)["accuracy"]
    return [f"  test accuracy {before:.2%} -> {after:.2%} with the flip ({(after - before) * 100:+.2f} points); "
            f"`imgclf evaluate` {plain_seconds:.1f} s -> {flipped_seconds:.1f} s ({flipped_seconds / plain_seconds:.2f}x)"]


def int8_lines(run_dir: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        result, seconds = imgclf("export", str(run_dir), "--format", "tflite", "--int8", "--float16", "--golden", "200",
                                 "--out", str(Path(folder) / "export"), "--json")
    if result.returncode:
        return [f"  export failed: {result.stderr.strip()[-400:]}"]
    document = json.loads(result.stdout)
    lines = []
    for key in ("parity", "float16", "int8"):
        parity = document[key]
        lines.append(f"  {parity['artifact']:<22} {parity['size_bytes'] / 1e6:6.2f} MB  top-1 agreement "
                     f"{parity['top1_matches']}/{parity['golden_images']}  max |dp| {parity['max_probability_difference']:.3f}")
    lines.append(f"  (export of all three with their checks: {seconds:.0f} s)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--test-dir", type=Path, default=None,
                        help="a folder-per-class test set for the unfamiliar share (default: the run's own test split)")
    parser.add_argument("--similar-dir", type=Path, default=None,
                        help="the folder whose images More like this is scored on (default: the test folder, else the "
                             "run's data)")
    parser.add_argument("--similar-imagenet", action="store_true",
                        help="score the ImageNet embeddings too (embeds every image not in the cache: slow for 10,000)")
    args = parser.parse_args()
    from imgclf_core.training.run_folder import RunFolder

    config = RunFolder(args.run_dir).read_config()
    test_dir = args.test_dir
    if test_dir is None and (Path(config.data_dir) / "test").is_dir():
        test_dir = Path(config.data_dir) / "test"
    print(f"imgclf trust benchmark: {args.run_dir.name} ({config.model.name}, data {Path(config.data_dir).name})")
    print("calibration (fitted on validation):", *calibration_lines(args.run_dir), sep="\n")
    print("unfamiliar images:", *unfamiliar_lines(args.run_dir, test_dir), sep="\n")
    print("more like this:", *similar_lines(args.run_dir, args.similar_dir or test_dir or Path(config.data_dir),
                                            args.similar_imagenet), sep="\n")
    print("test-time flip:", *flip_lines(args.run_dir, str(args.test_dir) if args.test_dir else None), sep="\n")
    print("int8 export (golden: 200 validation images):", *int8_lines(args.run_dir), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
