"""Offline label audit: ImageNet embeddings, out-of-fold linear heads, likely label errors, near-duplicates.

1. Every image is embedded once by the offline EfficientNet-Lite0 backbone (its 1280-d global
   pooling output); vectors are cached by file content hash, so a relabelled (moved) file is not
   embedded again.
2. K cross-validated softmax-regression heads on those vectors (standardised) give every labelled
   image class probabilities from a head that never saw its label (out-of-fold).
3. Suspects are ranked by score = log10(p(best other class) / p(given label)): +1 means another class
   is 10 times likelier than the label, +2 a hundred times; above 0 the image looks more like another
   class to a model that did not learn its label. Taken from the heads' logits, it never saturates
   (a probability difference tops out at +1.00 for every confident mistake).
4. Near-duplicates: cosine similarity of centred embeddings, or of small contrast-normalised
   thumbnails (cached by content hash too), above a threshold, grouped.
5. The map: the embeddings projected on their two main directions (PCA).

`audit_dataset` reports each phase (`AUDIT_PHASES`) to its progress callback as it goes. Nothing here
imports TensorFlow unless an image has no cached embedding yet.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from imgclf_core.config import DataConfig
from imgclf_core.data.dataset import DatasetError, DatasetIndex, ImageRecord, encode_labels
from imgclf_core.models.features import (
    feature_cache_file, feature_cache_key, load_feature_cache, save_feature_cache, unique_by_hash,
)

ProgressCallback = Callable[[int, int], None]
# progress(phase, done, total): one of AUDIT_PHASES, in that order, each from (0, total) to (total, total).
AuditProgress = Callable[[str, int, int], None]
PHASE_EMBEDDINGS = "Embedding images"
PHASE_HEADS = "Out-of-fold heads"
PHASE_DUPLICATES = "Near-duplicates"
PHASE_MAP = "Map"
AUDIT_PHASES = (PHASE_EMBEDDINGS, PHASE_HEADS, PHASE_DUPLICATES, PHASE_MAP)

EMBEDDING_IMAGE_SIZE = 224
# The features of a transfer-learning run of efficientnet_lite0 at 224 px: the same vectors, one cache.
AUDIT_FEATURES_KEY = feature_cache_key("efficientnet_lite0", EMBEDDING_IMAGE_SIZE)
DEFAULT_FOLDS = 5
DEFAULT_DUPLICATE_SIMILARITY = 0.95
DEFAULT_PIXEL_SIMILARITY = 0.99
THUMBNAIL_SIDE = 24
THUMBNAILS_KEY = f"pixels-{THUMBNAIL_SIDE}-grayscale"  # the near-duplicate thumbnails, cached like features
TINY_IMAGE_PIXELS = 64 * 64  # below this median size one decoding thread is fastest (imgclf_core.parallel)
L2_PENALTY = 1e-2
# The heads stop when an L-BFGS step improves the loss by less than this (relative) or the gradient is
# this small: about 40 steps a fold on the Fashion-MNIST sample instead of 120 at 1e-8, for the same
# ranking quality (planted errors in the first k suspects, 3 seeds: 76.7% at 1e-5, 77.0% at 1e-8).
HEAD_TOLERANCE = 1e-5
HEAD_MAX_ITERATIONS = 500
MAP_SAMPLE = 20_000  # rows the map's principal directions are computed from (every row is projected)


@dataclass(frozen=True)
class Suspect:
    path: str
    given: str
    suggested: str
    score: float  # log10(p(suggested) / p(given)): > 0 looks more like `suggested` than like its label
    given_probability: float = math.nan
    suggested_probability: float = math.nan


@dataclass(frozen=True)
class AuditReport:
    class_names: list[str]
    suspects: list[Suspect]  # every labelled image, most suspicious first
    near_duplicates: list[list[str]]
    probabilities: np.ndarray  # out-of-fold, (N, K), in index.records order
    map_2d: np.ndarray  # (N, 2) PCA coordinates of the embeddings, for a scatter plot

    def to_json_dict(self, path_prefix: str | None = None) -> dict:
        """The `imgclf audit --json` document."""
        def shown(path: str) -> str:
            return os.path.join(path_prefix, path) if path_prefix else path

        return {
            "suspects": [{"path": shown(item.path), "given": item.given, "suggested": item.suggested,
                          "score": round(item.score, 6),
                          "given_probability": _significant(item.given_probability),
                          "suggested_probability": _significant(item.suggested_probability)}
                         for item in self.suspects],
            "near_duplicates": [[shown(path) for path in group] for group in self.near_duplicates],
        }


def _significant(value: float, digits: int = 6) -> float | None:
    """A probability with `digits` significant digits (1e-12 stays 1e-12, not 0.0); None when unknown."""
    return None if math.isnan(value) else float(f"{value:.{digits}g}")


def audit_dataset(
    index: DatasetIndex,
    folds: int = DEFAULT_FOLDS,
    duplicate_similarity: float = DEFAULT_DUPLICATE_SIMILARITY,
    progress: AuditProgress | None = None,
) -> AuditReport:
    """Rank likely label errors and group near-duplicates of a scanned dataset.

    `progress(phase, done, total)` hears every phase of AUDIT_PHASES, in order, from (0, total) to
    (total, total): embedded images, fitted folds, decoded thumbnails and compared rows, then the map.
    """
    if len(index.class_names) < 2:
        raise ValueError(f"{index.root}: the audit needs at least two classes with images")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")

    def phase(name: str) -> ProgressCallback:
        return (lambda done, total: progress(name, done, total)) if progress else (lambda done, total: None)

    embeddings = compute_embeddings(index, progress=phase(PHASE_EMBEDDINGS))
    class_names = list(index.class_names)
    labels = encode_labels(index.records, class_names)
    log_probabilities = out_of_fold_log_probabilities(embeddings, labels, len(class_names), folds,
                                                      progress=phase(PHASE_HEADS))
    near_duplicates = near_duplicate_groups(index.root, index.records, embeddings, duplicate_similarity,
                                            progress=phase(PHASE_DUPLICATES))
    report_map = phase(PHASE_MAP)
    report_map(0, 1)
    map_2d = pca_projection(embeddings, 2)
    report_map(1, 1)
    probabilities = np.exp(log_probabilities)
    return AuditReport(
        class_names=class_names,
        suspects=rank_suspects(index.records, labels, probabilities, class_names, log_probabilities=log_probabilities),
        near_duplicates=near_duplicates,
        probabilities=probabilities,
        map_2d=map_2d,
    )


# ---------------------------------------------------------------- embeddings


def compute_embeddings(index: DatasetIndex, progress: ProgressCallback | None = None) -> np.ndarray:
    """(N, 1280) float32 embeddings of the records, from the shared features cache where possible.

    `progress(done, total)` counts distinct images (by content), the cached ones done from the start.
    """
    cache_file = embedding_cache_file()
    vectors = load_feature_cache(cache_file)
    distinct = unique_by_hash(index.records)
    missing = [record for record in distinct if record.sha256 not in vectors]
    cached = len(distinct) - len(missing)
    if progress:
        progress(cached, len(distinct))
    if missing:
        on_the_way = (lambda done, _: progress(cached + done, len(distinct))) if progress else None
        vectors.update(_embed_records(index.root, missing, on_the_way))
        save_feature_cache(cache_file, vectors)
        if progress:
            progress(len(distinct), len(distinct))
    return np.stack([vectors[record.sha256] for record in index.records]) if index.records else np.zeros((0, 0))


def embedding_cache_file() -> Path:
    return feature_cache_file(AUDIT_FEATURES_KEY)


def _embed_records(root: Path, records: list[ImageRecord], progress: ProgressCallback | None) -> dict[str, np.ndarray]:
    from imgclf_core.models.features import embed_records

    data_config = DataConfig(image_size=EMBEDDING_IMAGE_SIZE, color_mode="rgb", cache="memory")
    return embed_records(root, records, data_config, embedding_function(), progress)


@functools.lru_cache(maxsize=1)
def embedding_function():
    """The ImageNet EfficientNet-Lite0 up to its global pooling, as a compiled uint8 -> float32 call
    (built once per process: similar-image queries of uploads reuse it)."""
    from imgclf_core.tf_quiet import import_tensorflow_quietly

    import_tensorflow_quietly()  # only images not embedded yet need TensorFlow: a warm audit never loads it
    from imgclf_core.models.efficientnet_lite import imagenet_efficientnet_lite0
    from imgclf_core.models.features import compiled_embed_function

    return compiled_embed_function(imagenet_efficientnet_lite0(EMBEDDING_IMAGE_SIZE, channels=3))


# ---------------------------------------------------------------- out-of-fold heads


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int = DEFAULT_FOLDS, seed: int = 0
) -> np.ndarray:
    """Class probabilities for every row from a softmax-regression head trained on the other folds."""
    return np.exp(out_of_fold_log_probabilities(features, labels, num_classes, folds, seed))


def out_of_fold_log_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int = DEFAULT_FOLDS, seed: int = 0,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Natural-log class probabilities (N, K, float64) for every row, from a head that never saw its label.

    The features are standardised once over all rows (no labels involved), in float32; each fold's
    fit starts from zero (a start fitted on other folds would carry the held-out rows' labels into a fit
    that stops early; measured on the sample, starting from the last fold's weights saved nothing) and
    stops at HEAD_TOLERANCE; BLAS runs on one thread meanwhile (see `one_blas_thread`).
    `progress(folds done, folds)`. All 1,280 dimensions are kept: the top 128-512 principal directions
    fit faster but rank planted errors worse (65-73% of the first k suspects instead of 77%).
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    standardised = standardise(features)
    fold_of = stratified_folds(labels, folds, seed)
    log_probabilities = np.zeros((len(labels), num_classes), dtype=np.float64)
    if progress:
        progress(0, folds)
    with one_blas_thread():
        for fold in range(folds):
            held_out = fold_of == fold
            if held_out.any():
                weights = fit_softmax_regression(standardised[~held_out], labels[~held_out], num_classes)
                log_probabilities[held_out] = log_softmax(_logits(standardised[held_out], weights))
            if progress:
                progress(fold + 1, folds)
    return log_probabilities


def standardise(features: np.ndarray) -> np.ndarray:
    """Each column centred and scaled to unit variance (float32); constant columns stay zero."""
    values = np.asarray(features, dtype=np.float32)
    mean = values.mean(axis=0, dtype=np.float64).astype(np.float32)
    scale = values.std(axis=0, dtype=np.float64).astype(np.float32) + np.float32(1e-6)
    return (values - mean) / scale


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per row, each class spread evenly over the folds, shuffled by `seed`."""
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        fold_of[rng.permutation(members)] = np.arange(len(members)) % folds
    return fold_of


