"""scan_dataset on real folder trees in tmp_path: classes, skipped files with exact reasons, the cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.files import png_bytes, write

import imgclf_core.data.dataset
from imgclf_core.data import dataset
from imgclf_core.data import images
from imgclf_core.data.dataset import DatasetError, SkippedFile, scan_dataset


# ---------------------------------------------------------------- tree makers


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for relative, data in files.items():
        write(root, relative, data)
    return root


def two_class_tree(root: Path) -> Path:
    """cats/c1.png, cats/c2.png, dogs/d1.png, dogs/d2.png: four distinct images."""
    return make_tree(root, {"cats/c1.png": png_bytes(1), "cats/c2.png": png_bytes(2),
                            "dogs/d1.png": png_bytes(3), "dogs/d2.png": png_bytes(4)})


def reason_code(reason: str) -> str:
    """Decoder failures are stored as 'reason: detail'; the scanner's own reasons have no detail."""
    return reason.split(": ", 1)[0]


needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


# ---------------------------------------------------------------- skipped files


def truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(9).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


SCANNER_REASONS = {dataset.APPLEDOUBLE_FILE, dataset.HIDDEN_FILE, dataset.HIDDEN_FOLDER, dataset.NOT_IN_CLASS_FOLDER}
SKIPPED_CASES = [
    # file written, path reported as skipped, exact reason
    ("cats/._c1.png", "cats/._c1.png", dataset.APPLEDOUBLE_FILE),
    ("._root.jpg", "._root.jpg", dataset.APPLEDOUBLE_FILE),
    ("cats/.DS_Store", "cats/.DS_Store", dataset.HIDDEN_FILE),
    (".DS_Store", ".DS_Store", dataset.HIDDEN_FILE),
    ("cats/.thumbnails/t.png", "cats/.thumbnails", dataset.HIDDEN_FOLDER),
    (".git/objects/x.png", ".git", dataset.HIDDEN_FOLDER),
    ("stray.png", "stray.png", dataset.NOT_IN_CLASS_FOLDER),
    ("README.txt", "README.txt", dataset.NOT_IN_CLASS_FOLDER),
    ("cats/empty.jpg", "cats/empty.jpg", images.EMPTY_FILE),
    ("cats/notes.jpg", "cats/notes.jpg", images.NOT_AN_IMAGE),
    ("dogs/half.jpg", "dogs/half.jpg", images.TRUNCATED),
    ("dogs/logo.svg", "dogs/logo.svg", images.UNSUPPORTED_FORMAT),
]
CONTENTS = {
    "cats/._c1.png": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ",
    "._root.jpg": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ",
    "cats/.DS_Store": b"\x00\x00\x00\x01Bud1" + bytes(32),
    "cats/notes.jpg": b"just some text\n",
    "cats/empty.jpg": b"",
    "dogs/logo.svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>',
    "README.txt": b"read me\n",
}


@pytest.mark.parametrize("written, reported, reason", SKIPPED_CASES, ids=[case[0] for case in SKIPPED_CASES])
def test_unusable_entry_is_skipped_with_exact_reason(tmp_path, written, reported, reason):
    root = two_class_tree(tmp_path / "data")
    if written in CONTENTS:
        data = CONTENTS[written]
    elif written == "dogs/half.jpg":
        data = truncated_jpeg()
    else:
        data = png_bytes(99)
    write(root, written, data)

    index = scan_dataset(root)

    assert [(item.path, reason_code(item.reason)) for item in index.skipped] == [(reported, reason)]
    if reason in SCANNER_REASONS:  # the scanner's own reasons carry no detail
        assert index.skipped[0].reason == reason
    assert index.class_counts == {"cats": 2, "dogs": 2}
    assert [record.path for record in index.records] == ["cats/c1.png", "cats/c2.png", "dogs/d1.png", "dogs/d2.png"]


