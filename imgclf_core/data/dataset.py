"""Scan a folder-per-class tree into a DatasetIndex: images, labels, splits, hashes, duplicates, skipped files.

Two layouts are recognised, possibly inside one wrapping folder (an unpacked download):
`DATA/<class>/...` and the tutorials' split layout `DATA/<split>/<class>/...` with split folders
`train`/`training`, `val`/`valid`/`validation`, `test`/`testing` (any case). In the split layout
every image carries its split; the classes are the union over the splits.

The scan result of every file is cached by (relative path, size, mtime), so re-scanning an
unchanged tree reads no image at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import hashlib
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from imgclf_core.fileio import atomic_write_json, user_cache_dir
from imgclf_core.data.images import GRAYSCALE_MODES, UNREADABLE, ImageDecodeError, inspect_image, read_image_bytes
from imgclf_core.parallel import PageCacheHints, decode_thread_count, map_in_processes, map_in_threads

if TYPE_CHECKING:
    import numpy as np

ProgressCallback = Callable[[int, int], None]

# Reasons only the scanner gives (the decoder's reasons are in imgclf_core.data.images).
HIDDEN_FILE = "hidden file"
HIDDEN_FOLDER = "hidden folder"
APPLEDOUBLE_FILE = "AppleDouble metadata file"
SYMLINK_OUTSIDE_ROOT = "symlink outside dataset root"
BROKEN_SYMLINK = "broken symlink"
SYMLINKED_FOLDER = "symlinked folder not followed"
NOT_A_REGULAR_FILE = "not a regular file"
NOT_IN_CLASS_FOLDER = "not in a class folder"
NOT_IN_SPLIT_FOLDER = "not in a split folder (train/validation/test)"

# The splits of a dataset and the folder names that give them (compared in lower case).
TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)
SPLIT_FOLDER_NAMES = {
    "train": TRAIN, "training": TRAIN,
    "val": VALIDATION, "valid": VALIDATION, "validation": VALIDATION,
    "test": TEST, "testing": TEST,
}

_CACHE_FORMAT = 1
# Files under this median size are thumbnails: scanned in one thread (see decode_thread_count).
TINY_FILE_BYTES = 4096
# From this many tiny files to inspect, a scan runs one spawned process per core: the Python around each
# file holds the GIL, so threads do not help (see decode_thread_count); starting the processes costs ~0.5 s.
PROCESS_SCAN_MIN_FILES = 5000


# Health checks (not part of the scan's own warnings): a class this many times larger than another is
# an imbalance worth a word; a class under this many images gives validation figures that mean little.
IMBALANCE_WARNING_RATIO = 3.0
TINY_CLASS_IMAGES = 10

# imgclf's own folder inside a dataset (the relabel journal lives there).
IMGCLF_FOLDER = ".imgclf"


class DatasetError(ValueError):
    """The dataset folder itself is unusable (missing, not a folder)."""


@dataclass(frozen=True)
class DatasetLayout:
    """Where the class folders are: under an optional wrapping folder, and under split folders or not."""

    prefix: str = ""  # the one folder that wraps everything (e.g. an unpacked download), or ""
    split_folders: tuple[tuple[str, str], ...] = ()  # (folder name as on disk, split), in name order

    @property
    def has_splits(self) -> bool:
        return bool(self.split_folders)

    def class_folder(self, class_name: str, split: str = TRAIN) -> str:
        """The folder (relative to the dataset root) that holds `class_name`'s images of `split`."""
        folder = next((name for name, given in self.split_folders if given == split), None)
        parts = [part for part in (self.prefix, folder, class_name) if part]
        return "/".join(parts)

    def container_of(self, relative_path: str) -> str:
        """The wrapping and split folders above the class folder of `relative_path` ("" when none)."""
        parts = relative_path.split("/")
        depth = 1 if self.prefix and parts[0] == self.prefix else 0
        if self.has_splits and len(parts) > depth and parts[depth] in dict(self.split_folders):
            depth += 1
        return "/".join(parts[:depth])


