"""The `imgclf` command line. `--json` prints one JSON document on stdout; progress goes to stderr.

Exit codes: 0 ok, 2 bad usage or bad input (one line on stderr saying what and where).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence, TextIO

from imgclf_core import __version__
from imgclf_core.models.errors import ModelError

EXIT_OK = 0
EXIT_BAD_INPUT = 2
FLIP_TTA_HELP = "average each image's probabilities with its mirror image's (test-time flip: twice the time)"
# Below this many files a scan is quick enough that a bar would only flicker.
PROGRESS_MIN_TOTAL = 500


class StderrProgressBar:
    """A text progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None, min_total: int = PROGRESS_MIN_TOTAL):
        self.label = label
        self.stream = stream or sys.stderr
        self.min_total = min_total
        self.started = time.monotonic()
        self.last_decile = -1
        self.interactive = self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if total < self.min_total:
            return
        fraction = done / total if total else 1.0
        if not self.interactive:
            decile = int(fraction * 10)
            if decile == self.last_decile:
                return
            self.last_decile = decile
        elapsed = time.monotonic() - self.started
        remaining = elapsed / fraction - elapsed if fraction > 0 else 0.0
        bar = "#" * int(fraction * 30)
        line = f"{self.label} {fraction:4.0%} |{bar:<30}| {done}/{total} [{elapsed:.0f}s<{remaining:.0f}s]"
        end = "\n" if not self.interactive or done >= total else ""
        self.stream.write(("\r" if self.interactive else "") + line + end)
        self.stream.flush()


