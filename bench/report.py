"""Render docs/BENCHMARKS.md and the accuracy-vs-time plot from docs/benchmarks/results.json.

    .venv/bin/python bench/report.py [--results docs/benchmarks/results.json]
        [--markdown docs/BENCHMARKS.md] [--plot docs/benchmarks/accuracy_vs_time.png]

bench/run_all.py calls this after its runs; run it alone to re-render without measuring anything.
Every figure is the median (min-max) over the repeats stored in results.json; a ratio is computed
within each run (both recipes measured in the same process) and then summarized the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = ROOT / "docs" / "benchmarks" / "results.json"
DEFAULT_MARKDOWN = ROOT / "docs" / "BENCHMARKS.md"
# Sections written from the JSON of benchmarks that run_all.py does not repeat (hours at full scale:
# bench_100k.py, bench_transfer.py), each a markdown file with its own "##" heading, appended in name order.
STANDALONE_SECTIONS = ROOT / "docs" / "benchmarks" / "sections"
DEFAULT_PLOT = ROOT / "docs" / "benchmarks" / "accuracy_vs_time.png"
REACH_ACCURACY = 0.90  # bench_training.py's REACH_ACCURACY
STEP_BIG_BATCH = 256  # bench_training.py's STEP_BIG_BATCH
SECTIONS = ("pipeline", "training", "predict", "app_start", "audit", "photos")
SECTION_TITLES = {
    "pipeline": "Input pipeline throughput and dataset scan",
    "training": "Training to test accuracy on Fashion-MNIST",
    "predict": "Single-image predict + Grad-CAM latency",
    "app_start": "App cold start to first paint in Chromium",
    "audit": "Label audit: planted label errors",
    "photos": "Phone photos: decode, scan and the first usable model",
}


# ---------------------------------------------------------------------------------------------
# Numbers


def stats(values: Iterable[float | None]) -> dict | None:
    present = [value for value in values if value is not None]
    if not present:
        return None
    return {"median": statistics.median(present), "min": min(present), "max": max(present), "n": len(present)}


def number(value: float, digits: int, signed: bool = False) -> str:
    return f"{value:+,.{digits}f}" if signed else f"{value:,.{digits}f}"


def auto_digits(value: float) -> int:
    """Three significant figures, at most two decimals, none above 100."""
    magnitude = abs(value)
    return 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2


def cell(summary: dict | None, unit: str = "", digits: int | None = None, bold: bool = False,
         prefix: str = "", signed: bool = False) -> str:
    """'median (min–max)' with the unit after each; just the value for one run; '–' for none."""
    if summary is None:
        return "–"
    places = auto_digits(summary["median"]) if digits is None else digits
    text = f"{prefix}{number(summary['median'], places, signed)}{unit}"
    if bold:
        text = f"**{text}**"
    if summary["n"] > 1:
        low, high = number(summary["min"], places, signed), number(summary["max"], places, signed)
        text += f" ({low} to {high}{unit})" if signed else f" ({low}–{high}{unit})"
    return text


def ratio_cell(summary: dict | None, bound: bool = False, bold: bool = True) -> str:
    if summary is None:
        return "–"
    return cell(summary, "×", 1, bold=bold, prefix="≥ " if bound else "")


def percent_cell(summary: dict | None, bold: bool = False) -> str:
    if summary is None:
        return "–"
    scaled = {key: value * 100 if key != "n" else value for key, value in summary.items()}
    return cell(scaled, "%", 1, bold=bold)


def count(summary: dict | None, default: int = 0) -> int:
    return summary["n"] if summary else default


def runs_of(section: dict) -> list[dict]:
    return section.get("runs") or []


def pick(runs: list[dict], getter: Callable[[dict], float | None]) -> dict | None:
    values = []
    for run in runs:
        try:
            values.append(getter(run))
        except (KeyError, TypeError, IndexError, ZeroDivisionError):
            values.append(None)
    return stats(values)


# ---------------------------------------------------------------------------------------------
# Per-section tables


def pipeline_case(run: dict, name: str) -> dict:
    for case in run["cases"]:
        if case["name"] == name:
            return case
    raise KeyError(name)


def pipeline_case_names(runs: list[dict]) -> list[str]:
    names: list[str] = []
    for run in runs:
        for case in run.get("cases", []):
            if case["name"] not in names:
                names.append(case["name"])
    return names


def pipeline_summary(runs: list[dict]) -> list[dict]:
    rows = []
    for name in pipeline_case_names(runs):
        for key, label in (("epoch1", "epoch 1 (ours: cold scan + decode + epoch)"), ("epoch2", "epoch 2+")):
            images = pick(runs, lambda run: pipeline_case(run, name)["seeds"]["images"])
            rows.append({
                "case": name, "images": images["median"] if images else None, "label": label, "key": key,
                "seeds": pick(runs, lambda run: pipeline_case(run, name)["seeds"][f"{key}_ips"]),
                "ours": pick(runs, lambda run: pipeline_case(run, name)["ours"][f"{key}_ips"]),
                "ratio": pick(runs, lambda run: pipeline_case(run, name)["ratio"][key]),
            })
    return rows


def pipeline_md(section: dict) -> list[str]:
    runs = runs_of(section)
    out = ["Images per second, batch 32, the same files and the same augmentation (flip, ±20° rotation,",
           "±20% zoom) for both recipes. Seeds: `ImageDataGenerator(...).flow_from_directory(...)`; ours:",
           "`scan_dataset` + `decode_records` + `make_dataset`. Ratio = ours / seeds.", "",
           "| case | epoch | seeds' ImageDataGenerator (img/s) | imgclf (img/s) | ratio | runs |",
           "|---|---|---:|---:|---:|---:|"]
    for row in pipeline_summary(runs):
        case = f"{row['case']}, {row['images']:,.0f} images" if row["images"] else row["case"]
        out.append(f"| {case} | {row['label']} | {cell(row['seeds'], digits=0)} | {cell(row['ours'], digits=0)} "
                   f"| {ratio_cell(row['ratio'], bold=row['key'] == 'epoch2')} | {count(row['ratio'])} |")
    scans = [run["scan"] for run in runs if run.get("scan")]
    if scans:
        files = scans[0]["files"]
        cold = stats(scan["cold_s"] for scan in scans)
        warm = stats(scan["warm_s"] for scan in scans)
        again = stats(scan["warm_repeat_s"] for scan in scans)
        speedup = stats(scan["cold_s"] / scan["warm_s"] for scan in scans)
        out += ["", f"`scan_dataset` of the {files:,}-file tree `{scans[0]['tree']}`: cold = a fresh",
                "`IMGCLF_CACHE_DIR` (every file read, hashed and decoded; the OS page cache is whatever it is),",
                "warm = the same call again (from the cache), repeat = a third call. The seeds had no scan (Keras",
                "lists the folders on every `flow_from_directory`), so the comparison is cold against warm.", "",
                "| scan | seconds | files read | runs |", "|---|---:|---:|---:|",
                f"| cold | {cell(cold, ' s')} | {scans[0]['cold_decoded_files']:,} | {cold['n']} |",
                f"| warm (target < 5 s) | {cell(warm, ' s', bold=True)} | {scans[0]['warm_decoded_files']:,} "
                f"| {warm['n']} |",
                f"| warm, repeat | {cell(again, ' s')} | – | {again['n']} |",
                f"| cold / warm | {ratio_cell(speedup, bold=False)} | | {speedup['n']} |"]
    return out


TRAINING_RECIPES = ("seeds_plain", "seeds_augmented", "ours")
TRAINING_LABELS = {
    "seeds_plain": "seeds' recipe, no augmentation (ImageDataGenerator rescale only)",
    "seeds_augmented": "seeds' recipe with augmentation (rotation 20, zoom 0.2, flip)",
    "ours": "imgclf train defaults",
}
TRAINING_SHORT = {"seeds_plain": "plain", "seeds_augmented": "augmented", "ours": "imgclf"}


def training_run(run: dict) -> dict:
    """One bench_training.py result in the current shape: three recipes and the faster seeds' variant.

    Results from before the plain variant was measured hold one "seeds" recipe, the augmented one.
    """
    run = dict(run)
    if "seeds" in run and "seeds_augmented" not in run:
        run["seeds_augmented"] = run["seeds"]
    if not run.get("faster_seeds"):
        present = [key for key in ("seeds_plain", "seeds_augmented") if run.get(key)]
        reached = [key for key in present if run[key].get("time_to_90_s") is not None]
        if reached:
            run["faster_seeds"] = min(reached, key=lambda key: run[key]["time_to_90_s"])
        elif present:
            run["faster_seeds"] = max(present, key=lambda key: run[key]["trained_s"])
    if run.get("faster_seeds"):
        run["seeds_faster"] = run[run["faster_seeds"]]
    return run


def training_runs(section: dict) -> list[dict]:
    return [training_run(run) for run in runs_of(section)]


def training_recipe_stats(runs: list[dict], recipe: str) -> dict:
    present = [run for run in runs if run.get(recipe)]
    reached = [run[recipe]["time_to_90_s"] for run in present if run[recipe].get("time_to_90_s") is not None]
    return {
        "runs": len(present),
        "reached": len(reached),
        "time_to_90": stats(reached),
        "trained": stats(run[recipe]["trained_s"] for run in present),
        "epochs": stats(len(run[recipe]["epochs"]) for run in present),
        "best": stats(run[recipe]["best_test_accuracy"] for run in present),
        "final": stats(run[recipe]["final_test_accuracy"] for run in present),
        "images": stats(run[recipe].get("images") for run in present),
    }


def time_to_90_text(recipe: dict, bold: bool = False) -> str:
    if recipe["runs"] == 0:
        return "–"
    if recipe["reached"] == 0:
        return f"not reached in {cell(recipe['epochs'], digits=0)} epochs ({cell(recipe['trained'], ' s', 0)})"
    text = cell(recipe["time_to_90"], " s", 0, bold=bold)
    if recipe["reached"] < recipe["runs"]:
        text += f" (reached in {recipe['reached']} of {recipe['runs']} runs)"
    return text


def training_speedup(runs: list[dict]) -> tuple[dict | None, bool]:
    values, bound = [], False
    for run in runs:
        speedup = run.get("speedup")
        if speedup and speedup.get("value") is not None:
            values.append(speedup["value"])
            bound = bound or speedup.get("bound") == "lower"
    return stats(values), bound


def training_accuracy_gain(runs: list[dict], key: str) -> dict | None:
    """Ours minus the faster seeds' variant, in percentage points (runs: training_runs)."""
    return pick(runs, lambda run: (run["ours"][key] - run["seeds_faster"][key]) * 100)


