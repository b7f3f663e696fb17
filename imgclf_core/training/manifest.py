"""What a run trained on: manifest.csv, one row per image (path, content hash, label, split), written when
the run starts, and the difference between two runs' manifests.

Images are matched by content (sha256), so a file moved to another class folder is a relabelled image,
not one removed and one added; a file renamed within its class is the same image. A split is the
run's own: "train", "validation" or "test".
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from imgclf_core.data.dataset import ImageRecord
from imgclf_core.fileio import atomic_write_text

MANIFEST_COLUMNS = ("path", "sha256", "label", "split")


@dataclass(frozen=True)
class ManifestRow:
    path: str
    sha256: str
    label: str
    split: str


@dataclass(frozen=True)
class Relabelled:
    path: str  # in the later run
    before: str
    after: str
    before_path: str


@dataclass(frozen=True)
class ManifestDifference:
    """From run A to run B: images only B has, images only A has, images whose label changed."""

    added: list[ManifestRow]
    removed: list[ManifestRow]
    relabelled: list[Relabelled]
    unchanged: int

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.relabelled)

    def summary(self) -> str:
        """"120 added, 3 removed, 14 relabelled, 1,860 unchanged"."""
        return (f"{len(self.added):,} added, {len(self.removed):,} removed, {len(self.relabelled):,} relabelled, "
                f"{self.unchanged:,} unchanged")


def manifest_rows(splits: Iterable[tuple[str, Iterable[ImageRecord]]]) -> list[ManifestRow]:
    """The rows of (split name, its records) pairs, in that order."""
    return [ManifestRow(record.path, record.sha256, record.label, split) for split, records in splits for record in records]


def write_manifest(path: str | os.PathLike, rows: Iterable[ManifestRow]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for row in rows:
        writer.writerow([row.path, row.sha256, row.label, row.split])
    atomic_write_text(Path(path), buffer.getvalue())


def read_manifest(path: str | os.PathLike) -> list[ManifestRow] | None:
    """The rows, or None for a run without a manifest (made before manifests, or not started)."""
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            reader = csv.DictReader(stream)
            if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
                raise ValueError(f"{path}: not a run manifest (columns {reader.fieldnames})")
            return [ManifestRow(row["path"], row["sha256"], row["label"], row["split"]) for row in reader]
    except FileNotFoundError:
        return None


def manifest_difference(before: list[ManifestRow], after: list[ManifestRow]) -> ManifestDifference:
    """What changed in the data from the run with manifest `before` to the one with `after`, by content."""
    first_before = _first_by_hash(before)
    first_after = _first_by_hash(after)
    added = [row for sha, row in first_after.items() if sha not in first_before]
    removed = [row for sha, row in first_before.items() if sha not in first_after]
    relabelled = [Relabelled(row.path, first_before[sha].label, row.label, first_before[sha].path)
                  for sha, row in first_after.items() if sha in first_before and first_before[sha].label != row.label]
    unchanged = sum(1 for sha, row in first_after.items() if sha in first_before and first_before[sha].label == row.label)
    return ManifestDifference(added, removed, relabelled, unchanged)


def _first_by_hash(rows: list[ManifestRow]) -> dict[str, ManifestRow]:
    first: dict[str, ManifestRow] = {}
    for row in rows:
        first.setdefault(row.sha256, row)
    return first