def symlink_cases(root: Path, outside: Path) -> dict[str, tuple[str, str]]:
    """Link name (relative to root) -> (link target, expected reason)."""
    return {
        "cats/outside.png": (str(outside / "o.png"), dataset.SYMLINK_OUTSIDE_ROOT),
        "cats/relative_escape.png": ("../../outside/o.png", dataset.SYMLINK_OUTSIDE_ROOT),
        "cats/prefix_sibling.png": (str(root.parent / "data-extra" / "x.png"), dataset.SYMLINK_OUTSIDE_ROOT),
        "cats/outside_folder": (str(outside), dataset.SYMLINK_OUTSIDE_ROOT),
        "cats/broken.png": (str(root / "cats" / "gone.png"), dataset.BROKEN_SYMLINK),
        "cats/inside_folder": (str(root / "dogs"), dataset.SYMLINKED_FOLDER),
        "outside_class": (str(outside), dataset.SYMLINK_OUTSIDE_ROOT),
        "dogs_again": (str(root / "dogs"), dataset.SYMLINKED_FOLDER),
        "root_link.png": (str(root / "cats" / "c1.png"), dataset.NOT_IN_CLASS_FOLDER),
    }


@needs_symlinks
@pytest.mark.parametrize("link", list(symlink_cases(Path("r"), Path("o"))))
def test_symlink_is_skipped_with_exact_reason(tmp_path, link):
    root = two_class_tree(tmp_path / "data")
    outside = make_tree(tmp_path / "outside", {"o.png": png_bytes(50)})
    make_tree(tmp_path / "data-extra", {"x.png": png_bytes(51)})
    target, reason = symlink_cases(root, outside)[link]
    os.symlink(target, root / link)

    index = scan_dataset(root)

    assert index.skipped == (SkippedFile(link, reason),)
    assert index.num_images == 4


@needs_symlinks
def test_symlink_to_a_file_inside_the_root_is_an_image_of_the_link_folder(tmp_path):
    root = two_class_tree(tmp_path / "data")
    os.symlink("../dogs/d1.png", root / "cats" / "alias.png")
    index = scan_dataset(root)
    alias = next(record for record in index.records if record.path == "cats/alias.png")
    assert alias.label == "cats"
    assert index.skipped == ()
    assert index.class_counts == {"cats": 3, "dogs": 2}
    assert index.duplicate_groups == [["cats/alias.png", "dogs/d1.png"]]


# ---------------------------------------------------------------- classes


def test_unicode_and_spaces_in_class_names(tmp_path):
    files = {}
    for seed, name in enumerate(["chats noirs/a.png", "chats noirs/b b.png", "chats noirs/ç.png",
                                 "猫/一.png", "猫/二.png", "café/x.png"]):
        files[name] = png_bytes(seed)
    index = scan_dataset(make_tree(tmp_path / "données", files))
    assert index.class_counts == {"café": 1, "chats noirs": 3, "猫": 2}
    assert index.class_names == sorted(["café", "chats noirs", "猫"])
    assert {record.path: record.label for record in index.records} == {
        path: path.split("/")[0] for path in files
    }
    assert index.skipped == () and index.warnings == ()
    document = index.to_json_dict(path_prefix="p")
    assert document["classes"] == {"café": 1, "chats noirs": 3, "猫": 2}
    json.dumps(document, ensure_ascii=False)


def test_empty_class_is_counted_zero_and_warned(tmp_path):
    root = two_class_tree(tmp_path / "data")
    (root / "birds").mkdir()
    write(root, "fish/broken.jpg", b"not an image")
    index = scan_dataset(root)
    assert index.class_counts == {"birds": 0, "cats": 2, "dogs": 2, "fish": 0}
    assert index.class_names == ["cats", "dogs"]
    assert index.warnings == (
        "empty class: 'birds' has no usable images",
        "empty class: 'fish' has no usable images",
    )


def test_single_class_is_warned(tmp_path):
    root = make_tree(tmp_path / "data", {"only/a.png": png_bytes(1), "only/b.png": png_bytes(2)})
    index = scan_dataset(root)
    assert index.class_counts == {"only": 2}
    assert len(index.warnings) == 1
    assert index.warnings[0].startswith("single class")
    assert "'only'" in index.warnings[0]


def test_no_class_folder_is_warned(tmp_path):
    root = make_tree(tmp_path / "data", {"a.png": png_bytes(1)})
    index = scan_dataset(root)
    assert index.class_counts == {}
    assert index.skipped == (SkippedFile("a.png", dataset.NOT_IN_CLASS_FOLDER),)
    assert index.warnings == ("no class folders: put the images in one subfolder per class",)


