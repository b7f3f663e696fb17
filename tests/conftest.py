"""Shared fixtures. Every test gets its own cache, runs and config folders, so no test sees another's
files; what is costly and only read (the converted EfficientNet-Lite0 weights, one tiny trained run)
is made once per session (per worker under pytest-xdist)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.files import SAMPLE, copy_with_flipped_labels, png_bytes, shapes_tree, write
from helpers.runs import copy_run_with_its_data, train_tiny_shapes_run

USER_DIR_VARIABLES = ("IMGCLF_CACHE_DIR", "IMGCLF_RUNS_DIR", "IMGCLF_CONFIG_DIR", "IMGCLF_DATA_HOME")


@pytest.fixture(scope="session", autouse=True)
def session_user_dirs(tmp_path_factory):
    """Session and module fixtures, which start before any test's own folders exist, write to test
    folders too (never the user's ~/.cache/imgclf or runs)."""
    base = tmp_path_factory.mktemp("session-user-dirs")
    with pytest.MonkeyPatch.context() as patch:
        for variable in USER_DIR_VARIABLES:
            folder = base / variable.lower()
            folder.mkdir()
            patch.setenv(variable, str(folder))
        yield base


@pytest.fixture(scope="session")
def shared_weights_dir(session_user_dirs) -> Path:
    """The `weights` folder of the session's cache: the EfficientNet-Lite0 weights are converted into it
    by the first test (or trainer, or server) that needs them, and read by every later one."""
    folder = Path(os.environ["IMGCLF_CACHE_DIR"]) / "weights"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(autouse=True)
def isolated_cache_dir(tmp_path_factory, monkeypatch, shared_weights_dir):
    """Point IMGCLF_CACHE_DIR at a fresh folder per test; only its `weights` folder is the shared one."""
    cache_dir = tmp_path_factory.mktemp("imgclf-cache")
    (cache_dir / "weights").symlink_to(shared_weights_dir, target_is_directory=True)
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(cache_dir))
    return cache_dir


@pytest.fixture
def private_weights_cache(isolated_cache_dir) -> Path:
    """An empty `weights` folder of this test's own, for the tests that convert or damage the weights cache."""
    weights = isolated_cache_dir / "weights"
    weights.unlink()
    weights.mkdir()
    return weights


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Runs, recent folders and uploads go to fresh folders per test, never the user's own."""
    runs_dir = tmp_path_factory.mktemp("imgclf-runs")
    monkeypatch.setenv("IMGCLF_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("IMGCLF_CONFIG_DIR", str(tmp_path_factory.mktemp("imgclf-config")))
    monkeypatch.setenv("IMGCLF_DATA_HOME", str(tmp_path_factory.mktemp("imgclf-data")))
    return runs_dir


@pytest.fixture(autouse=True)
def no_tensorflow_log_level_from_elsewhere(monkeypatch):
    """A subprocess sees TF_CPP_MIN_LOG_LEVEL only where a test sets it (bench modules that tests import
    set it for themselves): the CLI's default, quiet, is what a user gets."""
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)


@pytest.fixture
def dataset_with_inbox(tmp_path) -> Path:
    """Three shape classes of 4 images each and 3 unlabelled images in `_inbox/` (the Label page's tests)."""
    data = shapes_tree(tmp_path / "data", per_class=4)
    for number in range(3):
        write(data, f"_inbox/new-{number}.png", png_bytes(number, (16, 16)))
    return data


# ---------------------------------------------------------------- one tiny trained run


@pytest.fixture(scope="session")
def shapes_run_template(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, dataset) of a small_cnn trained for 2 epochs on 16 px shapes, trained once per session.
    Read it only; a test that changes the run or its files takes `shapes_run` instead."""
    return train_tiny_shapes_run(tmp_path_factory.mktemp("shapes-run"), epochs=2)


@pytest.fixture
def shapes_run(shapes_run_template, isolated_user_dirs, tmp_path) -> tuple[Path, Path]:
    """This test's own copy of the trained run (in its runs folder) and of its dataset."""
    template_run, template_data = shapes_run_template
    return copy_run_with_its_data(template_run, template_data, isolated_user_dirs / template_run.name,
                                  tmp_path / "data")


# ---------------------------------------------------------------- the audit without TensorFlow


def pixel_embed(root, records, progress):
    """A stand-in for the ImageNet backbone: each image's 28 x 28 grayscale pixels (real signal, no TensorFlow)."""
    import numpy as np

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
    """The audit runs for real (heads, near-duplicates, map) in seconds: images are embedded by `pixel_embed`."""
    from imgclf_core.inspection import audit

    monkeypatch.setattr(audit, "_embed_records", pixel_embed)


@pytest.fixture
def small_planted(tmp_path) -> tuple[Path, set[str]]:
    """10 classes x 10 real Fashion-MNIST images, 10% moved to a wrong class: (root, the moved paths)."""
    root = tmp_path / "data"
    flipped = copy_with_flipped_labels(SAMPLE, root, 10, 0.1, seed=3)
    return root, flipped
