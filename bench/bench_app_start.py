"""App cold start to first paint: `streamlit run app.py` in a fresh process per page, opened in Debian's Chromium,
against a bare one-line Streamlit page started the same way in the same run.

Reproduce (CPU; needs /usr/bin/chromium and pip's playwright, never `playwright install`; timings
swing 2-4x between runs on a small, shared machine, so read the ratios to the bare page, which is
measured in the same repeat, and the medians of several repeats):

    .venv/bin/python bench/bench_app_start.py [--repeats 3] [--json out.json]
        [--pages home,dataset,train,label] [--streamlit-option server.fileWatcherType=none]

Every repeat is a first-time user: IMGCLF_DATA_DIR=sample_data/fashion_mnist (2,000 PNGs) and new,
empty IMGCLF_RUNS_DIR, IMGCLF_CONFIG_DIR, IMGCLF_DATA_HOME and IMGCLF_CACHE_DIR, so the sample is
scanned and its thumbnails are made from scratch. (The OS file cache is whatever it is: Python's and
the libraries' files are usually in it after the first repeat.) Each case gets its own Chromium,
launched before the clock starts with a blank page (so the browser's cache of Streamlit's
JavaScript is cold for every case, the bare page's included); a page is "painted" when the sidebar
navigation (all its links) and the page's title are visible and no Streamlit skeleton is left, and
"drawn" when, in addition, the script run has ended, the page's last element (where one is named)
is there, every image has loaded and every chart has its canvas. Browser-side polling is per
animation frame; the server's health every 20 ms. The order of the cases turns by one each repeat.

(a) bare: a temporary folder holding a one-line app (`st.title("imgclf")`), started from the
    repository root (so the same .streamlit/config.toml applies) with the same command line and
    environment; painted = its title visible, no skeleton (there is no navigation).
(b) home, dataset_cold, train_cold, label_cold: a fresh `python -m streamlit run app.py
    --server.address 127.0.0.1 --server.port <free> --server.headless true` each, and
    page.goto(url + the page's path) directly:
    health_s = process start until GET /_stcore/health answers 200;
    first_paint_s / drawn_s = from the process start until the page is painted / drawn;
    goto_first_paint_s = the browser's share: from goto to painted;
    first_paint_ratio / goto_first_paint_ratio = the page's figure over the bare page's, same repeat.
(c) train_after_home: in Home's session, a click on "Train" in the sidebar navigation until the
    Train page is painted / drawn (the process's first import of that page and its modules).

There is no seeds' counterpart: the seeds had no app.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from streamlit_browser import (  # noqa: E402
    CHROMIUM, CHROMIUM_FLAGS, chromium_page, free_port, stop_process, streamlit_command,
)

SAMPLE = "sample_data/fashion_mnist"
NAV_LINKS = 7  # app.py's pages
HEALTH_POLL_S = 0.02
BARE = "bare"
BARE_TITLE = "imgclf"
BARE_APP = f'import streamlit as st\n\nst.title("{BARE_TITLE}")\n'
# page -> (URL path, title, text of the page's last element with a fresh user and the sample data, or None)
PAGES = {
    "home": ("", "imgclf", "A few images of each class"),
    "dataset": ("dataset", "Dataset", None),
    "train": ("train", "Train", "No run of this dataset yet"),
    "label": ("label", "Label", None),
}
# The result key of each page's cold start (home and train_cold as before, for bench/report.py).
CASE_NAMES = {"home": "home", "dataset": "dataset_cold", "train": "train_cold", "label": "label_cold"}

PAINTED_JS = """([title, navLinks]) => {
    const visible = (element) => {
        const box = element.getBoundingClientRect();
        return box.width > 0 && box.height > 0;
    };
    if (document.querySelector('[data-testid="stSkeleton"]')) return false;
    const links = [...document.querySelectorAll('[data-testid="stSidebarNav"] a')].filter(visible);
    const heading = [...document.querySelectorAll('h1')].some(
        (h1) => visible(h1) && h1.innerText.trim().startsWith(title));
    return links.length >= navLinks && heading;
}"""

DRAWN_JS = """([title, navLinks, lastText]) => {
    if (!(""" + PAINTED_JS + """)([title, navLinks])) return false;
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (lastText && !document.body.innerText.includes(lastText)) return false;
    const images = [...document.querySelectorAll('img')];
    const charts = document.querySelectorAll('[data-testid="stVegaLiteChart"]');
    return images.every((image) => image.complete && image.naturalWidth > 0)
        && [...charts].every((chart) => chart.querySelector('canvas, svg'));
}"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Server:
    """One fresh `streamlit run <script>` with new empty user folders; stopped by its PID."""

    def __init__(self, scratch: Path, name: str, script: str = "app.py", options: tuple[str, ...] = ()):
        variables = ("IMGCLF_RUNS_DIR", "IMGCLF_CONFIG_DIR", "IMGCLF_DATA_HOME", "IMGCLF_CACHE_DIR")
        self.folders = {variable: scratch / name / variable.lower() for variable in variables}
        for folder in self.folders.values():
            folder.mkdir(parents=True)
        self.script = script
        self.options = [f"--{option}" for option in options]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = scratch / name / "streamlit.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        """Start the process; returns the perf_counter time just before it was spawned."""
        folders = {key: str(value) for key, value in self.folders.items()}
        environment = {**os.environ, "IMGCLF_DATA_DIR": SAMPLE, **folders}
        with self.log_path.open("wb") as output:
            started = time.perf_counter()
            self.process = subprocess.Popen(
                streamlit_command(self.port, self.script, *self.options),
                cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT,
            )
        return started

    def wait_healthy(self, timeout_s: float) -> float:
        """Poll /_stcore/health until it answers 200; returns the perf_counter time it did."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter()
            except OSError:
                pass
            time.sleep(HEALTH_POLL_S)
        raise RuntimeError(f"streamlit did not answer on {self.url} within {timeout_s:.0f} s:\n{self.tail()}")

    def tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def wait_page(page, title: str, nav_links: int, last_text: str | None, timeout_s: float) -> tuple[float, float]:
    """perf_counter times at which the page titled `title` was painted, then drawn."""
    page.wait_for_function(PAINTED_JS, arg=[title, nav_links], polling="raf", timeout=timeout_s * 1000)
    painted = time.perf_counter()
    page.wait_for_function(DRAWN_JS, arg=[title, nav_links, last_text], polling="raf", timeout=timeout_s * 1000)
    return painted, time.perf_counter()


