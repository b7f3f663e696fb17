"""100k-image benchmark: build a 100,000-image folder-per-class dataset and measure how imgclf copes with it.

Reproduce (CPU, offline; needs Debian's dataset-fashion-mnist, /usr/bin/chromium and pip's playwright,
never `playwright install`; root, or the page cache is not dropped before the cold cases):

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_100k.py --json /tmp/bench_100k.json \\
        --screens /tmp/bench_100k_screens [--images 100000] [--out DIR [--reuse]] [--keep]
        [--skip scan,browser,train,audit]

    smoke test (a few minutes):  ... bench/bench_100k.py --images 3000 --json /tmp/b.json --screens /tmp/s

Nothing is written into the repository: the dataset goes to --out (default: a new temporary folder,
removed at the end unless --keep), everything else (caches, runs, subsets, logs) to a temporary
work folder that is always removed (--keep keeps it too, and prints where it is).

The dataset (--images N): Fashion-MNIST's 70k images (train then test, in that order), each upscaled
28 -> 64 px (bilinear) and written as an RGB PNG (the grey value in all 3 channels), plus N - 70,000
horizontally flipped copies of the first train images; below 70k, the first N images of that order.
One folder per class (imgclf_core.data.fashion_mnist.CLASS_NAMES), files numbered 000000.png,
000001.png ... in the order above, so the first K files of each class are its first K sources.
Written by a process pool; the seconds are reported. --out DIR --reuse uses a tree written before.

What is measured; every measurement runs in a fresh child process, whose peak RSS is its own
ru_maxrss (os.wait4), and whose RssAnon/RssFile are sampled from /proc every 0.2 s (a memory-mapped
file counts in RSS only while its pages are mapped, so RssFile is shown separately):

1. scan: `scan_dataset(DATA)` in a child: cold (a fresh IMGCLF_CACHE_DIR, the OS page cache dropped
   first with `sync; echo 1 > /proc/sys/vm/drop_caches` when writable, --no-drop-caches not given;
   whether it was is recorded), then warm (the same cache dir, a new child).
2. browser: `streamlit run app.py` on 127.0.0.1 with IMGCLF_DATA_DIR = the dataset (how
   bench_app_start.py opens a folder; new IMGCLF_RUNS_DIR/CONFIG_DIR/DATA_HOME), driven by Debian's
   headless Chromium. Each action is timed from the action to "settled": the script run has ended
   (stApp's data-test-script-state is notRunning), no skeleton is left, every <img> has loaded and the
   action's expected element is there:
     first_paint   page.goto(/dataset) on a fresh server whose IMGCLF_CACHE_DIR holds step 1's warm
                   scan cache (thumbnails are not cached yet) -> the Images metric says N and the grid's
                   first caption is the first file; `painted_s` = the title and the Images metric shown.
     reload        page.reload() (a new session, same server)
     next_page     a click on the grid's page "+" -> the first caption is file 25 of the listing
     class_filter  the Class selectbox's option (--browser-class) clicked -> "<count> image(s) match"
                   and every grid caption of that class
     inspect       the first grid image's Inspect button -> the dialog shows that file and its image
     cold_first_paint  (unless --no-browser-cold) the same goto on another fresh server with a fresh
                   IMGCLF_CACHE_DIR and the page cache dropped: the server scans all N files.
   Target: each <= 2 s. The server's RSS (process tree) after each action and its VmHWM are kept.
   A full-page screenshot of each state goes to --screens DIR.
3. train: 1 epoch (--train-epochs) of `--model small_cnn --image-size 64 --color-mode rgb`, the
   rest recommended (batch size 128 from 20k images), two ways, each with a fresh IMGCLF_CACHE_DIR
   holding only step 1's scan cache (so the scan is warm and the decode cold):
     cli_auto  `python -m imgclf_core.cli train DATA --out RUN ...` as a user runs it; DataConfig.cache
               stays "auto", which keeps the arrays in memory up to AUTO_DISK_CACHE_BYTES (2 GiB;
               100k x 64 x 64 x 3 = 1.23 GB is below it). The CLI has no cache flag.
     disk      the same config.json with data.cache = "disk" (written with RunFolder.write_config), trained
               by `python -m imgclf_core.training RUN` (the trainer process the app starts): the arrays
               go to the on-disk store (IMGCLF_CACHE_DIR/arrays/*.npy, memory-mapped).
   decode_s = from status.json's "decoding images" (polled every 0.1 s) to the start of epoch 1
   (the first "epoch 1" status minus that progress line's seconds): the decode plus building the
   datasets and the optimizer. train_ips = training images / the epoch's training seconds (last
   progress.jsonl line of the epoch; validation excluded); steady_ips = between the first and last
   progress lines (the first batches' tracing excluded); epoch_s = history.csv's seconds (validation
   included). Target: peak RSS <= 4 GB.
4. audit: `python -m imgclf_core.cli audit DIR --json` (stdout to a file) cold (a fresh
   IMGCLF_CACHE_DIR holding only the converted EfficientNet-Lite0 weights, converted once per
   benchmark and timed separately, since a user converts them once per machine, not per dataset; the
   page cache dropped) and warm (again, same cache), on the whole dataset and on --audit-fractions of
   it (default 0.25,0.5: 25k and 50k, the first files of each class hard-linked into a temporary
   folder). Phase seconds come from the CLI's progress lines. A least-squares line through the peaks
   gives MB per 1,000 images, cold and warm.

Every measurement can be skipped with --skip scan,browser,train,audit. The browser and train steps
reuse step 1's warm scan cache when there is one (else they make their own, reported as such).
Timings swing 2-4x on a small shared machine: compare within one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402

from bench_memory import process_tree  # noqa: E402  (the server's process tree, counted the same way)
from imgclf_core.data.fashion_mnist import CLASS_NAMES, DEFAULT_SOURCE_DIR, load_split  # noqa: E402

STEPS = ("scan", "browser", "train", "audit")
IMAGE_SIDE = 64
FASHION_TOTAL = 70_000
TARGET_ACTION_S = 2.0
BROWSER_HEIGHT = 2900  # the grid and the augmentation preview in view (stMain scrolls, not the page)
TARGET_TRAIN_PEAK_MB = 4096.0
MB = 1024 * 1024
SAMPLE_EVERY_S = 0.2
CHILD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# =============================================================================================
# Child processes: wall time, ru_maxrss, sampled RssAnon/RssFile


@dataclass
class ChildResult:
    returncode: int
    seconds: float
    peak_rss_mb: float  # ru_maxrss of the child (its own peak resident set)
    peak_rss_anon_mb: float
    peak_rss_file_mb: float
    timed_out: bool = False
    events: dict = field(default_factory=dict)  # what a watcher saw, by name: perf_counter offsets

    def figures(self) -> dict:
        return {
            "seconds": round(self.seconds, 3), "peak_rss_mb": round(self.peak_rss_mb, 1),
            "peak_rss_anon_mb": round(self.peak_rss_anon_mb, 1), "peak_rss_file_mb": round(self.peak_rss_file_mb, 1),
            "returncode": self.returncode, "timed_out": self.timed_out,
        }


def proc_status_kb(pid: int, names: tuple[str, ...]) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in names:
                values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


def run_child(command: list[str], env: dict[str, str], *, stdout_path: Path, stderr_path: Path,
              timeout_s: float, watcher=None) -> ChildResult:
    """Run `command` to its end; `watcher(elapsed_s)` is called every sample (it may record events)."""
    anon = file_ = 0
    done = threading.Event()
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)

        def sample() -> None:
            nonlocal anon, file_
            while not done.is_set():
                values = proc_status_kb(process.pid, ("RssAnon", "RssFile"))
                anon = max(anon, values.get("RssAnon", 0))
                file_ = max(file_, values.get("RssFile", 0))
                if watcher is not None:
                    try:
                        watcher(time.perf_counter() - started)
                    except Exception as error:  # a watcher never stops the measurement
                        log(f"  (watcher: {error})")
                done.wait(SAMPLE_EVERY_S)

        timed_out = threading.Event()

        def kill_after_timeout() -> None:
            if not done.wait(timeout_s):
                timed_out.set()
                process.kill()

        threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=kill_after_timeout, daemon=True)]
        for thread in threads:
            thread.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # interrupted: never leave a measured child behind
            done.set()
            process.kill()
            process.wait()
            raise
        seconds = time.perf_counter() - started
        done.set()
        for thread in threads:
            thread.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    return ChildResult(process.returncode, seconds, usage.ru_maxrss / 1024, anon / 1024, file_ / 1024,
                       timed_out.is_set())


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def drop_page_cache(enabled: bool) -> bool:
    """`sync; echo 1 > /proc/sys/vm/drop_caches`; whether it was done."""
    if not enabled:
        return False
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("1\n")
        return True
    except OSError:
        return False


def child_env(cache_dir: Path, work: Path, **extra: str) -> dict[str, str]:
    homes = {name: work / "user" / name.lower() for name in ("IMGCLF_RUNS_DIR", "IMGCLF_CONFIG_DIR", "IMGCLF_DATA_HOME")}
    for folder in homes.values():
        folder.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    inherited = {key: value for key, value in os.environ.items() if key != "IMGCLF_DATA_DIR"}
    return {**inherited, **CHILD_ENV, **{key: str(value) for key, value in homes.items()},
            "IMGCLF_CACHE_DIR": str(cache_dir), **extra}


class Caches:
    """Fresh IMGCLF_CACHE_DIRs under the work folder, optionally seeded with another one's subfolders."""

    def __init__(self, work: Path):
        self.base = work / "caches"
        self.base.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.warm_scan: Path | None = None  # step 1's cache dir, once it holds the dataset's scan
        self.weights: Path | None = None  # a cache dir holding only the converted weights

    def fresh(self, name: str, seed_from: list[tuple[Path | None, str]] = ()) -> Path:
        self.count += 1
        folder = self.base / f"{self.count:02d}-{name}"
        folder.mkdir()
        for source, subfolder in seed_from:
            if source is not None and (source / subfolder).is_dir():
                shutil.copytree(source / subfolder, folder / subfolder)
        return folder


