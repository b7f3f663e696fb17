"""Server memory over many predictions in one browser session: does the Predict page leak?

    .venv/bin/python bench/bench_memory.py [--uploads 500] [--warmup 50] [--model imagenet|tiny] [--json out.json]

Starts `streamlit run app.py` on 127.0.0.1 (runs, data, config and cache folders in a temporary
folder), opens the Predict page in Debian's headless Chromium (Playwright; never `playwright
install`) and, in ONE session, uploads an image, waits for its prediction and Grad-CAM overlay,
removes it and uploads the next: --uploads times, cycling through real photos (skimage.data) and
generated images, each under a new name. The server's resident memory (VmRSS of the process and
its children, from /proc) is sampled after --warmup uploads and every --sample-every uploads after
that. PASS when the growth from the warm-up sample to the last one is under --limit-mb.

--model imagenet (default) uses the built-in EfficientNet-Lite0 (224 px, what a person without a
run of their own gets); --model tiny makes a run with an untrained 32 px small_cnn (faster).
--max-minutes stops early and reports how many uploads were done.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from streamlit_browser import (  # noqa: E402
    chromium_page, free_port, stop_process, streamlit_command, wait_for_server, wait_until_idle,
)

MAIN = '[data-testid="stMain"]'
UPLOADER = '[data-testid="stFileUploader"]'
OVERLAY_CAPTION = "where the model looked for"


# ---------------------------------------------------------------- memory


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (from /proc/PID/task/*/children)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def resident_mb(pid: int) -> float:
    """Resident memory (VmRSS) of a process and its descendants, in MB."""
    total_kb = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue  # a child that just exited
    return total_kb / 1024


# ---------------------------------------------------------------- inputs


def upload_images() -> list[tuple[str, bytes]]:
    """(extension, bytes) of the images cycled through: real photos as JPEG/PNG, generated ones as PNG."""
    import numpy as np
    from PIL import Image
    from skimage import data as skimage_data

    def encode(pixels, image_format: str, **options) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, image_format, **options)
        return buffer.getvalue()

    images = []
    for number, name in enumerate(("chelsea", "coffee", "astronaut", "camera", "rocket")):
        pixels = getattr(skimage_data, name)()
        images.append(("jpg", encode(pixels, "JPEG", quality=90)) if number % 2 == 0 else ("png", encode(pixels, "PNG")))
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 320, dtype=np.uint8)
    images.append(("png", encode(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), "PNG")))
    images.append(("png", encode(np.stack([np.tile(ramp, (240, 1))] * 3, axis=2), "PNG")))
    images.append(("jpg", encode(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), "JPEG", quality=80)))
    return images


def make_tiny_run(runs_dir: Path, data_dir: Path) -> Path:
    """A run folder with an untrained 32 px small_cnn for two classes of `data_dir`, the sidebar's dataset."""
    import keras

    from imgclf_core.config import DataConfig, ModelConfig, RunConfig
    from imgclf_core.models.registry import create_model
    from imgclf_core.training.run_folder import RunFolder

    class_names = ["cats", "dogs"]
    for label in class_names:
        (data_dir / label).mkdir(parents=True, exist_ok=True)
    run_config = RunConfig(data_dir=str(data_dir.resolve()), data=DataConfig(image_size=32, color_mode="rgb"),
                           model=ModelConfig(name="small_cnn", weights="none"))
    run = RunFolder(runs_dir / "20260101-000000-small_cnn")
    run.path.mkdir(parents=True)
    run.write_config(run_config, class_names)
    keras.utils.set_random_seed(0)
    run.save_model(create_model(run_config.model, len(class_names), 32, 3))
    return run.path


# ---------------------------------------------------------------- one round trip


