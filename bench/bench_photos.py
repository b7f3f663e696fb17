"""Phone-photo benchmark: reduced-scale JPEG decoding against the full-size decode, on 12 MP photos.

Reproduce (CPU; timings swing between runs on a small machine, so compare the ratios printed by
ONE run, never absolute numbers across runs):

    .venv/bin/python bench/bench_photos.py --json /tmp/bench_photos.json      # 300 photos + training
    .venv/bin/python bench/bench_photos.py --photos 60 --skip-training        # a quick look

The photos are made by imgclf_core.data.synthetic_photos.write_photo_folder (real skimage photos,
randomly cropped, upscaled to --size, jittered, noised, a quarter of them portrait shots stored
sideways with EXIF Orientation 6) in a temporary folder, or read from --data DIR.

What is measured, in one process, on the same files, side by side:

(a) decode to 224 px RGB, in --threads threads (default: decode_thread_count, as the scanner and
    the pipeline use) through imgclf_core.parallel.map_in_threads. before = decode_image(...,
    reduced_jpeg_decode=False): the full 12 MP decode then a resize, what every caller did until
    now; after = decode_image(...) (libjpeg decodes at 1/2, 1/4 or 1/8 scale, then the resize).
    Every file is read once first, so both read from the OS page cache. --repeats alternates
    before/after (here and in (b)) and reports the medians.
(b) scan_dataset(folder): cold (a fresh empty IMGCLF_CACHE_DIR each) before and after, then warm
    (the second call on the after cache). before = the scanner's check done by a full-size decode,
    as it did until now (imgclf_core.data.dataset.inspect_image replaced by
    `decode_image_with_info(data, reduced_jpeg_decode=False).info`); after = inspect_image (JPEGs
    decoded at 1/8 scale). If imgclf_core.data.dataset does not call inspect_image (yet), both columns
    run the same code and the report says so.
(c) training, each run as its own `imgclf train` process with a fresh IMGCLF_CACHE_DIR (cold scan,
    decode and features; converted pretrained weights are copied in from the user's cache when
    there, so their one-time conversion is not counted): `imgclf train DATA --out RUN` (the
    recommended model and settings for this data) timed from process start to the moment
    status.json holds "usable_model" (polled every 0.2 s), and its final best validation accuracy
    (max val_accuracy in history.csv); then `imgclf train DATA --out RUN2 --model small_cnn`
    (its own defaults), its best validation accuracy and wall time. --skip-training leaves (c) out;
    a failing run is reported as an error and the rest is still printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from imgclf_core.data import dataset as dataset_module  # noqa: E402
from imgclf_core.fileio import user_cache_dir  # noqa: E402
from imgclf_core.data.images import decode_image, decode_image_with_info  # noqa: E402
from imgclf_core.parallel import decode_thread_count, map_in_threads  # noqa: E402
from imgclf_core.data.synthetic_photos import PHOTO_CLASSES, write_photo_folder  # noqa: E402

DECODE_SIZE = 224
POLL_SECONDS = 0.2
SEED = 0
BEFORE_DECODE = "before = full-size decode, then resize (reduced_jpeg_decode=False)"
AFTER_DECODE = "after = reduced-scale JPEG decode (draft), then resize"
BEFORE_SCAN = "before = full-size decode check, as the scanner did until now"
AFTER_SCAN = "after = inspect_image (JPEG decoded at 1/8 scale)"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 4032x3024, got {text!r}") from None
    return width, height


def make_photos(folder: Path, photos: int, classes: int, size: tuple[int, int]) -> dict[str, int]:
    """`photos` // `classes` photos per class (at least one), as write_photo_folder makes them."""
    per_class = max(1, photos // classes)
    if per_class * classes != photos:
        log(f"[photos] {per_class * classes} photos: {per_class} in each of {classes} classes")
    return write_photo_folder(folder, classes=classes, per_class=per_class, size=size, seed=SEED)


def photo_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg"))


@contextmanager
def fresh_cache_dir(workdir: Path) -> Iterator[Path]:
    """Point IMGCLF_CACHE_DIR at a new empty folder for the duration of a block."""
    path = Path(tempfile.mkdtemp(prefix="cache-", dir=workdir))
    previous = os.environ.get("IMGCLF_CACHE_DIR")
    os.environ["IMGCLF_CACHE_DIR"] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("IMGCLF_CACHE_DIR", None)
        else:
            os.environ["IMGCLF_CACHE_DIR"] = previous
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def replaced(module, name: str, value) -> Iterator[None]:
    """setattr for a block, like monkeypatch.setattr(..., raising=False): the name need not exist yet."""
    missing = object()
    previous = getattr(module, name, missing)
    setattr(module, name, value)
    try:
        yield
    finally:
        if previous is missing:
            delattr(module, name)
        else:
            setattr(module, name, previous)


def full_decode_check(data, **options):
    """The scanner's check as it was: a full-size decode of the whole file."""
    options.pop("reduced_jpeg_decode", None)
    return decode_image_with_info(data, reduced_jpeg_decode=False, **options).info


# ---------------------------------------------------------------------------------------------
# (a) decode and (b) scan


def time_decode(files: list[Path], threads: int, reduced: bool) -> float:
    """Seconds to decode every file to DECODE_SIZE px RGB on `threads` threads."""
    def decode(path: Path):
        return decode_image(path, size=DECODE_SIZE, reduced_jpeg_decode=reduced).shape

    start = time.perf_counter()
    shapes = list(map_in_threads(decode, files, threads))
    elapsed = time.perf_counter() - start
    if shapes.count((DECODE_SIZE, DECODE_SIZE, 3)) != len(files):
        raise RuntimeError("a decode gave the wrong shape")
    return elapsed


def bench_decode(files: list[Path], threads: int, repeats: int) -> dict:
    for path in files:  # into the OS page cache, so neither side pays for the disk
        path.read_bytes()
    before, after = [], []
    for round_number in range(repeats):
        log(f"[decode] round {round_number + 1}/{repeats}: before (full decode) ...")
        before.append(time_decode(files, threads, reduced=False))
        log(f"[decode] round {round_number + 1}/{repeats}: after (reduced decode) ...")
        after.append(time_decode(files, threads, reduced=True))
    before_ips = len(files) / statistics.median(before)
    after_ips = len(files) / statistics.median(after)
    return {
        "images": len(files), "size": DECODE_SIZE, "threads": threads,
        "before_s_each": before, "after_s_each": after,
        "before_ips": before_ips, "after_ips": after_ips, "ratio": after_ips / before_ips,
        "before_label": BEFORE_DECODE, "after_label": AFTER_DECODE,
    }


def timed_scan(folder: Path) -> tuple[float, object]:
    start = time.perf_counter()
    index = dataset_module.scan_dataset(folder, use_cache=True)
    return time.perf_counter() - start, index


def bench_scan(folder: Path, workdir: Path, repeats: int) -> dict:
    uses_inspect_image = hasattr(dataset_module, "inspect_image")
    before, after = [], []
    for round_number in range(repeats):
        log(f"[scan] round {round_number + 1}/{repeats}: cold, before (full-size decode check) ...")
        with fresh_cache_dir(workdir), replaced(dataset_module, "inspect_image", full_decode_check):
            before_s, before_index = timed_scan(folder)
        before.append(before_s)
        log(f"[scan] round {round_number + 1}/{repeats}: cold, after (inspect_image), then warm ...")
        with fresh_cache_dir(workdir):
            after_s, after_index = timed_scan(folder)
            warm_s, warm_index = timed_scan(folder)
        after.append(after_s)
        if (before_index.num_images, len(before_index.skipped)) != (after_index.num_images, len(after_index.skipped)):
            log("[scan] WARNING: the before and after scans disagree on what is an image")
    return {
        "files": after_index.num_images + len(after_index.skipped), "images": after_index.num_images,
        "cold_before_s_each": before, "cold_after_s_each": after,
        "cold_before_s": statistics.median(before), "cold_after_s": statistics.median(after),
        "cold_ratio": statistics.median(before) / statistics.median(after),
        "warm_s": warm_s, "warm_decoded_files": warm_index.decoded_files,
        "scanner_uses_inspect_image": uses_inspect_image,
        "before_label": BEFORE_SCAN, "after_label": AFTER_SCAN,
    }


# ---------------------------------------------------------------------------------------------
# (c) training


def imgclf_command() -> list[str]:
    """The imgclf CLI of this Python (the venv's script), else the module run by this interpreter."""
    script = Path(sys.executable).parent / "imgclf"
    return [str(script)] if script.exists() else [sys.executable, "-m", "imgclf_core.cli"]


def training_env(cache_dir: Path) -> tuple[dict[str, str], bool]:
    """A fresh cache for the run, with the converted pretrained weights copied in when the user has them."""
    weights = user_cache_dir() / "weights"
    warm_weights = weights.is_dir()
    if warm_weights:
        shutil.copytree(weights, cache_dir / "weights")
    return {**os.environ, "IMGCLF_CACHE_DIR": str(cache_dir)}, warm_weights


def run_training(
    arguments: list[str], run_dir: Path, workdir: Path, timeout_s: float, watch_usable: bool,
    cache_dir: Path | None = None, stop_when_usable: bool = False,
) -> dict:
    """Run `imgclf train ...` to its end (or, with stop_when_usable, to its first usable model).

    Returns the seconds to status.json's usable_model, best val accuracy and wall time. A fresh
    cache unless `cache_dir` is given (a warm run reuses an earlier run's scan and features).
    """
    # Only here: a broken trainer must not stop the decode/scan figures.
    from imgclf_core.training.run_folder import RunFolder

    run = RunFolder(run_dir)

    fresh = cache_dir is None
    cache_dir = cache_dir or Path(tempfile.mkdtemp(prefix="train-cache-", dir=workdir))
    env, warm_weights = training_env(cache_dir) if fresh else ({**os.environ, "IMGCLF_CACHE_DIR": str(cache_dir)}, True)
    command = imgclf_command() + arguments
    log(f"[train] {shlex.join(command)}")
    log_path = workdir / f"{run_dir.name}.log"
    result: dict = {"command": command, "log": str(log_path), "weights_cache_copied": warm_weights,
                    "cache_dir": str(cache_dir), "warm_cache": not fresh}
    start = time.perf_counter()
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        while process.poll() is None:
            if watch_usable and "usable_s" not in result:
                usable = run.read_status().get("usable_model")
                if usable:
                    result["usable_s"] = time.perf_counter() - start
                    result["usable_model"] = usable
                    log(f"[train] usable model after {result['usable_s']:.1f} s: {usable}")
                    if stop_when_usable:
                        process.terminate()  # the trainer saves and ends as "stopped"
            if time.perf_counter() - start > timeout_s:
                process.kill()
                process.wait()
                raise RuntimeError(f"no end after {timeout_s:.0f} s (killed); log: {log_path}")
            time.sleep(POLL_SECONDS)
    result["wall_s"] = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"exit code {process.returncode}: {last_line(log_path)} (log: {log_path})")
    history = run.read_history()
    accuracies = [row["val_accuracy"] for row in history if isinstance(row.get("val_accuracy"), float)]
    if not accuracies:
        raise RuntimeError(f"no val_accuracy in the history of {run_dir}")
    result["best_val_accuracy"] = max(accuracies)
    result["epochs"] = len(accuracies)
    result.update(run_settings(run_dir))
    if watch_usable and "usable_s" not in result:
        usable = run.read_status().get("usable_model")
        if not usable:
            raise RuntimeError("the run finished without a usable_model in status.json")
        result["usable_model"] = usable  # appeared between two polls right before the end
        result["usable_s"] = result["wall_s"]
    return result