def test_duplicates_within_a_class(tmp_path):
    root = two_class_tree(tmp_path / "data")
    write(root, "cats/c1 copy.png", png_bytes(1))
    write(root, "cats/sub/c1 again.png", png_bytes(1))
    index = scan_dataset(root)
    assert index.duplicate_groups == [["cats/c1 copy.png", "cats/c1.png", "cats/sub/c1 again.png"]]
    assert index.warnings == ()
    assert index.class_counts == {"cats": 4, "dogs": 2}  # duplicates are still records


def test_duplicates_across_classes_warn_conflicting_labels(tmp_path):
    root = two_class_tree(tmp_path / "data")
    write(root, "dogs/looks_like_c2.png", png_bytes(2))
    write(root, "birds/b.png", png_bytes(3))
    index = scan_dataset(root)
    assert index.duplicate_groups == [["birds/b.png", "dogs/d1.png"], ["cats/c2.png", "dogs/looks_like_c2.png"]]
    assert index.warnings == ("conflicting labels: 2 identical image(s) appear in more than one class",)


def test_reserved_underscore_folders_are_not_classes(tmp_path):
    root = two_class_tree(tmp_path / "data")
    write(root, "_inbox/new.png", png_bytes(10))
    write(root, "_quarantine/bad.png", png_bytes(11))
    index = scan_dataset(root)
    assert index.reserved_folders == ("_inbox", "_quarantine")
    assert index.class_counts == {"cats": 2, "dogs": 2}
    assert index.skipped == ()
    assert all(not record.path.startswith("_") for record in index.records)


def test_nested_subfolders_count_for_their_top_class(tmp_path):
    root = two_class_tree(tmp_path / "data")
    write(root, "cats/indoor/sofa/c3.png", png_bytes(5))
    write(root, "cats/outdoor/c4.png", png_bytes(6))
    index = scan_dataset(root)
    assert index.class_counts == {"cats": 4, "dogs": 2}
    labels = {record.path: record.label for record in index.records}
    assert labels["cats/indoor/sofa/c3.png"] == "cats"
    assert labels["cats/outdoor/c4.png"] == "cats"


@pytest.mark.parametrize("kind, message", [("missing", "not found"), ("file", "not a folder")])
def test_unusable_root_raises_dataset_error(tmp_path, kind, message):
    root = tmp_path / "data"
    if kind == "file":
        root.write_bytes(png_bytes(1))
    with pytest.raises(DatasetError, match=message):
        scan_dataset(root)


