"""The train/validation/test split of a dataset.

Split folders given by the dataset (train/validation/test) are kept as they are. Whatever has no
given validation part is split deterministically by content hash, so a duplicate never lands on
both sides. The test split is only ever what the dataset gives: it is held out from training,
early stopping and model choice, and evaluated at the end.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from dataclasses import dataclass

from imgclf_core.data.dataset import TEST, VALIDATION, DatasetError, ImageRecord


@dataclass(frozen=True)
class SplitRecords:
    """The records of each split, each sorted by path."""

    train: list[ImageRecord]
    validation: list[ImageRecord]
    test: list[ImageRecord]


def split_records(
    records: tuple[ImageRecord, ...] | list[ImageRecord], validation_split: float, seed: int
) -> SplitRecords:
    """Given splits as they are; without a given validation split, one made by content hash from the rest."""
    test = sorted((record for record in records if record.split == TEST), key=_path_key)
    given_validation = sorted((record for record in records if record.split == VALIDATION), key=_path_key)
    rest = [record for record in records if record.split not in (TEST, VALIDATION)]
    if given_validation:
        return SplitRecords(sorted(rest, key=_path_key), given_validation, test)
    train, validation = split_by_content_hash(rest, validation_split, seed)
    return SplitRecords(train, validation, test)


def check_trainable_classes(splits: SplitRecords, class_names: list[str] | tuple[str, ...]) -> None:
    """Every class must have training images; one that only the test (or validation) split has cannot be learnt."""
    trained = {record.label for record in splits.train}
    for name in class_names:
        if name in trained:
            continue
        where = sorted({record.split or "validation" for record in splits.validation + splits.test
                        if record.label == name})
        raise DatasetError(
            f"class '{name}' has no training images (only in the {' and '.join(where)} split): "
            "add some to its train folder, or remove the class"
        )


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
