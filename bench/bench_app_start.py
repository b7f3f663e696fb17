"""App cold start to first paint: `streamlit run app.py` in a fresh process, opened in Debian's Chromium.

Reproduce (CPU; needs /usr/bin/chromium and pip's playwright, never `playwright install`; timings
swing between runs on a small machine, so compare medians of several repeats):

    .venv/bin/python bench/bench_app_start.py [--repeats 3] [--json out.json]

Every repeat is a first-time user: IMGCLF_DATA_DIR=sample_data/fashion_mnist (2,000 PNGs) and new,
empty IMGCLF_RUNS_DIR, IMGCLF_CONFIG_DIR, IMGCLF_DATA_HOME and IMGCLF_CACHE_DIR, so the sample is
scanned and its thumbnails are made from scratch. (The OS file cache is whatever it is: Python's and
the libraries' files are usually in it after the first repeat.) Chromium is launched before the
clock starts, with a blank page; a page is "painted" when the sidebar navigation (all its links) and
the page's title are visible and no Streamlit skeleton is left, and "drawn" when, in addition, the
page's last element is there, the script run has ended, every image has loaded and every chart has
its canvas. Browser-side polling is per animation frame; the server's health every 20 ms.

(a) home: the clock starts; `python -m streamlit run app.py --server.address 127.0.0.1
    --server.port <free> --server.headless true` starts (a fresh process);
    health_s = until GET /_stcore/health answers 200; then page.goto(url):
    first_paint_s / drawn_s = from the process start until the Home page is painted / drawn
    (goto_first_paint_s = the browser's share: from goto to painted).
(b) train_after_home: in the same session, a click on "Train" in the sidebar navigation until the
    Train page is painted / drawn (the process's first import of that page and its modules).
(c) train_cold: a second fresh process and fresh folders; page.goto(url + "train") directly: the
    same clocks as (a), for the Train page (it imports more than Home).

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

from streamlit_browser import CHROMIUM, CHROMIUM_FLAGS, chromium_page, free_port  # noqa: E402

SAMPLE = "sample_data/fashion_mnist"
NAV_LINKS = 7  # app.py's pages
HEALTH_POLL_S = 0.02
# page -> (title, text of the page's last element with a fresh user and the sample data)
PAGES = {"home": ("imgclf", "A few images of each class"), "train": ("Train", "No run of this dataset yet")}

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
    if (!document.body.innerText.includes(lastText)) return false;
    const images = [...document.querySelectorAll('img')];
    const charts = document.querySelectorAll('[data-testid="stVegaLiteChart"]');
    return images.every((image) => image.complete && image.naturalWidth > 0)
        && [...charts].every((chart) => chart.querySelector('canvas, svg'));
}"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Server:
    """One fresh `streamlit run app.py` with new empty user folders; stopped by its PID."""

    def __init__(self, scratch: Path, name: str):
        variables = ("IMGCLF_RUNS_DIR", "IMGCLF_CONFIG_DIR", "IMGCLF_DATA_HOME", "IMGCLF_CACHE_DIR")
        self.folders = {variable: scratch / name / variable.lower() for variable in variables}
        for folder in self.folders.values():
            folder.mkdir(parents=True)
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
                [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
                 "--server.port", str(self.port), "--server.headless", "true"],
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
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_page(page, page_name: str, timeout_s: float) -> tuple[float, float]:
    """perf_counter times at which `page_name` was painted, then drawn."""
    title, last_text = PAGES[page_name]
    page.wait_for_function(PAINTED_JS, arg=[title, NAV_LINKS], polling="raf", timeout=timeout_s * 1000)
    painted = time.perf_counter()
    page.wait_for_function(DRAWN_JS, arg=[title, NAV_LINKS, last_text], polling="raf", timeout=timeout_s * 1000)
    return painted, time.perf_counter()


def cold_start(page, scratch: Path, name: str, path: str, page_name: str, timeout_s: float,
               then=None) -> dict:
    """A fresh process, then page.goto(url + path); optionally `then(page)` in the same session."""
    server = Server(scratch, name)
    try:
        started = server.start()
        healthy = server.wait_healthy(timeout_s)
        goto = time.perf_counter()
        page.goto(server.url + path, wait_until="commit", timeout=timeout_s * 1000)
        painted, drawn = wait_page(page, page_name, timeout_s)
        result = {
            "health_s": healthy - started,
            "goto_first_paint_s": painted - goto,
            "first_paint_s": painted - started,
            "drawn_s": drawn - started,
        }
        extra = then(page) if then else None
    except Exception:
        log(f"[{name}] streamlit log:\n{server.tail()}")
        raise
    finally:
        server.stop()
    return {"cold": result, "then": extra}


def click_to_train(page, timeout_s: float) -> dict:
    link = page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Train").first
    clicked = time.perf_counter()
    link.click(timeout=timeout_s * 1000)
    painted, drawn = wait_page(page, "train", timeout_s)
    return {"first_paint_s": painted - clicked, "drawn_s": drawn - clicked}


def one_repeat(scratch: Path, number: int, timeout_s: float) -> dict:
    with chromium_page(height=1800) as page:
        page.goto("about:blank")
        home = cold_start(page, scratch, f"home-{number}", "", "home", timeout_s,
                          then=lambda page: click_to_train(page, timeout_s))
    with chromium_page(height=1800) as page:
        page.goto("about:blank")
        train = cold_start(page, scratch, f"train-{number}", "train", "train", timeout_s)
    return {"home": home["cold"], "train_after_home": home["then"], "train_cold": train["cold"]}


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
    rows = [
        ("home", "health_s", "process start -> /_stcore/health answers"),
        ("home", "goto_first_paint_s", "page.goto -> Home painted"),
        ("home", "first_paint_s", "process start -> Home painted"),
        ("home", "drawn_s", "process start -> Home drawn"),
        ("train_after_home", "first_paint_s", "click Train -> Train painted"),
        ("train_after_home", "drawn_s", "click Train -> Train drawn"),
        ("train_cold", "health_s", "process start -> /_stcore/health (2nd process)"),
        ("train_cold", "first_paint_s", "process start -> Train painted (direct URL)"),
        ("train_cold", "drawn_s", "process start -> Train drawn (direct URL)"),
    ]
    print(f"\napp cold start, median (min-max) of {count} repeat(s), seconds")
    for case, key, label in rows:
        cell = summary[case][key]
        print(f"  {label:<50} {cell['median']:6.2f}  ({cell['min']:.2f}-{cell['max']:.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process repeats (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds allowed per wait (default: %(default)s)")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs {CHROMIUM} (apt-get install chromium chromium-driver) and pip's playwright")

    import streamlit

    total_start = time.perf_counter()
    results: dict = {
        "environment": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "streamlit": streamlit.__version__,
            "chromium": CHROMIUM, "chromium_flags": CHROMIUM_FLAGS, "machine": platform.machine(),
        },
        "options": {"repeats": args.repeats, "timeout": args.timeout, "data_dir": SAMPLE},
        "repeats": [],
    }
    scratch = Path(tempfile.mkdtemp(prefix="imgclf-bench-app-"))
    try:
        for number in range(1, args.repeats + 1):
            log(f"[app start] repeat {number}/{args.repeats} ...")
            run = one_repeat(scratch, number, args.timeout)
            log(f"  Home painted {run['home']['first_paint_s']:.2f} s (health {run['home']['health_s']:.2f} s),"
                f" drawn {run['home']['drawn_s']:.2f} s;"
                f" click Train painted {run['train_after_home']['first_paint_s']:.2f} s;"
                f" Train cold painted {run['train_cold']['first_paint_s']:.2f} s")
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