# =============================================================================================
# The dataset


_SOURCES: dict[str, np.ndarray] = {}  # filled before the pool forks: the workers inherit them


def plan_dataset(images: int, train_labels: np.ndarray, test_labels: np.ndarray) -> list[tuple[int, str, int]]:
    """(number, source, index) per file: source 'train', 'test' or 'flip' (of train index)."""
    plan = [("train", index) for index in range(len(train_labels))] + [("test", index) for index in range(len(test_labels))]
    plan = plan[:images]
    plan += [("flip", index % len(train_labels)) for index in range(max(0, images - len(plan)))]
    return [(number, source, index) for number, (source, index) in enumerate(plan)]


def label_of(source: str, index: int) -> int:
    return int(_SOURCES["test_labels"][index] if source == "test" else _SOURCES["train_labels"][index])


def write_chunk(out: str, jobs: list[tuple[int, str, int]]) -> tuple[int, int]:
    """Write a chunk of PNGs; (files, bytes)."""
    from PIL import Image

    written = 0
    for number, source, index in jobs:
        pixels = _SOURCES["test_images" if source == "test" else "train_images"][index]
        image = Image.fromarray(pixels, mode="L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR)
        if source == "flip":
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = os.path.join(out, CLASS_NAMES[label_of(source, index)], f"{number:06d}.png")
        image.convert("RGB").save(path, format="PNG")
        written += os.path.getsize(path)
    return len(jobs), written


def count_pngs(folder: Path) -> dict[str, int]:
    return {name: sum(1 for entry in os.scandir(folder / name) if entry.name.endswith(".png"))
            for name in CLASS_NAMES if (folder / name).is_dir()}


def build_dataset(out: Path, images: int, workers: int) -> dict:
    _SOURCES["train_images"], _SOURCES["train_labels"] = load_split(DEFAULT_SOURCE_DIR, "train")
    _SOURCES["test_images"], _SOURCES["test_labels"] = load_split(DEFAULT_SOURCE_DIR, "test")
    plan = plan_dataset(images, _SOURCES["train_labels"], _SOURCES["test_labels"])
    for name in CLASS_NAMES:
        (out / name).mkdir(parents=True, exist_ok=True)
    chunk = 500
    chunks = [plan[start:start + chunk] for start in range(0, len(plan), chunk)]
    started = time.perf_counter()
    done = total_bytes = 0
    last_print = 0.0
    interactive = sys.stderr.isatty()
    context = multiprocessing.get_context("fork")  # the parent has not imported TensorFlow
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(write_chunk, str(out), jobs) for jobs in chunks]
        for future in as_completed(futures):
            files, size = future.result()
            done += files
            total_bytes += size
            now = time.perf_counter()
            if now - last_print > (0.5 if interactive else 10) or done == len(plan):
                last_print = now
                rate = done / max(now - started, 1e-9)
                line = (f"write {done:,}/{len(plan):,} PNGs  {rate:,.0f}/s  "
                        f"eta {(len(plan) - done) / max(rate, 1e-9):.0f}s")
                sys.stderr.write(("\r" + line + ("\n" if done == len(plan) else "")) if interactive else line + "\n")
                sys.stderr.flush()
    seconds = time.perf_counter() - started
    sources = {kind: sum(1 for _, source, _ in plan if source == kind) for kind in ("train", "test", "flip")}
    return {"write_s": round(seconds, 2), "write_ips": round(len(plan) / seconds, 1), "bytes": total_bytes,
            "sources": sources, "workers": workers}


