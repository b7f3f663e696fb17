"""Similar images: exact nearest-neighbour search over centred, unit-length embeddings."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from imgclf_core.data.dataset import ImageRecord
from imgclf_core.inspection.similar import SimilarityIndex, query_similar


def record(path: str, label: str, content: bytes = b"") -> ImageRecord:
    digest = hashlib.sha256(content or path.encode()).hexdigest()
    return ImageRecord(path, label, digest, 8, 8, "L", "PNG")


def two_clusters() -> tuple[list[ImageRecord], np.ndarray]:
    """Cats around one direction, dogs around another, one 'dog' in the cats' cluster (mislabelled)."""
    rng = np.random.default_rng(0)
    cat, dog = np.zeros(16), np.zeros(16)
    cat[0], dog[1] = 10.0, 10.0
    vectors = [cat + rng.normal(0, 1, 16) for _ in range(6)] + [dog + rng.normal(0, 1, 16) for _ in range(6)]
    vectors.append(cat + rng.normal(0, 1, 16))
    records = [record(f"cat/{n}.png", "cat") for n in range(6)] + [record(f"dog/{n}.png", "dog") for n in range(6)]
    records.append(record("dog/odd.png", "dog"))
    return records, np.array(vectors, np.float32)


def test_neighbours_come_nearest_first_without_the_query_and_flag_other_labels():
    records, vectors = two_clusters()
    index = SimilarityIndex(records, vectors)
    neighbours = index.nearest_to_path("cat/0.png", top=6)
    assert "cat/0.png" not in [n.path for n in neighbours]
    assert [n.distance for n in neighbours] == sorted(n.distance for n in neighbours)
    assert {n.path for n in neighbours} == {f"cat/{k}.png" for k in range(1, 6)} | {"dog/odd.png"}
    assert [n.path for n in neighbours if n.label_differs] == ["dog/odd.png"]
    odd = index.nearest_to_path("dog/odd.png", top=5)  # a mislabelled image: its look-alikes all differ
    assert all(n.label == "cat" and n.label_differs for n in odd)
    assert all(0.0 <= n.distance <= 2.0 for n in neighbours + odd)


def test_an_outside_vector_and_the_exact_distance():
    records, vectors = two_clusters()
    index = SimilarityIndex(records, vectors)
    own = index.nearest_to_vector(vectors[3], top=1)[0]  # the same vector as a dataset image: distance 0
    assert own.path == "cat/3.png" and own.distance == pytest.approx(0.0, abs=1e-6) and not own.label_differs
    labelled = index.nearest_to_vector(vectors[3], top=3, label="dog")
    assert all(n.label_differs for n in labelled if n.label == "cat")
    centred = vectors - vectors.mean(axis=0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    expected = 1.0 - float(unit[3] @ unit[7])
    assert index.nearest_to_path("cat/3.png", top=len(records))[-1].distance >= expected - 1e-6
    assert {n.path: n.distance for n in index.nearest_to_path("cat/3.png", top=99)}["dog/1.png"] == pytest.approx(expected, abs=1e-5)
    assert len(index.nearest_to_path("cat/3.png", top=99)) == len(records) - 1


def test_a_file_with_the_bytes_of_a_dataset_image_is_that_image(tmp_path):
    records, vectors = two_clusters()
    records[2] = record("cat/2.png", "cat", content=b"the bytes of cat 2")
    index = SimilarityIndex(records, vectors)
    copy = tmp_path / "elsewhere.png"
    copy.write_bytes(b"the bytes of cat 2")
    neighbours, same_as = query_similar(index, copy, top=3)  # found by content: no embedding, no TensorFlow
    assert same_as == "cat/2.png" and neighbours == index.nearest_to_path("cat/2.png", top=3)


def test_unknown_paths_and_empty_indexes():
    records, vectors = two_clusters()
    with pytest.raises(KeyError, match="not an image of this dataset"):
        SimilarityIndex(records, vectors).nearest_to_path("cat/none.png")
    with pytest.raises(ValueError, match="13 records but 2 embeddings"):
        SimilarityIndex(records, vectors[:2])
    assert SimilarityIndex([], np.zeros((0, 16), np.float32)).nearest_to_vector(np.ones(16)) == []
