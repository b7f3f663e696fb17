"""Label-audit benchmark: plant label errors in a copy of a labelled dataset and see how many the audit ranks first.

Reproduce (CPU; offline):

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_audit.py [--data sample_data/fashion_mnist]
        [--per-class 0] [--flip 0.05] [--seed 1] [--json out.json]

Copies --per-class images of each class (0 = all) to a temporary folder, moves --flip of them to a
random other class folder (a label error), runs `audit_dataset` (with a fresh embedding cache, so the
time includes embedding every image) and reports precision and recall of the top of the ranking:
among the first k suspects, for k = the number of planted errors and k = 10% of the images.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imgclf_core.audit import audit_dataset  # noqa: E402
from imgclf_core.dataset import scan_dataset  # noqa: E402


def copy_with_flipped_labels(source: Path, target: Path, per_class: int, fraction: float, seed: int) -> set[str]:
    """Copy the dataset, then move `fraction` of its images into a random other class; returns their new paths."""
    classes = sorted(folder.name for folder in source.iterdir() if folder.is_dir() and not folder.name.startswith("_"))
    for label in classes:
        (target / label).mkdir(parents=True)
        files = sorted(path for path in (source / label).iterdir() if path.is_file())
        for path in files[:per_class] if per_class else files:
            shutil.copy(path, target / label / path.name)
    rng = random.Random(seed)
    images = sorted(path for path in target.rglob("*") if path.is_file())
    flipped = set()
    for path in rng.sample(images, round(len(images) * fraction)):
        wrong = rng.choice([label for label in classes if label != path.parent.name])
        moved = target / wrong / f"flipped-{path.parent.name}-{path.name}"
        path.rename(moved)
        flipped.add(str(moved.relative_to(target)))
    return flipped


def precision_recall_at(ranking: list[str], planted: set[str], k: int) -> tuple[float, float]:
    found = len(planted & set(ranking[:k]))
    return found / k, found / len(planted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sample_data/fashion_mnist")
    parser.add_argument("--per-class", type=int, default=0)
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgclf-audit-") as scratch:
        os.environ["IMGCLF_CACHE_DIR"] = str(Path(scratch) / "cache")
        root = Path(scratch) / "data"
        planted = copy_with_flipped_labels(Path(args.data), root, args.per_class, args.flip, args.seed)
        started = time.monotonic()
        report = audit_dataset(scan_dataset(root))
        cold = time.monotonic() - started
        started = time.monotonic()
        audit_dataset(scan_dataset(root))
        warm = time.monotonic() - started
    ranking = [suspect.path for suspect in report.suspects]
    results = {"images": len(ranking), "planted": len(planted), "cold_s": round(cold, 1), "warm_s": round(warm, 1)}
    for name, k in (("k_planted", len(planted)), ("k_10pct", len(ranking) // 10)):
        precision, recall = precision_recall_at(ranking, planted, k)
        results[name] = {"k": k, "precision": round(precision, 3), "recall": round(recall, 3)}
    print(f"{results['images']} images, {results['planted']} labels flipped ({args.flip:.0%}, seed {args.seed}); "
          f"audit {results['cold_s']} s cold (embedding every image), {results['warm_s']} s warm")
    for name in ("k_planted", "k_10pct"):
        row = results[name]
        print(f"  top {row['k']:>5} suspects: precision {row['precision']:.1%}, recall {row['recall']:.1%}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
