"""Shared fixtures: every test gets its own cache, runs and config folders, so no test sees another's."""

from pathlib import Path

import pytest
from helpers import png_bytes, shapes_tree, write


@pytest.fixture(autouse=True)
def isolated_cache_dir(tmp_path_factory, monkeypatch):
    """Point IMGCLF_CACHE_DIR at a fresh folder per test (never the user's ~/.cache/imgclf)."""
    cache_dir = tmp_path_factory.mktemp("imgclf-cache")
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(cache_dir))
    return cache_dir


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