def test_records_describe_the_file(tmp_path):
    data = png_bytes(7, size=(7, 5))
    root = two_class_tree(tmp_path / "data")
    write(root, "cats/c3.png", data)
    gif = io.BytesIO()
    frames = [Image.new("RGB", (3, 2), color) for color in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    write(root, "dogs/anim.gif", gif.getvalue())
    records = {record.path: record for record in scan_dataset(root).records}
    assert records["cats/c3.png"] == dataset.ImageRecord(
        "cats/c3.png", "cats", hashlib.sha256(data).hexdigest(), 7, 5, "RGB", "PNG", 1
    )
    animated = records["dogs/anim.gif"]
    assert (animated.format, animated.width, animated.height, animated.frames) == ("GIF", 3, 2, 2)


def test_json_document(tmp_path):
    root = two_class_tree(tmp_path / "data")
    write(root, "cats/.DS_Store", b"x")
    write(root, "dogs/d1 copy.png", png_bytes(3))
    index = scan_dataset(root)
    document = index.to_json_dict()
    assert set(document) == {"num_images", "classes", "splits", "skipped", "duplicates", "leakage", "warnings"}
    assert document["splits"] == {} and document["leakage"] == []  # no split folders here
    assert document["num_images"] == 5
    assert document["classes"] == {"cats": 2, "dogs": 3}
    assert document["skipped"] == [{"path": os.path.join(str(root), "cats/.DS_Store"), "reason": dataset.HIDDEN_FILE}]
    assert document["duplicates"] == [[os.path.join(str(root), "dogs/d1 copy.png"), os.path.join(str(root), "dogs/d1.png")]]
    assert index.to_json_dict(path_prefix="")["skipped"] == [{"path": "cats/.DS_Store", "reason": dataset.HIDDEN_FILE}]
    assert json.loads(json.dumps(document)) == document


def test_progress_reports_every_file_done(tmp_path):
    root = two_class_tree(tmp_path / "data")
    calls = []
    scan_dataset(root, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 4)
    assert calls[-1] == (4, 4)


def test_many_tiny_files_are_scanned_in_processes_with_the_same_records(tmp_path, monkeypatch):
    files = {f"{'cat' if n % 2 else 'dog'}/{n:03d}.png": png_bytes(n, (8, 8)) for n in range(40)}
    files["dog/broken.png"] = b"not a png"
    root = make_tree(tmp_path / "data", files)
    one_thread = scan_dataset(root, use_cache=False, workers=1)
    used = []
    real = dataset.map_in_processes
    monkeypatch.setattr(dataset, "map_in_processes", lambda *args: used.append(1) or real(*args))
    monkeypatch.setattr(dataset, "PROCESS_SCAN_MIN_FILES", 10)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # one process per core, on any machine
    calls = []
    in_processes = scan_dataset(root, use_cache=False, progress=lambda done, total: calls.append((done, total)))
    assert used == [1]
    assert in_processes.records == one_thread.records and in_processes.skipped == one_thread.skipped
    assert calls[-1] == (41, 41)


# ---------------------------------------------------------------- the scan cache


@pytest.fixture
def decode_calls(monkeypatch):
    """Count the decoder calls the scanner makes (proof that a warm scan reads no image)."""
    calls: list[int] = []
    original = imgclf_core.data.dataset.inspect_image

    def counting_decode(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(imgclf_core.data.dataset, "inspect_image", counting_decode)
    return calls


def cache_files(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "scan").glob("*.json"))


def test_cache_lives_in_imgclf_cache_dir(tmp_path, isolated_cache_dir):
    scan_dataset(two_class_tree(tmp_path / "data"))
    assert len(cache_files(isolated_cache_dir)) == 1
    assert os.environ["IMGCLF_CACHE_DIR"] == str(isolated_cache_dir)


def test_unchanged_tree_decodes_nothing_the_second_time(tmp_path, decode_calls):
    root = two_class_tree(tmp_path / "data")
    write(root, "cats/broken.jpg", b"text, not pixels")
    first = scan_dataset(root)
    assert first.decoded_files == 5
    assert len(decode_calls) == 5

    decode_calls.clear()
    second = scan_dataset(root)
    assert second.decoded_files == 0
    assert decode_calls == []
    assert second.records == first.records
    assert second.skipped == first.skipped
    assert second.skipped[0].path == "cats/broken.jpg"
    assert reason_code(second.skipped[0].reason) == images.NOT_AN_IMAGE


def bump_mtime(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 3_000_000_000))


@pytest.mark.parametrize("change", ["touch", "new content", "same size new content"])
def test_changed_file_is_the_only_one_decoded_again(tmp_path, decode_calls, change):
    root = two_class_tree(tmp_path / "data")
    first = scan_dataset(root)
    changed = root / "dogs" / "d2.png"
    if change == "touch":
        bump_mtime(changed)
    elif change == "new content":
        changed.write_bytes(png_bytes(77, size=(9, 9)))
    else:
        new_data = png_bytes(78)
        assert len(new_data) == changed.stat().st_size
        changed.write_bytes(new_data)
        bump_mtime(changed)  # same size: only the mtime can tell

    decode_calls.clear()
    second = scan_dataset(root)

    assert second.decoded_files == 1
    assert len(decode_calls) == 1
    unchanged = [record for record in first.records if record.path != "dogs/d2.png"]
    assert [record for record in second.records if record.path != "dogs/d2.png"] == unchanged
    new_record = next(record for record in second.records if record.path == "dogs/d2.png")
    assert new_record.sha256 == hashlib.sha256(changed.read_bytes()).hexdigest()


def test_added_and_removed_files(tmp_path, decode_calls):
    root = two_class_tree(tmp_path / "data")
    scan_dataset(root)
    write(root, "cats/c3.png", png_bytes(30))
    (root / "dogs" / "d1.png").unlink()
    decode_calls.clear()
    index = scan_dataset(root)
    assert index.decoded_files == 1 and len(decode_calls) == 1
    assert [record.path for record in index.records] == ["cats/c1.png", "cats/c2.png", "cats/c3.png", "dogs/d2.png"]