class BadInput(Exception):
    """Bad usage or input: reported as one line on stderr with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgclf", description="Local-first image classification studio.")
    parser.add_argument("--version", action="version", version=f"imgclf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    scan = commands.add_parser("scan", help="scan a folder-per-class dataset: counts, skipped files, duplicates")
    scan.add_argument("data_dir", metavar="DATA_DIR")
    scan.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    scan.add_argument("--no-cache", action="store_true", help="re-read every file, ignoring the scan cache")
    scan.set_defaults(handler=run_scan)

    add_train_parser(commands)

    fashion = commands.add_parser(
        "fashion-mnist", help="write Fashion-MNIST (from its IDX files) as folder-per-class PNG trees"
    )
    fashion.add_argument("out_dir", metavar="OUT_DIR")
    fashion.add_argument("--source", default=None, help="folder with the IDX files (default: Debian's)")
    fashion.add_argument(
        "--sample", type=int, metavar="PER_CLASS", default=None,
        help="write a balanced labelled subset of PER_CLASS train images per class (+ an inbox) instead of all 70k",
    )
    fashion.add_argument("--inbox", type=int, default=60, help="unlabelled test images for the inbox (with --sample)")
    fashion.set_defaults(handler=run_fashion_mnist)
    add_evaluate_parser(commands)
    add_predict_parser(commands)
    add_audit_parser(commands)
    add_similar_parser(commands)
    add_export_parser(commands)
    return parser


def add_audit_parser(commands: argparse._SubParsersAction) -> None:
    from imgclf_core.inspection.audit import DEFAULT_DUPLICATE_SIMILARITY, DEFAULT_FOLDS

    audit = commands.add_parser(
        "audit", help="rank likely label errors and group near-duplicates (offline ImageNet embeddings)",
    )
    audit.add_argument("data_dir", metavar="DATA_DIR")
    audit.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    audit.add_argument("--folds", type=int, default=DEFAULT_FOLDS, help="cross-validation folds (default: %(default)s)")
    audit.add_argument("--similarity", type=float, default=DEFAULT_DUPLICATE_SIMILARITY,
                       help="embedding cosine similarity that makes two images near-duplicates (default: %(default)s)")
    audit.add_argument("--top", type=int, default=20, help="suspects listed without --json (default: %(default)s)")
    audit.set_defaults(handler=run_audit)


def add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="evaluate a run's model on a folder-per-class dataset (default: the run's own test split)"
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("data_dir", metavar="DATA_DIR", nargs="?", default=None,
                          help="default: the test split (test/ folder) of the dataset the run was trained on")
    evaluate.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    evaluate.add_argument("--flip-tta", action="store_true",
                          help=FLIP_TTA_HELP)
    evaluate.set_defaults(handler=run_evaluate)


def add_predict_parser(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict", help="classify images with a run's model (or the word 'imagenet' for the built-in classifier)"
    )
    predict.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, or 'imagenet'")
    predict.add_argument("images", metavar="IMAGE", nargs="+")
    predict.add_argument("--top-k", type=int, default=5, metavar="K", help="how many classes to list per image")
    predict.add_argument("--gradcam", metavar="OUT_DIR", default=None, help="write Grad-CAM overlay PNGs here")
    predict.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    predict.add_argument("--flip-tta", action="store_true",
                         help=FLIP_TTA_HELP)
    predict.set_defaults(handler=run_predict)


def add_train_parser(commands) -> None:
    from imgclf_core.config import AugmentationConfig, DataConfig, ModelConfig, TrainingConfig

    data, training, model = DataConfig(), TrainingConfig(), ModelConfig()
    train = commands.add_parser(
        "train", help="train a model on a folder-per-class dataset into a run folder",
        description="Train into RUN_DIR (config.json, status.json, history.csv, model.keras, ...). "
        "`imgclf train --resume RUN_DIR` continues a stopped or killed run after its last finished epoch.",
    )
    train.add_argument("data_dir", metavar="DATA_DIR", nargs="?")
    train.add_argument("--out", metavar="RUN_DIR", help="the run folder to create")
    train.add_argument("--resume", metavar="RUN_DIR", nargs="?", const=True, default=None,
                       help="continue the run in RUN_DIR (or in --out)")
    train.add_argument("--model", default=None,
                       help="a registered model (see --list-models); default: recommended from the data")
    train.add_argument("--list-models", action="store_true", help="print the model registry and exit")
    train.add_argument("--weights", default=model.weights, help="pretrained models: imagenet, none or a weights file")
    train.add_argument("--epochs", type=int, default=None,
                       help="epochs (pretrained models: of the head, on cached features); default: recommended")
    train.add_argument("--fine-tune-epochs", type=int, default=None,
                       help="pretrained models: epochs fine-tuning the top of the base; default: recommended")
    train.add_argument("--learning-rate", type=float, default=None,
                       help="default: the model's, recommended from the data (e.g. 3e-3 with batches of 128)")
    train.add_argument("--image-size", type=int, default=None,
                       help="default: recommended (pretrained: the model's own; from scratch: the data's size)")
    train.add_argument("--color-mode", choices=("rgb", "grayscale"), default=None,
                       help="default: grayscale when every image is grayscale, else rgb")
    train.add_argument("--batch-size", type=int, default=None,
                       help=f"default: recommended from the data ({data.batch_size}, or 128 for 20,000+ images "
                            "trained from scratch)")
    train.add_argument("--val-split", type=float, default=None,
                       help=f"share held out for validation (default: {data.validation_split}, or 0.1 for 20,000+ "
                            "images trained from scratch)")
    train.add_argument("--seed", type=int, default=data.seed)
    train.add_argument("--no-augmentation", action="store_true")
    train.set_defaults(handler=run_train, augmentation_default=AugmentationConfig())


def run_train(args: argparse.Namespace) -> int:
    from imgclf_core.models.registry import MODEL_REGISTRY

    if args.list_models:
        for spec in MODEL_REGISTRY.values():
            # From scratch, the size comes from the data (its median side, clamped); pretrained, the model's own.
            size = f"{spec.default_image_size} px" if spec.pretrained else "data's size"
            print(f"{spec.name:<18} {size:<12} {spec.description}")
        return EXIT_OK
    run_dir = _train_run_dir(args)
    from imgclf_core.training.run_catalog import outcome_lines
    from imgclf_core.training.run_folder import FINISHED, STOPPED
    from imgclf_core.training.trainer import train_run

    state = train_run(run_dir, epoch_listener=print_epoch_line)
    print("\n".join(outcome_lines(run_dir, state)))
    return EXIT_OK if state in (FINISHED, STOPPED) else 1


def print_epoch_line(row: dict, model=None) -> None:
    """The trainer's epoch listener: one line per finished epoch on stderr."""
    from imgclf_core.training.run_catalog import epoch_line

    print(epoch_line(row), file=sys.stderr, flush=True)


