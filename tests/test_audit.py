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

from imgclf_core.inspection import audit  # noqa: E402
from imgclf_core.inspection.audit import (  # noqa: E402
    AUDIT_PHASES, AuditReport, duplicate_group_notes, out_of_fold_probabilities, rank_suspects, stratified_folds,
)
from imgclf_core.data.dataset import ImageRecord, scan_dataset  # noqa: E402

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
def test_audit_cli_json_follows_the_contract_and_reuses_cached_embeddings(planted, tmp_path):
    root, flipped, _, report, _ = planted
    result = subprocess.run([sys.executable, "-m", "imgclf_core.cli", "audit", str(root), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"suspects", "near_duplicates"}
    assert set(document["suspects"][0]) == {"path", "given", "suggested", "score", "given_probability",
                                            "suggested_probability"}
    assert [item["score"] for item in document["suspects"]] == [round(s.score, 6) for s in report.suspects]
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


def test_suspects_rank_by_the_log_ratio_of_best_other_to_given():
    records = [ImageRecord(f"x/{number}.png", "x", f"h{number}", 1, 1, "L", "PNG") for number in range(3)]
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    suspects = rank_suspects(records, np.array([0, 0, 0]), probabilities, ["cat", "dog"])
    assert [(item.path, item.suggested, round(item.score, 3)) for item in suspects] == [
        ("x/1.png", "dog", 0.602), ("x/2.png", "dog", 0.0), ("x/0.png", "dog", -0.954)]
    assert (suspects[0].given_probability, suspects[0].suggested_probability) == (0.2, 0.8)


def test_confident_mistakes_get_distinct_scores_where_a_probability_difference_saturates():
    """p(given) 1e-3, 1e-6 and 1e-12 all give p(other) - p(given) = +1.00 to two places; the log ratio
    tells them apart (3, 6, 12) and ranks the most confident mistake first; from the logs, even past
    float64's smallest probability."""
    records = [ImageRecord(f"x/{number}.png", "x", f"h{number}", 1, 1, "L", "PNG") for number in range(4)]
    given = np.array([1e-3, 1e-12, 1e-6, 0.5])
    probabilities = np.stack([given, 1 - given], axis=1)
    suspects = rank_suspects(records, np.zeros(4, dtype=int), probabilities, ["cat", "dog"])
    assert [item.path for item in suspects] == ["x/1.png", "x/2.png", "x/0.png", "x/3.png"]
    assert [round(item.score, 2) for item in suspects] == [12.0, 6.0, 3.0, 0.0]
    assert {f"{1 - p - p:+.2f}" for p in given[:3]} == {"+1.00"}  # what the old score showed for all three
    log_probabilities = np.array([[-2000.0, 0.0]])  # exp() underflows to 0: the score still ranks it
    far = rank_suspects(records[:1], np.zeros(1, dtype=int), np.exp(log_probabilities), ["cat", "dog"],
                        log_probabilities=log_probabilities)
    assert round(far[0].score) == round(2000 / np.log(10))
    document = AuditReport(["cat", "dog"], suspects, [], probabilities, np.zeros((4, 2))).to_json_dict()
    assert document["suspects"][0]["given_probability"] == 1e-12 and document["suspects"][0]["score"] == 12.0


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


# ---------------------------------------------------------------- phases, speed, caches (fast: pixel embeddings)


def pixel_embed(root, records, progress):
    """A stand-in for the ImageNet backbone: each image's 28 x 28 grayscale pixels (real signal, no TensorFlow)."""
    from imgclf_core.data.images import decode_image

    vectors = {}
    for done, record in enumerate(records, 1):
        vectors[record.sha256] = decode_image(Path(root) / record.path, color_mode="grayscale",
                                              size=(28, 28)).reshape(-1).astype(np.float32) / 255
        if progress and (done % 32 == 0 or done == len(records)):
            progress(done, len(records))
    return vectors


@pytest.fixture
def pixel_embeddings(monkeypatch):
    monkeypatch.setattr(audit, "_embed_records", pixel_embed)


@pytest.fixture
def small_planted(tmp_path):
    """10 classes x 10 real Fashion-MNIST images, 10% moved to a wrong class."""
    root = tmp_path / "data"
    flipped = copy_with_flipped_labels(SAMPLE, root, 10, 0.1, seed=3)
    return root, flipped


def phase_runs(calls: list[tuple[str, int, int]]) -> list[str]:
    """The phases in the order they were reported, each once per uninterrupted run of calls."""
    return [phase for position, (phase, _, _) in enumerate(calls) if position == 0 or calls[position - 1][0] != phase]


def test_the_audit_reports_every_phase_once_in_order_each_from_start_to_end(small_planted, pixel_embeddings):
    root, _ = small_planted
    index = scan_dataset(root)
    for run in ("cold", "warm"):
        calls = []
        report = audit.audit_dataset(index, progress=lambda phase, done, total: calls.append((phase, done, total)))
        assert phase_runs(calls) == list(AUDIT_PHASES), run
        for phase in AUDIT_PHASES:
            counts = [(done, total) for name, done, total in calls if name == phase]
            assert counts[-1][0] == counts[-1][1] > 0, (run, phase, counts)  # ends at total/total
            assert [done for done, _ in counts] == sorted(done for done, _ in counts), (run, phase)
            assert len({total for _, total in counts}) == 1, (run, phase)
        embedded = [done for name, done, _ in calls if name == AUDIT_PHASES[0]]
        assert embedded[0] == (0 if run == "cold" else index.num_images), (run, embedded)  # cached: done at once
        heads = [done for name, done, _ in calls if name == AUDIT_PHASES[1]]
        assert heads == [0, 1, 2, 3, 4, 5]
        assert len(report.suspects) == index.num_images


def test_a_warm_audit_never_imports_tensorflow(small_planted, pixel_embeddings):
    """Near-duplicate thumbnails used to be decoded through the TensorFlow pipeline module (4 s to import)."""
    root, _ = small_planted
    audit.audit_dataset(scan_dataset(root))  # fills the embeddings and thumbnails caches
    script = ("import sys; from imgclf_core.inspection.audit import audit_dataset; from imgclf_core.data.dataset import scan_dataset;"
              f"report = audit_dataset(scan_dataset({str(root)!r}));"
              "print(len(report.suspects), 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["100", "False"]


def test_near_duplicate_thumbnails_are_decoded_once_per_content(small_planted, pixel_embeddings, monkeypatch):
    from imgclf_core.data import images

    root, _ = small_planted
    index = scan_dataset(root)
    embeddings = audit.compute_embeddings(index)
    first = audit.near_duplicate_groups(index.root, index.records, embeddings)
    decoded = []
    original = images.decode_image
    monkeypatch.setattr(images, "decode_image",
                        lambda *args, **kwargs: decoded.append(args) or original(*args, **kwargs))
    assert audit.near_duplicate_groups(index.root, index.records, embeddings) == first
    assert decoded == []


def test_the_out_of_fold_heads_stop_at_a_tolerance_and_start_each_fold_from_zero(monkeypatch):
    """The sample's shape. The old float64 heads ran up to 300 L-BFGS steps a fold from zero (12-80 s on the
    sample on a busy 2-core machine); these stop when the loss stops moving (the work is counted, not timed)."""
    import scipy.optimize

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 200)
    features = (rng.normal(size=(2000, 1280)) + rng.normal(size=(10, 1280))[labels] * 0.3).astype(np.float32)
    steps, starts = [], []
    original = scipy.optimize.minimize

    def counting(function, start, *args, **kwargs):
        starts.append(np.abs(start).sum())
        result = original(function, start, *args, **kwargs)
        steps.append(result.nit)
        return result

    monkeypatch.setattr(scipy.optimize, "minimize", counting)
    probabilities = out_of_fold_probabilities(features, labels, 10)
    assert len(steps) == 5 and sum(steps) < 5 * 100, steps
    assert starts == [0] * 5  # no fold starts from weights that saw its held-out labels
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.9


def test_one_blas_thread_holds_one_thread_inside_and_restores_the_counts_after_nesting():
    libraries = audit._bundled_openblas()
    if not libraries:
        pytest.skip("numpy and scipy use a BLAS other than their bundled OpenBLAS here")
    before = [get() for _, get in libraries]
    with audit.one_blas_thread():
        with audit.one_blas_thread():
            assert [get() for _, get in libraries] == [1] * len(libraries)
        assert [get() for _, get in libraries] == [1] * len(libraries)
    assert [get() for _, get in libraries] == before


def test_the_map_is_the_pca_of_the_embeddings_whatever_sign_or_sample():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 20)) * np.r_[10.0, 5.0, np.ones(18)]
    projected = audit.pca_projection(features, 2)
    centred = features - features.mean(axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    reference = centred @ directions[:2].T
    for column in range(2):
        assert abs(np.corrcoef(projected[:, column], reference[:, column])[0, 1]) > 0.999
    assert np.allclose(audit.pca_projection(features, 2), projected)  # the same signs every time
    sampled = audit.pca_projection(features, 2, sample=150)
    assert min(abs(np.corrcoef(sampled[:, c], reference[:, c])[0, 1]) for c in range(2)) > 0.95
