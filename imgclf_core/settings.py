"""Small user settings that outlive the app: the recently used dataset folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

from imgclf_core.fileio import atomic_write_json, user_config_dir

MAX_RECENT_FOLDERS = 10


def _recent_file() -> Path:
    return user_config_dir() / "recent_folders.json"


def recent_dataset_folders() -> list[str]:
    """Recently used dataset folders, newest first; an unreadable file counts as none."""
    try:
        folders = json.loads(_recent_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(folders, list):
        return []
    return [folder for folder in folders if isinstance(folder, str)][:MAX_RECENT_FOLDERS]


def remember_dataset_folder(folder: str | os.PathLike) -> list[str]:
    """Put `folder` (resolved) first in the recent list and save it; returns the new list."""
    resolved = str(Path(folder).expanduser().resolve())
    folders = [resolved] + [known for known in recent_dataset_folders() if known != resolved]
    folders = folders[:MAX_RECENT_FOLDERS]
    try:
        atomic_write_json(_recent_file(), folders)
    except OSError:
        pass  # a read-only home must not break the app: the list is a convenience
    return folders
