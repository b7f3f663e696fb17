"""The label audit: planted label errors and near-duplicates in real Fashion-MNIST images are found."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from bench_audit import copy_with_flipped_labels  # noqa: E402  (the benchmark plants errors the same way)

from imgclf_core import audit  # noqa: E402
from imgclf_core.audit import (  # noqa: E402
    duplicate_group_notes, out_of_fold_probabilities, rank_suspects, stratified_folds,
)
from imgclf_core.dataset import ImageRecord, scan_dataset  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "fashion_mnist"
PER_CLASS = 30
FLIPPED_FRACTION = 0.05


def planted_dataset(root: Path, seed: int = 7) -> tuple[set[str], list[tuple[str, str]]]:
    """10 classes x 30 real images; 5% moved to a wrong class; 5 resized + JPEG re-encoded copies.

    Returns (flipped paths, near-duplicate pairs), relative to root.
    """
    flipped = copy_with_flipped_labels(SAMPLE, root, PER_CLASS, FLIPPED_FRACTION, seed)
    rng = random.Random(seed)
    pairs = []
    for source in rng.sample(sorted(path for path in root.rglob("*.png") if "flipped" not in path.name), 5):
        copy = source.parent / f"copy-{source.stem}.jpg"
        Image.open(source).convert("L").resize((36, 36), Image.Resampling.BICUBIC).save(copy, quality=85)
        pairs.append((str(source.relative_to(root)), str(copy.relative_to(root))))
    return flipped, pairs


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted dataset and its audit, computed once (with a private cache folder)."""
    root = tmp_path_factory.mktemp("audit") / "data"
    flipped, pairs = planted_dataset(root)
    cache = tmp_path_factory.mktemp("audit-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGCLF_CACHE_DIR", str(cache))
        report = audit.audit_dataset(scan_dataset(root))
    return root, flipped, pairs, report, cache


@pytest.mark.slow
def test_the_audit_ranks_planted_label_errors_near_the_top(planted):
    root, flipped, _, report, _ = planted
    top = {suspect.path for suspect in report.suspects[:len(report.suspects) // 10]}
    found = len(flipped & top) / len(flipped)
    assert found >= 0.7, f"only {found:.0%} of the flipped images are in the top 10% of suspects"
    first = report.suspects[0]
    assert first.path in flipped and first.suggested != first.given and first.score > 0
    assert [suspect.score for suspect in report.suspects] == sorted((s.score for s in report.suspects), reverse=True)


@pytest.mark.slow
def test_the_audit_groups_planted_near_duplicates_and_nothing_else(planted):
    _, _, pairs, report, _ = planted
    assert sorted(report.near_duplicates) == sorted(sorted(pair) for pair in pairs)
    assert report.map_2d.shape == (len(report.suspects), 2)


@pytest.mark.slow
def test_audit_cli_json_follows_the_contract_and_reuses_cached_embeddings(planted, tmp_path, monkeypatch):
    root, flipped, _, report, _ = planted
    result = subprocess.run([sys.executable, "-m", "imgclf_core.cli", "audit", str(root), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"suspects", "near_duplicates"}
    assert set(document["suspects"][0]) == {"path", "given", "suggested", "score"}
    assert len(document["suspects"]) == len(report.suspects)
    assert document["suspects"][0]["path"].startswith(str(root))
    bad = subprocess.run([sys.executable, "-m", "imgclf_core.cli", "audit", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "missing" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_cached_embeddings_are_not_computed_again(tmp_path, monkeypatch):
    from helpers import png_bytes, write

    for number in range(3):
        write(tmp_path / "data", f"a/{number}.png", png_bytes(number))
        write(tmp_path / "data", f"b/{number}.png", png_bytes(10 + number))
    index = scan_dataset(tmp_path / "data")
    calls = []

    def fake_embed(root, records, progress):
        calls.append(len(records))
        return {record.sha256: np.full(4, float(position), np.float32) for position, record in enumerate(records)}

    monkeypatch.setattr(audit, "_embed_records", fake_embed)
    first = audit.compute_embeddings(index)
    second = audit.compute_embeddings(index)
    assert calls == [6] and np.array_equal(first, second) and first.shape == (6, 4)


def test_out_of_fold_probabilities_learn_separable_classes_without_seeing_the_row():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 5)) + np.eye(3, 5)[labels] * 6
    probabilities = out_of_fold_probabilities(features, labels, 3, folds=5)
    assert probabilities.shape == (60, 3) and np.allclose(probabilities.sum(axis=1), 1)
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.95
    folds = stratified_folds(labels, 5)
    assert all(np.bincount(folds[labels == label], minlength=5).tolist() == [4] * 5 for label in range(3))
    with pytest.raises(ValueError, match="folds"):
        out_of_fold_probabilities(features, labels, 3, folds=1)


def test_suspects_rank_by_best_other_minus_given():
    records = [ImageRecord(f"x/{number}.png", "x", f"h{number}", 1, 1, "L", "PNG") for number in range(3)]
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    suspects = rank_suspects(records, np.array([0, 0, 0]), probabilities, ["cat", "dog"])
    assert [(item.path, item.suggested, round(item.score, 3)) for item in suspects] == [
        ("x/1.png", "dog", 0.6), ("x/2.png", "dog", 0.0), ("x/0.png", "dog", -0.8)]


def test_duplicate_group_notes():
    labels = {"a/1.png": "a", "a/2.png": "a", "b/3.png": "b"}
    assert duplicate_group_notes(["a/1.png", "b/3.png"], labels, {"a/1.png"}) == [
        "across classes", "across train/validation"]
    assert duplicate_group_notes(["a/1.png", "a/2.png"], labels, set()) == []


@pytest.mark.slow
def test_audit_page_shows_suspects_duplicates_and_map_and_relabels_through_the_journal(planted, tmp_path, monkeypatch):
    from test_pages import metrics, open_page

    template, flipped, pairs, report, cache = planted
    root = Path(shutil.copytree(template, tmp_path / "data"))  # the page moves files: work on a copy
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(cache))  # the embeddings computed once for the module
    app = open_page("app_pages/audit.py", root)
    app.button(key="audit_run").click().run()
    assert not app.exception, app.exception
    shown = metrics(app)
    assert shown["Images audited"] == str(len(report.suspects))
    assert shown["Near-duplicate groups"] == str(len(pairs))
    captions = [image.captions[0] for image in app.get("image") if image.captions and "looks like" in image.captions[0]]
    assert len(captions) == 12
    assert any(header.value == f"Near-duplicates ({len(pairs)} group(s))" for header in app.subheader)
    assert len(app.get("vega_lite_chart")) == 1  # the map
    top = report.suspects[0]
    app.selectbox(key=f"audit:{top.path}").set_value(f"move to {top.suggested}").run()
    assert not app.exception, app.exception
    assert not (root / top.path).exists()
    assert (root / top.suggested / Path(top.path).name).exists()
    app.button(key="audit_undo").click().run()
    assert (root / top.path).exists()
