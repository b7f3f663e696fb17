"""Chromium (Debian's, through Playwright) against `streamlit run`: waiting and choosing like a person."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit_browser import CHROMIUM


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when Chromium and Playwright are both installed."""
    missing = not Path(CHROMIUM).exists()
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing = True
    return f"needs {CHROMIUM} (apt-get install chromium chromium-driver) and pip's playwright" if missing else None


def wait_for(condition, what: str, timeout_s: float = 180.0, poll_s: float = 0.5):
    """`condition()`'s first true value, polled; an AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


def choose_option(page, select, option: str) -> None:
    """Open a Streamlit selectbox, type to filter (its list only draws the options in view), click the option."""
    select.click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()
