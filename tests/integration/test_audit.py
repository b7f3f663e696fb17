"""The label audit with the real ImageNet backbone: planted label errors and near-duplicates in real
Fashion-MNIST images are found, by the core, the CLI and the Audit page (the scoring itself: unit/)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import run_imgclf
from helpers.files import ROOT, SAMPLE, copy_with_flipped_labels
from helpers.pages import metrics, open_page
from PIL import Image

from imgclf_core.inspection import audit
from imgclf_core.data.dataset import scan_dataset

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
def planted(tmp_path_factory, shared_weights_dir):
    """The planted dataset and its audit, computed once (with a cache folder of its own, whose embeddings
    the CLI and page tests read)."""
    root = tmp_path_factory.mktemp("audit") / "data"
    flipped, pairs = planted_dataset(root)
    cache = tmp_path_factory.mktemp("audit-cache")
    (cache / "weights").symlink_to(shared_weights_dir, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGCLF_CACHE_DIR", str(cache))
        report = audit.audit_dataset(scan_dataset(root))
    return root, flipped, pairs, report, cache


def test_the_audit_ranks_planted_label_errors_near_the_top(planted):
    root, flipped, _, report, _ = planted
    top = {suspect.path for suspect in report.suspects[:len(report.suspects) // 10]}
    found = len(flipped & top) / len(flipped)
    assert found >= 0.7, f"only {found:.0%} of the flipped images are in the top 10% of suspects"
    first = report.suspects[0]
    assert first.path in flipped and first.suggested != first.given and first.score > 0
    assert [suspect.score for suspect in report.suspects] == sorted((s.score for s in report.suspects), reverse=True)


def test_the_audit_groups_planted_near_duplicates_and_nothing_else(planted):
    _, _, pairs, report, _ = planted
    assert sorted(report.near_duplicates) == sorted(sorted(pair) for pair in pairs)
    assert report.map_2d.shape == (len(report.suspects), 2)


def test_audit_cli_json_follows_the_contract_and_reuses_cached_embeddings(planted, tmp_path, monkeypatch):
    root, flipped, _, report, cache = planted
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(cache))  # the embeddings computed once for the module
    result = run_imgclf("audit", str(root), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"suspects", "near_duplicates"}
    assert set(document["suspects"][0]) == {"path", "given", "suggested", "score", "given_probability",
                                            "suggested_probability"}
    assert [item["score"] for item in document["suspects"]] == [round(s.score, 6) for s in report.suspects]
    assert len(document["suspects"]) == len(report.suspects)
    assert document["suspects"][0]["path"].startswith(str(root))
    bad = run_imgclf("audit", str(tmp_path / "missing"))
    assert bad.returncode == 2 and "missing" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_audit_page_shows_suspects_duplicates_and_map_and_relabels_through_the_journal(planted, tmp_path, monkeypatch):
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


# ---------------------------------------------------------------- a warm audit in a fresh process


def test_a_warm_audit_never_imports_tensorflow(small_planted, pixel_embeddings):
    """Near-duplicate thumbnails used to be decoded through the TensorFlow pipeline module (4 s to import)."""
    root, _ = small_planted
    audit.audit_dataset(scan_dataset(root))  # fills the embeddings and thumbnails caches
    script = ("import sys; from imgclf_core.inspection.audit import audit_dataset; from imgclf_core.data.dataset import scan_dataset;"
              f"report = audit_dataset(scan_dataset({str(root)!r}));"
              "print(len(report.suspects), 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["100", "False"]