def fit_softmax_regression(features: np.ndarray, labels: np.ndarray, num_classes: int,
                           l2: float = L2_PENALTY, max_iterations: int = HEAD_MAX_ITERATIONS,
                           tolerance: float = HEAD_TOLERANCE) -> np.ndarray:
    """Weights (D + 1, K) of an L2-regularised multinomial logistic regression, fitted with L-BFGS.

    Loss and gradient are computed in float32 (the cost is two (N, D) x (D, K) products per step),
    from zero weights.
    """
    from scipy.optimize import minimize

    samples, dimensions = features.shape
    design = np.hstack([np.asarray(features, dtype=np.float32), np.ones((samples, 1), np.float32)])
    targets = np.zeros((samples, num_classes), dtype=np.float32)
    targets[np.arange(samples), labels] = 1.0

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        weights = flat.reshape(dimensions + 1, num_classes).astype(np.float32)
        log_probabilities = log_softmax(design @ weights)
        penalty = 0.5 * l2 * float(np.sum(np.square(flat.reshape(dimensions + 1, num_classes)[:-1])))
        loss = -float(np.sum(targets * log_probabilities, dtype=np.float64)) / samples + penalty
        gradient = design.T @ (np.exp(log_probabilities) - targets)
        gradient /= samples
        gradient[:-1] += l2 * weights[:-1]
        return loss, gradient.ravel().astype(np.float64)

    result = minimize(loss_and_gradient, np.zeros((dimensions + 1) * num_classes), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iterations, "ftol": tolerance, "gtol": tolerance})
    return result.x.reshape(dimensions + 1, num_classes)