def run_settings(run_dir: Path) -> dict:
    """Model name and image size the run used (from its config), for the report."""
    from imgclf_core.training.run_folder import RunFolder

    try:
        config = RunFolder(run_dir).read_config()
        return {"model": config.model.name, "image_size": config.data.image_size}
    except Exception as error:  # noqa: BLE001 - the figures stand without the names
        return {"settings_error": str(error)}


def last_line(path: Path) -> str:
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def bench_training(folder: Path, workdir: Path, timeout_s: float) -> dict:
    """The recommended default (cold), the same again with its features cached (to the usable model), small_cnn."""
    results: dict = {}
    plans = [
        ("recommended", [], True, None),
        ("recommended, warm features", [], True, "recommended"),
        ("small_cnn", ["--model", "small_cnn"], False, None),
    ]
    for name, extra, watch_usable, cache_of in plans:
        run_dir = workdir / f"run-{name.replace(', ', '-').replace(' ', '-')}"
        arguments = ["train", str(folder), "--out", str(run_dir), *extra]
        cache_dir = Path(results[cache_of]["cache_dir"]) if cache_of and "cache_dir" in results.get(cache_of, {}) else None
        if cache_of and cache_dir is None:
            results[name] = {"error": f"no cache from the {cache_of!r} run"}
            continue
        try:
            results[name] = run_training(arguments, run_dir, workdir, timeout_s, watch_usable,
                                         cache_dir=cache_dir, stop_when_usable=cache_of is not None)
        except Exception as error:  # noqa: BLE001 - report it and go on with the rest
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            log(f"[train] {name} FAILED: {results[name]['error']}")
    for result in results.values():
        if "cache_dir" in result:
            shutil.rmtree(result["cache_dir"], ignore_errors=True)
    return results