def test_use_cache_false_decodes_everything_and_writes_no_cache(tmp_path, decode_calls, isolated_cache_dir):
    root = two_class_tree(tmp_path / "data")
    assert scan_dataset(root, use_cache=False).decoded_files == 4
    assert scan_dataset(root, use_cache=False).decoded_files == 4
    assert len(decode_calls) == 8
    assert cache_files(isolated_cache_dir) == []


CORRUPT_CACHES = {
    "cut json": b'{"format": 1, "root": "x", "entries": {"cats/c1.png": [1, ',
    "empty": b"",
    "binary": bytes(range(256)),
    "a list": b"[1, 2, 3]",
    "other format": b'{"format": 999, "entries": {}}',
    "entries not a dict": b'{"format": 1, "entries": [1, 2]}',
    "entry not a list": b'{"format": 1, "entries": {"cats/c1.png": 5, "cats/c2.png": null}}',
    "entry too short": None,  # built from the real size and mtime of the file
}


@pytest.mark.parametrize("damage", list(CORRUPT_CACHES))
def test_corrupt_cache_file_is_ignored(tmp_path, decode_calls, isolated_cache_dir, damage):
    root = two_class_tree(tmp_path / "data")
    reference = scan_dataset(root)
    [cache_file] = cache_files(isolated_cache_dir)
    content = CORRUPT_CACHES[damage]
    if content is None:
        stat = (root / "cats" / "c1.png").stat()
        entries = {"cats/c1.png": [stat.st_size, stat.st_mtime_ns, "image"]}
        content = json.dumps({"format": 1, "entries": entries}).encode()
    cache_file.write_bytes(content)

    decode_calls.clear()
    index = scan_dataset(root)

    assert index.records == reference.records
    assert index.skipped == ()
    assert len(decode_calls) == index.decoded_files >= 1
    assert json.loads(cache_file.read_text(encoding="utf-8"))["format"] == 1  # rewritten whole
    assert scan_dataset(root).decoded_files == 0


def test_folder_stamps_change_when_a_file_is_added_moved_or_removed_and_not_otherwise(tmp_path):
    from imgclf_core.data.dataset import folder_stamps

    root = tmp_path / "data"
    write(root, "cat/a.png", png_bytes(1))
    write(root, "dog/b.png", png_bytes(2))

    def stamps_after(action) -> tuple[tuple, tuple]:
        """The stamps before and after `action`, every folder's time first set far in the past (folder
        times move in clock ticks of a few ms: two changes within one tick would look like none)."""
        for folder in (root, root / "cat", root / "dog"):
            os.utime(folder, ns=(10**9, 10**9))
        before = folder_stamps(root)
        action()
        return before, folder_stamps(root)

    before, after = stamps_after(lambda: None)
    assert [Path(folder).name for folder, _ in before] == ["data", "cat", "dog"] and after == before
    before, after = stamps_after(lambda: (root / "cat" / "a.png").write_bytes(png_bytes(3)))  # rewritten in place
    assert after == before
    for action in (lambda: write(root, "dog/c.png", png_bytes(4)),
                   lambda: (root / "dog" / "c.png").rename(root / "cat" / "c.png"),
                   lambda: (root / "cat" / "c.png").unlink()):
        before, after = stamps_after(action)
        assert after != before


@pytest.mark.parametrize("enabled", [True, False])
def test_a_scan_leaves_the_garbage_collector_as_it_found_it(tmp_path, monkeypatch, enabled):
    """The collector is paused while the folders are walked and the records built (dataset._collector_paused), and
    put back as it was: after a cold scan with a broken file, a warm one, and one that fails."""
    import gc

    tree = two_class_tree(tmp_path / "data")
    write(tree, "dogs/broken.png", b"not an image")
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        seen = []
        scan_dataset(tree, progress=lambda done, total: seen.append(gc.isenabled()))
        assert gc.isenabled() is enabled
        assert seen and seen[0] is enabled  # files are checked with the collector as it was
        scan_dataset(tree)  # warm
        assert gc.isenabled() is enabled

        def failing_walk(*args):
            assert not gc.isenabled()  # paused while the folders are walked
            raise OSError("the disk went away")

        monkeypatch.setattr(dataset, "_walk_dataset", failing_walk)
        with pytest.raises(OSError, match="went away"):
            scan_dataset(tree)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