def _train_run_dir(args: argparse.Namespace) -> Path:
    """The run folder to train: an existing one for --resume, else a new one holding the config."""
    from imgclf_core.training.run_folder import RunFolder
    from imgclf_core.training.run_process import check_can_resume

    if args.resume is not None:
        target = args.out if args.resume is True else args.resume
        if not target:
            raise BadInput("--resume needs a RUN_DIR (or --out RUN_DIR)")
        return check_can_resume(Path(target)).path
    if not args.data_dir or not args.out:
        raise BadInput("give DATA_DIR and --out RUN_DIR (or --resume RUN_DIR)")
    folder = RunFolder(args.out)
    if folder.is_run():
        raise BadInput(f"{folder.path} already holds a run: use --resume {folder.path}, or another --out folder")
    if not Path(args.data_dir).is_dir():
        raise BadInput(f"dataset folder not found: {args.data_dir}")
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.write_config(run_config_from_args(args))
    return folder.path


def run_config_from_args(args: argparse.Namespace):
    """The RunConfig of `imgclf train`: what the user gave, the rest recommended from the data."""
    from imgclf_core.config import NO_AUGMENTATION
    from imgclf_core.data.dataset import scan_dataset
    from imgclf_core.training.recommend import recommend_settings
    from imgclf_core.training.run_setup import RunChoices, build_run_config, check_can_train

    index = scan_dataset(args.data_dir, progress=StderrProgressBar("scan"))
    recommended = recommend_settings(index)
    if args.model is None:
        print(f"imgclf train: {recommended.model} at {recommended.image_size} px: {recommended.reason}",
              file=sys.stderr, flush=True)
    choices = RunChoices(
        model=args.model, weights=args.weights, image_size=args.image_size, color_mode=args.color_mode,
        epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs, learning_rate=args.learning_rate,
        batch_size=args.batch_size, validation_split=args.val_split, seed=args.seed,
        augmentation=NO_AUGMENTATION if args.no_augmentation else args.augmentation_default,
    )
    config = build_run_config(args.data_dir, index, choices, recommended)
    check_can_train(index, config.data.validation_split, config.data.seed)
    return config