def detect_layout(root: str | os.PathLike) -> DatasetLayout:
    """The layout of a dataset folder: a wrapping folder is looked through, split folders are found."""
    root_path = Path(root)
    prefix = ""
    visible = _visible_folders(root_path)
    # Our own _inbox or _quarantine beside a wrapping folder does not make it a class.
    wrapping = [name for name in visible if not name.startswith("_")]
    files = [entry for entry in _visible_entries(root_path) if not entry.is_dir()]
    if len(wrapping) == 1 and not files:
        inner = root_path / wrapping[0]
        inner_folders = _visible_folders(inner)
        if len(inner_folders) >= 2 or _split_folders(inner, inner_folders):
            prefix, root_path, visible = wrapping[0], inner, inner_folders
    return DatasetLayout(prefix, _split_folders(root_path, visible))


def folder_stamps(root: str | os.PathLike, depth: int = 4) -> tuple[tuple[str, int], ...]:
    """(folder, modification time in ns) of `root` and every folder below it, `depth` levels down.

    A folder's time changes whenever a file is added to it, removed or renamed (relabelled), so equal
    stamps mean the scan's file list still holds; a file rewritten in place is not seen. Listing the
    folders costs a fraction of a warm scan, which also stats every file and reads the scan cache.
    """
    stamps: list[tuple[str, int]] = []
    pending = [(Path(root), 0)]
    while pending:
        folder, level = pending.pop()
        try:
            stamps.append((str(folder), folder.stat().st_mtime_ns))
            if level < depth:
                with os.scandir(folder) as entries:
                    pending += [(Path(entry.path), level + 1) for entry in entries
                                if entry.is_dir(follow_symlinks=False)]
        except OSError:
            stamps.append((str(folder), -1))
    return tuple(sorted(stamps))


def _visible_entries(folder: Path) -> list[os.DirEntry]:
    try:
        return [entry for entry in _sorted_entries(folder) if not entry.name.startswith(".")]
    except OSError:
        return []


def _visible_folders(folder: Path) -> list[str]:
    return [entry.name for entry in _visible_entries(folder) if entry.is_dir(follow_symlinks=False)]


def _split_folders(folder: Path, names: list[str]) -> tuple[tuple[str, str], ...]:
    """Split folders at this level, when a train folder holding class folders is among them."""
    found = tuple((name, SPLIT_FOLDER_NAMES[name.lower()]) for name in names if name.lower() in SPLIT_FOLDER_NAMES)
    has_train_classes = any(split == TRAIN and _visible_folders(folder / name) for name, split in found)
    return found if has_train_classes else ()


@dataclass(frozen=True)
class ImageRecord:
    """One usable image: path relative to the dataset root (POSIX style) and what it holds."""

    path: str
    label: str
    sha256: str
    width: int
    height: int
    mode: str
    format: str
    frames: int = 1
    split: str = ""  # TRAIN, VALIDATION or TEST in the split layout; "" when the folder gives none


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class DatasetIndex:
    """The scan of one dataset folder."""

    root: Path
    records: tuple[ImageRecord, ...]
    skipped: tuple[SkippedFile, ...]
    class_counts: dict[str, int]
    reserved_folders: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    decoded_files: int = 0  # how many files this scan had to read (0 on a warm re-scan)
    layout: DatasetLayout = DatasetLayout()

    @property
    def class_names(self) -> list[str]:
        """Classes that have at least one usable image, sorted (the label order of every model)."""
        return sorted(name for name, count in self.class_counts.items() if count > 0)

    @functools.cached_property
    def all_grayscale(self) -> bool:
        """Every image is stored without colour (GRAYSCALE_MODES); False when there is no image."""
        return bool(self.records) and all(record.mode in GRAYSCALE_MODES for record in self.records)

    @property
    def num_images(self) -> int:
        return len(self.records)

    @functools.cached_property
    def duplicate_groups(self) -> list[list[str]]:
        """Groups of paths with identical bytes, each sorted, groups ordered by first path."""
        return find_duplicate_groups(self.records)

    @functools.cached_property
    def records_by_path(self) -> dict[str, ImageRecord]:
        """Each record under its relative path (built once per index: pages look records up on every rerun)."""
        return {record.path: record for record in self.records}

    @functools.cached_property  # pages ask several times per run; one pass over 100k records each is enough
    def split_counts(self) -> dict[str, dict[str, int]]:
        """{split: {class: count}} in the split layout (every class listed, 0 where absent); {} otherwise."""
        if not self.layout.has_splits:
            return {}
        present = [split for split in SPLITS if any(given == split for _, given in self.layout.split_folders)]
        counts = {split: {name: 0 for name in sorted(self.class_counts)} for split in present}
        for record in self.records:
            counts[record.split][record.label] += 1
        return counts

    @functools.cached_property
    def leakage_groups(self) -> list[list[str]]:
        """Groups of identical files that lie in more than one split (each sorted, groups by first path)."""
        return find_leakage_groups(self.records)

    def absolute_path(self, relative_path: str) -> Path:
        return self.root / relative_path

    def to_json_dict(self, path_prefix: str | None = None) -> dict:
        """The `imgclf scan --json` document; paths are joined onto `path_prefix` (default: root)."""
        prefix = str(self.root) if path_prefix is None else path_prefix
        join = lambda relative: os.path.join(prefix, relative)  # noqa: E731
        return {
            "num_images": self.num_images,
            "classes": dict(sorted(self.class_counts.items())),
            "skipped": [{"path": join(item.path), "reason": item.reason} for item in self.skipped],
            "splits": self.split_counts,
            "duplicates": [[join(path) for path in group] for group in self.duplicate_groups],
            "leakage": [[join(path) for path in group] for group in self.leakage_groups],
            "warnings": list(self.warnings),
        }


