"""Unpack an uploaded .zip of a folder-per-class dataset, safely.

Nothing lands outside the target folder (absolute names, `..`, drive letters and symlink entries
are refused), and the total uncompressed size and the file count are capped while extracting, not
trusted from the archive's own headers (a zip bomb lies about them).
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

DEFAULT_MAX_TOTAL_BYTES = 2 * 1024**3
DEFAULT_MAX_FILES = 100_000
_CHUNK_BYTES = 1024 * 1024
# Written by macOS' Finder next to the real files; never images.
_IGNORED_TOP_FOLDERS = ("__MACOSX",)


class ArchiveError(ValueError):
    """The archive is unreadable, unsafe or too large."""


def extract_dataset_zip(
    source: str | os.PathLike | IO[bytes],
    target_dir: str | os.PathLike,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> Path:
    """Extract into `target_dir` (which must not exist yet); returns the dataset root inside it.

    The root is `target_dir` itself, or its only subfolder when the zip holds one folder that
    holds the class folders (what zipping a folder gives). On any error nothing is left behind.
    """
    target = Path(target_dir)
    if target.exists():
        raise ArchiveError(f"target folder already exists: {target}")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as error:
        raise ArchiveError(f"not a readable .zip file: {error}") from error
    target.mkdir(parents=True)
    try:
        with archive:
            _extract_members(archive, target, max_total_bytes, max_files)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return _dataset_root(target)


def _extract_members(archive: zipfile.ZipFile, target: Path, max_total_bytes: int, max_files: int) -> None:
    total_bytes = 0
    files = 0
    for member in archive.infolist():
        parts = _safe_parts(member)
        if parts is None:
            continue
        destination = target.joinpath(*parts)
        if member.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            continue
        files += 1
        if files > max_files:
            raise ArchiveError(f"too many files in the archive: more than {max_files}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(member) as stream, open(destination, "wb") as output:
                while chunk := stream.read(_CHUNK_BYTES):
                    total_bytes += len(chunk)
                    if total_bytes > max_total_bytes:
                        raise ArchiveError(
                            f"archive too large: more than {max_total_bytes:,} bytes uncompressed"
                        )
                    output.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
            if isinstance(error, ArchiveError):
                raise
            raise ArchiveError(f"damaged archive member {member.filename}: {error}") from error


def _safe_parts(member: zipfile.ZipInfo) -> tuple[str, ...] | None:
    """The member's path parts, None for entries to skip; raises for entries that try to escape."""
    name = member.filename.replace("\\", "/")
    path = PurePosixPath(name)
    drive_letter = bool(path.parts) and ":" in path.parts[0]
    if path.is_absolute() or drive_letter or ".." in path.parts:
        raise ArchiveError(f"unsafe path in archive: {member.filename}")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise ArchiveError(f"symbolic link in archive: {member.filename}")
    parts = tuple(part for part in path.parts if part not in ("", "."))
    if not parts or parts[0] in _IGNORED_TOP_FOLDERS:
        return None
    return parts


def _dataset_root(target: Path) -> Path:
    entries = [entry for entry in target.iterdir() if not entry.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        if any(child.is_dir() for child in inner.iterdir()):
            return inner
    return target