def replace_upload(page, name: str, extension: str, data: bytes, timeout_s: float) -> None:
    """Remove the uploaded image (if any), upload this one, wait until its overlay is drawn."""
    uploader = page.locator(UPLOADER).filter(has_text="Images to classify")
    delete = uploader.locator('[data-testid="stFileChipDeleteBtn"] button, button[data-testid="stFileChipDeleteBtn"]')
    if delete.count():
        delete.first.click()
        page.get_by_text("Upload one or more images").wait_for(timeout=timeout_s * 1000)
        wait_until_idle(page, timeout_s)
    mime = "image/jpeg" if extension == "jpg" else "image/png"
    uploader.locator('input[type="file"]').set_input_files({"name": name, "mimeType": mime, "buffer": data})
    page.locator(MAIN).get_by_text(name, exact=True).first.wait_for(timeout=timeout_s * 1000)
    page.locator(MAIN).get_by_text(OVERLAY_CAPTION).first.wait_for(timeout=timeout_s * 1000)
    wait_until_idle(page, timeout_s)
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stImage"] img')]
                 .every(image => image.complete && image.naturalWidth > 0)""",
        timeout=timeout_s * 1000,
    )
    shown = page.locator(MAIN).get_by_text(OVERLAY_CAPTION).count()
    if shown != 1:
        raise RuntimeError(f"expected one result on the page after uploading {name}, found {shown}")


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict:
    images = upload_images()
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-memory-") as temporary:
        base = Path(temporary)
        folders = {name: base / name.lower() for name in ("IMGCLF_RUNS_DIR", "IMGCLF_DATA_HOME", "IMGCLF_CONFIG_DIR")}
        folders["IMGCLF_CACHE_DIR"] = Path(args.cache_dir) if args.cache_dir else base / "cache"
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, **{name: str(folder) for name, folder in folders.items()},
                       "TF_CPP_MIN_LOG_LEVEL": "2"}
        if args.model == "tiny":
            data_dir = base / "data"
            make_tiny_run(folders["IMGCLF_RUNS_DIR"], data_dir)
            environment["IMGCLF_DATA_DIR"] = str(data_dir)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        log_path = base / "server.log"
        with log_path.open("w") as log:
            server = subprocess.Popen(streamlit_command(port), cwd=ROOT, env=environment, stdout=log,
                                      stderr=subprocess.STDOUT)
        try:
            wait_for_server(url, timeout_s=120)
            return drive(args, server.pid, url, images)
        except Exception:
            print("server log (last lines):\n" + "\n".join(log_path.read_text().splitlines()[-40:]), file=sys.stderr)
            raise
        finally:
            stop_process(server, timeout_s=30)


def drive(args: argparse.Namespace, pid: int, url: str, images: list[tuple[str, bytes]]) -> dict:
    samples: list[dict] = []
    seconds_per_upload: list[float] = []
    started = time.monotonic()
    stopped_early = False
    with chromium_page(height=1400) as page:
        page.goto(url + "predict")
        page.get_by_text("Images to classify").first.wait_for(timeout=300_000)  # the model loads first
        print(f"server RSS with the Predict page open: {resident_mb(pid):.0f} MB", flush=True)
        for number in range(1, args.uploads + 1):
            extension, data = images[(number - 1) % len(images)]
            upload_started = time.monotonic()
            replace_upload(page, f"upload-{number:04d}.{extension}", extension, data, args.timeout)
            seconds_per_upload.append(time.monotonic() - upload_started)
            if number == args.warmup or (number > args.warmup and number % args.sample_every == 0) or number == args.uploads:
                samples.append({"uploads": number, "rss_mb": round(resident_mb(pid), 1),
                                "elapsed_s": round(time.monotonic() - started, 1)})
                print(f"after {number:4d} uploads: RSS {samples[-1]['rss_mb']:.0f} MB "
                      f"({statistics_line(seconds_per_upload)})", flush=True)
            if args.max_minutes and time.monotonic() - started > args.max_minutes * 60:
                stopped_early = True
                if samples[-1]["uploads"] != number:
                    samples.append({"uploads": number, "rss_mb": round(resident_mb(pid), 1),
                                    "elapsed_s": round(time.monotonic() - started, 1)})
                break
    return summarize(args, samples, seconds_per_upload, stopped_early)


def statistics_line(seconds: list[float]) -> str:
    recent = sorted(seconds[-50:])
    return f"median {recent[len(recent) // 2]:.2f} s per upload over the last {len(recent)}"


def summarize(args: argparse.Namespace, samples: list[dict], seconds: list[float], stopped_early: bool) -> dict:
    warm = next((sample for sample in samples if sample["uploads"] == args.warmup), None)
    last = samples[-1] if samples else None
    growth = (last["rss_mb"] - warm["rss_mb"]) if warm and last else None
    ordered = sorted(seconds)
    return {
        "model": args.model,
        "uploads_done": len(seconds),
        "uploads_asked": args.uploads,
        "stopped_early": stopped_early,
        "warmup": args.warmup,
        "rss_after_warmup_mb": warm["rss_mb"] if warm else None,
        "rss_at_end_mb": last["rss_mb"] if last else None,
        "growth_mb": round(growth, 1) if growth is not None else None,
        "limit_mb": args.limit_mb,
        "passed": growth is not None and growth < args.limit_mb and not stopped_early,
        "seconds_per_upload_median": round(ordered[len(ordered) // 2], 3) if ordered else None,
        "seconds_total": round(sum(seconds), 1),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50, help="uploads before the baseline sample")
    parser.add_argument("--sample-every", type=int, default=50)
    parser.add_argument("--limit-mb", type=float, default=150.0, help="allowed growth after warm-up")
    parser.add_argument("--model", choices=("imagenet", "tiny"), default="imagenet")
    parser.add_argument("--cache-dir", default=None, help="IMGCLF_CACHE_DIR to reuse (converted ImageNet weights)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one upload round trip may take")
    parser.add_argument("--max-minutes", type=float, default=0, help="stop after this long (0: never)")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = parser.parse_args(argv)
    if not 0 < args.warmup <= args.uploads:
        parser.error("--warmup must be between 1 and --uploads")

    result = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    verdict = "PASS" if result["passed"] else "FAIL"
    done = result["uploads_done"]
    end_label = f"after {done}" + (" (stopped early)" if result["stopped_early"] else "")
    print(f"RSS after warm-up {result['rss_after_warmup_mb']} MB, {end_label}: {result['rss_at_end_mb']} MB, "
          f"growth {result['growth_mb']} MB (limit {args.limit_mb:.0f} MB): {verdict}")
    print(f"{done} uploads in {result['seconds_total']} s, median {result['seconds_per_upload_median']} s per upload")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
