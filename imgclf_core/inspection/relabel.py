"""Relabel in place: move images between class folders of a dataset, journaled, undoable, never deleting.

Every file operation is written to the journal (`DATASET/.imgclf/relabel.jsonl`, fsynced) before
it touches a file, and marked done after. A move is a hard link to the new name (which fails rather
than overwrite) followed by removing the old name, so at every instant the image exists under at
least one name. Opening the journal finishes what a crash interrupted: an operation whose file
already reached its target is completed, one whose file never left is rolled back.

Journal lines (one JSON object each):
  {"op": "move", "id", "source", "target", "reason": "relabel"|"label"|"undo"|"redo", "of": id|null, "time",
   "origin": "mistakes"|"audit"|"label"|...}
  {"op": "done", "id"}   {"op": "abort", "id"}   {"op": "keep", "path", "time"}
Paths are relative to the dataset root, with "/" separators; the source of a "label" move from an
inbox outside the dataset is an absolute path (where undo puts the image back).

`origin` names where a move was made (the page), so that each page's Undo and Redo walk only its own
moves. It is absent from journals written before it existed (and from moves made without one): such
a "label" move belongs to the Label page (the only one that labels), any other is shared by every
origin. Undoing or redoing a move whose image was moved again since (from another page) is refused
with one line that says where the image is now: the later move must be undone first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from imgclf_core.data.dataset import IMGCLF_FOLDER, detect_layout
from imgclf_core.fileio import fsync_folder, unique_file_path
from imgclf_core.training.run_folder import now_iso

JOURNAL_FOLDER = IMGCLF_FOLDER
JOURNAL_NAME = "relabel.jsonl"
QUARANTINE = "_quarantine"
# Moves a person asked for (undo and redo are their mirror images): relabel in the dataset, label from an inbox.
FORWARD_REASONS = ("relabel", "label")


class RelabelError(ValueError):
    """A move that is not allowed (outside the dataset, no such file, nothing to undo)."""


@dataclass(frozen=True)
class Move:
    """One file operation of the journal."""

    id: int
    source: str
    target: str
    reason: str  # "relabel", "label", "undo" or "redo"
    of: int | None = None  # the relabel move an undo or redo acts on
    time: str = ""
    origin: str | None = None  # where the move was made ("mistakes", "audit", "label"); None: older journal


def describe_move(move: Move, verb: str = "move") -> str:
    """The move in words: "move 3.png from cat to dog" ("(as 3-2.png)" when the name had to change)."""
    source, target = PurePosixPath(move.source), PurePosixPath(move.target)
    renamed = f" (as {target.name})" if target.name != source.name else ""
    return f"{verb} {source.name} from {_folder_words(source)} to {_folder_words(target)}{renamed}"


def _folder_words(path: PurePosixPath) -> str:
    parent = path.parent
    return parent.name if parent.is_absolute() else str(parent)  # an inbox outside the dataset: its folder name


@dataclass
class _Replay:
    """What the journal says, read from the start: done moves, undo and redo stacks, kept paths."""

    moves: dict[int, Move]
    done: list[int]  # file operations completed, in order
    pending: list[int]  # written but neither done nor aborted (a crash in between)
    undo_stack: list[int]  # relabel moves that can be undone, oldest first
    redo_stack: list[int]
    kept: set[str]
    next_id: int


class RelabelJournal:
    """The relabel journal of one dataset folder; opening it completes or rolls back interrupted moves."""

    def __init__(self, dataset_root: str | os.PathLike):
        self.root = Path(dataset_root).resolve()
        if not self.root.is_dir():
            raise RelabelError(f"dataset folder not found: {dataset_root}")
        self.path = self.root / JOURNAL_FOLDER / JOURNAL_NAME
        self._replayed: tuple[tuple[int, int] | None, _Replay] | None = None
        if self.path.exists():  # looking at a dataset leaves no trace in it; only a first move creates the journal
            with self._locked():
                self._recover(self._replay())

    # ------------------------------------------------------------ public

    def move(self, relative_path: str, target_class: str, origin: str | None = None) -> Move:
        """Move one image to another class folder (or _quarantine), made at `origin` (a page); returns the move."""
        source = self._checked_relative(relative_path)
        # In the split layout (train/<class>/...) an image moves to the other class of its own split.
        container = PurePosixPath(detect_layout(self.root).container_of(source))
        folder = str(container / _checked_class_name(target_class))
        source_path = self.root / source
        if not source_path.is_file() or source_path.is_symlink():
            raise RelabelError(f"not an image file in the dataset: {relative_path}")
        if PurePosixPath(source).parts[len(container.parts)] == PurePosixPath(folder).name:
            raise RelabelError(f"{relative_path} is already in {folder}/")
        with self._locked():
            replay = self._replay()
            target = self._free_name(folder, PurePosixPath(source).name)
            return self._apply(replay, source, target, "relabel", None, origin)

    def label(self, inbox_file: str | os.PathLike, target_class: str, origin: str | None = "label") -> Move:
        """File an unlabelled image (from an inbox folder, inside the dataset or beside it) into a class folder.

        Undo puts it back where it was. The image keeps its name unless that name is taken there.
        """
        source_path = Path(inbox_file).absolute()
        # In the split layout a newly labelled image goes into the train split's class folder.
        folder = detect_layout(self.root).class_folder(_checked_class_name(target_class))
        if not source_path.is_file() or source_path.is_symlink():
            raise RelabelError(f"not an image file in the inbox: {inbox_file}")
        inside = self.root in source_path.resolve().parents
        source = str(source_path.resolve().relative_to(self.root).as_posix()) if inside else str(source_path)
        with self._locked():
            replay = self._replay()
            target = self._free_name(folder, source_path.name)
            return self._apply(replay, source, target, "label", None, origin)

    def keep(self, relative_path: str) -> None:
        """Mark an image as correctly labelled as it is (no file changes)."""
        path = self._checked_relative(relative_path)
        if not (self.root / path).is_file():
            raise RelabelError(f"not an image file in the dataset: {relative_path}")
        with self._locked():
            self._append({"op": "keep", "path": path, "time": now_iso()})

    def undo(self, count: int = 1, origin: str | None = None) -> list[Move]:
        """Put back the last `count` moves made at `origin` (None: anywhere), newest first; returns the undo moves.

        Raises RelabelError when there is nothing to undo, or when the image was moved again since
        (after undoing the moves before it, if `count` > 1).
        """
        return self._walk(count, "undo", origin)

    def redo(self, count: int = 1, origin: str | None = None) -> list[Move]:
        """Make again the last `count` undone moves of `origin` (None: anywhere); returns the moves made."""
        return self._walk(count, "redo", origin)

    def undoable(self, origin: str | None = None) -> list[Move]:
        """The moves that `undo(n, origin)` would put back, in that order (newest first)."""
        replay = self._replay()
        return [replay.moves[move_id] for move_id in reversed(replay.undo_stack)
                if _belongs(replay.moves[move_id], origin)]

    def redoable(self, origin: str | None = None) -> list[Move]:
        """The undone moves that `redo(n, origin)` would make again, in that order (last undone first)."""
        replay = self._replay()
        return [replay.moves[move_id] for move_id in reversed(replay.redo_stack)
                if _belongs(replay.moves[move_id], origin)]

    def _walk(self, count: int, direction: str, origin: str | None) -> list[Move]:
        made: list[Move] = []
        with self._locked():
            for _ in range(count):
                replay = self._replay()
                stack = replay.undo_stack if direction == "undo" else replay.redo_stack
                mine = [move_id for move_id in stack if _belongs(replay.moves[move_id], origin)]
                if not mine:
                    break
                original = replay.moves[mine[-1]]
                source, target = (original.target, original.source) if direction == "undo" else (original.source, original.target)
                try:
                    _check_image_still_at(replay, original, source, direction)
                    made.append(self._apply(replay, source, target, direction, original.id, origin))
                except RelabelError as error:
                    if not made:
                        raise
                    done = "undid" if direction == "undo" else "redid"
                    raise RelabelError(f"{done} {len(made)} move(s), then stopped: {error}") from error
        if count and not made:
            raise RelabelError(f"nothing to {direction}" + (f" on the {origin} page" if origin else ""))
        return made

    def relabel_moves(self, origin: str | None = None) -> list[tuple[Move, bool]]:
        """Every relabel or label move (made at `origin`; None: anywhere) with whether it is undone, newest first."""
        replay = self._replay()
        undone = set(replay.redo_stack)
        moves = [replay.moves[move_id] for move_id in replay.done
                 if replay.moves[move_id].reason in FORWARD_REASONS and _belongs(replay.moves[move_id], origin)]
        return [(move, move.id in undone) for move in reversed(moves)]

    def can_undo(self, origin: str | None = None) -> bool:
        return bool(self.undoable(origin))

    def can_redo(self, origin: str | None = None) -> bool:
        return bool(self.redoable(origin))

    def kept_paths(self) -> set[str]:
        """Images marked "correct as is" (by their path when marked)."""
        return set(self._replay().kept)

    def current_path(self, relative_path: str) -> str:
        """Where an image that was at `relative_path` (e.g. in a run's predictions.csv) is now."""
        return self.current_paths([relative_path])[0]

    def current_paths(self, relative_paths: Sequence[str]) -> list[str]:
        """`current_path` of many paths, reading the journal once."""
        originals = [str(PurePosixPath(path)) for path in relative_paths]
        at: dict[str, list[int]] = {}  # location -> positions of the images there now
        for position, path in enumerate(originals):
            at.setdefault(path, []).append(position)
        locations = list(originals)
        replay = self._replay()
        for move_id in replay.done:
            move = replay.moves[move_id]
            for position in at.pop(move.source, []):
                locations[position] = move.target
                at.setdefault(move.target, []).append(position)
        return locations

    # ------------------------------------------------------------ applying a move

    def _apply(self, replay: _Replay, source: str, target: str, reason: str, of: int | None,
               origin: str | None) -> Move:
        source_path, target_path = self.root / source, self.root / target
        if not source_path.is_file():
            raise RelabelError(f"cannot {reason}: {source} is no longer there")
        if target_path.exists():
            raise RelabelError(f"cannot {reason}: {target} already exists (nothing is ever overwritten)")
        move = Move(replay.next_id, source, target, reason, of, now_iso(), origin)
        line = {"op": "move", "id": move.id, "source": source, "target": target, "reason": reason, "of": of,
                "time": move.time}
        self._append(line if origin is None else {**line, "origin": origin})
        try:
            _move_file(source_path, target_path)
        except OSError as error:
            self._append({"op": "abort", "id": move.id})
            raise RelabelError(f"cannot move {source} to {target}: {error.strerror or error}") from error
        self._append({"op": "done", "id": move.id})
        return move

    def _recover(self, replay: _Replay) -> None:
        """Finish or roll back the moves a crash left between their journal line and their end."""
        for move_id in replay.pending:
            move = replay.moves[move_id]
            source_path, target_path = self.root / move.source, self.root / move.target
            both = target_path.is_file() and source_path.is_file()
            if both and (os.path.samefile(source_path, target_path) or _same_bytes(source_path, target_path)):
                source_path.unlink()  # the crash came between link (or copy) and unlink: finish it
                fsync_folder(source_path.parent)
                self._append({"op": "done", "id": move_id})
            elif both:
                target_path.unlink()  # a copy to another disk cut short: our own partial file, the image is intact
                self._append({"op": "abort", "id": move_id})
            elif target_path.is_file() and not source_path.exists():
                self._append({"op": "done", "id": move_id})
            else:
                self._append({"op": "abort", "id": move_id})  # the file never left its place

    # ------------------------------------------------------------ journal file

    def _replay(self) -> _Replay:
        """The journal read from the start; kept until the file changes (a page asks many questions per run)."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if self._replayed is None or self._replayed[0] != stamp:
            self._replayed = (stamp, self._read_replay())
        return self._replayed[1]

    def _read_replay(self) -> _Replay:
        replay = _Replay({}, [], [], [], [], set(), 1)
        for entry in self._entries():
            operation = entry.get("op")
            if operation == "move":
                reason = entry.get("reason", "relabel")
                # Older journals have no origin: a label move can only have come from the Label page.
                origin = entry.get("origin") or ("label" if reason == "label" else None)
                move = Move(int(entry["id"]), entry["source"], entry["target"], reason,
                            entry.get("of"), entry.get("time", ""), origin)
                replay.moves[move.id] = move
                replay.pending.append(move.id)
                replay.next_id = max(replay.next_id, move.id + 1)
            elif operation in ("done", "abort") and entry.get("id") in replay.pending:
                replay.pending.remove(entry["id"])
                if operation == "done":
                    replay.done.append(entry["id"])
                    _update_stacks(replay, replay.moves[entry["id"]])
            elif operation == "keep":
                replay.kept.add(entry["path"])
        return replay

    def _entries(self) -> Iterator[dict]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: its move never started
            if isinstance(entry, dict):
                yield entry

    def _append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as handle:
            if handle.tell() and not _ends_with_newline(self.path):
                handle.write(b"\n")
            handle.write((json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (two browser tabs, or the app and the CLI)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / "relabel.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------ paths

    def _checked_relative(self, relative_path: str) -> str:
        """The path as "class/name", refused unless it stays inside the dataset root."""
        pure = PurePosixPath(str(relative_path).replace(os.sep, "/"))
        if pure.is_absolute() or not pure.parts or any(part in ("..", ".", "") for part in pure.parts):
            raise RelabelError(f"not a path inside the dataset: {relative_path}")
        if len(pure.parts) < 2 or pure.parts[0].startswith("."):
            raise RelabelError(f"not an image in a class folder: {relative_path}")
        resolved = (self.root / pure).resolve()
        if self.root not in resolved.parents:
            raise RelabelError(f"{relative_path} leads outside the dataset folder {self.root}")
        return str(pure)

    def _free_name(self, folder: str, name: str) -> str:
        """folder/name, or folder/stem-2.ext, -3, ...: the first free one (a move never overwrites)."""
        return unique_file_path(self.root / folder, name).relative_to(self.root).as_posix()


def _checked_class_name(name: str) -> str:
    text = str(name).strip()
    if not text or text in (".", "..") or "/" in text or os.sep in text or text.startswith("."):
        raise RelabelError(f"not a class folder name: {name!r}")
    if text.startswith("_") and text != QUARANTINE:
        raise RelabelError(f"{name!r} is a reserved folder; move to a class or to {QUARANTINE}")
    return text


def _belongs(move: Move, origin: str | None) -> bool:
    """Whether `origin`'s undo and redo may walk this move: its own, or one of no known origin (older journals)."""
    return origin is None or move.origin is None or move.origin == origin


def _check_image_still_at(replay: _Replay, original: Move, expected: str, direction: str) -> None:
    """Refuse to undo or redo `original` when its image left `expected` after it was last moved by it.

    The image is followed through every completed move since `original` (or its last undo or redo):
    a move made elsewhere in between (another page) must be undone first; the file itself is never touched.
    """
    last = max(position for position, move_id in enumerate(replay.done)
               if move_id == original.id or replay.moves[move_id].of == original.id)
    location, by = expected, None
    for move_id in replay.done[last + 1:]:
        move = replay.moves[move_id]
        if move.source == location:
            location, by = move.target, move
    if by is not None and location != expected:
        where = f" from the {by.origin} page" if by.origin else ""
        raise RelabelError(f"cannot {direction} \"{describe_move(original)}\": the image was moved again since{where} "
                           f"and is now at {location}; undo that move first")


def _update_stacks(replay: _Replay, move: Move) -> None:
    if move.reason in FORWARD_REASONS:
        replay.undo_stack.append(move.id)
        # A new move forgets what its own origin could redo (a move of no known origin: everything).
        replay.redo_stack[:] = [move_id for move_id in replay.redo_stack
                                if move.origin is not None and replay.moves[move_id].origin not in (None, move.origin)]
    elif move.reason == "undo" and move.of in replay.undo_stack:
        replay.undo_stack.remove(move.of)
        replay.redo_stack.append(move.of)
    elif move.reason == "redo" and move.of in replay.redo_stack:
        replay.redo_stack.remove(move.of)
        replay.undo_stack.append(move.of)


def _move_file(source: Path, target: Path) -> None:
    """Link the new name, then drop the old one: the file always has a name, and nothing is overwritten."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # fails with EEXIST rather than replace a file
    except OSError as error:
        if error.errno == errno.EXDEV:
            _copy_exclusively(source, target)  # an inbox on another disk: copy, make it durable, then unlink
        elif error.errno in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            if target.exists():
                raise FileExistsError(errno.EEXIST, "target exists", str(target)) from error
            os.rename(source, target)  # a filesystem without hard links: rename, checked just before
            return _fsync_both(source, target)
        else:
            raise
    source.unlink()
    _fsync_both(source, target)


def _copy_exclusively(source: Path, target: Path) -> None:
    with open(source, "rb") as reader, open(target, "xb") as writer:
        shutil.copyfileobj(reader, writer)
        writer.flush()
        os.fsync(writer.fileno())


def _fsync_both(source: Path, target: Path) -> None:
    fsync_folder(target.parent)
    fsync_folder(source.parent)


def _same_bytes(first: Path, second: Path) -> bool:
    if first.stat().st_size != second.stat().st_size:
        return False
    with open(first, "rb") as one, open(second, "rb") as other:
        while True:
            block = one.read(1 << 20)
            if block != other.read(1 << 20):
                return False
            if not block:
                return True


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
