"""Deterministic train/validation split by content hash: a duplicate never lands on both sides."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from imgclf_core.dataset import ImageRecord


def split_by_content_hash(
    records: tuple[ImageRecord, ...] | list[ImageRecord], validation_split: float, seed: int
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Split records into (train, validation), stratified by class, keeping identical files together."""
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
    groups: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        groups[record.sha256].append(record)
    # A group of identical files is placed by the label of its first path, so the choice is
    # stable whatever order the records come in.
    hashes_by_label: dict[str, list[str]] = defaultdict(list)
    for sha, members in groups.items():
        first = min(members, key=lambda record: record.path)
        hashes_by_label[first.label].append(sha)

    validation_hashes: set[str] = set()
    for label in sorted(hashes_by_label):
        ordered = sorted(hashes_by_label[label], key=lambda sha: _seeded_rank(sha, seed))
        count = round(len(ordered) * validation_split)
        if validation_split > 0 and count == 0 and len(ordered) >= 2:
            count = 1
        # A class with no training image cannot be learned, whatever the fraction asks for.
        count = min(count, len(ordered) - 1)
        validation_hashes.update(ordered[:count])

    train = [record for record in records if record.sha256 not in validation_hashes]
    validation = [record for record in records if record.sha256 in validation_hashes]
    return sorted(train, key=_path_key), sorted(validation, key=_path_key)


def _seeded_rank(sha: str, seed: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{sha}".encode("ascii"), digest_size=8).digest()


def _path_key(record: ImageRecord) -> str:
    return record.path
