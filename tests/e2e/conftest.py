"""The browser tests: each drives Debian's Chromium against a real `streamlit run`, so each may take minutes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.browser import chromium_missing

# A journey trains for real and waits on the page: more than the suite's default limit per test.
BROWSER_TEST_TIMEOUT_S = 900


def pytest_collection_modifyitems(items):
    for item in items:  # every collected test comes here, not only this folder's
        if item.path.is_relative_to(Path(__file__).parent) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(BROWSER_TEST_TIMEOUT_S))


@pytest.fixture(autouse=True)
def chromium_available():
    """Skip without Chromium or Playwright; under CI, which installs both, fail instead."""
    message = chromium_missing()
    if message:
        if os.environ.get("CI"):
            pytest.fail(message)  # a missing browser there is a broken setup, not a skip
        pytest.skip(message)