def faster_seeds_names(runs: list[dict]) -> str:
    """'plain', 'augmented' or e.g. 'plain in 2 runs, augmented in 1' (runs: training_runs)."""
    names = [TRAINING_SHORT[run["faster_seeds"]] for run in runs if run.get("faster_seeds")]
    distinct = list(dict.fromkeys(names))
    if len(distinct) <= 1:
        return distinct[0] if distinct else "?"
    return ", ".join(f"{name} in {names.count(name)} run{'s' if names.count(name) != 1 else ''}" for name in distinct)


def training_epochs_asked(run: dict, recipe: str) -> str:
    options = run.get("options", {})
    asked = (run.get(recipe) or {}).get("epochs_asked")
    if asked is None:
        asked = options.get({"seeds_plain": "epochs_seeds_plain", "seeds_augmented": "epochs_seeds_augmented"}[recipe])
    if asked is None and recipe == "seeds_augmented":
        asked = options.get("epochs_seeds")  # results from before the plain variant
    return "?" if asked is None else str(asked)


def training_gflops_md(runs: list[dict]) -> list[str]:
    """The GFLOP/s tables of bench_training.py's measurement (median over the runs that have one)."""
    measured = [run for run in runs if run.get("gflops")]
    if not measured:
        return []
    first = measured[0]["gflops"]
    peak = first["peak"]
    peak_stats = pick(measured, lambda run: run["gflops"]["peak"]["gflops"])
    out = ["### Arithmetic throughput (GFLOP/s) against the machine's peak", "",
           f"Peak = clock × {peak.get('flop_per_cycle_per_core', 32)} FP32 FLOP per cycle per core (AVX2, two FMA"
           f" units) × {peak.get('cores', '?')} cores = {cell(peak_stats, ' GFLOP/s', 0)}; clock"
           f" {cell(pick(measured, lambda run: run['gflops']['peak']['mhz']), ' MHz', 0)}, measured by"
           f" {peak.get('method', '?')}. FLOPs per image count the Conv2D and Dense layers"
           " (multiply-adds × 2; a training step = 3 × forward, the first layer 2 ×). *Step only*: a compiled"
           " train step (forward, loss, gradients, Adam) on one in-memory batch, repeated for ~5 s. *In the run*:"
           " the recipe's arithmetic per epoch second (ours: validation's forward passes included), median over"
           " epochs 2 to N.", ""]
    for key in first["networks"]:
        with_net = [run for run in measured if key in run["gflops"]["networks"]]
        network = with_net[0]["gflops"]["networks"][key]

        def net(run, key=key):
            return run["gflops"]["networks"][key]

        batch = network["step_recipe_batch"]["batch_size"]
        out += [f"**{network['label']}**: {network['forward_flops_per_image'] / 1e6:,.1f} MFLOP forward,"
                f" {network['train_flops_per_image'] / 1e6:,.1f} MFLOP a training step, per image.", "",
                "| | img/s | GFLOP/s | % of peak | runs |", "|---|---:|---:|---:|---:|",
                f"| peak | | {cell(peak_stats, digits=1)} | 100% | {count(peak_stats)} |"]
        for label, getter in ((f"step only, batch {STEP_BIG_BATCH}", lambda run: net(run)["step_batch_256"]),
                              (f"step only, batch {batch} (the recipe's)", lambda run: net(run)["step_recipe_batch"])):
            gflops = pick(with_net, lambda run: getter(run)["gflops"])
            out.append(f"| {label} | {cell(pick(with_net, lambda run: getter(run)['img_s']), digits=0)} "
                       f"| {cell(gflops, digits=1)} | {cell(pick(with_net, lambda run: getter(run)['pct_peak']), '%', 1)} "
                       f"| {count(gflops)} |")
        for recipe in network["in_run"]:
            def row(run, recipe=recipe):
                return net(run)["in_run"][recipe]
            gflops = pick(with_net, lambda run: row(run)["gflops"])
            out.append(f"| in the run, {TRAINING_LABELS.get(recipe, recipe)} "
                       f"| {cell(pick(with_net, lambda run: row(run)['img_s']), digits=0)} | {cell(gflops, digits=1)} "
                       f"| {cell(pick(with_net, lambda run: row(run)['pct_peak']), '%', 1)} | {count(gflops)} |")
        lost = network.get("lost_pct_of_peak")
        if lost:
            kernels = pick(with_net, lambda run: net(run)["lost_pct_of_peak"]["kernels"])
            small = pick(with_net, lambda run: net(run)["lost_pct_of_peak"]["small_batches"])
            parts = [f"kernels {cell(kernels, ' pp', 1)} (peak → batch-{STEP_BIG_BATCH} step)",
                     f"small batches {cell(small, ' pp', 1)} (batch {STEP_BIG_BATCH} → {batch})"]
            for recipe in lost["pipeline"]:
                pipeline = pick(with_net, lambda run, recipe=recipe: net(run)["lost_pct_of_peak"]["pipeline"][recipe])
                validation = " and validation" if (network["in_run"][recipe] or {}).get("validation_images") else ""
                name = f", {TRAINING_SHORT.get(recipe, recipe)}" if len(lost["pipeline"]) > 1 else ""
                parts.append(f"input pipeline, Python loop{validation}{name} {cell(pipeline, ' pp', 1)}"
                             " (recipe step → in the run)")
            out += ["", "Where the rest of the peak goes, in percentage points of it: " + "; ".join(parts) + "."]
        out.append("")
    return out


