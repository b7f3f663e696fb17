"""The `imgclf` command line. `--json` prints one JSON document on stdout; progress goes to stderr.

Exit codes: 0 ok, 2 bad usage or bad input (one line on stderr saying what and where).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence, TextIO

from imgclf_core import __version__

EXIT_OK = 0
EXIT_BAD_INPUT = 2
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (BadInput, ValueError, FileNotFoundError, NotADirectoryError) as error:
        message = str(error).replace("\n", " ")
        print(f"imgclf {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run_scan(args: argparse.Namespace) -> int:
    from imgclf_core.dataset import scan_dataset

    index = scan_dataset(
        args.data_dir, use_cache=not args.no_cache, progress=StderrProgressBar("scan")
    )
    document = index.to_json_dict(path_prefix=args.data_dir)
    if args.json:
        json.dump(document, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        print_scan_summary(document, args.data_dir)
    return EXIT_OK


def print_scan_summary(document: dict, data_dir: str) -> None:
    classes = document["classes"]
    print(f"{data_dir}: {document['num_images']} images in {sum(1 for c in classes.values() if c)} classes")
    width = max((len(name) for name in classes), default=5)
    for name, count in classes.items():
        print(f"  {name:<{width}}  {count:>7}")
    if document["skipped"]:
        print(f"skipped {len(document['skipped'])} file(s):")
        for item in document["skipped"]:
            print(f"  {item['path']}: {item['reason']}")
    if document["duplicates"]:
        print(f"{len(document['duplicates'])} group(s) of identical files:")
        for group in document["duplicates"]:
            print("  " + " = ".join(group))
    for warning in document["warnings"]:
        print(f"warning: {warning}")


def run_fashion_mnist(args: argparse.Namespace) -> int:
    from imgclf_core import fashion_mnist

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


if __name__ == "__main__":
    sys.exit(main())
