"""Shared fixtures: every test gets its own cache folder, so no test reads another's scan cache."""

import pytest


@pytest.fixture(autouse=True)
def isolated_cache_dir(tmp_path_factory, monkeypatch):
    """Point IMGCLF_CACHE_DIR at a fresh folder per test (never the user's ~/.cache/imgclf)."""
    cache_dir = tmp_path_factory.mktemp("imgclf-cache")
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(cache_dir))
    return cache_dir
