"""Find similar images: the nearest images of a dataset to any image, by its ImageNet embedding or by
the features of a run's model.

The vectors are either the audit's (imgclf_core.inspection.audit.compute_embeddings: EfficientNet-Lite0's
1280-d pooling output, cached by file content: independent of the labels) or a trained run's (the
features its classifier reads, predict_dataset: they know the dataset's own look-alikes, e.g. shirts from
pullovers, which ImageNet's features of 28 px clothes mostly do not), centred on the dataset's mean and
scaled to unit length. A query is exact: one matrix-vector product over every image and a partial sort, no
approximate index. Over 100,000 images that is 100,000 x 1280 float32 (512 MB) read once per query
(bench/bench_similar.py measures it). Distance is 1 - cosine similarity: 0 for the same picture,
about 1 for unrelated ones.

A neighbour whose label differs from the query's (an image of the dataset, or a label the caller
gives) is flagged: look-alikes under another label are where mislabelled images hide.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from imgclf_core.data.dataset import DatasetIndex, ImageRecord
from imgclf_core.data.images import ImageSource, decode_image, read_image_bytes

ProgressCallback = Callable[[int, int], None]
DEFAULT_TOP = 12


@dataclass(frozen=True)
class Neighbour:
    path: str
    label: str
    distance: float  # 1 - cosine similarity of the centred embeddings
    label_differs: bool  # from the query's label; False when the query has none

    def to_json_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "distance": round(self.distance, 6),
                "label_differs": self.label_differs}


IMAGENET_EMBEDDINGS = "ImageNet embeddings"


class SimilarityIndex:
    """Unit-length centred embeddings of a dataset's images, searched exactly; `embed` turns an image outside
    the dataset (path or bytes) into a raw vector of the same kind, `described` says which kind."""

    def __init__(self, records: Sequence[ImageRecord], embeddings: np.ndarray,
                 embed: Callable[[ImageSource], np.ndarray] | None = None, described: str = IMAGENET_EMBEDDINGS) -> None:
        if len(records) != len(embeddings):
            raise ValueError(f"{len(records)} records but {len(embeddings)} embeddings")
        self.embed = embed or embed_image
        self.described = described
        self.records = list(records)
        vectors = np.asarray(embeddings, dtype=np.float32)
        self.mean = vectors.mean(axis=0, dtype=np.float64).astype(np.float32) if len(vectors) else None
        self.unit = unit_rows(vectors - self.mean) if len(vectors) else vectors
        self.row_of_path = {record.path: row for row, record in enumerate(self.records)}
        self.row_of_hash: dict[str, int] = {}
        for row, record in enumerate(self.records):
            self.row_of_hash.setdefault(record.sha256, row)

    @classmethod
    def of_dataset(cls, index: DatasetIndex, progress: ProgressCallback | None = None) -> SimilarityIndex:
        """Embed the dataset's images not in the cache yet (TensorFlow only then), and index them all."""
        from imgclf_core.inspection.audit import compute_embeddings

        return cls(index.records, compute_embeddings(index, progress=progress))

    @classmethod
    def of_run(cls, predictor, index: DatasetIndex, progress: ProgressCallback | None = None,
               features: np.ndarray | None = None, run_name: str = "the run") -> SimilarityIndex:
        """By the features of a run's model (a Predictor): every image through the model once, unless the
        `features` of predict_dataset are given."""
        from imgclf_core.inspection.predict import predict_dataset

        if features is None:
            features = predict_dataset(predictor, index, progress=progress).features
        return cls(index.records, features, embed=lambda source: run_features(predictor, source),
                   described=f"the features of {run_name}'s model")

    def __len__(self) -> int:
        return len(self.records)

    def nearest_to_path(self, path: str, top: int = DEFAULT_TOP) -> list[Neighbour]:
        """The `top` images nearest to the dataset image at `path` (itself left out)."""
        row = self.row_of_path.get(path)
        if row is None:
            raise KeyError(f"not an image of this dataset: {path}")
        record = self.records[row]
        return self._nearest(self.unit[row], top, record.label, exclude_row=row)

    def nearest_to_vector(self, embedding: np.ndarray, top: int = DEFAULT_TOP, label: str | None = None,
                          exclude_path: str | None = None) -> list[Neighbour]:
        """The `top` images nearest to an image outside the index (its raw embedding)."""
        if self.mean is None:
            return []
        query = unit_rows((np.asarray(embedding, np.float32) - self.mean)[None, :])[0]
        return self._nearest(query, top, label, exclude_row=self.row_of_path.get(exclude_path or ""))

    def row_of_content(self, sha256: str) -> int | None:
        """The row of an image with these bytes, if the dataset has one."""
        return self.row_of_hash.get(sha256)

    def _nearest(self, query: np.ndarray, top: int, label: str | None, exclude_row: int | None) -> list[Neighbour]:
        similarities = self.unit @ query
        if exclude_row is not None:
            similarities[exclude_row] = -np.inf
        count = min(max(top, 0), len(similarities) - (exclude_row is not None))
        if count <= 0:
            return []
        best = np.argpartition(-similarities, count - 1)[:count]
        best = best[np.argsort(-similarities[best], kind="stable")]
        return [Neighbour(self.records[row].path, self.records[row].label, float(1.0 - similarities[row]),
                          label is not None and self.records[row].label != label)
                for row in best]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero), as C-contiguous float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def embed_image(source: ImageSource) -> np.ndarray:
    """The raw embedding of one image outside the dataset (a path, bytes: an upload), decoded as the
    dataset's images are for theirs (224 px RGB)."""
    from imgclf_core.inspection.audit import EMBEDDING_IMAGE_SIZE, embedding_function

    image = decode_image(source, color_mode="rgb", size=(EMBEDDING_IMAGE_SIZE, EMBEDDING_IMAGE_SIZE))
    return embedding_function()(image[None, ...])[0]


def run_features(predictor, source: ImageSource) -> np.ndarray:
    """The features a run's model (a Predictor) gives one image outside the dataset."""
    return predictor.features_and_probabilities(predictor.load_image(source)[None, ...])[0][0]


def query_similar(similarity: SimilarityIndex, source: ImageSource, top: int = DEFAULT_TOP,
                  label: str | None = None) -> tuple[list[Neighbour], str | None]:
    """The neighbours of any image, and the dataset path of the same bytes if the dataset has them (then
    that image is the query: its vector and label, itself left out; no TensorFlow needed)."""
    data = read_image_bytes(source)
    row = similarity.row_of_content(hashlib.sha256(data).hexdigest())
    if row is not None:
        path = similarity.records[row].path
        return similarity.nearest_to_path(path, top), path
    return similarity.nearest_to_vector(similarity.embed(data), top, label), None