def cold_start(page, server: Server, path: str, title: str, nav_links: int, last_text: str | None,
               timeout_s: float, then=None) -> dict:
    """A fresh process, then page.goto(url + path); optionally `then(page)` in the same session."""
    try:
        started = server.start()
        healthy = server.wait_healthy(timeout_s)
        goto = time.perf_counter()
        page.goto(server.url + path, wait_until="commit", timeout=timeout_s * 1000)
        painted, drawn = wait_page(page, title, nav_links, last_text, timeout_s)
        result = {
            "health_s": healthy - started,
            "goto_first_paint_s": painted - goto,
            "first_paint_s": painted - started,
            "drawn_s": drawn - started,
        }
        extra = then(page) if then else None
    except Exception:
        log(f"[{server.log_path.parent.name}] streamlit log:\n{server.tail()}")
        raise
    finally:
        server.stop()
    return {"cold": result, "then": extra}


def click_to_train(page, timeout_s: float) -> dict:
    link = page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Train").first
    clicked = time.perf_counter()
    link.click(timeout=timeout_s * 1000)
    _, title, last_text = PAGES["train"]
    painted, drawn = wait_page(page, title, NAV_LINKS, last_text, timeout_s)
    return {"first_paint_s": painted - clicked, "drawn_s": drawn - clicked}


def run_case(case: str, scratch: Path, number: int, options: tuple[str, ...], timeout_s: float) -> dict:
    """One cold start: the bare page or one of PAGES; {result key: figures}."""
    name = f"{case}-{number}"
    with chromium_page(height=1800) as page:
        page.goto("about:blank")
        if case == BARE:
            script = scratch / name / "bare_app.py"
            script.parent.mkdir(parents=True)
            script.write_text(BARE_APP, encoding="utf-8")
            server = Server(scratch, name, str(script), options)
            return {BARE: cold_start(page, server, "", BARE_TITLE, 0, None, timeout_s)["cold"]}
        path, title, last_text = PAGES[case]
        then = (lambda page: click_to_train(page, timeout_s)) if case == "home" else None
        result = cold_start(page, Server(scratch, name, "app.py", options), path, title, NAV_LINKS, last_text,
                            timeout_s, then=then)
    figures = {CASE_NAMES[case]: result["cold"]}
    if case == "home":
        figures["train_after_home"] = result["then"]
    return figures