def _logits(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.asarray(features, dtype=np.float64) @ weights[:-1] + weights[-1]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_scores(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(_logits(features, weights)))


def rank_suspects(records: Sequence[ImageRecord], labels: np.ndarray, probabilities: np.ndarray,
                  class_names: Sequence[str], log_probabilities: np.ndarray | None = None) -> list[Suspect]:
    """Every image with score = log10(p(best other class) / p(given class)), most suspicious first.

    Pass `log_probabilities` (natural log) where they are known: a probability that rounds to 0 or 1
    still has a finite log. Ties keep the path order.
    """
    rows = np.arange(len(labels))
    if log_probabilities is None:
        log_probabilities = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), np.finfo(np.float64).tiny))
    others = np.array(log_probabilities, dtype=np.float64)
    others[rows, labels] = -np.inf
    suggested = others.argmax(axis=1)
    scores = (others[rows, suggested] - log_probabilities[rows, labels]) / math.log(10)
    order = sorted(range(len(labels)), key=lambda row: (-scores[row], records[row].path))
    return [Suspect(records[row].path, class_names[labels[row]], class_names[suggested[row]], float(scores[row]),
                    float(probabilities[row, labels[row]]), float(probabilities[row, suggested[row]]))
            for row in order]


# ---------------------------------------------------------------- near-duplicates and the map