def encode_labels(records: Sequence[ImageRecord], class_names: Sequence[str]) -> "np.ndarray":
    """Each record's class as its index in `class_names` (the model's label order), int32."""
    import numpy as np  # here, not at the top: pages import this module before anything heavy

    position = {name: number for number, name in enumerate(class_names)}
    return np.array([position[record.label] for record in records], dtype=np.int32)


def find_duplicate_groups(records: tuple[ImageRecord, ...] | list[ImageRecord]) -> list[list[str]]:
    by_hash: dict[str, list[str]] = defaultdict(list)
    for record in records:
        by_hash[record.sha256].append(record.path)
    groups = [sorted(paths) for paths in by_hash.values() if len(paths) > 1]
    return sorted(groups)


def find_leakage_groups(records: tuple[ImageRecord, ...] | list[ImageRecord]) -> list[list[str]]:
    """Identical files (by content hash) found in more than one split: a test figure they inflate."""
    if len({record.split for record in records}) < 2:
        return []  # one split (or none): nothing can leak; 100,000 records skip the grouping below
    by_hash: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        by_hash[record.sha256].append(record)
    groups = [sorted(record.path for record in members) for members in by_hash.values()
              if len({record.split for record in members}) > 1]
    return sorted(groups)


@dataclass
class _Candidate:
    relative_path: str
    label: str
    absolute_path: str
    size: int
    mtime_ns: int
    split: str = ""


@dataclass
class _WalkResult:
    candidates: list[_Candidate] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    class_folders: list[str] = field(default_factory=list)
    reserved_folders: list[str] = field(default_factory=list)