def one_repeat(scratch: Path, number: int, pages: list[str], options: tuple[str, ...], timeout_s: float) -> dict:
    cases = [BARE, *pages]
    shift = (number - 1) % len(cases)
    run: dict = {}
    for case in cases[shift:] + cases[:shift]:  # no case is always first (cold OS cache) or last
        run.update(run_case(case, scratch, number, options, timeout_s))
    bare = run[BARE]
    for figures in [run[BARE], *(run[CASE_NAMES[page]] for page in pages)]:
        for key in ("first_paint_s", "goto_first_paint_s"):
            figures[key[:-2] + "_ratio"] = figures[key] / bare[key]
    return run


def summarize(repeats: list[dict]) -> dict:
    summary: dict = {}
    for case in repeats[0]:
        summary[case] = {}
        for key in repeats[0][case]:
            values = [run[case][key] for run in repeats]
            summary[case][key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return summary


def print_report(results: dict) -> None:
    summary, count = results["summary"], len(results["repeats"])

    def cell(case: str, key: str, unit: str = "") -> str:
        figure = summary[case][key]
        return f"{figure['median']:.2f}{unit} ({figure['min']:.2f}-{figure['max']:.2f})"

    print(f"\napp cold start to first paint, median (min-max) of {count} repeat(s), seconds; x bare = the page's"
          " figure over the bare one-line Streamlit page's in the same repeat")
    header = ("process start -> health", "page.goto -> painted", "x bare", "process start -> painted", "x bare",
              "process start -> drawn")
    widths = (24, 22, 18, 25, 18, 23)
    print(f"  {'page':<12}" + "".join(f" {title:>{width}}" for title, width in zip(header, widths)))
    for case in [BARE, *(CASE_NAMES[page] for page in results["options"]["pages"])]:
        cells = (cell(case, "health_s"), cell(case, "goto_first_paint_s"), cell(case, "goto_first_paint_ratio", "x"),
                 cell(case, "first_paint_s"), cell(case, "first_paint_ratio", "x"), cell(case, "drawn_s"))
        print(f"  {case:<12}" + "".join(f" {text:>{width}}" for text, width in zip(cells, widths)))
    if "train_after_home" in summary:
        print(f"  click Train in Home's sidebar -> Train painted {cell('train_after_home', 'first_paint_s')},"
              f" drawn {cell('train_after_home', 'drawn_s')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process repeats (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds allowed per wait (default: %(default)s)")
    parser.add_argument("--pages", default=",".join(PAGES),
                        help="pages to cold-start, besides the bare page (default: %(default)s)")
    parser.add_argument("--streamlit-option", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra `streamlit run --NAME=VALUE` for every server, the bare one's included"
                             " (repeatable; e.g. server.fileWatcherType=none)")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    pages = [page.strip() for page in args.pages.split(",") if page.strip()]
    unknown = sorted(set(pages) - set(PAGES))
    if unknown or not pages:
        parser.error(f"--pages: unknown or none {unknown}; known: {', '.join(PAGES)}")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs {CHROMIUM} (apt-get install chromium chromium-driver) and pip's playwright")

    import streamlit

    total_start = time.perf_counter()
    options = tuple(args.streamlit_option)
    results: dict = {
        "environment": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "streamlit": streamlit.__version__,
            "chromium": CHROMIUM, "chromium_flags": CHROMIUM_FLAGS, "machine": platform.machine(),
        },
        "options": {"repeats": args.repeats, "timeout": args.timeout, "data_dir": SAMPLE, "pages": pages,
                    "streamlit_options": list(options)},
        "repeats": [],
    }
    scratch = Path(tempfile.mkdtemp(prefix="imgclf-bench-app-"))
    try:
        for number in range(1, args.repeats + 1):
            log(f"[app start] repeat {number}/{args.repeats} ...")
            run = one_repeat(scratch, number, pages, options, args.timeout)
            log("  painted: " + ", ".join(
                f"{case} {run[case]['first_paint_s']:.2f} s ({run[case]['first_paint_ratio']:.2f}x bare)"
                for case in [BARE, *(CASE_NAMES[page] for page in pages)]))
            results["repeats"].append(run)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["summary"] = summarize(results["repeats"])
    results["total_s"] = time.perf_counter() - total_start
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