def training_md(section: dict, plot_rel: str | None) -> list[str]:
    runs = training_runs(section)
    recipes = {key: training_recipe_stats(runs, key) for key in TRAINING_RECIPES}
    plain, augmented, ours = recipes["seeds_plain"], recipes["seeds_augmented"], recipes["ours"]
    faster = training_recipe_stats(runs, "seeds_faster")
    speedup, bound = training_speedup(runs)
    first = runs[0]
    ours_config = (first.get("ours") or {}).get("config", {})
    training_config = ours_config.get("training", {})
    out = []
    if section.get("mode") == "quick":
        out += ["> **Quick mode** (a balanced subset and a few epochs): a smoke test of the benchmark, not",
                "> the comparison. `--training full` measures the real one.", ""]
    seeds_text = []
    if plain["runs"]:
        seeds_text.append(f"*plain* (the seeds' `ImageDataGenerator(rescale=1/255)` only, "
                          f"{training_epochs_asked(first, 'seeds_plain')} epochs)")
    if augmented["runs"]:
        seeds_text.append(f"*augmented* (their `ImageDataGenerator` with rotation 20, zoom 0.2 and flips, up to "
                          f"{training_epochs_asked(first, 'seeds_augmented')} epochs)")
    out += [f"On the same files, one recipe after the other in one process: {first.get('train_images', 0):,} training "
            f"images, {first.get('test_images', 0):,} test images. "
            + ("The seeds' two recipes, " if len(seeds_text) > 1 else "The seeds' recipe, ")
            + " and ".join(seeds_text)
            + ": `flow_from_directory` + `seed_cnn`, Adam, batch 32, all training images. Ours: exactly `imgclf"
            " train` (cold scan, a"
            f" {ours_config.get('data', {}).get('validation_split', 0.2):.0%} validation split validated inside the"
            f" clock, decode once, `{ours_config.get('model', {}).get('name', 'small_cnn')}`,"
            f" {training_config.get('schedule', '?')} schedule,"
            f" {training_config.get('epochs', '?')} epochs, checkpoints). Test accuracy is measured after"
            " every epoch with that epoch's weights, outside the clock."
            + (" The seeds' *faster variant* is the one that reached 90% test accuracy sooner; ours is compared"
               " with it." if len(seeds_text) > 1 else ""), "",
            "| | seeds' recipe, no augmentation | seeds' recipe, augmented | imgclf | runs |",
            "|---|---:|---:|---:|---:|",
            f"| time to 90% test accuracy | {time_to_90_text(plain)} | {time_to_90_text(augmented)} "
            f"| {time_to_90_text(ours, bold=True)} | {ours['runs']} |",
            f"| final test accuracy | {percent_cell(plain['final'])} | {percent_cell(augmented['final'])} "
            f"| {percent_cell(ours['final'], bold=True)} | {ours['runs']} |",
            f"| best test accuracy (any epoch) | {percent_cell(plain['best'])} | {percent_cell(augmented['best'])} "
            f"| {percent_cell(ours['best'])} | {ours['runs']} |",
            "| training wall time, all epochs | "
            + " | ".join(f"{cell(recipe['trained'], ' s', 0)} ({cell(recipe['epochs'], digits=0)} epochs)"
                         if recipe["runs"] else "–" for recipe in (plain, augmented, ours))
            + f" | {ours['runs']} |", ""]
    both = bool(plain["runs"] and augmented["runs"])
    if faster["runs"] and ours["runs"]:
        names = faster_seeds_names(runs)
        against = (f"the seeds' faster variant ({names})" if both else
                   f"the seeds' recipe ({names}; their other variant was not measured)")
        if speedup:
            out.append(f"imgclf reached 90% test accuracy {ratio_cell(speedup, bound)} faster than {against}:"
                       f" {time_to_90_text(ours)} against {time_to_90_text(faster)}.")
        else:
            out.append(f"Compared with {against}: imgclf never reached 90% test accuracy, so there is no ratio.")
        gain = training_accuracy_gain(runs, "final_test_accuracy")
        out += [f"Final test accuracy against it: {cell(gain, ' pp', 1, signed=True)}.", ""]
    if bound:
        out += [("\"≥\": neither of the seeds' recipes reached 90% test accuracy, so the ratio is the longer of their"
                 " two whole training times over ours to 90%: a bound." if both else
                 "\"≥\": the seeds' recipe never reached 90% test accuracy, so the ratio is its whole training time"
                 " over ours to 90%: a lower bound."), ""]
    stopped = [run["seeds_augmented"]["stopped_early"] for run in runs
               if (run.get("seeds_augmented") or {}).get("stopped_early")]
    if stopped:
        which = "" if len(runs) == 1 else f" (in {len(stopped)} of {len(runs)} runs; first)"
        out += [f"The augmented variant stopped early{which}: {stopped[0]}.", ""]
    if plot_rel:
        out += [f"![Test accuracy against wall-clock training time, all three recipes]({plot_rel})", ""]
    out += training_gflops_md(runs)
    present = [key for key in TRAINING_RECIPES if (first.get(key) or {}).get("epochs")]
    out += ["<details><summary>Per-epoch figures (cumulative training seconds, test accuracy)"
            + (", first run" if len(runs) > 1 else "") + "</summary>", "",
            "| epoch | " + " | ".join(f"{TRAINING_SHORT[key]}: cum. s | {TRAINING_SHORT[key]}: test acc."
                                     for key in present) + " |",
            "|---:|" + "---:|---:|" * len(present)]
    rows = {key: first[key]["epochs"] for key in present}
    for index in range(max((len(value) for value in rows.values()), default=0)):
        cells = [(f"{rows[key][index]['cum_s']:,.0f} | {rows[key][index]['test_accuracy']:.4f}"
                  if index < len(rows[key]) else " | ") for key in present]
        out.append(f"| {index + 1} | " + " | ".join(cells) + " |")
    out += ["", "</details>"]
    return out