def near_duplicate_groups(
    root: str | os.PathLike,
    records: Sequence[ImageRecord],
    embeddings: np.ndarray,
    embedding_similarity: float = DEFAULT_DUPLICATE_SIMILARITY,
    pixel_similarity: float = DEFAULT_PIXEL_SIMILARITY,
    progress: ProgressCallback | None = None,
) -> list[list[str]]:
    """Groups of paths that are near-copies of each other (exact copies included).

    Two images are linked when their centred embeddings have cosine similarity >= embedding_similarity
    (the same picture, however re-encoded), or when their small grayscale thumbnails (contrast
    normalised) have cosine similarity >= pixel_similarity: measured on Fashion-MNIST, a resized and
    JPEG re-encoded copy scores >= 0.996 on 24 px thumbnails while the closest distinct pair scores 0.976.
    `progress(done, total)` counts the images whose thumbnails are ready (cached ones at once), then the
    rows of each of the two pair searches (every image against every other: at 100,000 images these take
    minutes, the thumbnails only the first time).
    """
    if len(records) < 2:
        if progress:
            progress(len(records), len(records))
        return []
    steps = len(unique_by_hash(records)) + 2 * len(records)
    vectors = np.asarray(embeddings, dtype=np.float32)
    vectors = vectors - vectors.mean(axis=0, dtype=np.float64).astype(np.float32)
    pixels = thumbnail_vectors(root, records, (lambda done, _: progress(done, steps)) if progress else None)
    pixels -= pixels.mean(axis=1, keepdims=True)
    searched = steps - 2 * len(records)

    def rows_done(done: int) -> None:
        if progress:
            progress(searched + done, steps)

    links = _similar_pairs(vectors, embedding_similarity, progress=rows_done)
    searched += len(records)
    links |= _similar_pairs(pixels, pixel_similarity, progress=rows_done)
    return _groups_of_pairs(links, [record.path for record in records])


