"""Run every benchmark on this machine and write docs/BENCHMARKS.md (+ docs/benchmarks/*).

    .venv/bin/python bench/run_all.py [--repeats 3] [--training {full,quick,skip,reuse}]
        [--only pipeline,training,predict,app_start,audit,photos]

Each benchmark runs as its own subprocess (`python bench/<name>.py ... --json <tmp>`), --repeats
times for the fast ones (pipeline + scan, predict + Grad-CAM, app start; the label audit
--audit-repeats times and the phone-photo benchmark --photos-repeats times, once by default: they
are slow), one after the other. The training
comparison follows --training:

    full   bench_training.py's defaults (all 60k images, the seeds' plain recipe 10 epochs, their
           augmented one up to 15, ours 15, then GFLOP/s): ~20 minutes per repeat on 2 cores;
           --training-repeats (default 1) above 1 is allowed but warned about
    quick  its documented quick mode (--train-limit 10000 --epochs-seeds-plain 3
           --epochs-seeds-augmented 3 --epochs-ours 3): a smoke test, reported as such
    reuse  (default) keep the training section already in the results JSON, as it is
    skip   leave the training section out

Writes the raw results of every section (timestamps, command lines, machine, load average, every
run's JSON) to docs/benchmarks/results.json, then renders docs/BENCHMARKS.md and the plot
docs/benchmarks/accuracy_vs_time.png (bench/report.py). Sections that are not run are kept from the
existing results.json, so --only refreshes some sections without rerunning the others (e.g.
`--only predict`). --import-training PATH stores a JSON that bench_training.py wrote earlier as
the training section (1 run) instead of running it. Extra arguments for one benchmark go through
--pipeline-args, --training-args, --predict-args, --app-start-args, --audit-args, --photos-args (one string each,
appended after the defaults, so they override them; write a single option as
--predict-args="--calls 5"). Progress goes to stderr; the results file is written after every
section.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import report  # noqa: E402

FMNIST_TREE = Path("/tmp/fmnist-tree")  # bench_pipeline.DEFAULT_TREE (not imported: it imports TensorFlow)
SCRIPTS = {
    "pipeline": "bench/bench_pipeline.py",
    "training": "bench/bench_training.py",
    "predict": "bench/bench_predict.py",
    "app_start": "bench/bench_app_start.py",
    "audit": "bench/bench_audit.py",
    "photos": "bench/bench_photos.py",
}
ORDER = ("pipeline", "predict", "app_start", "audit", "photos", "training")  # the long one last
TRAINING_MODES = {
    "full": [],
    "quick": ["--train-limit", "10000", "--epochs-seeds-plain", "3", "--epochs-seeds-augmented", "3",
              "--epochs-ours", "3"],
}
FULL_TRAINING_MINUTES = 20  # the full run of 2026-12-06 took 18.4 min on 2 cores
PACKAGES = ("tensorflow", "keras", "streamlit", "numpy", "pillow", "matplotlib", "playwright")


def log(message: str) -> None:
    print(f"[run_all {dt.datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# The machine


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def describe_machine() -> dict:
    cpu_model = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                      if line.startswith("model name")), platform.processor() or "unknown")
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal:")), None)
    os_name = next((line.split("=", 1)[1].strip().strip('"') for line in _read("/etc/os-release").splitlines()
                    if line.startswith("PRETTY_NAME=")), platform.system())
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    chromium = None
    if Path("/usr/bin/chromium").exists():
        try:
            chromium = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True,
                                      timeout=30).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            chromium = "/usr/bin/chromium (version unknown)"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpu = "NVIDIA device present (the benchmarks may use it)" if list(Path("/dev").glob("nvidia[0-9]*")) \
        else "none (TensorFlow on the CPU)"
    return {
        "cpu_model": cpu_model, "cpus": os.cpu_count(), "cpus_usable": usable, "arch": platform.machine(),
        "ram_gib": round(mem_kib / 1024**2, 1) if mem_kib else None, "gpu": gpu,
        "os": os_name, "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": packages, "chromium": chromium,
    }


# ---------------------------------------------------------------------------------------------
# Paths and command lines as they go into committed files: relative to the repository, no home


def shown_python() -> str:
    executable = Path(sys.executable)
    try:
        return executable.relative_to(ROOT).as_posix()
    except ValueError:
        return "python"


def shown_command(argv: list[str]) -> str:
    return "TF_CPP_MIN_LOG_LEVEL=2 " + shlex.join([shown_python(), *argv])


def scrub(value, replacements: list[tuple[str, str]]):
    """Every string in `value` with machine-specific prefixes (the checkout, the home folder) replaced."""
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [scrub(item, replacements) for item in value]
    if isinstance(value, dict):
        return {key: scrub(item, replacements) for key, item in value.items()}
    return value


def path_replacements() -> list[tuple[str, str]]:
    pairs = [(str(ROOT) + os.sep, ""), (str(ROOT), ".")]
    home = os.path.expanduser("~")
    if home not in ("/", "") and home != str(ROOT):
        pairs += [(home + os.sep, "~/"), (home, "~")]
    return pairs


# ---------------------------------------------------------------------------------------------
# Running one benchmark


def run_once(name: str, extra: list[str], label: str) -> dict | None:
    """One subprocess run of a benchmark; its JSON, or None if it failed."""
    with tempfile.TemporaryDirectory(prefix="imgclf-run-all-") as scratch:
        out = Path(scratch) / f"{name}.json"
        argv = [sys.executable, SCRIPTS[name], *extra, "--json", str(out)]
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        log(f"{label}: {shown_command([SCRIPTS[name], *extra])}")
        started = time.perf_counter()
        # The benchmark's report and progress both go to our stderr: stdout stays free.
        completed = subprocess.run(argv, cwd=ROOT, env=environment, stdout=sys.stderr, stderr=sys.stderr)
        seconds = time.perf_counter() - started
        if completed.returncode != 0 or not out.exists():
            log(f"{label}: FAILED (exit status {completed.returncode}) after {seconds:.0f} s")
            return None
        log(f"{label}: done in {seconds:.0f} s")
        return {"result": json.loads(out.read_text(encoding="utf-8")), "wall_s": seconds}


def run_section(name: str, extra: list[str], repeats: int, run_all_command: str) -> dict | None:
    started_iso, started = now_iso(), time.perf_counter()
    runs, loads, failed = [], [], 0
    for number in range(1, repeats + 1):
        loads.append(round(os.getloadavg()[0], 2))
        outcome = run_once(name, extra, f"{name} {number}/{repeats}")
        if outcome is None:
            failed += 1
            if not runs:
                log(f"{name}: the first run failed: the remaining repeats are not tried")
                break
            continue
        runs.append(outcome["result"])
    if not runs:
        return None
    section = {
        "source": "run",
        "started": started_iso,
        "finished": now_iso(),
        "wall_s": round(time.perf_counter() - started, 1),
        "repeats": repeats,
        "failed_runs": failed,
        "load_before": loads,
        "command": shown_command([SCRIPTS[name], *extra, "--json", "OUT.json"]),
        "run_all_command": run_all_command,
        "machine": describe_machine(),
        "runs": runs,
    }
    return section


def import_training(path: Path) -> dict:
    """A JSON that bench_training.py wrote earlier, as the training section (one run)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not any(key in data for key in ("seeds_plain", "seeds_augmented", "seeds", "ours")):
        raise SystemExit(f"{path} is not bench_training.py output (no 'seeds_plain', 'seeds_augmented' or 'ours')")
    finished = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).replace(microsecond=0)
    started = finished - dt.timedelta(seconds=round(data.get("total_s", 0)))
    options = data.get("options", {})
    # bench_training.py's defaults; "epochs_seeds" (36) is the single seeds' recipe of results before the plain one
    defaults = {"epochs_seeds_plain": 10, "epochs_seeds_augmented": 15} if "epochs_seeds" not in options else {
        "epochs_seeds": 36}
    full = (not options.get("train_limit") and options.get("epochs_ours") is None
            and not options.get("full_seeds_augmented") and not options.get("no_gflops")
            and all(options.get(key) == value for key, value in defaults.items()))
    argv = [SCRIPTS["training"]]
    if options.get("train_limit"):
        argv += ["--train-limit", str(options["train_limit"])]
    for key, value in defaults.items():
        if options.get(key) not in (None, value):
            argv += ["--" + key.replace("_", "-"), str(options[key])]
    for flag in ("full_seeds_augmented", "no_gflops"):
        if options.get(flag):
            argv.append("--" + flag.replace("_", "-"))
    if options.get("epochs_ours") is not None:
        argv += ["--epochs-ours", str(options["epochs_ours"])]
    try:
        shown = path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        shown = path.name
    what = "the full run (bench_training.py defaults)" if full else "a run with " + shlex.join(argv[1:])
    environment = data.get("environment", {})
    return {
        "source": "imported",
        "mode": "full" if full else "imported",
        "imported_from": shown,
        "imported_at": now_iso(),
        "started": started.isoformat().replace("+00:00", "Z"),
        "finished": finished.isoformat().replace("+00:00", "Z"),
        "wall_s": round(data.get("total_s", 0), 1),
        "repeats": 1,
        "failed_runs": 0,
        "note": (f"Imported, not rerun: {what} of {finished:%Y-%m-%d} (finished {finished:%H:%M} UTC, "
                 f"{data.get('total_s', 0) / 60:.0f} min), 1 repeat, from `{shown}` (a local, git-ignored file); it recorded "
                 f"{environment.get('cpus', '?')} CPUs, Python {environment.get('python', '?')}, TensorFlow "
                 f"{environment.get('tensorflow', '?')}, Keras {environment.get('keras', '?')}."),
        "command": shown_command([*argv, "--json", "OUT.json"]),
        "run_all_command": shlex.join([shown_python(), "bench/run_all.py", "--only", "training", "--training", "full"]),
        "machine": {"cpus": environment.get("cpus"), "python": environment.get("python"),
                    "packages": {"tensorflow": environment.get("tensorflow"), "keras": environment.get("keras")},
                    "arch": environment.get("machine")},
        "runs": [data],
    }


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[4:]))
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of pipeline, predict and app_start (default: %(default)s)")
    parser.add_argument("--audit-repeats", type=int, default=1, help="runs of the label audit (default: %(default)s)")
    parser.add_argument("--photos-repeats", type=int, default=1,
                        help="runs of the phone-photo benchmark (~5 min each; default: %(default)s)")
    parser.add_argument("--training", choices=("full", "quick", "skip", "reuse"), default="reuse",
                        help="the training comparison (default: %(default)s)")
    parser.add_argument("--training-repeats", type=int, default=1, help="runs of the training comparison (default: 1)")
    parser.add_argument("--import-training", type=Path, metavar="JSON",
                        help="store this bench_training.py JSON as the training section instead of --training")
    parser.add_argument("--only", default=None,
                        help="comma list of sections to (re)run; the others are kept (default: all; with "
                             "--import-training: training only)")
    parser.add_argument("--results", type=Path, default=report.DEFAULT_RESULTS, help="default: docs/benchmarks/results.json")
    parser.add_argument("--markdown", type=Path, default=report.DEFAULT_MARKDOWN, help="default: docs/BENCHMARKS.md")
    parser.add_argument("--plot", type=Path, default=report.DEFAULT_PLOT, help="default: docs/benchmarks/accuracy_vs_time.png")
    parser.add_argument("--render-only", action="store_true", help="measure nothing: re-render from --results")
    for name in SCRIPTS:
        parser.add_argument(f"--{name.replace('_', '-')}-args", default="", metavar="ARGS",
                            help=f"extra arguments for {SCRIPTS[name]} (one quoted string)")
    args = parser.parse_args(argv)
    if args.only is None:
        args.only = "training" if args.import_training else ",".join(ORDER)
    args.sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.sections) - set(SCRIPTS))
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
    if min(args.repeats, args.audit_repeats, args.photos_repeats, args.training_repeats) < 1:
        parser.error("repeat counts must be at least 1")
    return args