def scan_dataset(
    root: str | os.PathLike,
    *,
    use_cache: bool = True,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> DatasetIndex:
    """Scan a folder with one subfolder per class; every file is either an image record or skipped."""
    root_path = Path(root)
    if not root_path.exists():
        raise DatasetError(f"dataset folder not found: {root_path}")
    if not root_path.is_dir():
        raise DatasetError(f"not a folder: {root_path}")
    # The collector is paused while the 100,000s of entries and records are built (no cycles among them), not
    # while files are decoded.
    with _collector_paused():
        root_real = Path(os.path.realpath(root_path))
        layout = detect_layout(root_path)
        walk = _walk_dataset(root_path, root_real, layout)
        cache_file = _cache_file_for(root_real)
        cached = _load_cache(cache_file) if use_cache else {}
        results: dict[str, list] = {}
        misses: list[_Candidate] = []
        for candidate in walk.candidates:
            entry = cached.get(candidate.relative_path)
            if _is_fresh_cache_entry(entry, candidate):
                results[candidate.relative_path] = entry
            else:
                misses.append(candidate)

    total = len(walk.candidates)
    hits = total - len(misses)
    if progress:
        progress(hits, total)
    if misses:
        tiny = sorted(candidate.size for candidate in misses)[len(misses) // 2] < TINY_FILE_BYTES
        cores = os.cpu_count() or 1
        in_processes = workers is None and tiny and cores > 1 and len(misses) >= PROCESS_SCAN_MIN_FILES
        worker_count = cores if in_processes else workers or decode_thread_count(tiny_images=tiny)
        hints = (PageCacheHints([candidate.absolute_path for candidate in misses])
                 if worker_count == 1 or in_processes else None)
        map_files = map_in_processes if in_processes else map_in_threads

        def report(done: int, _total: int) -> None:
            if hints is not None:
                hints.passed(done)
            if progress:
                progress(hits + done, total)

        try:
            for candidate, entry in zip(misses, map_files(_inspect_file, misses, worker_count, report)):
                results[candidate.relative_path] = entry
        finally:
            if hints is not None:
                hints.stop()
        if use_cache:
            atomic_write_json(
                cache_file,
                {"format": _CACHE_FORMAT, "root": str(root_real), "entries": results},
            )
    with _collector_paused():
        return _build_index(root_path, walk, results, decoded_files=len(misses), layout=layout)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a scan builds its hundreds of thousands of objects: each of its
    full passes walks the whole heap, and a process holding TensorFlow has a big one (a warm scan of 100,000 files
    there: 2.0 s, 1.4 s paused). Process-wide, so another thread's collections wait too, for about a second."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _inspect_file(candidate: _Candidate) -> list:
    """Cache entry for one file: [size, mtime_ns, "image", sha, w, h, mode, format, frames] or [.., "skip", reason]."""
    stamp = [candidate.size, candidate.mtime_ns]
    try:
        data = read_image_bytes(candidate.absolute_path)
        # Checks the whole file as a decode would; a 12-megapixel JPEG is checked at 1/8 scale.
        info = inspect_image(data)
    except ImageDecodeError as error:
        return stamp + ["skip", str(error)]
    digest = hashlib.sha256(data).hexdigest()
    return stamp + ["image", digest, info.width, info.height, info.mode, info.format, info.frames]


def _build_index(
    root: Path, walk: _WalkResult, results: dict[str, list], decoded_files: int, layout: DatasetLayout
) -> DatasetIndex:
    records: list[ImageRecord] = []
    skipped = list(walk.skipped)
    counts: Counter[str] = Counter({name: 0 for name in walk.class_folders})
    for candidate in walk.candidates:
        entry = results[candidate.relative_path]
        if entry[2] == "skip":
            skipped.append(SkippedFile(candidate.relative_path, entry[3]))
            continue
        sha, width, height, mode, image_format, frames = entry[3:9]
        records.append(ImageRecord(
            candidate.relative_path, candidate.label, sha, width, height, mode, image_format, frames, candidate.split
        ))
        counts[candidate.label] += 1
    records.sort(key=lambda record: record.path)
    skipped.sort(key=lambda item: item.path)
    index = DatasetIndex(
        root=root,
        records=tuple(records),
        skipped=tuple(skipped),
        class_counts=dict(sorted(counts.items())),
        reserved_folders=tuple(walk.reserved_folders),
        decoded_files=decoded_files,
        layout=layout,
    )
    warnings = _structure_warnings(counts, records) + split_warnings(index)
    return dataclasses.replace(index, warnings=tuple(warnings))


def _structure_warnings(counts: Counter[str], records: list[ImageRecord]) -> list[str]:
    warnings = []
    if not counts:
        warnings.append("no class folders: put the images in one subfolder per class")
    for name, count in sorted(counts.items()):
        if count == 0:
            warnings.append(f"empty class: '{name}' has no usable images")
    non_empty = [name for name, count in counts.items() if count > 0]
    if len(non_empty) == 1:
        warnings.append(f"single class: only '{non_empty[0]}' has images; a classifier needs at least two")
    first_label: dict[str, str] = {}
    conflicting_hashes: set[str] = set()
    for record in records:  # one dict lookup per record, not a set per hash: 100,000 records in ~0.05 s
        if first_label.setdefault(record.sha256, record.label) != record.label:
            conflicting_hashes.add(record.sha256)
    conflicting = len(conflicting_hashes)
    if conflicting:
        warnings.append(f"conflicting labels: {conflicting} identical image(s) appear in more than one class")
    return warnings


def split_warnings(index: DatasetIndex) -> list[str]:
    """Classes missing from a split, classes only the test split has, and images in two splits (in index.warnings)."""
    counts = index.split_counts
    warnings = []
    for name in index.class_names:
        present = [split for split in counts if counts[split][name]]
        missing = [split for split in counts if not counts[split][name]]
        if present == [TEST]:
            warnings.append(f"test-only class: '{name}' has images only in the test split; a model cannot learn it")
        elif missing:
            warnings.append(f"class '{name}' has no images in the {' and '.join(missing)} split")
    leakage = index.leakage_groups
    if leakage:
        warnings.append(
            f"leakage: {len(leakage)} identical image(s) appear in more than one split "
            f"(first: {' = '.join(leakage[0])}); they make the held-out figures look better than they are"
        )
    return warnings


def dataset_warnings(index: DatasetIndex, with_split_warnings: bool = True) -> list[str]:
    """Every warning about a dataset: the scan's (index.warnings), then the health checks'; without the
    split ones (`split_warnings`) when a page shows those beside the split table instead."""
    hidden = set() if with_split_warnings else set(split_warnings(index))
    return [warning for warning in (*index.warnings, *dataset_health_warnings(index)) if warning not in hidden]


def dataset_health_warnings(index: DatasetIndex) -> list[str]:
    """Imbalance, tiny classes and leakage risk, each as one sentence that says what to do."""
    warnings = []
    counts = {name: count for name, count in index.class_counts.items() if count > 0}
    if len(counts) >= 2:
        largest = max(counts, key=counts.get)
        smallest = min(counts, key=counts.get)
        ratio = counts[largest] / counts[smallest]
        if ratio > IMBALANCE_WARNING_RATIO:
            warnings.append(
                f"imbalance: '{largest}' has {ratio:.1f}x the images of '{smallest}' "
                f"({counts[largest]} vs {counts[smallest]}); training weights classes by inverse frequency"
            )
    tiny = sorted(name for name, count in counts.items() if count < TINY_CLASS_IMAGES)
    if tiny:
        warnings.append(
            f"tiny classes: {', '.join(repr(name) for name in tiny)} have fewer than {TINY_CLASS_IMAGES} "
            "images; validation figures for them mean little"
        )
    # Copies across the dataset's own split folders are leakage, which the scan already reports.
    leaked = index.leakage_groups
    groups = [group for group in index.duplicate_groups if group not in leaked]
    if groups:
        copies = sum(len(group) - 1 for group in groups)
        kept_together = "" if index.layout.has_splits else "the split keeps copies on one side, but "
        warnings.append(
            f"leakage risk: {copies} file(s) are exact copies of others ({len(groups)} group(s)); {kept_together}"
            "remove them or they count several times"
        )
    return warnings


def _walk_dataset(root: Path, root_real: Path, layout: DatasetLayout) -> _WalkResult:
    result = _WalkResult()
    split_of_folder = dict(layout.split_folders)
    if layout.prefix:
        _walk_top_level(root / layout.prefix, layout.prefix + "/", split_of_folder, root_real, result)
        _walk_top_level(root, "", {}, root_real, result, skip_folder=layout.prefix)  # hidden files beside it
    else:
        _walk_top_level(root, "", split_of_folder, root_real, result)
    return result


def _walk_top_level(
    folder: Path, relative: str, split_of_folder: dict[str, str], root_real: Path, result: _WalkResult,
    skip_folder: str = "",
) -> None:
    """The dataset's top (or its wrapping folder): class folders, or split folders holding class folders."""
    for entry in _sorted_entries(folder):
        relative_path = relative + entry.name
        if entry.name == IMGCLF_FOLDER or (skip_folder and entry.name == skip_folder):
            continue  # our own bookkeeping (the relabel journal), or the wrapping folder walked already
        if entry.name.startswith("."):
            _skip_hidden(entry, relative_path, result)
        elif entry.is_symlink():
            _skip_or_follow_symlink(entry, relative_path, "", root_real, result)
        elif entry.is_dir() and entry.name.startswith("_"):
            result.reserved_folders.append(relative_path)  # _inbox, _quarantine: not classes
        elif entry.is_dir() and entry.name in split_of_folder:
            _walk_class_folders(Path(entry.path), relative_path + "/", split_of_folder[entry.name], root_real, result)
        elif entry.is_dir() and not split_of_folder:
            _add_class_folder(entry, relative_path, entry.name, "", root_real, result)
        else:
            reason = NOT_IN_SPLIT_FOLDER if split_of_folder else NOT_IN_CLASS_FOLDER
            result.skipped.append(SkippedFile(relative_path, reason))


def _walk_class_folders(folder: Path, relative: str, split: str, root_real: Path, result: _WalkResult) -> None:
    """The class folders inside one split folder."""
    for entry in _sorted_entries(folder):
        relative_path = relative + entry.name
        if entry.name.startswith("."):
            _skip_hidden(entry, relative_path, result)
        elif entry.is_symlink():
            _skip_or_follow_symlink(entry, relative_path, "", root_real, result)
        elif entry.is_dir() and entry.name.startswith("_"):
            result.reserved_folders.append(relative_path)
        elif entry.is_dir():
            _add_class_folder(entry, relative_path, entry.name, split, root_real, result)
        else:
            result.skipped.append(SkippedFile(relative_path, NOT_IN_CLASS_FOLDER))


def _add_class_folder(
    entry: os.DirEntry, relative_path: str, label: str, split: str, root_real: Path, result: _WalkResult
) -> None:
    if label not in result.class_folders:
        result.class_folders.append(label)
    _walk_class_folder(Path(entry.path), relative_path, label, root_real, result, split)


def _walk_class_folder(
    folder: Path, relative: str, label: str, root_real: Path, result: _WalkResult, split: str = ""
) -> None:
    try:
        entries = _sorted_entries(folder)
    except OSError as error:
        result.skipped.append(SkippedFile(relative, f"{UNREADABLE}: {error.strerror or error}"))
        return
    for entry in entries:
        relative_path = f"{relative}/{entry.name}"
        if entry.name.startswith("."):
            _skip_hidden(entry, relative_path, result)
        elif entry.is_symlink():
            _skip_or_follow_symlink(entry, relative_path, label, root_real, result, split)
        elif entry.is_dir():
            _walk_class_folder(Path(entry.path), relative_path, label, root_real, result, split)
        elif entry.is_file():
            _add_candidate(entry.path, relative_path, label, result, split)
        else:
            result.skipped.append(SkippedFile(relative_path, NOT_A_REGULAR_FILE))


def _skip_hidden(entry: os.DirEntry, relative_path: str, result: _WalkResult) -> None:
    if entry.is_dir(follow_symlinks=False):
        reason = HIDDEN_FOLDER
    elif entry.name.startswith("._"):
        reason = APPLEDOUBLE_FILE
    else:
        reason = HIDDEN_FILE
    result.skipped.append(SkippedFile(relative_path, reason))


def _skip_or_follow_symlink(
    entry: os.DirEntry, relative_path: str, label: str, root_real: Path, result: _WalkResult, split: str = ""
) -> None:
    target = Path(os.path.realpath(entry.path))
    if not target.exists():
        result.skipped.append(SkippedFile(relative_path, BROKEN_SYMLINK))
    elif target != root_real and root_real not in target.parents:
        result.skipped.append(SkippedFile(relative_path, SYMLINK_OUTSIDE_ROOT))
    elif target.is_dir():
        result.skipped.append(SkippedFile(relative_path, SYMLINKED_FOLDER))
    elif not label:
        result.skipped.append(SkippedFile(relative_path, NOT_IN_CLASS_FOLDER))
    else:
        _add_candidate(str(target), relative_path, label, result, split)


def _add_candidate(absolute_path: str, relative_path: str, label: str, result: _WalkResult, split: str = "") -> None:
    stat = os.stat(absolute_path)
    result.candidates.append(
        _Candidate(relative_path, label, absolute_path, stat.st_size, stat.st_mtime_ns, split)
    )


def _sorted_entries(folder: Path) -> Iterator[os.DirEntry]:
    with os.scandir(folder) as entries:
        return iter(sorted(entries, key=lambda entry: entry.name))


def _cache_file_for(root_real: Path) -> Path:
    key = hashlib.sha1(str(root_real).encode("utf-8")).hexdigest()[:20]
    return user_cache_dir() / "scan" / f"{key}.json"


def _is_fresh_cache_entry(entry: object, candidate: _Candidate) -> bool:
    """Same size and mtime, and shaped like `_inspect_file`'s output: a damaged entry is a miss, never a crash."""
    if not isinstance(entry, list) or len(entry) < 3:
        return False
    well_formed = (entry[2] == "skip" and len(entry) == 4) or (entry[2] == "image" and len(entry) == 9)
    return well_formed and entry[0] == candidate.size and entry[1] == candidate.mtime_ns


def _load_cache(cache_file: Path) -> dict[str, list]:
    try:
        content = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(content, dict) or content.get("format") != _CACHE_FORMAT:
        return {}
    entries = content.get("entries")
    return entries if isinstance(entries, dict) else {}