def thumbnail_vectors(root: str | os.PathLike, records: Sequence[ImageRecord],
                      progress: ProgressCallback | None = None) -> np.ndarray:
    """(N, THUMBNAIL_SIDE**2) float32 grayscale thumbnails, decoded once per content hash and cached.

    Raises DatasetError when a file can no longer be read (it changed after the scan).
    """
    from imgclf_core.data.images import ImageDecodeError, decode_image
    from imgclf_core.parallel import decode_thread_count, map_in_threads

    cache_file = feature_cache_file(THUMBNAILS_KEY)
    vectors = load_feature_cache(cache_file)
    distinct = unique_by_hash(records)
    missing = [record for record in distinct if record.sha256 not in vectors]
    cached = len(distinct) - len(missing)
    if progress:
        progress(cached, len(distinct))
    if missing:
        def decode_one(record: ImageRecord) -> np.ndarray:
            path = Path(root) / record.path
            try:
                image = decode_image(path, color_mode="grayscale", size=(THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            except ImageDecodeError as error:
                raise DatasetError(f"{path}: {error} (the file changed after the scan; scan again)") from error
            return image.reshape(-1).astype(np.float32)

        tiny = np.median([record.width * record.height for record in missing]) < TINY_IMAGE_PIXELS
        on_the_way = (lambda done, _: progress(cached + done, len(distinct))) if progress else None
        decoded = map_in_threads(decode_one, missing, decode_thread_count(bool(tiny)), on_the_way)
        vectors.update((record.sha256, vector) for record, vector in zip(missing, decoded))
        save_feature_cache(cache_file, vectors)
    return np.stack([vectors[record.sha256] for record in records]).astype(np.float32)


def _similar_pairs(vectors: np.ndarray, threshold: float, chunk: int = 1024,
                   progress: Callable[[int], None] | None = None) -> set[tuple[int, int]]:
    """(i, j), i < j, whose rows have cosine similarity >= threshold (chunked: never an N x N matrix; each
    chunk of rows only against itself and the rows after it, half the products of the whole square).
    `progress(rows done)` after each chunk."""
    unit = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    pairs: set[tuple[int, int]] = set()
    for start in range(0, len(unit), chunk):
        rows, columns = np.nonzero(unit[start:start + chunk] @ unit[start:].T >= threshold)
        pairs.update((int(row), int(column)) for row, column in zip(rows + start, columns + start) if column > row)
        if progress:
            progress(min(start + chunk, len(unit)))
    return pairs


def _groups_of_pairs(pairs: set[tuple[int, int]], paths: list[str]) -> list[list[str]]:
    parent = list(range(len(paths)))

    def root(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for first, second in pairs:
        parent[root(second)] = root(first)
    groups: dict[int, list[str]] = {}
    for item in range(len(paths)):
        groups.setdefault(root(item), []).append(paths[item])
    return sorted((sorted(group) for group in groups.values() if len(group) > 1), key=lambda group: group[0])


def pca_projection(features: np.ndarray, dimensions: int, sample: int = MAP_SAMPLE) -> np.ndarray:
    """Centred features projected on their top principal directions (float32).

    The directions are the top eigenvectors of the (D, D) covariance of at most `sample` evenly
    spaced rows (a full SVD of every row costs more and draws the same map); each is signed so that
    its largest coefficient is positive, so the map does not flip between runs.
    """
    from scipy.linalg import eigh

    values = np.asarray(features, dtype=np.float32)
    centred = values - values.mean(axis=0, dtype=np.float64).astype(np.float32)
    rows = centred[np.linspace(0, len(centred) - 1, sample).astype(int)] if len(centred) > sample else centred
    covariance = (rows.T @ rows).astype(np.float64)
    count = min(dimensions, len(covariance))
    _, vectors = eigh(covariance, subset_by_index=[len(covariance) - count, len(covariance) - 1])
    directions = vectors[:, ::-1]  # largest eigenvalue first
    directions *= np.sign(directions[np.abs(directions).argmax(axis=0), np.arange(count)])
    return (centred @ directions.astype(np.float32)).astype(np.float32)


# ---------------------------------------------------------------- BLAS threads

# The heads make hundreds of small BLAS calls (two (N, D) x (D, K) products per L-BFGS step, and the
# optimiser's own dot products over 12,810 weights). OpenBLAS splits each over every core; on 2 busy
# cores (a Streamlit server, TensorFlow's threads, other programs) each split call waits for a core,
# and the heads took 2-4 s instead of 0.6 s. One thread is not slower at these sizes. (The big products
# of the near-duplicate search do gain from every core: 1.5 s instead of 2.7 s at 10,000 images.)
_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict = {"depth": 0, "saved": []}


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with numpy's and scipy's bundled OpenBLAS on one thread each, then restore.

    Process-wide while any caller is inside (nested and concurrent callers restore once, at the last
    exit). A no-op where the BLAS is another library (MKL, Accelerate) or cannot be found.
    """
    with _BLAS_LOCK:
        if _BLAS_STATE["depth"] == 0:
            _BLAS_STATE["saved"] = [(set_threads, get_threads()) for set_threads, get_threads in _bundled_openblas()]
            for set_threads, _ in _BLAS_STATE["saved"]:
                set_threads(1)
        _BLAS_STATE["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["depth"] -= 1
            if _BLAS_STATE["depth"] == 0:
                for set_threads, threads in _BLAS_STATE["saved"]:
                    set_threads(threads)


@functools.lru_cache(maxsize=1)
def _bundled_openblas() -> list[tuple[Callable[[int], None], Callable[[], int]]]:
    """(set, get) thread-count functions of the OpenBLAS libraries numpy's and scipy's wheels bundle."""
    import numpy
    import scipy

    names = [("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
             ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
             ("openblas_set_num_threads", "openblas_get_num_threads")]
    found = []
    for package in (numpy, scipy):
        folder = Path(package.__file__).parent
        bundled = [*folder.parent.glob(f"{folder.name}.libs/*openblas*"), *folder.glob(".dylibs/*openblas*")]
        for library in sorted(bundled):
            try:
                handle = ctypes.CDLL(str(library))
            except OSError:
                continue
            for set_name, get_name in names:
                if hasattr(handle, set_name) and hasattr(handle, get_name):
                    getter = getattr(handle, get_name)
                    getter.restype = ctypes.c_int
                    found.append((getattr(handle, set_name), getter))
                    break
    return found


def duplicate_group_notes(group: Sequence[str], labels_by_path: dict[str, str], validation_paths: set[str]) -> list[str]:
    """Why a near-duplicate group matters: its members span classes, or train and validation."""
    notes = []
    if len({labels_by_path.get(path) for path in group}) > 1:
        notes.append("across classes")
    sides = {path in validation_paths for path in group}
    if len(sides) > 1:
        notes.append("across train/validation")
    return notes