# =============================================================================================
# 1. Scan


def child_scan(data: str) -> int:
    """`_child-scan DATA`: scan_dataset in this process; one JSON line on stdout."""
    from imgclf_core.data.dataset import scan_dataset

    started = time.perf_counter()
    index = scan_dataset(data)
    seconds = time.perf_counter() - started
    print(json.dumps({"scan_s": seconds, "images": index.num_images, "skipped": len(index.skipped),
                      "decoded_files": index.decoded_files, "duplicate_groups": len(index.duplicate_groups)}))
    return 0


def measure_scan(data: Path, work: Path, caches: Caches, args) -> dict:
    cache = caches.fresh("scan")
    results = {}
    for case in ("cold", "warm"):
        dropped = drop_page_cache(args.drop_caches) if case == "cold" else False
        log(f"[scan] {case}{' (page cache dropped)' if dropped else ''} ...")
        out, err = work / "logs" / f"scan-{case}.json", work / "logs" / f"scan-{case}.log"
        child = run_child([sys.executable, str(Path(__file__).resolve()), "_child-scan", str(data)],
                          child_env(cache, work), stdout_path=out, stderr_path=err, timeout_s=args.child_timeout)
        if child.returncode != 0:
            raise RuntimeError(f"scan {case} failed ({child.returncode}):\n{tail(err)}")
        inner = json.loads(out.read_text().strip().splitlines()[-1])
        results[case] = {**child.figures(), **{key: (round(value, 3) if isinstance(value, float) else value)
                                               for key, value in inner.items()},
                         "page_cache_dropped": dropped}
        log(f"  {results[case]['seconds']:.1f} s (scan_dataset {inner['scan_s']:.1f} s, "
            f"{inner['decoded_files']:,} files read), peak RSS {child.peak_rss_mb:.0f} MB")
    caches.warm_scan = cache
    return results


def ensure_scan_cache(data: Path, work: Path, caches: Caches, args) -> str:
    """A cache dir holding the dataset's scan, for the browser and train steps; how it was obtained."""
    if caches.warm_scan is not None:
        return "step 1 (scan)"
    cache = caches.fresh("scan-prep")
    out, err = work / "logs" / "scan-prep.json", work / "logs" / "scan-prep.log"
    log("[scan] the scan step was skipped: scanning once for the browser/train steps ...")
    child = run_child([sys.executable, str(Path(__file__).resolve()), "_child-scan", str(data)],
                      child_env(cache, work), stdout_path=out, stderr_path=err, timeout_s=args.child_timeout)
    if child.returncode != 0:
        raise RuntimeError(f"scan failed ({child.returncode}):\n{tail(err)}")
    caches.warm_scan = cache
    return "a scan made for them (scan step skipped)"


# =============================================================================================
# 2. The Dataset page in a browser


SETTLED_JS = """([mustInclude, captionPrefix, firstCaption, dialogText, imagesMetric]) => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (document.querySelector('[data-testid="stSkeleton"]')) return false;
    const main = document.querySelector('[data-testid="stMain"]') || document.body;
    if (mustInclude && !main.innerText.includes(mustInclude)) return false;
    if (imagesMetric) {
        let shown = null;
        for (const metric of main.querySelectorAll('[data-testid="stMetric"]')) {
            const name = metric.querySelector('[data-testid="stMetricLabel"]');
            const value = metric.querySelector('[data-testid="stMetricValue"]');
            if (name && value && name.innerText.trim() === 'Images') shown = value.innerText.trim();
        }
        if (shown !== imagesMetric) return false;
    }
    const captions = [...main.querySelectorAll('[data-testid="stImageCaption"]')]
        .map((caption) => caption.innerText.trim()).filter((text) => text.includes(' · '));
    if (firstCaption && captions[0] !== firstCaption) return false;
    if (captionPrefix && (!captions.length || !captions.every((text) => text.startsWith(captionPrefix)))) return false;
    if (dialogText) {
        const dialog = document.querySelector('[role="dialog"]');
        if (!dialog || !dialog.innerText.includes(dialogText) || !dialog.querySelector('img')) return false;
    }
    return [...document.querySelectorAll('img')].every((image) => image.complete && image.naturalWidth > 0);
}"""

PAINTED_JS = """([imagesMetric]) => {
    const heading = [...document.querySelectorAll('h1')].some((h1) => h1.innerText.trim().startsWith('Dataset'));
    if (!heading) return false;
    for (const metric of document.querySelectorAll('[data-testid="stMetric"]')) {
        const name = metric.querySelector('[data-testid="stMetricLabel"]');
        const value = metric.querySelector('[data-testid="stMetricValue"]');
        if (name && value && name.innerText.trim() === 'Images' && value.innerText.trim() === imagesMetric) return true;
    }
    return false;
}"""

