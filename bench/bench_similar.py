"""Similar-image queries over N images: the exact search of imgclf_core.inspection.similar, warm.

    .venv/bin/python bench/bench_similar.py [--images 100000] [--queries 50]

The index holds N embeddings of 1280 float32 (EfficientNet-Lite0's pooling output, the audit's cache).
Exact search costs the same whatever the vectors hold, so they are drawn at random here (embedding
100,000 real images takes hours on 2 CPU cores); the records are fake paths in 10 classes. Prints the
time to build the index (centring, normalising), its memory, and the median and 95th-percentile time
of a query by dataset path and by an outside vector, top 12.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imgclf_core.data.dataset import ImageRecord  # noqa: E402
from imgclf_core.inspection.similar import SimilarityIndex  # noqa: E402

DIMENSIONS = 1280


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    embeddings = np.abs(rng.normal(0, 1, (args.images, DIMENSIONS))).astype(np.float32)  # ReLU-like, >= 0
    records = [ImageRecord(f"class{n % 10}/{n:06d}.png", f"class{n % 10}", hashlib.sha256(str(n).encode()).hexdigest(),
                           64, 64, "RGB", "PNG") for n in range(args.images)]
    started = time.perf_counter()
    index = SimilarityIndex(records, embeddings)
    build = time.perf_counter() - started
    by_path, by_vector = [], []
    for number in range(args.queries + 3):  # the first three warm up BLAS and the caches
        started = time.perf_counter()
        index.nearest_to_path(records[(number * 7919) % args.images].path, top=12)
        middle = time.perf_counter()
        index.nearest_to_vector(embeddings[(number * 104729) % args.images] + 0.01, top=12)
        done = time.perf_counter()
        if number >= 3:
            by_path.append(middle - started)
            by_vector.append(done - middle)
    print(f"similar-image search, {args.images:,} images x {DIMENSIONS} float32 (exact: one matrix-vector product "
          f"and a partial sort per query)")
    print(f"  index build (centre, normalise): {build:.2f} s; vectors in memory {index.unit.nbytes / 1e6:.0f} MB")
    for name, times in (("query by a dataset image", by_path), ("query by an outside vector", by_vector)):
        print(f"  {name:<28} median {np.median(times) * 1000:6.1f} ms, 95th percentile "
              f"{np.percentile(times, 95) * 1000:6.1f} ms ({len(times)} queries, top 12)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
