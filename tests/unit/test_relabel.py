"""The relabel journal: moves, undo/redo, crash recovery, and refusals, on real files."""

from __future__ import annotations

import json
import os

import pytest
from helpers.files import png_bytes, write

from imgclf_core.inspection.relabel import JOURNAL_FOLDER, JOURNAL_NAME, QUARANTINE, RelabelError, RelabelJournal


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    for number in range(3):
        write(root, f"cat/{number}.png", png_bytes(number))
        write(root, f"dog/{number}.png", png_bytes(10 + number))
    return root


def snapshot(root) -> dict[str, bytes]:
    """Every file under the dataset (journal folder excluded) with its bytes."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*")) if path.is_file() and JOURNAL_FOLDER not in path.parts
    }


def journal_lines(root) -> list[dict]:
    return [json.loads(line) for line in (root / JOURNAL_FOLDER / JOURNAL_NAME).read_text().splitlines()]


def test_move_undo_redo_restore_the_files_exactly(dataset):
    before = snapshot(dataset)
    journal = RelabelJournal(dataset)
    move = journal.move("cat/0.png", "dog")
    journal.move("cat/1.png", QUARANTINE)
    assert move.target == "dog/0-2.png"  # dog/0.png exists: never overwritten
    after = snapshot(dataset)
    assert after["dog/0-2.png"] == before["cat/0.png"] and after["dog/0.png"] == before["dog/0.png"]
    assert after[f"{QUARANTINE}/1.png"] == before["cat/1.png"] and "cat/1.png" not in after
    assert len(after) == len(before)  # nothing deleted
    assert journal.current_path("cat/0.png") == "dog/0-2.png"

    assert [undo.of for undo in journal.undo(2)] == [2, 1]  # newest first
    assert snapshot(dataset) == before
    assert journal.current_path("cat/0.png") == "cat/0.png"
    assert [(move.source, undone) for move, undone in journal.relabel_moves()] == [
        ("cat/1.png", True), ("cat/0.png", True)]

    journal.redo(1)
    assert snapshot(RelabelJournal(dataset).root)["dog/0-2.png"] == before["cat/0.png"]
    assert journal.can_undo() and journal.can_redo()
    journal.move("dog/1.png", "cat")  # a new move forgets what could be redone
    assert not journal.can_redo()
    with pytest.raises(RelabelError, match="nothing to redo"):
        journal.redo()
    journal.undo(5)
    assert snapshot(dataset) == before
    with pytest.raises(RelabelError, match="nothing to undo"):
        journal.undo()


def test_keep_marks_an_image_without_moving_it(dataset):
    before = snapshot(dataset)
    journal = RelabelJournal(dataset)
    assert not journal.can_undo() and not (dataset / JOURNAL_FOLDER).exists()  # reading leaves no trace
    journal.keep("dog/2.png")
    assert journal.kept_paths() == {"dog/2.png"}
    assert snapshot(dataset) == before
    assert not journal.can_undo()


@pytest.mark.parametrize("path, target, message", [
    ("../outside.png", "cat", "not a path inside"),
    ("/etc/passwd", "cat", "not a path inside"),
    ("cat/../../outside.png", "cat", "not a path inside"),
    ("cat/missing.png", "dog", "not an image file"),
    ("cat/0.png", "../escape", "not a class folder name"),
    ("cat/0.png", "a/b", "not a class folder name"),
    ("cat/0.png", ".hidden", "not a class folder name"),
    ("cat/0.png", "_inbox", "reserved folder"),
    ("cat/0.png", "cat", "already in cat/"),
    (".imgclf/relabel.jsonl", "cat", "not an image in a class folder"),
])
def test_moves_that_would_leave_the_dataset_or_make_no_sense_are_refused(dataset, path, target, message):
    (dataset.parent / "outside.png").write_bytes(png_bytes(99))
    before = snapshot(dataset)
    with pytest.raises(RelabelError, match=message):
        RelabelJournal(dataset).move(path, target)
    assert snapshot(dataset) == before
    assert (dataset.parent / "outside.png").exists()


def test_a_symlink_that_points_outside_is_refused(dataset):
    (dataset.parent / "secret.png").write_bytes(png_bytes(7))
    os.symlink(dataset.parent / "secret.png", dataset / "cat" / "link.png")
    with pytest.raises(RelabelError):
        RelabelJournal(dataset).move("cat/link.png", "dog")
    assert (dataset / "cat" / "link.png").is_symlink()


def test_undo_refuses_to_overwrite_a_file_that_took_the_old_place(dataset):
    journal = RelabelJournal(dataset)
    journal.move("cat/2.png", "dog")
    write(dataset, "cat/2.png", b"a new file with the old name")
    with pytest.raises(RelabelError, match="already exists"):
        journal.undo()
    assert (dataset / "cat/2.png").read_bytes() == b"a new file with the old name"
    assert (dataset / "dog/2-2.png").exists()


def _crash_after_journal_line(root, source: str, target: str) -> None:
    """What a crash leaves when it hits after the journal line and before the move ended."""
    entry = {"op": "move", "id": 1, "source": source, "target": target, "reason": "relabel", "of": None, "time": ""}
    write(root, f"{JOURNAL_FOLDER}/{JOURNAL_NAME}", (json.dumps(entry) + "\n").encode())


def test_a_crash_before_the_move_is_rolled_back_on_the_next_start(dataset):
    before = snapshot(dataset)
    _crash_after_journal_line(dataset, "cat/0.png", "dog/cat-0.png")
    journal = RelabelJournal(dataset)
    assert snapshot(dataset) == before
    assert journal_lines(dataset)[-1] == {"op": "abort", "id": 1}
    assert not journal.can_undo()


def test_a_crash_between_link_and_unlink_is_completed_on_the_next_start(dataset):
    before = snapshot(dataset)
    _crash_after_journal_line(dataset, "cat/0.png", "dog/cat-0.png")
    os.link(dataset / "cat/0.png", dataset / "dog/cat-0.png")  # the crash hit before the old name went
    journal = RelabelJournal(dataset)
    after = snapshot(dataset)
    assert "cat/0.png" not in after and after["dog/cat-0.png"] == before["cat/0.png"]
    assert journal_lines(dataset)[-1] == {"op": "done", "id": 1}
    journal.undo()
    assert snapshot(dataset) == before


def test_a_journal_line_cut_short_by_a_crash_is_ignored(dataset):
    journal = RelabelJournal(dataset)
    journal.move("cat/0.png", "dog")
    with open(dataset / JOURNAL_FOLDER / JOURNAL_NAME, "a") as handle:
        handle.write('{"op": "move", "id": 2, "sour')
    reopened = RelabelJournal(dataset)
    reopened.move("cat/1.png", "dog")
    assert [move.source for move, _ in reopened.relabel_moves()] == ["cat/1.png", "cat/0.png"]
    reopened.undo(2)
    assert (dataset / "cat/0.png").exists() and (dataset / "cat/1.png").exists()


def test_the_scan_does_not_see_the_journal_or_quarantine_as_classes(dataset):
    from imgclf_core.data.dataset import scan_dataset

    RelabelJournal(dataset).move("cat/0.png", QUARANTINE)
    index = scan_dataset(dataset)
    assert index.class_names == ["cat", "dog"]
    assert index.num_images == 5
    assert not index.skipped  # the journal folder is ours, not a skipped file


def test_labeling_from_an_inbox_beside_the_dataset_and_undo(dataset):
    inbox = dataset.parent / "inbox"
    write(inbox, "new.png", png_bytes(50))
    write(inbox, "other.png", png_bytes(51))
    journal = RelabelJournal(dataset)
    move = journal.label(inbox / "new.png", "dog")
    assert move.target == "dog/new.png" and (dataset / "dog/new.png").read_bytes() == png_bytes(50)
    assert not (inbox / "new.png").exists()
    journal.label(inbox / "other.png", "owl")  # a new class folder
    assert (dataset / "owl/other.png").exists()
    assert [move.reason for move, _ in journal.relabel_moves()] == ["label", "label"]
    journal.undo(2)
    assert (inbox / "new.png").read_bytes() == png_bytes(50) and (inbox / "other.png").exists()
    assert not (dataset / "dog/new.png").exists()
    with pytest.raises(RelabelError, match="not an image file in the inbox"):
        journal.label(inbox / "missing.png", "dog")


def test_a_copy_cut_short_by_a_crash_is_removed_and_the_image_kept(dataset):
    entry = {"op": "move", "id": 1, "source": "cat/0.png", "target": "dog/cat-0.png", "reason": "relabel",
             "of": None, "time": ""}
    write(dataset, f"{JOURNAL_FOLDER}/{JOURNAL_NAME}", (json.dumps(entry) + "\n").encode())
    write(dataset, "dog/cat-0.png", png_bytes(0)[:20])  # a partial copy (another disk)
    RelabelJournal(dataset)
    assert (dataset / "cat/0.png").read_bytes() == png_bytes(0)
    assert not (dataset / "dog/cat-0.png").exists()


def test_current_paths_follow_chains_of_moves_and_undos(dataset):
    journal = RelabelJournal(dataset)
    journal.move("cat/0.png", "dog")  # -> dog/0-2.png
    journal.move("dog/0-2.png", QUARANTINE)  # the same image again
    journal.move("cat/1.png", "dog")
    journal.undo()  # cat/1.png is back
    assert journal.current_paths(["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png"]) == [
        f"{QUARANTINE}/0-2.png", "cat/1.png", "cat/2.png", "dog/0.png"]


# ---------------------------------------------------------------- undo and redo per page (origin)


def test_each_origin_undoes_and_redoes_only_its_own_moves(dataset):
    before = snapshot(dataset)
    journal = RelabelJournal(dataset)
    journal.move("cat/0.png", "dog", origin="audit")
    journal.move("cat/1.png", "dog", origin="mistakes")
    journal.move("cat/2.png", QUARANTINE, origin="audit")
    assert [move.source for move in journal.undoable("audit")] == ["cat/2.png", "cat/0.png"]
    assert [move.source for move in journal.undoable("mistakes")] == ["cat/1.png"]
    assert [move.origin for move, _ in journal.relabel_moves("mistakes")] == ["mistakes"]
    assert journal_lines(dataset)[0]["origin"] == "audit"  # written on the move line

    undone = journal.undo(1, origin="mistakes")  # the Mistakes page's last move, not the newest one (audit's)
    assert [move.of for move in undone] == [2] and (dataset / "cat/1.png").exists()
    assert (dataset / f"{QUARANTINE}/2.png").exists()
    assert not journal.can_undo("mistakes") and journal.can_redo("mistakes") and not journal.can_redo("audit")
    with pytest.raises(RelabelError, match="nothing to redo on the audit page"):
        journal.redo(origin="audit")

    journal.move("dog/1.png", "cat", origin="audit")  # a new audit move keeps what Mistakes can redo
    assert [move.source for move in journal.redoable("mistakes")] == ["cat/1.png"]
    journal.redo(origin="mistakes")
    assert (dataset / "dog/1-2.png").read_bytes() == before["cat/1.png"]
    journal.move("dog/2.png", QUARANTINE, origin="mistakes")  # a new Mistakes move forgets Mistakes' redo only
    journal.undo(3, origin="audit")
    assert [move.source for move in journal.redoable("audit")] == ["cat/0.png", "cat/2.png", "dog/1.png"]
    journal.undo(5, origin="mistakes")
    assert snapshot(dataset) == before
    with pytest.raises(RelabelError, match="nothing to undo on the mistakes page"):
        journal.undo(origin="mistakes")
    journal.move("dog/0.png", "cat", origin="mistakes")  # a new Mistakes move forgets what Mistakes could redo
    assert not journal.can_redo("mistakes") and len(journal.redoable("audit")) == 3


def test_undoing_a_move_whose_image_another_page_moved_since_is_refused_in_one_line(dataset):
    before = snapshot(dataset)
    journal = RelabelJournal(dataset)
    journal.move("cat/0.png", "dog", origin="audit")  # -> dog/0-2.png
    journal.move("dog/0-2.png", QUARANTINE, origin="mistakes")  # the same image, from another page
    with pytest.raises(RelabelError) as refused:
        journal.undo(origin="audit")
    message = str(refused.value)
    assert "\n" not in message and "move 0.png from cat to dog" in message
    assert "mistakes page" in message and f"now at {QUARANTINE}/0-2.png" in message
    assert (dataset / f"{QUARANTINE}/0-2.png").read_bytes() == before["cat/0.png"]  # untouched, nothing lost

    journal.undo(origin="mistakes")  # the image is back where the audit move put it: now it can be undone
    journal.undo(origin="audit")
    assert snapshot(dataset) == before

    journal.redo(origin="audit")  # cat/0.png -> dog/0-2.png again
    journal.undo(origin="audit")
    journal.move("cat/0.png", "dog", origin="mistakes")  # Mistakes files the image the audit undo put back
    with pytest.raises(RelabelError, match="cannot redo .*moved again since from the mistakes page"):
        journal.redo(origin="audit")
    assert len(snapshot(dataset)) == len(before)


def test_a_different_image_that_took_the_old_name_is_never_moved_by_an_undo(dataset):
    journal = RelabelJournal(dataset)
    journal.move("cat/0.png", "dog", origin="audit")  # -> dog/0-2.png
    journal.move("dog/0-2.png", "cat", origin="mistakes")  # -> cat/0-2.png (cat/0.png is free but the name stays)
    write(dataset, "dog/0-2.png", png_bytes(77))  # a new file under the name the audit move had made
    with pytest.raises(RelabelError, match="moved again since"):
        journal.undo(origin="audit")
    assert (dataset / "dog/0-2.png").read_bytes() == png_bytes(77)


def test_undo_of_several_moves_stops_at_a_refusal_and_says_what_it_did(dataset):
    journal = RelabelJournal(dataset)
    journal.move("cat/0.png", "dog", origin="audit")
    journal.move("dog/0-2.png", QUARANTINE, origin="mistakes")
    journal.move("cat/1.png", "dog", origin="audit")
    with pytest.raises(RelabelError, match=r"^undid 1 move\(s\), then stopped: cannot undo"):
        journal.undo(2, origin="audit")
    assert (dataset / "cat/1.png").exists()


def test_an_older_journal_without_origins_still_reads_and_its_moves_are_shared(dataset):
    inbox = dataset.parent / "inbox"
    write(inbox, "new.png", png_bytes(50))
    (dataset / "cat/0.png").rename(dataset / "dog/0-2.png")
    (inbox / "new.png").rename(dataset / "dog/new.png")
    (dataset / "cat/1.png").rename(dataset / "dog/1-2.png")
    old_lines = [  # written before moves had an origin: no "origin" key
        {"op": "move", "id": 1, "source": "cat/0.png", "target": "dog/0-2.png", "reason": "relabel", "of": None,
         "time": "2025-01-01T00:00:00"},
        {"op": "done", "id": 1},
        {"op": "move", "id": 2, "source": str(inbox / "new.png"), "target": "dog/new.png", "reason": "label",
         "of": None, "time": "2025-01-01T00:00:01"},
        {"op": "done", "id": 2},
        {"op": "move", "id": 3, "source": "cat/1.png", "target": "dog/1-2.png", "reason": "relabel", "of": None,
         "time": "2025-01-01T00:00:02"},
        {"op": "done", "id": 3},
        {"op": "move", "id": 4, "source": "dog/1-2.png", "target": "cat/1.png", "reason": "undo", "of": 3,
         "time": "2025-01-01T00:00:03"},
        {"op": "done", "id": 4},
    ]
    write(dataset, f"{JOURNAL_FOLDER}/{JOURNAL_NAME}", "".join(json.dumps(line) + "\n" for line in old_lines).encode())
    (dataset / "dog/1-2.png").rename(dataset / "cat/1.png")
    journal = RelabelJournal(dataset)
    assert [(move.id, move.origin, undone) for move, undone in journal.relabel_moves()] == [
        (3, None, True), (2, "label", False), (1, None, False)]
    assert [move.id for move in journal.undoable("label")] == [2, 1]  # a label move is the Label page's
    assert [move.id for move in journal.undoable("audit")] == [1]  # a relabel move of unknown page: every page's
    assert [move.id for move in journal.redoable("mistakes")] == [3]
    journal.undo(origin="label")
    assert (inbox / "new.png").read_bytes() == png_bytes(50)
    journal.undo(origin="mistakes")
    assert (dataset / "cat/0.png").exists()
    journal.move("cat/2.png", "dog", origin="audit")  # a new move forgets the redo of unknown-origin moves
    assert [move.id for move in journal.redoable("mistakes")] == []
    assert journal.current_path("cat/0.png") == "cat/0.png"


def test_describe_move_names_the_file_and_both_folders(dataset):
    journal = RelabelJournal(dataset)
    from imgclf_core.inspection.relabel import describe_move

    assert describe_move(journal.move("cat/0.png", "dog")) == "move 0.png from cat to dog (as 0-2.png)"
    assert describe_move(journal.move("cat/1.png", QUARANTINE)) == f"move 1.png from cat to {QUARANTINE}"
    inbox = dataset.parent / "inbox"
    write(inbox, "new.png", png_bytes(50))
    assert describe_move(journal.label(inbox / "new.png", "dog")) == "move new.png from inbox to dog"