# The grid drawn: its first caption is `first` and every grid image has loaded (the script may still run).
GRID_JS = """([first]) => {
    const main = document.querySelector('[data-testid="stMain"]');
    if (!main) return false;
    const captions = [...main.querySelectorAll('[data-testid="stImageCaption"]')]
        .filter((caption) => caption.innerText.includes(' · '));
    if (!captions.length || captions[0].innerText.trim() !== first) return false;
    return [...main.querySelectorAll('[data-testid="stImage"] img')].every((image) => image.complete && image.naturalWidth > 0);
}"""


def listing(data: Path) -> list[tuple[str, str]]:
    """(class, file name) of every image in the scan's record order (sorted relative paths)."""
    paths = sorted(f"{name}/{entry.name}" for name in CLASS_NAMES if (data / name).is_dir()
                   for entry in os.scandir(data / name) if entry.name.endswith(".png"))
    return [tuple(path.split("/", 1)) for path in paths]


def caption(item: tuple[str, str]) -> str:
    return f"{item[0]} · {item[1]}"


class BrowserServer:
    def __init__(self, data: Path, cache: Path, work: Path, name: str):
        from streamlit_browser import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = work / "logs" / f"streamlit-{name}.log"
        self.env = child_env(cache, work / name, IMGCLF_DATA_DIR=str(data))
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "BrowserServer":
        from streamlit_browser import streamlit_command, wait_for_server

        with self.log_path.open("wb") as output:
            self.process = subprocess.Popen(streamlit_command(self.port), cwd=ROOT, env=self.env, stdout=output,
                                            stderr=subprocess.STDOUT)
        wait_for_server(self.url, timeout_s=120)
        return self

    def rss_mb(self) -> float:
        """VmRSS of the server and its descendants (as bench_memory.py counts it), MB."""
        total_kb = 0
        for pid in process_tree(self.process.pid):
            total_kb += proc_status_kb(pid, ("VmRSS",)).get("VmRSS", 0)
        return round(total_kb / 1024, 1)

    def peak_mb(self) -> float:
        return round(proc_status_kb(self.process.pid, ("VmHWM",)).get("VmHWM", 0) / 1024, 1)

    def __exit__(self, *exc) -> None:
        from streamlit_browser import stop_process

        if self.process is not None:
            stop_process(self.process, timeout_s=30)


def timed_wait(page, started: float, timeout_s: float, *, must_include=None, caption_prefix=None,
               first_caption=None, dialog_text=None, images_metric=None) -> float:
    page.wait_for_function(SETTLED_JS, arg=[must_include, caption_prefix, first_caption, dialog_text, images_metric],
                           polling="raf", timeout=timeout_s * 1000)
    return time.perf_counter() - started


def screenshot(page, screens: Path | None, name: str, shots: list[str]) -> None:
    if screens is None:
        return
    path = screens / f"{len(shots) + 1:02d}-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    shots.append(str(path))


def first_paint(page, server: BrowserServer, images_metric: str, first: str, timeout_s: float) -> dict:
    started = time.perf_counter()
    page.goto(server.url + "dataset", wait_until="commit", timeout=timeout_s * 1000)
    page.wait_for_function(PAINTED_JS, arg=[images_metric], polling="raf", timeout=timeout_s * 1000)
    painted = time.perf_counter() - started
    page.wait_for_function(GRID_JS, arg=[first], polling="raf", timeout=timeout_s * 1000)
    grid = time.perf_counter() - started
    settled = timed_wait(page, started, timeout_s, first_caption=first, images_metric=images_metric)
    return {"painted_s": round(painted, 3), "grid_s": round(grid, 3), "seconds": round(settled, 3)}


def mark_browser_targets(result: dict) -> None:
    for action in result.get("actions", {}).values():
        action["target_met"] = action["seconds"] <= TARGET_ACTION_S