PREDICT_MODELS = {
    "efficientnet_lite0_224": "`efficientnet_lite0` (ImageNet), 224 px",
    "small_cnn_32": "`small_cnn`, 32 px",
}


def predict_md(section: dict) -> list[str]:
    runs = runs_of(section)
    models = [name for name in PREDICT_MODELS if any(name in run for run in runs)]
    models += [name for run in runs for name in run if name not in models]
    out = ["Median of warm single-image calls within each run (`--calls`, default 50), then the median (min–max)",
           "of those over the runs. Ours: `Predictor.predict_arrays` and `Predictor.explain` (one compiled",
           "`tf.function` returning probabilities and heatmap). keras-io: `model.predict(x)`, and the",
           "\"Grad-CAM class activation visualization\" example as written (`model.predict`, then",
           "`make_gradcam_heatmap`, which builds the gradient model on every call and runs it eagerly).",
           "Ratio = keras-io / ours.", "",
           "| model | call | keras-io recipe | imgclf | ratio | runs |", "|---|---|---:|---:|---:|---:|"]
    for name in models:
        label = PREDICT_MODELS.get(name, f"`{name}`")
        for call, ours_key, theirs_key, ratio_key in (
            ("predict", "ours_predict_ms", "keras_io_predict_ms", "speedup_predict"),
            ("predict + Grad-CAM", "ours_predict_gradcam_ms", "keras_io_predict_gradcam_ms", "speedup_predict_gradcam"),
        ):
            theirs = pick(runs, lambda run: run[name][theirs_key])
            ours = pick(runs, lambda run: run[name][ours_key])
            ratio = pick(runs, lambda run: run[name][ratio_key])
            gradcam = "Grad-CAM" in call
            out.append(f"| {label} | {call} | {cell(theirs, ' ms')} | {cell(ours, ' ms', bold=gradcam)} "
                       f"| {ratio_cell(ratio, bold=gradcam)} | {ratio['n'] if ratio else 0} |")
            label = ""
    diagnostics = []
    for name in models:
        eager = pick(runs, lambda run: run[name]["eager_call_ms"])
        once = pick(runs, lambda run: run[name]["keras_io_gradcam_model_built_once_ms"])
        if eager and once:
            diagnostics.append(f"{PREDICT_MODELS.get(name, name)}: eager `model(x)` {cell(eager, ' ms')}, keras-io"
                               f" Grad-CAM with its gradient model built once {cell(once, ' ms')}")
    if diagnostics:
        out += ["", "Diagnostics from the same runs: " + "; ".join(diagnostics) + "."]
    return out


