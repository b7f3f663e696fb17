"""`imgclf scan` as a user runs it: a real subprocess, JSON on stdout, one-line errors, exit codes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import run_imgclf
from helpers.files import SAMPLE
from PIL import Image

from imgclf_core.cli import StderrProgressBar


def png_bytes(value: int, size=(10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def messy_tree(tmp_path):
    """A dataset with good, broken, odd and duplicate files, beyond the decode matrix."""
    root = tmp_path / "messy data"
    cats, dogs, empty = root / "cats", root / "chiens été", root / "empty"
    for folder in (cats, dogs, empty, root / "_inbox", root / ".git"):
        folder.mkdir(parents=True)
    (cats / "a.png").write_bytes(png_bytes(10))
    (cats / "b.png").write_bytes(png_bytes(20))
    (cats / "copy of a.png").write_bytes(png_bytes(10))
    (dogs / "a.png").write_bytes(png_bytes(10))  # same bytes as cats/a.png: conflicting labels
    (dogs / "c.PNG").write_bytes(png_bytes(30))
    (dogs / "photo.jpg").write_bytes(png_bytes(40))  # PNG named .jpg: fine, decoded by content
    (dogs / "half.png").write_bytes(png_bytes(50, (64, 64))[:60])
    (dogs / "notes.txt").write_text("hello")
    (dogs / "vector.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (dogs / "zero.png").write_bytes(b"")
    (dogs / "._c.PNG").write_bytes(b"\x00\x05\x16\x07")
    (root / "README.md").write_text("about")
    (root / "_inbox" / "new.png").write_bytes(png_bytes(60))
    os.symlink("/etc/hostname", cats / "escape.png")
    return root


def test_scan_json_reports_counts_reasons_and_duplicates(messy_tree):
    result = run_imgclf("scan", str(messy_tree), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["num_images"] == 6
    assert document["classes"] == {"cats": 3, "chiens été": 3, "empty": 0}
    reasons = {Path(item["path"]).relative_to(messy_tree).as_posix(): item["reason"] for item in document["skipped"]}
    assert reasons == {
        ".git": "hidden folder",
        "README.md": "not in a class folder",
        "cats/escape.png": "symlink outside dataset root",
        "chiens été/._c.PNG": "AppleDouble metadata file",
        "chiens été/half.png": "truncated: image file is truncated",
        "chiens été/notes.txt": "not an image: no known image signature",
        "chiens été/vector.svg": "unsupported format: SVG",
        "chiens été/zero.png": "empty file",
    }
    assert document["duplicates"] == [
        [str(messy_tree / "cats/a.png"), str(messy_tree / "cats/copy of a.png"), str(messy_tree / "chiens été/a.png")]
    ]
    assert any(warning.startswith("empty class: 'empty'") for warning in document["warnings"])
    assert any(warning.startswith("conflicting labels") for warning in document["warnings"])
    assert "Traceback" not in result.stderr


def test_scan_text_output_lists_classes_and_skips(messy_tree):
    result = run_imgclf("scan", str(messy_tree))
    assert result.returncode == 0, result.stderr
    assert "6 images in 2 classes" in result.stdout
    assert "zero.png: empty file" in result.stdout


@pytest.mark.parametrize("make_target, message", [
    (lambda tmp: tmp / "missing", "dataset folder not found"),
    (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt", "not a folder"),
])
def test_scan_bad_path_is_one_line_and_exit_2(tmp_path, make_target, message):
    target = make_target(tmp_path)
    result = run_imgclf("scan", str(target), "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(target) in lines[0]


def test_scan_usage_error_is_exit_2():
    assert run_imgclf("scan").returncode == 2


def test_scan_of_the_sample_data_is_clean():
    result = run_imgclf("scan", str(SAMPLE), "--json")
    document = json.loads(result.stdout)
    assert document["num_images"] == 2000
    assert set(document["classes"].values()) == {200}
    assert document["skipped"] == [] and document["duplicates"] == []


def test_progress_bar_draws_for_big_totals_only():
    stream = io.StringIO()
    bar = StderrProgressBar("scan", stream=stream, min_total=100)
    bar(5, 10)
    assert stream.getvalue() == ""
    for done in range(0, 1001, 50):
        bar(done, 1000)
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("scan 100% |") and lines[-1].endswith("1000/1000 [0s<0s]")
    assert len(lines) == 11  # not a terminal: one line per 10%