# ---------------------------------------------------------------------------------------------
# Report


def print_report(results: dict) -> None:
    out = [""]
    environment = results["environment"]
    photos = results["photos"]
    out.append(f"imgclf phone-photo benchmark ({environment['cpus']} CPUs, Pillow {environment['pillow']}): "
               f"{photos['files']} JPEGs of {photos['size']}, {len(photos['classes'])} classes")
    out.append("")
    out.append("| measure | before | after | after vs before |")
    out.append("|---|---:|---:|---:|")
    decode = results.get("decode")
    if decode:
        out.append(f"| decode to {decode['size']} px, images/s ({decode['threads']} threads) | "
                   f"{decode['before_ips']:.1f} | {decode['after_ips']:.1f} | {decode['ratio']:.1f}x faster |")
    scan = results.get("scan")
    if scan:
        out.append(f"| scan_dataset cold, s ({scan['files']} files) | {scan['cold_before_s']:.2f} | "
                   f"{scan['cold_after_s']:.2f} | {scan['cold_ratio']:.1f}x faster |")
        out.append(f"| scan_dataset warm, s | | {scan['warm_s']:.3f} ({scan['warm_decoded_files']} files read) | |")
    out.append("")
    if decode:
        out.append(f"decode: {decode['before_label']}; {decode['after_label']}.")
    if scan:
        out.append(f"scan: {scan['before_label']}; {scan['after_label']}.")
        if not scan["scanner_uses_inspect_image"]:
            out.append("NOTE: imgclf_core.data.dataset does not call inspect_image yet: both scan columns ran the "
                       "same full-size check, so their ratio says nothing.")
    training = results.get("training")
    if training:
        out.extend(training_table(training))
    out.append("")
    out.append(f"total bench time {results['total_s']:.0f} s")
    print("\n".join(out), flush=True)