APP_ROWS = [
    ("bare", "first_paint_s", "fresh process → a bare one-line Streamlit page painted (the floor)"),
    ("home", "health_s", "process start → `/_stcore/health` answers"),
    ("home", "first_paint_s", "**fresh process → Home painted**"),
    ("home", "drawn_s", "fresh process → Home drawn (chart, 40 thumbnails)"),
    ("dataset_cold", "first_paint_s", "**fresh process → Dataset painted** (direct URL)"),
    ("train_cold", "first_paint_s", "**fresh process → Train painted** (direct URL)"),
    ("label_cold", "first_paint_s", "**fresh process → Label painted** (direct URL)"),
    ("train_after_home", "first_paint_s", "click *Train* in the sidebar → Train painted"),
]
PAINTED_PAGES = (("home", "Home"), ("dataset_cold", "Dataset"), ("train_cold", "Train"), ("label_cold", "Label"))


def app_start_md(section: dict) -> list[str]:
    repeats = [repeat for run in runs_of(section) for repeat in run.get("repeats", [])]
    out = ["Each repeat is a first-time user: a fresh `python -m streamlit run app.py` process, new empty",
           "`IMGCLF_RUNS_DIR`/`IMGCLF_CONFIG_DIR`/`IMGCLF_DATA_HOME`/`IMGCLF_CACHE_DIR` (so the 2,000 sample",
           "images are scanned and thumbnailed from scratch), `IMGCLF_DATA_DIR=sample_data/fashion_mnist`,",
           "and a Chromium already running. *Painted*: the sidebar navigation and the page title visible,",
           "no skeleton left. *Drawn*: the page's last element there, the script run ended, every image",
           "loaded and every chart drawn. The seeds had no app; the ratio is to a bare one-line Streamlit",
           "page started the same way in the same repeat.", "",
           "| from → to | seconds | ratio to the bare page | repeats |", "|---|---:|---:|---:|"]
    for case, key, label in APP_ROWS:
        summary = stats(repeat[case][key] for repeat in repeats if repeat.get(case) and key in repeat[case])
        ratio_key = key[:-2] + "_ratio"
        ratio = stats(repeat[case][ratio_key] for repeat in repeats if repeat.get(case) and ratio_key in repeat[case])
        ratio_text = f"{ratio['median']:.2f}×" if ratio and case != "bare" else ""
        out.append(f"| {label} | {cell(summary, ' s')} | {ratio_text} | {summary['n'] if summary else 0} |")
    return out


def audit_md(section: dict) -> list[str]:
    runs = runs_of(section)
    first = runs[0]
    share = first["planted"] / first["images"] if first.get("images") else 0
    with_before = all("before" in run for run in runs)

    def row(label: str, value, fmt) -> str:
        before = f" | {fmt(pick(runs, lambda r: value(r['before'])))}" if with_before else ""
        return f"| {label} | {fmt(pick(runs, value))}{before} | {len(runs)} |"

    out = [f"`bench_audit.py` copies the sample images ({first['images']:,}), moves {first['planted']} of them"
           f" ({share:.0%}) into a random wrong class and runs `audit_dataset` on the copy with a fresh embedding"
           " cache (so the cold time includes embedding every image with the built-in ImageNet model), each"
           " measurement in a fresh process.",
           "Precision and recall of the planted errors among the first *k* suspects. No seeds' counterpart"
           + ("; *before* is our previous audit (float64 L-BFGS heads from zero, up to 300 steps a fold; the score"
              " p(other) - p(given); near-duplicate thumbnails through the TensorFlow pipeline; a full SVD for the"
              " map), kept in the bench script and run beside it." if with_before else "."), "",
           "| | now | before | runs |" if with_before else "| | value | runs |",
           "|---|---:|---:|---:|" if with_before else "|---|---:|---:|",
           row("audit, cold (embedding every image)", lambda r: r["cold_s"], lambda v: cell(v, " s")),
           row("audit, warm (embeddings cached)", lambda r: r["warm_s"], lambda v: cell(v, " s"))]
    for phase in first.get("phases", {}):
        for clock in ("cold_s", "warm_s"):
            out.append(row(f"{phase}, {clock[:-2]}", lambda r, p=phase, c=clock: r["phases"][p][c],
                           lambda v: cell(v, " s")))
    for key, label in (("k_planted", "first {k} suspects (k = planted)"),
                       ("k_10pct", "first {k} suspects (10% of the images)")):
        k = first[key]["k"]
        out.append(row(f"{label.format(k=k)}: precision", lambda r, key=key: r[key]["precision"], percent_cell))
        out.append(row(f"{label.format(k=k)}: recall", lambda r, key=key: r[key]["recall"],
                       lambda v, key=key: percent_cell(v, bold=key == "k_10pct")))
    return out


