"""Atomic file writes and the user cache folder: nothing that matters is ever half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

# Every temp file of atomic_write_with starts with this, so a killed writer's leftovers can be found.
TEMP_FILE_PREFIX = ".tmp-"


def user_cache_dir() -> Path:
    """Where derived data (scan index, decoded arrays, converted weights) is cached."""
    return _user_dir("IMGCLF_CACHE_DIR", "XDG_CACHE_HOME", ".cache")


def user_config_dir() -> Path:
    """Where small settings live (recently used folders): IMGCLF_CONFIG_DIR or ~/.config/imgclf."""
    return _user_dir("IMGCLF_CONFIG_DIR", "XDG_CONFIG_HOME", ".config")


def user_data_dir() -> Path:
    """Where runs and unpacked uploads live: IMGCLF_DATA_HOME or ~/.local/share/imgclf."""
    return _user_dir("IMGCLF_DATA_HOME", "XDG_DATA_HOME", os.path.join(".local", "share"))


def _user_dir(override_variable: str, xdg_variable: str, home_default: str) -> Path:
    configured = os.environ.get(override_variable)
    if configured:
        return Path(configured)
    base = os.environ.get(xdg_variable) or os.path.join(os.path.expanduser("~"), home_default)
    return Path(base) / "imgclf"


def unique_path(parent: str | os.PathLike, stem: str) -> Path:
    """parent/stem, or parent/stem-2, -3, ... : the first that does not exist yet."""
    candidate = Path(parent) / stem
    number = 2
    while candidate.exists():
        candidate = Path(parent) / f"{stem}-{number}"
        number += 1
    return candidate


def unique_file_path(folder: str | os.PathLike, name: str) -> Path:
    """folder/name, or folder/stem-2.ext, -3, ...: the first that does not exist yet (the extension is kept)."""
    stem, suffix = os.path.splitext(name)
    candidate, number = Path(folder) / name, 2
    while candidate.exists():
        candidate = Path(folder) / f"{stem}-{number}{suffix}"
        number += 1
    return candidate


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync it, then os.replace it over `path`."""
    atomic_write_with(path, lambda temp_path: temp_path.write_bytes(data))


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Let `write(temp_path)` fill a temp file beside `path`, fsync it, then os.replace it over `path`.

    A crash or a full disk at any point leaves the old file as it was and no temp file behind
    (beyond the crash itself: a killed process leaves a dot-file that the next write ignores).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Ends with the target's whole name: some writers (keras.saving) check ".keras" or ".weights.h5".
    handle, temp_name = tempfile.mkstemp(prefix=TEMP_FILE_PREFIX, suffix=f"-{target.name}", dir=target.parent)
    os.close(handle)
    try:
        write(Path(temp_name))
        with open(temp_name, "rb+") as temp_file:
            os.fsync(temp_file.fileno())
        os.replace(temp_name, target)
    except BaseException:
        _remove_quietly(temp_name)
        raise
    fsync_folder(target.parent)


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files a killed writer left in `folder`; call it only while nothing writes there."""
    removed = []
    for path in Path(folder).glob(f"{TEMP_FILE_PREFIX}*"):
        if path.is_file():
            _remove_quietly(str(path))
            removed.append(path)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=1, ensure_ascii=False) + "\n")


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file in `folder` survive a power cut (best effort: some filesystems refuse)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