# Commands that load a model: TensorFlow is imported up front, quietly (see tf_quiet); `similar` only with
# --run. The audit and `similar` import it themselves, quietly too, and only when some image is not
# embedded yet.
TENSORFLOW_COMMANDS = ("train", "evaluate", "predict", "export")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.command in TENSORFLOW_COMMANDS and not getattr(args, "list_models", False)
            or args.command == "similar" and args.run is not None):
        from imgclf_core.tf_quiet import import_tensorflow_quietly

        import_tensorflow_quietly()  # now, so its start-up lines never reach the terminal
    try:
        return args.handler(args)
    except (BadInput, ModelError, ValueError, FileNotFoundError, NotADirectoryError) as error:  # ModelError, RunError too
        message = str(error).replace("\n", " ")
        print(f"imgclf {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run_scan(args: argparse.Namespace) -> int:
    from imgclf_core.data.dataset import scan_dataset

    from imgclf_core.data.quality import quality_report

    index = scan_dataset(
        args.data_dir, use_cache=not args.no_cache, progress=StderrProgressBar("scan")
    )
    document = index.to_json_dict(path_prefix=args.data_dir)
    document["quality"] = quality_report(index, progress=StderrProgressBar("quality")).to_json_dict(args.data_dir)
    if args.json:
        json.dump(document, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        print_scan_summary(document, args.data_dir)
    return EXIT_OK


def print_scan_summary(document: dict, data_dir: str) -> None:
    classes, splits = document["classes"], document["splits"]
    print(f"{data_dir}: {document['num_images']} images in {sum(1 for c in classes.values() if c)} classes"
          + (f", splits: {', '.join(splits)}" if splits else ""))
    width = max((len(name) for name in classes), default=5)
    if splits:
        print(f"  {'class':<{width}}  {'total':>7}" + "".join(f"  {split:>10}" for split in splits))
    for name, count in classes.items():
        print(f"  {name:<{width}}  {count:>7}" + "".join(f"  {splits[split][name]:>10}" for split in splits))
    if document["skipped"]:
        print(f"skipped {len(document['skipped'])} file(s):")
        for item in document["skipped"]:
            print(f"  {item['path']}: {item['reason']}")
    if document["duplicates"]:
        print(f"{len(document['duplicates'])} group(s) of identical files:")
        for group in document["duplicates"]:
            print("  " + " = ".join(group))
    if document["leakage"]:
        print(f"{len(document['leakage'])} group(s) of identical files in more than one split (leakage):")
        for group in document["leakage"]:
            print("  " + " = ".join(group))
    flagged = {issue: paths for issue, paths in document.get("quality", {}).items() if paths}
    if flagged:
        print("image quality: " + ", ".join(f"{len(paths)} {issue}" for issue, paths in flagged.items())
              + " (--json lists them)")
    for warning in document["warnings"]:
        print(f"warning: {warning}")


def run_fashion_mnist(args: argparse.Namespace) -> int:
    from imgclf_core.data import fashion_mnist

    source = Path(args.source) if args.source else fashion_mnist.DEFAULT_SOURCE_DIR
    if args.sample is not None:
        if args.sample < 1 or args.inbox < 0:
            raise BadInput("--sample must be >= 1 and --inbox >= 0")
        counts = fashion_mnist.write_sample(source, args.out_dir, args.sample, args.inbox)
        print(f"wrote {counts['labelled']} labelled images and {counts['inbox']} inbox images to {args.out_dir}")
    else:
        counts = fashion_mnist.write_full_tree(source, args.out_dir, progress=StderrProgressBar("write", min_total=0))
        print(f"wrote {counts['train']} train and {counts['test']} test images to {args.out_dir}")
    return EXIT_OK


def run_evaluate(args: argparse.Namespace) -> int:
    from imgclf_core.inspection.run_evaluation import dataset_to_evaluate, evaluate_run

    index, data_dir = dataset_to_evaluate(args.run_dir, args.data_dir, progress=StderrProgressBar("scan"))
    if index.skipped:
        print(f"warning: skipped {len(index.skipped)} unusable file(s) in {data_dir} (see imgclf scan)",
              file=sys.stderr)
    evaluation = evaluate_run(args.run_dir, index, progress=StderrProgressBar("predict"), flip_average=args.flip_tta)
    if args.json:
        json.dump(evaluation, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        print_evaluation(evaluation, args.run_dir, data_dir)
    return EXIT_OK


# Above this many classes the confusion matrix is too wide for a terminal; --json still has it.
MAX_PRINTED_MATRIX_CLASSES = 20


def print_evaluation(evaluation: dict, run_dir: str, data_dir: str) -> None:
    matrix = evaluation["confusion_matrix"]
    total = sum(map(sum, matrix))
    print(f"{run_dir} on {data_dir}: accuracy {evaluation['accuracy']:.4f} on {total} images, "
          f"macro F1 {evaluation['macro_f1']:.4f}")
    names = evaluation["class_names"]
    width = max(max(map(len, names)), 5)
    print(f"  {'class':<{width}}  precision  recall      f1  support")
    for name, scores in evaluation["per_class"].items():
        print(f"  {name:<{width}}  {scores['precision']:9.4f}  {scores['recall']:6.4f}  {scores['f1']:6.4f}  "
              f"{scores['support']:7d}")
    if len(names) <= MAX_PRINTED_MATRIX_CLASSES:
        print("confusion matrix (rows = true class, columns = predicted, in the order above):")
        cell = max(len(str(max(map(max, matrix)))), 3)
        for name, row in zip(names, matrix):
            print(f"  {name:<{width}}  " + " ".join(f"{count:>{cell}}" for count in row))


def run_predict(args: argparse.Namespace) -> int:
    from imgclf_core.inspection.predict import Predictor

    if args.top_k < 1:
        raise BadInput(f"--top-k must be at least 1, got {args.top_k}")
    predictor = (Predictor.imagenet() if args.run_dir == "imagenet"
                 else Predictor.from_run(args.run_dir, flip_average=args.flip_tta))
    results = predictor.predict_files(args.images, top_k=args.top_k, gradcam_dir=args.gradcam)
    if args.json:
        json.dump(results, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        print_predictions(results)
    failed = [item for item in results if "error" in item]
    if len(failed) == len(results):
        raise BadInput(f"none of the {len(results)} image(s) could be read (first: {failed[0]['path']}: "
                       f"{failed[0]['error']})")
    return EXIT_OK


def print_predictions(results: list[dict]) -> None:
    for item in results:
        if "error" in item:
            print(f"{item['path']}: cannot read: {item['error']}")
            continue
        print(item["path"])
        width = max(len(entry["label"]) for entry in item["top_k"])
        for entry in item["top_k"]:
            print(f"  {entry['label']:<{width}}  {entry['probability']:.4f}")
        unlike = item.get("unfamiliar")
        if unlike and unlike["flagged"]:
            print(f"  note: unlike the training data (distance {unlike['score']:.2f} > {unlike['threshold']:.2f}): "
                  "the classes above may mean nothing for it")
        if item["gradcam"]:
            print(f"  grad-cam: {item['gradcam']}")




EXIT_PARITY_FAILED = 1


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    from imgclf_core.export.exporter import DEFAULT_GOLDEN_COUNT, FORMATS

    export = commands.add_parser(
        "export", help="export a run's model (keras, savedmodel, tflite), checked against the Keras model",
        description="Write the model, labels.txt, model_card.md and parity.json into --out, after checking the "
        "export against the run's Keras model on golden validation images (exit 1 when they disagree). "
        "--out must be new, empty, or a previous export (then replaced as a whole).",
    )
    export.add_argument("run_dir", metavar="RUN_DIR")
    # Checked by export_run, not argparse choices: a wrong format is then one line on stderr.
    export.add_argument("--format", required=True, metavar="{" + ",".join(FORMATS) + "}")
    export.add_argument("--out", required=True, metavar="PATH", help="the export folder to write")
    export.add_argument("--float16", action="store_true",
                        help="tflite: also write model-float16.tflite (float16 weights) and report its agreement")
    export.add_argument("--int8", action="store_true",
                        help="tflite: also write model-int8.tflite (full-integer quantization, activation ranges from "
                             "training images) and report its agreement")
    export.add_argument("--golden", type=int, default=DEFAULT_GOLDEN_COUNT, metavar="N",
                        help="golden validation images for the parity check (default: %(default)s)")
    export.add_argument("--json", action="store_true", help="print the report as one JSON document on stdout")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from imgclf_core.export.exporter import ExportParityError, export_run

    try:
        report = export_run(
            args.run_dir, args.format, args.out, float16=args.float16, golden_count=args.golden, int8=args.int8,
            progress=lambda message: print(f"export: {message}", file=sys.stderr, flush=True),
        )
    except ExportParityError as error:
        print(f"imgclf export: parity check failed, nothing written: {error}", file=sys.stderr)
        return EXIT_PARITY_FAILED
    if args.json:
        json.dump(report.to_json_dict(), sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"{report.run_dir} -> {report.out_dir} ({report.format}, {report.seconds:.1f} s)")
    for parity in filter(None, (report.parity, report.float16, report.int8)):
        print(f"  {parity.artifact:<22} {parity.size_bytes / 1e6:7.2f} MB  top-1 {parity.top1_matches}/"
              f"{parity.golden_images}  max |dp| {parity.max_probability_difference:.2e}  "
              f"(limit {parity.tolerance:.0e}{'' if parity.top1_required else ', reported'})")
    return EXIT_OK


def audit_progress_bars():
    """The audit's progress(phase, done, total) as one stderr bar per phase: embed, heads, duplicates, map."""
    from imgclf_core.inspection.audit import AUDIT_PHASES

    labels = dict(zip(AUDIT_PHASES, ("embed", "heads", "duplicates", "map")))
    bars: dict[str, StderrProgressBar] = {}

    def report(phase: str, done: int, total: int) -> None:
        if phase not in bars:  # started when its phase starts, so its times are the phase's own
            bars[phase] = StderrProgressBar(labels.get(phase, phase), min_total=0)
        bars[phase](done, total)

    return report


def run_audit(args: argparse.Namespace) -> int:
    from imgclf_core.inspection.audit import audit_dataset
    from imgclf_core.data.dataset import scan_dataset

    if args.folds < 2 or not 0.0 < args.similarity <= 1.0:
        raise BadInput("--folds must be at least 2 and --similarity in (0, 1]")
    index = scan_dataset(args.data_dir, progress=StderrProgressBar("scan"))
    report = audit_dataset(index, folds=args.folds, duplicate_similarity=args.similarity,
                           progress=audit_progress_bars())
    document = report.to_json_dict(path_prefix=args.data_dir)
    if args.json:
        json.dump(document, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"{args.data_dir}: {len(document['suspects'])} labelled images audited; most likely label errors "
          "(score: log10 of how much likelier the other class is than the label):")
    for item in document["suspects"][:args.top]:
        print(f"  {item['score']:+.3f}  {item['path']}  labelled {item['given']} (p {item['given_probability']:.2g}), "
              f"looks like {item['suggested']} (p {item['suggested_probability']:.2g})")
    print(f"{len(document['near_duplicates'])} group(s) of near-duplicates:")
    for group in document["near_duplicates"]:
        print("  " + " ~ ".join(group))
    return EXIT_OK


def add_similar_parser(commands: argparse._SubParsersAction) -> None:
    from imgclf_core.inspection.similar import DEFAULT_TOP

    similar = commands.add_parser(
        "similar", help="the images of a dataset nearest to an image (offline ImageNet embeddings, cached; "
                        "or a run's model)",
    )
    similar.add_argument("data_dir", metavar="DATA_DIR")
    similar.add_argument("image", metavar="IMAGE", help="an image of the dataset or any other image file")
    similar.add_argument("--top", type=int, default=DEFAULT_TOP, help="neighbours listed (default: %(default)s)")
    similar.add_argument("--run", metavar="RUN_DIR", default=None,
                         help="compare by the features of this run's model instead of the ImageNet embeddings")
    similar.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    similar.set_defaults(handler=run_similar)


def run_similar(args: argparse.Namespace) -> int:
    from imgclf_core.data.dataset import scan_dataset
    from imgclf_core.data.images import ImageDecodeError
    from imgclf_core.inspection.similar import SimilarityIndex, query_similar

    if args.top < 1:
        raise BadInput("--top must be at least 1")
    if not Path(args.image).is_file():
        raise BadInput(f"image not found: {args.image}")
    index = scan_dataset(args.data_dir, progress=StderrProgressBar("scan"))
    if args.run is not None:
        from imgclf_core.inspection.predict import Predictor  # TensorFlow: only for a run's model

        similarity = SimilarityIndex.of_run(Predictor.from_run(args.run), index, progress=StderrProgressBar("decode"),
                                            run_name=Path(args.run).name)
    else:
        similarity = SimilarityIndex.of_dataset(index, progress=StderrProgressBar("embed"))
    try:
        neighbours, same_as = query_similar(similarity, args.image, args.top)
    except ImageDecodeError as error:
        raise BadInput(f"{args.image}: {error}") from error
    shown = [{**neighbour.to_json_dict(), "path": os.path.join(args.data_dir, neighbour.path)}
             for neighbour in neighbours]
    if args.json:
        document = {"image": args.image, "dataset_image": os.path.join(args.data_dir, same_as) if same_as else None,
                    "by": similarity.described, "neighbours": shown}
        json.dump(document, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    query = f"{args.image} (in the dataset as {same_as})" if same_as else args.image
    print(f"{len(shown)} images of {args.data_dir} nearest to {query} by {similarity.described} "
          "(distance: 1 - cosine similarity; ! marks a label other than the query's):")
    for rank, item in enumerate(shown, start=1):
        mark = "!" if item["label_differs"] else " "
        print(f"  {rank:>3}. {item['distance']:.4f} {mark} {item['label']:<20} {item['path']}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