def photos_md(section: dict) -> list[str]:
    runs = runs_of(section)
    first = runs[0]
    photos, decode = first["photos"], first["decode"]
    width, height = first["config"]["size"]
    out = [f"`bench_photos.py` writes {photos['files']} JPEG phone photos of {width}×{height} in"
           f" {len(photos['classes'])} classes (crops of scikit-image's photos with flips, colour jitter and sensor"
           " noise; some stored sideways with EXIF orientation 6) and measures, in one run, the previous code"
           " path against the current one on the same files.",
           f"Decode {decode['before_label']}; {decode['after_label']}. Scan: before = each file checked by a"
           " full-size decode, as the scanner did until now; after = `inspect_image` (a JPEG at 1/8 scale)."
           " Training runs are"
           " `imgclf train DATA --out RUN` as a user types it, timed from the process start; the first usable"
           " model is the moment status.json reports it (model.keras written).", "",
           "| | before | after | after vs before | runs |", "|---|---:|---:|---:|---:|",
           f"| decode to {decode['size']} px, {decode['threads']} threads (img/s) "
           f"| {cell(pick(runs, lambda r: r['decode']['before_ips']), digits=1)} "
           f"| {cell(pick(runs, lambda r: r['decode']['after_ips']), digits=1)} "
           f"| {ratio_cell(pick(runs, lambda r: r['decode']['ratio']))} | {len(runs)} |",
           f"| scan, cold ({first['scan']['files']} files) | {cell(pick(runs, lambda r: r['scan']['cold_before_s']), ' s')} "
           f"| {cell(pick(runs, lambda r: r['scan']['cold_after_s']), ' s')} "
           f"| {ratio_cell(pick(runs, lambda r: r['scan']['cold_ratio']))} | {len(runs)} |",
           f"| scan, warm | | {cell(pick(runs, lambda r: r['scan']['warm_s']), ' s')} | – | {len(runs)} |", "",
           "| training run | model, size | first usable model (s) | of which features (s) | best validation accuracy"
           " | wall (s) | runs |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in first.get("training", {}):
        trained = [run["training"][name] for run in runs if "error" not in run["training"].get(name, {"error": 1})]
        if not trained:
            out.append(f"| {name} | failed: {first['training'][name].get('error', '?')} | | | | | |")
            continue
        usable = stats(run.get("usable_s") for run in trained)
        features = stats((run.get("usable_model") or {}).get("features_seconds") for run in trained)
        accuracy = stats(run["best_val_accuracy"] for run in trained)
        out.append(f"| {name} | {trained[0].get('model', '?')}, {trained[0].get('image_size', '?')} px "
                   f"| {cell(usable, ' s') if usable else '–'} | {cell(features, ' s') if features else '–'} "
                   f"| {percent_cell(accuracy)} | {cell(stats(run['wall_s'] for run in trained), ' s')} "
                   f"| {len(trained)} |")
    out += ["", "The warm run reuses the first run's cache (scan and backbone features) and stops at its usable"
            " model. Each class of these photos is crops of one source photo, so the classes are easy: from"
            " scratch, `small_cnn` learns them too, which real photos of a kind of object do not give it."]
    return out


# ---------------------------------------------------------------------------------------------
# Overview, machine, the whole page


def overview_rows(sections: dict) -> list[str]:
    rows = []
    pipeline = sections.get("pipeline")
    if pipeline and runs_of(pipeline):
        for row in pipeline_summary(runs_of(pipeline)):
            if row["key"] == "epoch2":
                rows.append(f"| pipeline throughput, epoch 2+, {row['case']} (img/s) | {cell(row['seeds'], digits=0)} "
                            f"| {cell(row['ours'], digits=0)} | {ratio_cell(row['ratio'])} | {count(row['ratio'])} |")
        scans = [run["scan"] for run in runs_of(pipeline) if run.get("scan")]
        if scans:
            cold = stats(scan["cold_s"] for scan in scans)
            warm = stats(scan["warm_s"] for scan in scans)
            rows.append(f"| scan of {scans[0]['files']:,} files, cold / warm (s) | (none) | {cell(cold, ' s')} / "
                        f"{cell(warm, ' s', bold=True)} | – | {warm['n']} |")
    training = sections.get("training")
    if training and runs_of(training):
        runs = training_runs(training)
        seeds, ours = training_recipe_stats(runs, "seeds_faster"), training_recipe_stats(runs, "ours")
        speedup, bound = training_speedup(runs)
        quick = " **(quick mode)**" if training.get("mode") == "quick" else ""
        variant = f" (seeds: their faster recipe, {faster_seeds_names(runs)})" if seeds["runs"] else ""
        rows.append(f"| time to 90% test accuracy, Fashion-MNIST{quick}{variant} | {time_to_90_text(seeds)} "
                    f"| {time_to_90_text(ours)} | {ratio_cell(speedup, bound)} | {count(speedup, len(runs))} |")
        gain = training_accuracy_gain(runs, "final_test_accuracy")
        rows.append(f"| final test accuracy, Fashion-MNIST{quick}{variant} | {percent_cell(seeds['final'])} "
                    f"| {percent_cell(ours['final'])} | {cell(gain, ' pp', 1, bold=True, signed=True)} "
                    f"| {ours['runs']} |")
    predict = sections.get("predict")
    if predict and runs_of(predict):
        for name, label in PREDICT_MODELS.items():
            runs = [run for run in runs_of(predict) if name in run]
            if runs:
                theirs = pick(runs, lambda r: r[name]["keras_io_predict_gradcam_ms"])
                ours_ms = pick(runs, lambda r: r[name]["ours_predict_gradcam_ms"])
                rows.append(f"| predict + Grad-CAM, {label} | {cell(theirs, ' ms')} | {cell(ours_ms, ' ms')} "
                            f"| {ratio_cell(pick(runs, lambda r: r[name]['speedup_predict_gradcam']))} | {len(runs)} |")
    app = sections.get("app_start")
    if app and runs_of(app):
        repeats = [repeat for run in runs_of(app) for repeat in run.get("repeats", [])]
        painted = {name: stats(repeat[case]["first_paint_s"] for repeat in repeats if repeat.get(case))
                   for case, name in (("bare", "bare"), *PAINTED_PAGES)}
        shown = [name for name, summary in painted.items() if summary]
        rows.append(f"| app cold start to first paint, {' / '.join(shown)} (s) | (no app) "
                    f"| {' / '.join(cell(painted[name], ' s') for name in shown)} | – | {painted['Home']['n']} |")
    audit = sections.get("audit")
    if audit and runs_of(audit):
        runs = runs_of(audit)
        if all("before" in run for run in runs):  # the baseline is our previous audit, run beside it
            before = pick(runs, lambda r: r["before"]["warm_s"])
            now = pick(runs, lambda r: r["warm_s"])
            rows.append(f"| label audit of the sample, warm rerun (s; before: our previous audit) | {cell(before, ' s')} "
                        f"| {cell(now, ' s')} | {ratio_cell(pick(runs, lambda r: r['before']['warm_s'] / r['warm_s']))} "
                        f"| {len(runs)} |")
            recall = pick(runs, lambda r: r["k_10pct"]["recall"])
            recall_before = pick(runs, lambda r: r["before"]["k_10pct"]["recall"])
            rows.append(f"| label audit: planted errors among the first 10% of suspects (recall; before: our previous "
                        f"audit) | {percent_cell(recall_before, bold=False)} | {percent_cell(recall)} | – | {len(runs)} |")
        else:
            rows.append(f"| label audit: planted errors among the first 10% of suspects (recall) | (none) "
                        f"| {percent_cell(pick(runs, lambda r: r['k_10pct']['recall']))} | – | {len(runs)} |")
    photos = sections.get("photos")
    if photos and runs_of(photos):
        runs = runs_of(photos)
        rows.append(f"| decode of 12-megapixel JPEGs to 224 px (img/s; before: full-size decode) "
                    f"| {cell(pick(runs, lambda r: r['decode']['before_ips']), digits=1)} "
                    f"| {cell(pick(runs, lambda r: r['decode']['after_ips']), digits=1)} "
                    f"| {ratio_cell(pick(runs, lambda r: r['decode']['ratio']))} | {len(runs)} |")
        rows.append(f"| cold scan of {runs[0]['scan']['files']} 12-megapixel JPEGs (s; before: full-size decode check) "
                    f"| {cell(pick(runs, lambda r: r['scan']['cold_before_s']), ' s')} "
                    f"| {cell(pick(runs, lambda r: r['scan']['cold_after_s']), ' s')} "
                    f"| {ratio_cell(pick(runs, lambda r: r['scan']['cold_ratio']))} | {len(runs)} |")
        for name, label in (("recommended", "cold"), ("recommended, warm features", "features cached")):
            trained = [run["training"][name] for run in runs if "usable_s" in run["training"].get(name, {})]
            if trained:
                rows.append(f"| `imgclf train` on {runs[0]['photos']['files']} phone photos: first usable model, {label} "
                            f"| (none) | {cell(stats(run['usable_s'] for run in trained), ' s')} | – | {len(trained)} |")
    return rows


def machine_md(machine: dict) -> list[str]:
    packages = machine.get("packages", {})
    versions = ", ".join(f"{name} {version}" for name, version in packages.items() if version)
    lines = [f"- CPU: {machine.get('cpu_model', '?')}, {machine.get('cpus', '?')} logical cores"
             f" ({machine.get('cpus_usable', '?')} usable by this process), {machine.get('arch', '?')}",
             f"- RAM: {machine.get('ram_gib', '?')} GiB; GPU: {machine.get('gpu', 'none')}",
             f"- OS: {machine.get('os', '?')} (kernel {machine.get('kernel', '?')})",
             f"- Python {machine.get('python', '?')}; {versions}"]
    if machine.get("chromium"):
        lines.append(f"- Browser: {machine['chromium']} (headless, `--disable-gpu`)")
    return lines


def section_header(name: str, section: dict) -> list[str]:
    runs = runs_of(section)
    when = (section.get("finished") or "?")[:16].replace("T", " ")
    lines = [f"## {SECTION_TITLES[name]}", ""]
    meta = [f"{len(runs)} run{'s' if len(runs) != 1 else ''}", f"finished {when} UTC"]
    if section.get("wall_s"):
        meta.append(f"{section['wall_s'] / 60:.1f} min in all")
    if section.get("load_before"):
        loads = ", ".join(f"{value:.1f}" for value in section["load_before"])
        meta.append(f"1-min load average before each run: {loads}")
    lines.append("*" + "; ".join(meta) + ".*")
    lines.append("")
    if section.get("note"):
        lines += [f"> {section['note']}", ""]
    if section.get("failed_runs"):
        lines += [f"> {section['failed_runs']} run(s) of this section failed and are not counted.", ""]
    lines += ["Reproduce this section (it is merged into `docs/benchmarks/results.json`):", "", "```bash",
              section.get("run_all_command", "?"), "```", "", "One run of it:", "", "```bash",
              section.get("command", "?"), "```", ""]
    return lines


def render_markdown(results: dict, plot_rel: str | None, results_rel: str = "benchmarks/results.json") -> str:
    sections = results.get("sections", {})
    machine = results.get("machine", {})
    out = ["# Benchmarks", "",
           "<!-- Generated by bench/run_all.py (bench/report.py) from docs/benchmarks/results.json;"
           " do not edit by hand. -->",
           "",
           f"Rendered {results.get('updated', '?')[:16].replace('T', ' ')} UTC from"
           f" [`{results_rel}`]({results_rel}) (every raw figure, the command lines and the"
           " machine of each section). Each figure is the **median (min–max) over repeated runs**; the number"
           " of runs is in the last column. A ratio is taken within one run (both recipes in the same process,"
           " on the same files) and then summarized the same way; ratios are always \"how many times better"
           " ours is\": throughput ours / seeds, time seeds / ours.", "",
           "The machine of the latest `run_all.py` (each section records its own in `results.json`):", ""]
    out += machine_md(machine)
    out += ["", "Reproduce everything, the 20-minute training comparison included (`make bench`, about 1 h"
            " on 2 cores):", "", "```bash",
            ".venv/bin/python bench/run_all.py --training full", "```", "",
            "or everything but the training comparison, which is then kept from `results.json` as it is"
            " (`make bench-refresh`, about 30 min on 2 cores):", "",
            "```bash", ".venv/bin/python bench/run_all.py --training reuse", "```", "",
            "`--only pipeline,predict,app_start,audit,photos,training` refreshes some sections and keeps the others."
            " The pipeline and training benchmarks need Debian's `dataset-fashion-mnist` (the 70,000-file tree is"
            " written to `/tmp/fmnist-tree` first if missing); the app benchmark needs Debian's `chromium`.", "",
            "**Caveats.** CPU timings on a small shared machine swing 2–4× between runs (other processes,"
            " thermal and frequency changes, the OS page cache): compare the ratios measured within one run,"
            " not absolute numbers across runs or machines. The min–max ranges show how much a figure moved"
            " over the repeats here. The training comparison is one long run unless said otherwise.", "",
            "## At a glance", "",
            "| comparison | seeds' recipe | imgclf | ours vs seeds | runs |", "|---|---:|---:|---:|---:|"]
    out += overview_rows(sections) or ["| (nothing measured yet) | | | | |"]
    missing = [name for name in SECTIONS if name not in sections or not runs_of(sections[name])]
    if missing:
        out += ["", "Not measured yet: " + ", ".join(f"`{name}`" for name in missing)
                + f" (`.venv/bin/python bench/run_all.py --only {','.join(missing)}`)."]
    renderers = {"pipeline": pipeline_md, "predict": predict_md, "app_start": app_start_md, "audit": audit_md,
                 "photos": photos_md,
                 "training": lambda section: training_md(section, plot_rel)}
    for name in SECTIONS:
        section = sections.get(name)
        if not section or not runs_of(section):
            continue
        out += [""] + section_header(name, section)
        section_machine = section.get("machine") or {}
        identity = ("cpu_model", "cpus")
        if section_machine.get("cpu_model") and machine.get("cpu_model") and (
                [section_machine.get(key) for key in identity] != [machine.get(key) for key in identity]):
            out += [f"> Measured on a different machine: {section_machine.get('cpu_model')}, "
                    f"{section_machine.get('cpus')} cores.", ""]
        out += renderers[name](section)
    for path in sorted(STANDALONE_SECTIONS.glob("*.md")):
        out += ["", path.read_text(encoding="utf-8").rstrip()]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# Plot


def plot_training(section: dict, path: Path) -> bool:
    """Test accuracy against cumulative training seconds, all three recipes; False if there is nothing to plot."""
    runs = [run for run in training_runs(section) if any(run.get(recipe) for recipe in TRAINING_RECIPES)]
    if not runs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    colors = {"seeds_plain": "#e6ab02", "seeds_augmented": "#d95f02", "ours": "#1b6ac9"}
    figure, axes = plt.subplots(figsize=(9, 5.6), dpi=110)
    for recipe in TRAINING_RECIPES:
        for number, run in enumerate(runs):
            rows = (run.get(recipe) or {}).get("epochs") or []
            if not rows:
                continue
            seconds = [row["cum_s"] for row in rows]
            accuracy = [row["test_accuracy"] for row in rows]
            reached = run[recipe].get("time_to_90_s")
            if reached is None:
                outcome = f"{len(rows)} epochs, never 90% (best {max(accuracy):.1%})"
                if run[recipe].get("stopped_early"):
                    outcome += ", stopped early"
            else:
                outcome = f"90% after {reached:,.0f} s (epoch {run[recipe].get('reached_90_epoch')})"
                if number == 0:
                    axes.axvline(reached, color=colors[recipe], linestyle=":", linewidth=1)
            axes.plot(seconds, accuracy, marker="o", markersize=3.5, linewidth=1.6, color=colors[recipe],
                      alpha=1.0 if number == 0 else 0.45,
                      label=f"{TRAINING_LABELS[recipe]}:\n{outcome}" if number == 0 else None)
    axes.axhline(REACH_ACCURACY, color="0.35", linestyle="--", linewidth=1, label="90% test accuracy")
    axes.set_xlabel("wall-clock training time, s (each recipe's setup included, test measurement excluded)")
    axes.set_ylabel("test accuracy (10,000 Fashion-MNIST test images)")
    first = runs[0]
    modes = {"quick": "quick mode", "full": "full run"}
    mode = modes.get(section.get("mode"), section.get("mode", ""))
    when = (section.get("finished") or "")[:10]
    repeats = f", {len(runs)} runs (first solid)" if len(runs) > 1 else ", 1 run"
    axes.set_title(f"Fashion-MNIST: test accuracy vs training time ({mode}, {first.get('train_images', 0):,} "
                   f"training images, {when}{repeats})", fontsize=10)
    axes.set_xlim(left=0)
    axes.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    top = axes.secondary_xaxis("top", functions=(lambda s: s / 60, lambda m: m * 60))
    top.set_xlabel("minutes", fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return True


def render(results_path: Path, markdown_path: Path, plot_path: Path) -> None:
    results = json.loads(results_path.read_text(encoding="utf-8"))
    training = results.get("sections", {}).get("training")
    plot_rel = None
    if training and plot_training(training, plot_path):
        plot_rel = os.path.relpath(plot_path, markdown_path.parent).replace(os.sep, "/")
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    results_rel = os.path.relpath(results_path, markdown_path.parent).replace(os.sep, "/")
    markdown_path.write_text(render_markdown(results, plot_rel, results_rel), encoding="utf-8")
    print(f"wrote {markdown_path}" + (f" and {plot_path}" if plot_rel else ""), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    args = parser.parse_args(argv)
    render(args.results, args.markdown, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