def measure_browser(data: Path, work: Path, caches: Caches, args, files: list[tuple[str, str]], result: dict) -> dict:
    from streamlit_browser import CHROMIUM, chromium_page

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"needs {CHROMIUM} and pip's playwright")
    screens = Path(args.screens) if args.screens else None
    if screens:
        screens.mkdir(parents=True, exist_ok=True)
    shots: list[str] = []
    images_metric = f"{len(files):,}"
    page_size = 24  # the grid's default "Per page"
    timeout_s = args.browser_timeout
    result.update({"scan_cache": ensure_scan_cache(data, work, caches, args), "target_s": TARGET_ACTION_S,
                   "actions": {}, "rss_mb": {}, "screens": shots})
    chosen = args.browser_class
    of_class = [item for item in files if item[0] == chosen]
    if not of_class:
        raise RuntimeError(f"--browser-class {chosen!r} has no images")

    cache = caches.fresh("browser-warm", [(caches.warm_scan, "scan")])
    log("[browser] fresh server, warm scan cache: first paint, reload, next page, class filter, inspect ...")
    with BrowserServer(data, cache, work, "browser-warm") as server, chromium_page(height=BROWSER_HEIGHT) as page:
        try:
            result["rss_mb"]["server_started"] = server.rss_mb()
            actions = result["actions"]
            actions["first_paint"] = first_paint(page, server, images_metric, caption(files[0]), timeout_s)
            result["rss_mb"]["first_paint"] = server.rss_mb()
            screenshot(page, screens, "first-paint", shots)

            started = time.perf_counter()
            page.reload(wait_until="commit", timeout=timeout_s * 1000)
            actions["reload"] = {"seconds": round(timed_wait(page, started, timeout_s, first_caption=caption(files[0]),
                                                             images_metric=images_metric), 3)}
            result["rss_mb"]["reload"] = server.rss_mb()

            if len(files) > page_size:
                step_up = page.locator('[data-testid="stNumberInput"]').filter(has_text="Page (of") \
                    .locator('[data-testid="stNumberInputStepUp"]')
                step_up.wait_for(timeout=timeout_s * 1000)
                started = time.perf_counter()
                step_up.click()
                actions["next_page"] = {"seconds": round(timed_wait(
                    page, started, timeout_s, first_caption=caption(files[page_size])), 3)}
                result["rss_mb"]["next_page"] = server.rss_mb()
                screenshot(page, screens, "next-page", shots)

            select = page.get_by_role("combobox", name="Class", exact=True)
            select.click()
            page.keyboard.type(chosen)
            option = page.get_by_role("option", name=chosen, exact=True)
            option.wait_for(timeout=timeout_s * 1000)
            started = time.perf_counter()
            option.click()
            actions["class_filter"] = {"seconds": round(timed_wait(
                page, started, timeout_s, must_include=f"{len(of_class):,} image(s) match",
                caption_prefix=f"{chosen} · "), 3), "class": chosen, "matching": len(of_class)}
            result["rss_mb"]["class_filter"] = server.rss_mb()
            page.evaluate("() => document.activeElement && document.activeElement.blur()")
            screenshot(page, screens, "class-filter", shots)

            shown = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stImageCaption"]')]
                .map((caption) => caption.innerText.trim()).filter((text) => text.includes(' · '))[0]""")
            file_name = shown.split(" · ")[-1]
            button = page.locator('[data-testid="stMain"]').get_by_role("button", name="Inspect").first
            started = time.perf_counter()
            button.click()
            actions["inspect"] = {"seconds": round(timed_wait(page, started, timeout_s, dialog_text=file_name), 3),
                                  "file": shown}
            result["rss_mb"]["inspect"] = server.rss_mb()
            screenshot(page, screens, "inspect", shots)
            result["server_peak_rss_mb"] = server.peak_mb()
        except Exception:
            log(f"[browser] streamlit log (last lines):\n{tail(server.log_path)}")
            with_error = screens / "error-warm.png" if screens else None
            if with_error:
                page.screenshot(path=str(with_error), full_page=True)
            raise

    if args.browser_cold:
        cache = caches.fresh("browser-cold")
        dropped = drop_page_cache(args.drop_caches)
        log(f"[browser] fresh server, fresh cache{' (page cache dropped)' if dropped else ''}: cold first paint ...")
        with BrowserServer(data, cache, work, "browser-cold") as server, chromium_page(height=BROWSER_HEIGHT) as page:
            try:
                cold = first_paint(page, server, images_metric, caption(files[0]), timeout_s)
                result["actions"]["cold_first_paint"] = {**cold, "page_cache_dropped": dropped}
                result["rss_mb"]["cold_first_paint"] = server.rss_mb()
                result["cold_server_peak_rss_mb"] = server.peak_mb()
                screenshot(page, screens, "cold-first-paint", shots)
            except Exception:
                log(f"[browser] streamlit log (last lines):\n{tail(server.log_path)}")
                raise
    mark_browser_targets(result)
    for name, action in result["actions"].items():
        painted = f" (painted {action['painted_s']:.2f} s, grid {action['grid_s']:.2f} s)" if "painted_s" in action else ""
        log(f"  {name}: {action['seconds']:.2f} s{painted}")
    return result


# =============================================================================================
# 3. Training


class RunWatcher:
    """Polled by run_child: when each status.json message was first seen, and when the array store appeared."""

    def __init__(self, run_dir: Path, cache: Path):
        self.status_path = run_dir / "status.json"
        self.arrays = cache / "arrays"
        self.messages: dict[str, float] = {}
        self.store_at: float | None = None

    def __call__(self, elapsed: float) -> None:
        try:
            status = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            status = None
        if status:
            message = str(status.get("message", ""))
            self.messages.setdefault(message, elapsed)
        if self.store_at is None and self.arrays.is_dir() and any(
                path.suffix == ".npy" and not path.name.startswith(".") for path in self.arrays.iterdir()):
            self.store_at = elapsed


def read_progress(run_dir: Path) -> list[dict]:
    lines = []
    try:
        for line in (run_dir / "progress.jsonl").read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    except OSError:
        pass
    return lines


def train_figures(run_dir: Path, watcher: RunWatcher, child: ChildResult, images: int) -> dict:
    config = json.loads((run_dir / "config.json").read_text())
    data_config = config["run"]["data"]
    batch = int(data_config["batch_size"])
    status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").exists() else {}
    progress = [line for line in read_progress(run_dir) if line.get("epoch") == 1]
    history = []
    if (run_dir / "history.csv").exists():
        with (run_dir / "history.csv").open(newline="") as handle:
            history = list(csv.DictReader(handle))
    validation = 0
    if (run_dir / "predictions.csv").exists():
        with (run_dir / "predictions.csv").open(newline="") as handle:
            validation = sum(1 for row in csv.DictReader(handle) if row.get("split", "validation") == "validation")
    figures: dict = {
        **child.figures(), "state": status.get("state"), "message": status.get("message"),
        "batch_size": batch, "image_size": data_config["image_size"], "color_mode": data_config["color_mode"],
        "cache_setting": data_config["cache"], "model": config["run"]["model"]["name"],
        "array_store": "disk" if watcher.store_at is not None else "memory",
        "status_messages_s": {message: round(at, 2) for message, at in watcher.messages.items()},
        "target_peak_mb": TARGET_TRAIN_PEAK_MB, "target_met": child.peak_rss_mb <= TARGET_TRAIN_PEAK_MB,
    }
    if not progress:
        return figures
    steps = int(progress[-1]["steps"])
    train_images = images - validation if validation else steps * batch
    figures.update({"train_images": train_images, "validation_images": validation or None, "steps": steps,
                    "train_seconds": progress[-1]["seconds"],
                    "train_ips": round(train_images / progress[-1]["seconds"], 1)})
    if len(progress) >= 2 and progress[-1]["seconds"] > progress[0]["seconds"]:
        figures["steady_ips"] = round((progress[-1]["step"] - progress[0]["step"]) * batch
                                      / (progress[-1]["seconds"] - progress[0]["seconds"]), 1)
    if history:
        figures["epoch_s"] = float(history[0]["seconds"])
        figures["val_accuracy"] = float(history[0]["val_accuracy"]) if history[0].get("val_accuracy") else None
    decoding = watcher.messages.get("decoding images")
    epoch_seen = watcher.messages.get("epoch 1")
    if decoding is not None and epoch_seen is not None:
        first_line_s = float(progress[0]["seconds"])  # the first "epoch 1" status follows the first progress line
        figures["decode_s"] = round(epoch_seen - first_line_s - decoding, 2)
        figures["startup_to_decode_s"] = round(decoding, 2)
    if watcher.store_at is not None and decoding is not None:
        figures["decode_to_store_s"] = round(watcher.store_at - decoding, 2)  # the .npy renamed into place
    return figures


def measure_train(data: Path, work: Path, caches: Caches, args, images: int, result: dict) -> dict:
    result["scan_cache"] = ensure_scan_cache(data, work, caches, args)
    runs = work / "runs"
    runs.mkdir(exist_ok=True)
    options = ["--epochs", str(args.train_epochs), "--model", "small_cnn", "--image-size", str(IMAGE_SIDE),
               "--color-mode", "rgb"]

    cache = caches.fresh("train-cli", [(caches.warm_scan, "scan")])
    run_dir = runs / "cli_auto"
    watcher = RunWatcher(run_dir, cache)
    log(f"[train] cli_auto: imgclf train {' '.join(options)} ...")
    out, err = work / "logs" / "train-cli.out", work / "logs" / "train-cli.log"
    child = run_child([sys.executable, "-m", "imgclf_core.cli", "train", str(data), "--out", str(run_dir), *options],
                      child_env(cache, work), stdout_path=out, stderr_path=err, timeout_s=args.child_timeout,
                      watcher=watcher)
    if not (run_dir / "config.json").exists():
        raise RuntimeError(f"imgclf train wrote no config ({child.returncode}):\n{tail(err)}")
    result["cli_auto"] = train_figures(run_dir, watcher, child, images)
    if child.returncode != 0:
        log(f"  imgclf train failed ({child.returncode}):\n{tail(err)}")
    report_train("cli_auto", result["cli_auto"])

    from imgclf_core.config import run_config_from_dict
    from imgclf_core.training.run_folder import RunFolder
    from dataclasses import replace

    raw = json.loads((run_dir / "config.json").read_text())
    run_config = run_config_from_dict(raw["run"])
    disk_config = replace(run_config, data=replace(run_config.data, cache="disk"))
    disk_run = runs / "disk"
    disk_run.mkdir()
    RunFolder(disk_run).write_config(disk_config)
    cache = caches.fresh("train-disk", [(caches.warm_scan, "scan")])
    watcher = RunWatcher(disk_run, cache)
    log("[train] disk: the same config with data.cache = 'disk', python -m imgclf_core.training RUN ...")
    out, err = work / "logs" / "train-disk.out", work / "logs" / "train-disk.log"
    child = run_child([sys.executable, "-m", "imgclf_core.training", str(disk_run)], child_env(cache, work),
                      stdout_path=out, stderr_path=err, timeout_s=args.child_timeout, watcher=watcher)
    result["disk"] = train_figures(disk_run, watcher, child, images)
    if child.returncode != 0:
        log(f"  trainer failed ({child.returncode}):\n{tail(err)}")
    report_train("disk", result["disk"])
    return result


def report_train(name: str, figures: dict) -> None:
    log(f"  {name}: {figures['state']}, {figures['seconds']:.0f} s, decode {figures.get('decode_s', '?')} s, "
        f"train {figures.get('train_ips', '?')} img/s (steady {figures.get('steady_ips', '?')}), "
        f"arrays in {figures['array_store']}, peak RSS {figures['peak_rss_mb']:.0f} MB "
        f"(anon {figures['peak_rss_anon_mb']:.0f}, file {figures['peak_rss_file_mb']:.0f})")


# =============================================================================================
# 4. Audit


PHASE_LINE = re.compile(r"^(scan|embed|heads|duplicates|map)\s+100% \|#*\s*\| (\d+)/(\d+) \[(\d+)s<")


def audit_phases(stderr_text: str) -> dict:
    """Seconds of each phase (whole seconds, from the CLI's progress lines; scan only from 500 files)."""
    phases = {}
    for line in stderr_text.replace("\r", "\n").splitlines():
        match = PHASE_LINE.match(line.strip())
        if match:
            phases[match.group(1)] = {"seconds": int(match.group(4)), "items": int(match.group(3))}
    return phases


def prepare_weights(work: Path, caches: Caches, args) -> dict:
    cache = caches.fresh("weights")
    out, err = work / "logs" / "weights.out", work / "logs" / "weights.log"
    code = ("from imgclf_core.models.efficientnet_lite import load_efficientnet_lite0_weights; "
            "load_efficientnet_lite0_weights()")
    log("[audit] converting the EfficientNet-Lite0 weights once ...")
    child = run_child([sys.executable, "-c", code], child_env(cache, work), stdout_path=out, stderr_path=err,
                      timeout_s=args.child_timeout)
    if child.returncode != 0:
        raise RuntimeError(f"weights conversion failed:\n{tail(err)}")
    caches.weights = cache
    return child.figures()


def make_subset(data: Path, files: list[tuple[str, str]], fraction: float, target: Path) -> int:
    """The first round(fraction * count) files of each class, hard-linked (copied if links fail)."""
    by_class: dict[str, list[str]] = {}
    for label, name in files:
        by_class.setdefault(label, []).append(name)
    count = 0
    for label, names in by_class.items():
        (target / label).mkdir(parents=True)
        for name in names[:round(len(names) * fraction)]:
            try:
                os.link(data / label / name, target / label / name)
            except OSError:
                shutil.copy2(data / label / name, target / label / name)
            count += 1
    return count


def audit_one(folder: Path, images: int, work: Path, caches: Caches, args) -> list[dict]:
    cache = caches.fresh(f"audit-{images}", [(caches.weights, "weights")])
    runs = []
    for case in ("cold", "warm"):
        dropped = drop_page_cache(args.drop_caches) if case == "cold" else False
        log(f"[audit] {images:,} images, {case}{' (page cache dropped)' if dropped else ''} ...")
        out, err = work / "logs" / f"audit-{images}-{case}.json", work / "logs" / f"audit-{images}-{case}.log"
        child = run_child([sys.executable, "-m", "imgclf_core.cli", "audit", str(folder), "--json"],
                          child_env(cache, work), stdout_path=out, stderr_path=err, timeout_s=args.child_timeout)
        entry = {"images": images, "case": case, **child.figures(), "page_cache_dropped": dropped,
                 "phases": audit_phases(err.read_text(errors="replace"))}
        if child.returncode == 0:
            document = json.loads(out.read_text())
            entry.update({"suspects": len(document["suspects"]), "near_duplicate_groups": len(document["near_duplicates"]),
                          "json_bytes": out.stat().st_size})
        else:
            log(f"  audit failed ({child.returncode}):\n{tail(err)}")
        out.unlink(missing_ok=True)  # tens of MB at 100k
        log(f"  {entry['seconds']:.1f} s, peak RSS {entry['peak_rss_mb']:.0f} MB, phases "
            + ", ".join(f"{name} {phase['seconds']} s" for name, phase in entry["phases"].items()))
        runs.append(entry)
    return runs


def fit_line(points: list[tuple[int, float]]) -> dict | None:
    if len(points) < 2 or len({x for x, _ in points}) < 2:
        return None
    xs, ys = np.array([x for x, _ in points], float), np.array([y for _, y in points], float)
    slope, intercept = np.polyfit(xs, ys, 1)
    return {"mb_per_1000_images": round(float(slope) * 1000, 2), "intercept_mb": round(float(intercept), 1),
            "points": [[int(x), round(y, 1)] for x, y in points]}


def measure_audit(data: Path, work: Path, caches: Caches, args, files: list[tuple[str, str]], result: dict) -> dict:
    result.update({"weights_conversion": prepare_weights(work, caches, args), "runs": []})
    fractions = sorted({float(value) for value in args.audit_fractions.split(",") if value.strip()} - {1.0})
    for fraction in fractions:
        folder = work / f"subset-{fraction:g}"
        count = make_subset(data, files, fraction, folder)
        result["runs"] += audit_one(folder, count, work, caches, args)
        shutil.rmtree(folder, ignore_errors=True)
    if not args.no_audit_whole:
        result["runs"] += audit_one(data, len(files), work, caches, args)
    for case in ("cold", "warm"):
        points = [(run["images"], run["peak_rss_mb"]) for run in result["runs"]
                  if run["case"] == case and run["returncode"] == 0]
        result[f"fit_{case}"] = fit_line(points)
    return result


# =============================================================================================
# Report


def print_table(results: dict) -> None:
    rows: list[tuple[str, str, str, str]] = []

    def seconds(value) -> str:
        return "" if value is None else f"{value:,.2f}"

    def mb(value) -> str:
        return "" if value is None else f"{value:,.0f}"

    dataset = results["dataset"]
    rows.append((f"dataset: write {dataset['images']:,} PNGs", seconds(dataset.get("write_s")), "",
                 f"{dataset.get('write_ips', 0):,.0f} img/s, {dataset['bytes'] / MB:,.0f} MB on disk"
                 if dataset.get("write_s") else "reused"))
    scan = results.get("scan")
    if scan:
        for case in [case for case in ("cold", "warm") if case in scan]:
            figures = scan[case]
            note = f"{figures['decoded_files']:,} files read"
            if case == "cold":
                note += ", page cache dropped" if figures["page_cache_dropped"] else ", page cache NOT dropped"
            rows.append((f"scan {case}", seconds(figures["seconds"]), mb(figures["peak_rss_mb"]), note))
    browser = results.get("browser")
    if browser and browser.get("actions"):
        for name, action in browser["actions"].items():
            verdict = "PASS" if action["target_met"] else "MISS"
            extra = (f"painted {action['painted_s']:.2f} s, grid drawn {action['grid_s']:.2f} s; "
                     if "painted_s" in action else "")
            rows.append((f"browser: {name}", seconds(action["seconds"]),
                         mb(browser.get("rss_mb", {}).get(name)), f"{extra}target <= {TARGET_ACTION_S:.0f} s: {verdict}"))
        rows.append(("browser: server peak (VmHWM)", "", mb(browser.get("server_peak_rss_mb")),
                     f"cold server {mb(browser.get('cold_server_peak_rss_mb'))} MB" if "cold_server_peak_rss_mb" in browser else ""))
    train = results.get("train")
    if train:
        for name in ("cli_auto", "disk"):
            figures = train.get(name)
            if not figures:
                continue
            verdict = "PASS" if figures["target_met"] else "MISS"
            rows.append((f"train {name} ({figures['array_store']}), whole process", seconds(figures["seconds"]),
                         mb(figures["peak_rss_mb"]),
                         f"{figures['state']}; anon {mb(figures['peak_rss_anon_mb'])} + file {mb(figures['peak_rss_file_mb'])} MB;"
                         f" peak <= {TARGET_TRAIN_PEAK_MB:,.0f} MB: {verdict}"))
            rows.append((f"  decode", seconds(figures.get("decode_s")), "", ""))
            rows.append((f"  epoch (train+val)", seconds(figures.get("epoch_s")), "",
                         f"{figures.get('train_ips', '?')} img/s training, steady {figures.get('steady_ips', '?')};"
                         f" batch {figures['batch_size']}, {figures.get('train_images', '?')} train images"))
    audit = results.get("audit")
    if audit and audit.get("weights_conversion"):
        rows.append(("audit: weights conversion (once)", seconds(audit["weights_conversion"]["seconds"]),
                     mb(audit["weights_conversion"]["peak_rss_mb"]), ""))
        for run in audit.get("runs", []):
            phases = ", ".join(f"{name} {phase['seconds']}" for name, phase in run["phases"].items())
            rows.append((f"audit {run['images']:,} {run['case']}", seconds(run["seconds"]), mb(run["peak_rss_mb"]),
                         (f"phases (s): {phases}" if phases else "") + ("" if run["returncode"] == 0 else " FAILED")))
        for case in ("cold", "warm"):
            fit = audit.get(f"fit_{case}")
            if fit:
                rows.append((f"audit peak growth, {case}", "", "",
                             f"{fit['mb_per_1000_images']:+.1f} MB per 1,000 images (intercept {fit['intercept_mb']:.0f} MB)"))
    for step, seconds_taken in results.get("step_seconds", {}).items():
        rows.append((f"step {step} (wall)", seconds(seconds_taken), "", ""))
    for step, error in results.get("errors", {}).items():
        rows.append((f"{step} FAILED", "", "", error.splitlines()[0][:120]))
    rows.append(("total", seconds(results["total_s"]), "", ""))
    widths = [max(len(row[column]) for row in rows + [("measurement", "seconds", "peak RSS MB", "")]) for column in range(3)]
    header = f"{'measurement':<{widths[0]}}  {'seconds':>{widths[1]}}  {'peak RSS MB':>{widths[2]}}  notes"
    print(f"\nimgclf 100k benchmark: {dataset['images']:,} images of {IMAGE_SIDE} px RGB "
          f"({results['environment']['cpus']} CPUs)")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}".rstrip())
    print(flush=True)


