"""The label audit's scoring, phases and caches, fast: embeddings are faked or made of pixels
(`pixel_embeddings`), so no backbone runs (the real one, on planted errors: integration/test_audit.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.files import png_bytes, write

from imgclf_core.inspection import audit
from imgclf_core.inspection.audit import (
    AUDIT_PHASES, AuditReport, duplicate_group_notes, out_of_fold_probabilities, rank_suspects, stratified_folds,
)
from imgclf_core.data.dataset import ImageRecord, scan_dataset


def test_cached_embeddings_are_not_computed_again(tmp_path, monkeypatch):
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


def test_similar_pairs_are_those_of_the_whole_square_and_progress_counts_rows():
    rng = np.random.default_rng(0)
    vectors = rng.normal(0, 1.0, (50, 8)).astype(np.float32)
    vectors[30] = vectors[3] * 2 + 0.01  # near-copies across chunk boundaries (chunk 16), and within one
    vectors[49] = vectors[17] + 0.01
    vectors[5] = vectors[4] + 0.01
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    square = unit @ unit.T
    expected = {(i, j) for i in range(50) for j in range(i + 1, 50) if square[i, j] >= 0.9}
    rows = []
    assert audit._similar_pairs(vectors, 0.9, chunk=16, progress=rows.append) == expected
    assert {(3, 30), (17, 49), (4, 5)} <= expected and rows == [16, 32, 48, 50]