def training_table(training: dict) -> list[str]:
    out = ["", "| training run | model, size | first usable model, s (val acc) | of which features, s |"
           " best val accuracy | wall, s |", "|---|---|---:|---:|---:|---:|"]
    for name, run in training.items():
        if "error" in run:
            out.append(f"| {name} | ERROR: {run['error']} | | | | |")
            continue
        usable = run.get("usable_model")
        usable_cell = f"{run['usable_s']:.1f} ({usable.get('val_accuracy', float('nan')):.3f})" if usable else ""
        features_cell = f"{usable['features_seconds']:.1f}" if usable and "features_seconds" in usable else ""
        settings = f"{run.get('model', '?')}, {run.get('image_size', '?')} px"
        out.append(f"| {name} | {settings} | {usable_cell} | {features_cell} | {run['best_val_accuracy']:.3f} |"
                   f" {run['wall_s']:.1f} |")
    out.append("(each run timed from process start; a fresh cache (cold scan, decode and features) except the warm"
               " run, which reuses the first run's cache and stops at its usable model)")
    return out


def add_photo_arguments(parser: argparse.ArgumentParser, fewest_classes: int, data_help: str) -> None:
    """--photos, --classes, --size and --data: the phone photos a photo benchmark makes, or the folder it is given."""
    parser.add_argument("--photos", type=int, default=300, help="photos to make (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=5,
                        help=f"classes to spread them over, {fewest_classes}-{len(PHOTO_CLASSES)} (default: %(default)s)")
    parser.add_argument("--size", type=parse_size, default=(4032, 3024), metavar="WxH",
                        help="photo size, width x height (default: 4032x3024)")
    parser.add_argument("--data", default=None, metavar="DIR", help=data_help)