def run_all_command(args: argparse.Namespace, name: str) -> str:
    """The run_all command line that refreshes just this section with the same settings."""
    argv = [shown_python(), "bench/run_all.py", "--only", name]
    if name in ("pipeline", "predict", "app_start"):
        argv += ["--repeats", str(args.repeats)]
    elif name in ("audit", "photos"):
        argv += [f"--{name}-repeats", str(getattr(args, f"{name}_repeats"))]
    elif name == "training":
        argv += ["--training", args.training]
        if args.training_repeats != 1:
            argv += ["--training-repeats", str(args.training_repeats)]
    extra = getattr(args, f"{name}_args")
    if extra:
        argv += [f"--{name.replace('_', '-')}-args", extra]
    return shlex.join(argv)


def merge_options(defaults: list[str], extra: list[str]) -> list[str]:
    """`defaults` (option, value pairs) without the options that `extra` gives again, then `extra`."""
    given = {item.split("=", 1)[0] for item in extra if item.startswith("--")}
    kept = [item for option, value in zip(defaults[::2], defaults[1::2]) if option not in given
            for item in (option, value)]
    return kept + extra


def ensure_fmnist_tree(extra: list[str]) -> None:
    """bench_training.py needs /tmp/fmnist-tree (bench_pipeline.py writes it itself when missing)."""
    if "--data" in extra or (FMNIST_TREE / "train").is_dir():
        return
    log(f"{FMNIST_TREE} missing: writing it from Debian's dataset-fashion-mnist (~1 minute) ...")
    subprocess.run([sys.executable, "-m", "imgclf_core.cli", "fashion-mnist", str(FMNIST_TREE)], cwd=ROOT, check=True)