# =============================================================================================
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000, help="images in the dataset (default: %(default)s)")
    parser.add_argument("--out", default=None, help="dataset folder to create (default: a new temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="--out already holds the dataset of --images images: use it")
    parser.add_argument("--keep", action="store_true", help="keep the dataset (and the work folder) afterwards")
    parser.add_argument("--skip", default="", help=f"comma list of steps to skip: {','.join(STEPS)}")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the numbers as JSON here")
    parser.add_argument("--screens", default=None, metavar="DIR", help="screenshots of the browser states go here")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing the PNGs")
    parser.add_argument("--no-drop-caches", dest="drop_caches", action="store_false",
                        help="never drop the OS page cache before a cold case")
    parser.add_argument("--browser-class", default="sandal", help="the class picked in the grid's Class filter")
    parser.add_argument("--no-browser-cold", dest="browser_cold", action="store_false",
                        help="skip the cold first paint (a fresh server scanning every file)")
    parser.add_argument("--browser-timeout", type=float, default=900, help="seconds one browser wait may take")
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument("--no-audit-whole", action="store_true",
                        help="audit only the --audit-fractions subsets, not the whole dataset (its cold run "
                             "embeds every image: ~35 min at 100k on 2 cores)")
    parser.add_argument("--audit-fractions", default="0.25,0.5",
                        help="subsets of the dataset audited besides the whole (default: %(default)s)")
    parser.add_argument("--child-timeout", type=float, default=6 * 3600, help="seconds a measured process may take")
    args = parser.parse_args(argv)
    args.skip_steps = {step.strip() for step in args.skip.split(",") if step.strip()}
    unknown = args.skip_steps - set(STEPS)
    if unknown:
        parser.error(f"--skip: unknown {sorted(unknown)}; known: {','.join(STEPS)}")
    if not 2 <= args.images <= 2 * 60_000 + 10_000:
        parser.error("--images must be between 2 and 130000 (70k images + at most 60k flipped copies)")
    if args.reuse and not args.out:
        parser.error("--reuse needs --out")
    if args.browser_class not in CLASS_NAMES:
        parser.error(f"--browser-class must be one of {', '.join(CLASS_NAMES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child-scan"]:
        return child_scan(argv[1])
    args = parse_args(argv)
    total_started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="imgclf-bench-100k-work-"))
    (work / "logs").mkdir()
    created_out = False
    if args.out:
        data = Path(args.out).resolve()
        if args.reuse:
            counts = count_pngs(data)
            if sum(counts.values()) != args.images:
                raise SystemExit(f"--reuse: {data} holds {sum(counts.values())} PNGs, not {args.images}")
        elif data.exists() and any(data.iterdir()):
            raise SystemExit(f"--out {data} exists and is not empty (use --reuse for a dataset written before)")
        else:
            created_out = True
    else:
        data = Path(tempfile.mkdtemp(prefix="imgclf-bench-100k-data-")).resolve()
        created_out = True

    import streamlit

    results: dict = {
        "environment": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
                        "streamlit": streamlit.__version__,
                        "load_average_at_start": [round(value, 2) for value in os.getloadavg()]},
        "config": {key: value for key, value in vars(args).items() if key != "skip_steps"},
        "dataset": {"path": str(data), "images": args.images, "image_side": IMAGE_SIDE},
    }
    caches = Caches(work)
    try:
        if created_out and not args.reuse:
            log(f"[dataset] writing {args.images:,} PNGs into {data} ({args.workers} processes) ...")
            results["dataset"].update(build_dataset(data, args.images, args.workers))
        else:
            results["dataset"]["bytes"] = sum(entry.stat().st_size for name in CLASS_NAMES if (data / name).is_dir()
                                              for entry in os.scandir(data / name))
        counts = count_pngs(data)
        results["dataset"]["per_class"] = counts
        files = listing(data)
        # Each fills the dict it is given as it goes: what a failed step measured before failing is kept.
        measurements = {
            "scan": lambda result: result.update(measure_scan(data, work, caches, args)),
            "browser": lambda result: measure_browser(data, work, caches, args, files, result),
            "train": lambda result: measure_train(data, work, caches, args, len(files), result),
            "audit": lambda result: measure_audit(data, work, caches, args, files, result),
        }
        for step, measure in measurements.items():
            if step in args.skip_steps:
                continue
            step_started = time.perf_counter()
            results[step] = {}
            try:
                measure(results[step])
            except Exception as error:  # the other steps still run; the error is in the JSON and the table
                log(f"[{step}] FAILED: {type(error).__name__}: {error}")
                results.setdefault("errors", {})[step] = f"{type(error).__name__}: {error}"
                if step == "browser":
                    mark_browser_targets(results[step])
            results.setdefault("step_seconds", {})[step] = round(time.perf_counter() - step_started, 1)
    finally:
        results["total_s"] = round(time.perf_counter() - total_started, 1)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
            log(f"wrote {args.json}")
        if args.keep:
            log(f"kept the dataset in {data} and the work folder (caches, runs, logs) in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            if created_out:
                shutil.rmtree(data, ignore_errors=True)
    print_table(results)
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
