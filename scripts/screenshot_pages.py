"""Screenshots of the app's pages for the README, taken in Debian's Chromium through Playwright.

    .venv/bin/pip install playwright          # never `playwright install`: it downloads a browser
    .venv/bin/python scripts/screenshot_pages.py [--data sample_data/fashion_mnist]

Starts `streamlit run app.py` on 127.0.0.1, waits for each page to finish drawing, and writes
docs/screenshots/<page>.png.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
# page url path -> (file name, text that appears once the page has drawn)
PAGES = {"": ("home", "Images per class")}


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


def wait_until_drawn(page, timeout_s: float = 60) -> None:
    """Streamlit shows grey skeletons first: wait until every image has loaded and charts have a canvas."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        """() => {
            const images = [...document.querySelectorAll('[data-testid="stImage"] img, img')];
            const charts = document.querySelectorAll('[data-testid="stVegaLiteChart"]');
            const drawn = [...charts].every(chart => chart.querySelector('canvas, svg'));
            return images.length > 0 && images.every(image => image.complete && image.naturalWidth > 0) && drawn;
        }""",
        timeout=timeout_s * 1000,
    )
    time.sleep(1.0)  # chart transitions settle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sample_data/fashion_mnist")
    parser.add_argument("--out", default="docs/screenshots")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    environment = {**os.environ, "IMGCLF_DATA_DIR": args.data}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_server(url)
        out = ROOT / args.out
        out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            for path, (name, ready_text) in PAGES.items():
                page.goto(url + path)
                page.get_by_text(ready_text).first.wait_for(timeout=60_000)
                wait_until_drawn(page)
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                print(f"wrote {out / f'{name}.png'}")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