def load_results(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"format": 1, "sections": {}}


def save_results(results: dict, path: Path, machine: dict) -> None:
    results["format"] = 1
    results["updated"] = now_iso()
    results["last_command"] = shlex.join([shown_python(), "bench/run_all.py", *sys.argv[1:]])
    results["machine"] = machine
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(scrub(results, path_replacements()), indent=1, ensure_ascii=False) + "\n"
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = load_results(args.results)
    results.setdefault("sections", {})
    if args.render_only:
        report.render(args.results, args.markdown, args.plot)
        return 0
    machine = describe_machine()
    log(f"machine: {machine['cpu_model']}, {machine['cpus']} cores, {machine['ram_gib']} GiB, {machine['os']}")
    wanted = [name for name in ORDER if name in args.sections]
    if "training" in wanted:
        if args.import_training:
            results["sections"]["training"] = import_training(args.import_training)
            log(f"training: imported {args.import_training} (not rerun)")
            wanted.remove("training")
        elif args.training == "reuse":
            if not runs_present(results, "training"):
                raise SystemExit(f"--training reuse: no training section in {args.results}; "
                                 "use --training full (~20 min), quick or skip")
            log(f"training: reused from {args.results} ({results['sections']['training'].get('finished', '?')})")
            wanted.remove("training")
        elif args.training == "skip":
            results["sections"].pop("training", None)
            log("training: skipped (left out of the report)")
            wanted.remove("training")
        elif args.training == "full":
            minutes = FULL_TRAINING_MINUTES * args.training_repeats
            log(f"training: FULL comparison, ~{FULL_TRAINING_MINUTES} min per repeat on 2 cores "
                f"(~{minutes} min for {args.training_repeats})")
            if args.training_repeats > 1:
                log(f"WARNING: --training-repeats {args.training_repeats} with --training full: "
                    f"about {minutes / 60:.1f} hours")

    failures = []
    for name in wanted:
        extra = shlex.split(getattr(args, f"{name}_args"))
        repeats = args.repeats
        if name in ("audit", "photos"):
            repeats = getattr(args, f"{name}_repeats")
        elif name == "training":
            extra = merge_options(TRAINING_MODES[args.training], extra)
            repeats = args.training_repeats
            ensure_fmnist_tree(extra)
        elif name == "app_start":
            # One fresh-process cold start per run (the benchmark itself could repeat inside one run).
            extra = ["--repeats", "1", *extra]
        log(f"== {name}: {repeats} run(s)")
        section = run_section(name, extra, repeats, run_all_command(args, name))
        if section is None:
            failures.append(name)
            log(f"== {name}: every run failed; the section already in {args.results} (if any) is kept")
            continue
        if name == "training":
            section["mode"] = args.training
        if section["failed_runs"]:
            failures.append(name)
        results["sections"][name] = section
        save_results(results, args.results, machine)
        log(f"== {name}: {len(section['runs'])} run(s) in {section['wall_s'] / 60:.1f} min; saved {args.results}")
    save_results(results, args.results, machine)
    report.render(args.results, args.markdown, args.plot)
    if failures:
        log(f"FAILED runs in: {', '.join(failures)}")
        return 1
    return 0


def runs_present(results: dict, name: str) -> bool:
    return bool(results.get("sections", {}).get(name, {}).get("runs"))


if __name__ == "__main__":
    sys.exit(main())