def photo_folder(args: argparse.Namespace, workdir: Path, parser: argparse.ArgumentParser, results: dict) -> Path:
    """The folder of add_photo_arguments' flags: --data checked, else the photos written into workdir/photos
    (their time in results["photos_written_s"])."""
    folder = Path(args.data) if args.data else workdir / "photos"
    if args.data:
        if not folder.is_dir():
            parser.error(f"--data {folder} is not a folder")
    else:
        log(f"[photos] writing {args.photos} photos of {args.size[0]}x{args.size[1]} into {folder} ...")
        start = time.perf_counter()
        make_photos(folder, args.photos, args.classes, args.size)
        results["photos_written_s"] = time.perf_counter() - start
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_photo_arguments(parser, 1, "use the JPEGs of this folder-per-class tree instead of making photos")
    parser.add_argument("--threads", type=int, default=None,
                        help="decode threads (default: decode_thread_count, as the scanner uses)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="decode and cold-scan rounds, medians reported (default: %(default)s)")
    parser.add_argument("--skip-training", action="store_true", help="leave out the two training runs")
    parser.add_argument("--training-timeout", type=float, default=3600.0,
                        help="seconds allowed per training run (default: %(default)s)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the raw figures as JSON here")
    args = parser.parse_args(argv)
    if args.photos < 1 or args.repeats < 1:
        parser.error("--photos and --repeats must be at least 1")
    if not 1 <= args.classes <= len(PHOTO_CLASSES):
        parser.error(f"--classes must be from 1 to {len(PHOTO_CLASSES)}")

    total_start = time.perf_counter()
    from PIL import __version__ as pillow_version

    results: dict = {
        "command": [sys.executable, *sys.argv] if argv is None else ["bench/bench_photos.py", *argv],
        "environment": {"cpus": os.cpu_count(), "python": platform.python_version(), "pillow": pillow_version,
                        "machine": platform.machine(), "load_average": os.getloadavg()},
        "config": {**vars(args), "size": list(args.size)},
    }
    workdir = Path(tempfile.mkdtemp(prefix="imgclf-bench-photos-"))
    try:
        folder = photo_folder(args, workdir, parser, results)
        files = photo_files(folder)
        if not files:
            parser.error(f"no JPEG files under {folder}")
        results["photos"] = describe_photos(folder, files)
        threads = args.threads or decode_thread_count(tiny_images=False)
        results["decode"] = bench_decode(files, threads, args.repeats)
        results["scan"] = bench_scan(folder, workdir, args.repeats)
        if not args.skip_training:
            results["training"] = bench_training(folder, workdir, args.training_timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["total_s"] = time.perf_counter() - total_start

    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    return 0


def describe_photos(folder: Path, files: list[Path]) -> dict:
    from PIL import Image

    with Image.open(files[0]) as image:
        width, height = image.size
    classes: dict[str, int] = {}
    for path in files:
        label = path.relative_to(folder).parts[0] if path.parent != folder else ""
        classes[label] = classes.get(label, 0) + 1
    return {"folder": str(folder), "files": len(files), "size": f"{width}x{height} (first file, as stored)",
            "bytes": sum(path.stat().st_size for path in files), "classes": classes}


if __name__ == "__main__":
    sys.exit(main())
