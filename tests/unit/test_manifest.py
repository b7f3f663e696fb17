"""Run manifests: written and read back, and the data difference between two runs, by content."""

from __future__ import annotations

import pytest

from imgclf_core.training.manifest import (
    ManifestRow, manifest_difference, read_manifest, write_manifest,
)


def row(path: str, sha: str, split: str = "train") -> ManifestRow:
    return ManifestRow(path, sha, path.split("/")[0], split)


def test_the_manifest_round_trips_and_a_foreign_csv_is_refused(tmp_path):
    rows = [row("cat/1.png", "a"), row("dog/2.png", "b", "validation"), row("dog/with, comma.png", "c", "test")]
    write_manifest(tmp_path / "manifest.csv", rows)
    assert read_manifest(tmp_path / "manifest.csv") == rows
    assert read_manifest(tmp_path / "none.csv") is None
    (tmp_path / "other.csv").write_text("path,true,predicted\n")
    with pytest.raises(ValueError, match="not a run manifest"):
        read_manifest(tmp_path / "other.csv")


def test_the_difference_matches_images_by_content_across_moves_and_renames():
    before = [row("cat/1.png", "a"), row("cat/2.png", "b"), row("dog/3.png", "c"), row("dog/4.png", "d")]
    after = [row("cat/1.png", "a"),  # unchanged
             row("dog/2.png", "b"),  # moved to another class: relabelled
             row("dog/three.png", "c"),  # renamed in its class: the same image
             row("cat/5.png", "e")]  # new; d is gone
    difference = manifest_difference(before, after)
    assert [(item.before_path, item.path, item.before, item.after) for item in difference.relabelled] == [
        ("cat/2.png", "dog/2.png", "cat", "dog")]
    assert [item.path for item in difference.added] == ["cat/5.png"]
    assert [item.path for item in difference.removed] == ["dog/4.png"]
    assert difference.unchanged == 2 and not difference.same
    assert difference.summary() == "1 added, 1 removed, 1 relabelled, 2 unchanged"
    assert manifest_difference(before, before).same
