"""Drive the real app in Debian's Chromium: start `streamlit run` on 127.0.0.1, open pages, wait for drawing.

Shared by scripts/screenshot_pages.py and the browser tests. Needs the `playwright` Python package
and /usr/bin/chromium (`apt-get install chromium chromium-driver`); never `playwright install`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"streamlit did not answer on {url} within {timeout_s:.0f} s")


def streamlit_command(port: int, script: str = "app.py", *options: str) -> list[str]:
    """`streamlit run SCRIPT`, headless, on 127.0.0.1:PORT (run it with cwd=ROOT)."""
    return [sys.executable, "-m", "streamlit", "run", script, "--server.address", "127.0.0.1",
            "--server.port", str(port), "--server.headless", "true", *options]


def stop_process(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """End `process` by its PID: SIGTERM, then SIGKILL if it has not ended within timeout_s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def streamlit_server(environment: dict[str, str] | None = None) -> Iterator[str]:
    """`streamlit run app.py` on a free 127.0.0.1 port; yields its URL; stopped by its PID afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        streamlit_command(port), cwd=ROOT, env={**os.environ, **(environment or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_server(url)
        yield url
    finally:
        stop_process(server)


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1800, extra_flags: tuple[str, ...] = ()) -> Iterator["object"]:
    """A fresh page in headless Debian Chromium (`extra_flags`: e.g. a fake camera fed from a file)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, *extra_flags])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def wait_until_drawn(page, timeout_s: float = 60, expect_images: bool = False) -> None:
    """Streamlit shows grey skeletons first: wait until none is left, every image has loaded
    (at least one when `expect_images`) and every chart has its canvas."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        """(expectImages) => {
            if (document.querySelector('[data-testid="stSkeleton"]')) return false;
            const images = [...document.querySelectorAll('[data-testid="stImage"] img, img')];
            const charts = document.querySelectorAll('[data-testid="stVegaLiteChart"]');
            const drawn = [...charts].every(chart => chart.querySelector('canvas, svg'));
            const loaded = images.every(image => image.complete && image.naturalWidth > 0);
            return (images.length > 0 || !expectImages) && loaded && drawn;
        }""",
        arg=expect_images,
        timeout=timeout_s * 1000,
    )
    time.sleep(1.0)  # chart transitions settle


def wait_until_idle(page, timeout_s: float = 120) -> None:
    """Wait until no script run is in progress (a click during a rerun can land on a stale widget)."""
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app && app.getAttribute('data-test-script-state') === 'notRunning';
        }""",
        timeout=timeout_s * 1000,
    )


def metric_value(page, label: str) -> str | None:
    """The value shown by the st.metric labelled `label`, or None if it is not on the page."""
    return page.evaluate(
        """(label) => {
            for (const metric of document.querySelectorAll('[data-testid="stMetric"]')) {
                const name = metric.querySelector('[data-testid="stMetricLabel"]');
                const value = metric.querySelector('[data-testid="stMetricValue"]');
                if (name && value && name.innerText.trim() === label) return value.innerText.trim();
            }
            return null;
        }""",
        label,
    )
