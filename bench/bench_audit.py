"""Label-audit benchmark: plant label errors in a copy of a labelled dataset and see how many the audit ranks first.

Reproduce (CPU; offline):

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_audit.py [--data sample_data/fashion_mnist]
        [--per-class 0] [--flip 0.05] [--seed 1] [--no-before] [--json out.json]

Copies --per-class images of each class (0 = all) to a temporary folder, moves --flip of them to a
random other class folder (a label error), runs `audit_dataset` twice, each time in a fresh Python
process (as a fresh app server would): cold (a fresh embedding cache, so the time includes embedding
every image) and warm (everything cached). It reports the seconds of each phase (the audit's own
progress callback) and precision and recall of the top of the ranking: among the first k suspects,
for k = the number of planted errors and k = 10% of the images.

Unless --no-before, the previous audit (kept below as `before_audit`: float64 L-BFGS heads on the
1,280 raw features, 300 iterations a fold, ranked by p(best other) - p(given); near-duplicate
thumbnails through the TensorFlow pipeline module; a full SVD for the map) runs the same way in the
same run, on the same copy, with its own fresh cache, so the two are compared side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from imgclf_core.inspection.audit import AUDIT_PHASES, audit_dataset  # noqa: E402
from imgclf_core.data.dataset import scan_dataset  # noqa: E402

VARIANTS = ("after", "before")


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


# ---------------------------------------------------------------- one measured audit (a child process)


class PhaseClock:
    """An audit progress callback that adds up the seconds spent in each phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.monotonic()

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self.last
        self.last = now


def measure(variant: str, root: Path) -> dict:
    """Scan and audit `root` once; {"seconds", "phases", "ranking", "near_duplicates"}."""
    started = time.monotonic()
    index = scan_dataset(root)
    clock = PhaseClock()
    clock.last = time.monotonic()
    if variant == "after":
        report = audit_dataset(index, progress=clock)
        ranking, groups = [suspect.path for suspect in report.suspects], report.near_duplicates
    else:
        ranking, groups = before_audit(index, clock)
    return {"seconds": time.monotonic() - started, "phases": clock.seconds, "ranking": ranking,
            "near_duplicates": len(groups)}


