"""Screenshots of the app's pages for the README, taken in Debian's Chromium through Playwright.

    .venv/bin/python scripts/screenshot_pages.py [--data sample_data/fashion_mnist]

Starts `streamlit run app.py` on 127.0.0.1, waits for each page to finish drawing, and writes
docs/screenshots/home.png. (The other pages' screenshots come from the browser tests, which
drive them with real runs and uploads: tests/e2e/test_browser.py.)
"""

from __future__ import annotations

import argparse

from streamlit_browser import ROOT, chromium_page, streamlit_server, wait_until_drawn

# page url path -> (file name, text that appears once the page has drawn)
PAGES = {"": ("home", "Images per class")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sample_data/fashion_mnist")
    parser.add_argument("--out", default="docs/screenshots")
    args = parser.parse_args()
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    with streamlit_server({"IMGCLF_DATA_DIR": args.data}) as url, chromium_page(height=3600) as page:
        for path, (name, ready_text) in PAGES.items():
            page.goto(url + path)
            page.get_by_text(ready_text).first.wait_for(timeout=60_000)
            wait_until_drawn(page, expect_images=True)
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"wrote {out / f'{name}.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
