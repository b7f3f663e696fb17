"""Click-to-train in a real browser: Debian's Chromium (Playwright) against `streamlit run` on 127.0.0.1."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from streamlit_browser import CHROMIUM, chromium_page, metric_value, streamlit_server, wait_until_drawn  # noqa: E402

SCREENSHOTS = ROOT / "docs" / "screenshots"
SAMPLE = ROOT / "sample_data" / "fashion_mnist"

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(autouse=True)
def chromium_available():
    missing = not Path(CHROMIUM).exists()
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        message = f"needs {CHROMIUM} (apt-get install chromium chromium-driver) and pip's playwright"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs both: a missing browser there is a broken setup, not a skip
        pytest.skip(message)


def wait_for(condition, what: str, timeout_s: float = 180.0, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


def navigation_labels(page) -> list[str]:
    links = page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
    return [text.split()[-1] for text in links]  # the icon comes first


def epochs_done(page) -> int:
    shown = metric_value(page, "Epoch") or "0/0"
    return int(shown.split("/")[0]) if shown[0].isdigit() else 0


def test_click_to_train_survives_a_reload_stops_resumes_and_finishes(tmp_path):
    # Relative to the server's working folder (the project root), as a person would type it.
    environment = {"IMGCLF_DATA_DIR": str(SAMPLE.relative_to(ROOT)), "IMGCLF_RUNS_DIR": str(tmp_path / "runs")}
    with streamlit_server(environment) as url, chromium_page() as page:
        page.goto(url + "train")
        epochs_input = page.get_by_role("spinbutton", name="Epochs", exact=True)
        epochs_input.fill("40")
        epochs_input.press("Enter")
        page.get_by_role("button", name="Start training").click()
        wait_for(lambda: metric_value(page, "State") == "running", "state running")
        wait_for(lambda: epochs_done(page) >= 2, "two finished epochs on the page")

        page.reload()  # a reload is a new session: the page must find the running job by itself
        wait_for(lambda: metric_value(page, "State") == "running", "state running after the reload")
        assert navigation_labels(page) == ["Home", "Dataset", "Train"]
        assert "· running" in page.locator('[data-testid="stSidebar"]').inner_text()
        seen = epochs_done(page)
        wait_for(lambda: epochs_done(page) > seen, "the page to keep updating after the reload")
        assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 2
        wait_until_drawn(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "train.png"), full_page=True)

        page.get_by_role("button", name="Stop").click()
        wait_for(lambda: metric_value(page, "State") == "stopped", "state stopped")
        stopped_at = epochs_done(page)
        page.get_by_role("button", name="Resume").click()
        wait_for(lambda: epochs_done(page) > stopped_at, "training to continue after Resume")
        wait_for(lambda: metric_value(page, "State") == "finished", "the run to finish", timeout_s=400)
        wait_for(lambda: metric_value(page, "Validation accuracy"), "the evaluation summary")
        accuracy = float(metric_value(page, "Validation accuracy").rstrip("%"))
        assert accuracy > 60, accuracy  # 10 classes: chance is 10%
        wait_until_drawn(page)
        page.screenshot(path=str(SCREENSHOTS / "train_finished.png"), full_page=True)