def before_audit(index, clock: PhaseClock) -> tuple[list[str], list[list[str]]]:
    """The audit as it was before the phase progress and the fast heads (same embeddings cache code)."""
    from imgclf_core.inspection.audit import _groups_of_pairs, _similar_pairs, compute_embeddings, stratified_folds
    from imgclf_core.config import DataConfig

    embeddings = compute_embeddings(index)
    clock(AUDIT_PHASES[0], 1, 1)
    class_names = list(index.class_names)
    labels = np.array([class_names.index(record.label) for record in index.records])
    fold_of = stratified_folds(labels, 5, 0)
    probabilities = np.zeros((len(labels), len(class_names)))
    for fold in range(5):
        held_out = fold_of == fold
        train = ~held_out
        mean, scale = embeddings[train].mean(axis=0), embeddings[train].std(axis=0) + 1e-6
        weights = _before_fit((embeddings[train] - mean) / scale, labels[train], len(class_names))
        logits = np.hstack([(embeddings[held_out] - mean) / scale, np.ones((held_out.sum(), 1))]) @ weights
        logits -= logits.max(axis=1, keepdims=True)
        probabilities[held_out] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    given = probabilities[rows, labels]
    others = probabilities.copy()
    others[rows, labels] = -1.0
    scores = others.max(axis=1) - given
    ranking = [index.records[row].path for row in sorted(rows, key=lambda row: (-scores[row], index.records[row].path))]
    clock(AUDIT_PHASES[1], 1, 1)
    from imgclf_core.data.pipeline import decode_records  # imports TensorFlow

    vectors = np.asarray(embeddings, dtype=np.float32) - np.mean(embeddings, axis=0)
    small = DataConfig(image_size=24, color_mode="grayscale", cache="memory")
    thumbnails = decode_records(index.root, index.records, small)
    pixels = thumbnails.reshape(len(index.records), -1).astype(np.float32)
    pixels -= pixels.mean(axis=1, keepdims=True)
    links = _similar_pairs(vectors, 0.95) | _similar_pairs(pixels, 0.99)
    groups = _groups_of_pairs(links, [record.path for record in index.records])
    clock(AUDIT_PHASES[2], 1, 1)
    centred = np.asarray(embeddings, dtype=np.float64) - np.mean(embeddings, axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    (centred @ directions[:2].T).astype(np.float32)
    clock(AUDIT_PHASES[3], 1, 1)
    return ranking, groups


def _before_fit(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    from scipy.optimize import minimize

    samples, dimensions = features.shape
    design = np.hstack([features, np.ones((samples, 1))])
    targets = np.zeros((samples, num_classes))
    targets[np.arange(samples), labels] = 1.0

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        weights = flat.reshape(dimensions + 1, num_classes)
        logits = design @ weights
        logits -= logits.max(axis=1, keepdims=True)
        log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -np.sum(targets * log_probabilities) / samples + 0.5 * 1e-2 * np.sum(weights[:-1] ** 2)
        gradient = design.T @ (np.exp(log_probabilities) - targets) / samples
        gradient[:-1] += 1e-2 * weights[:-1]
        return loss, gradient.ravel()

    result = minimize(loss_and_gradient, np.zeros((dimensions + 1) * num_classes), jac=True, method="L-BFGS-B",
                      options={"maxiter": 300})
    return result.x.reshape(dimensions + 1, num_classes)


def run_child(variant: str, root: Path, cache: Path) -> dict:
    """`measure` in a fresh Python process (imports and all, like a fresh app server), with `cache`."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    try:
        subprocess.run([sys.executable, __file__, "--measure", variant, "--data", str(root), "--json", str(out)],
                       check=True, env={**os.environ, "IMGCLF_CACHE_DIR": str(cache)})
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


# ---------------------------------------------------------------- the benchmark


def summary(cold: dict, warm: dict, planted: set[str]) -> dict:
    ranking = warm["ranking"]
    result = {"images": len(ranking), "planted": len(planted), "cold_s": round(cold["seconds"], 1),
              "warm_s": round(warm["seconds"], 1), "near_duplicate_groups": warm["near_duplicates"],
              "phases": {phase: {"cold_s": round(cold["phases"].get(phase, 0.0), 2),
                                 "warm_s": round(warm["phases"].get(phase, 0.0), 2)} for phase in AUDIT_PHASES}}
    for name, k in (("k_planted", len(planted)), ("k_10pct", len(ranking) // 10)):
        precision, recall = precision_recall_at(ranking, planted, k)
        result[name] = {"k": k, "precision": round(precision, 3), "recall": round(recall, 3)}
    return result


def print_table(results: dict[str, dict], flip: float, seed: int) -> None:
    names = [name for name in VARIANTS if name in results]
    first = results[names[0]]
    print(f"{first['images']} images, {first['planted']} labels flipped ({flip:.0%}, seed {seed}); seconds of a "
          "fresh process (scan + audit), cold = embedding every image")
    print(f"  {'':<34}" + "".join(f"{name:>14}" for name in names))
    rows = [("audit, cold (s)", lambda r: f"{r['cold_s']:.1f}"), ("audit, warm (s)", lambda r: f"{r['warm_s']:.1f}")]
    for phase in AUDIT_PHASES:
        rows.append((f"  {phase}, cold / warm (s)",
                     lambda r, phase=phase: f"{r['phases'][phase]['cold_s']:.2f} / {r['phases'][phase]['warm_s']:.2f}"))
    for key in ("k_planted", "k_10pct"):
        rows.append((f"top {first[key]['k']} suspects: precision", lambda r, key=key: f"{r[key]['precision']:.1%}"))
        rows.append((f"top {first[key]['k']} suspects: recall", lambda r, key=key: f"{r[key]['recall']:.1%}"))
    rows.append(("near-duplicate groups", lambda r: str(r["near_duplicate_groups"])))
    for label, value in rows:
        print(f"  {label:<34}" + "".join(f"{value(results[name]):>14}" for name in names))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sample_data/fashion_mnist")
    parser.add_argument("--per-class", type=int, default=0)
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-before", action="store_true", help="skip the previous audit (half the time)")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--measure", choices=VARIANTS, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        Path(args.json).write_text(json.dumps(measure(args.measure, Path(args.data))))
        return 0
    variants = VARIANTS[:1] if args.no_before else VARIANTS
    with tempfile.TemporaryDirectory(prefix="imgclf-audit-") as scratch:
        root = Path(scratch) / "data"
        planted = copy_with_flipped_labels(Path(args.data), root, args.per_class, args.flip, args.seed)
        results = {}
        for variant in variants:
            cache = Path(scratch) / f"cache-{variant}"
            cold = run_child(variant, root, cache)
            warm = run_child(variant, root, cache)
            results[variant] = summary(cold, warm, planted)
    print_table(results, args.flip, args.seed)
    document = {**results["after"], "before": results.get("before")}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
