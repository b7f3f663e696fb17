"""Fuzz pass: mutated JPEG/PNG/GIF/TIFF/WebP/BMP (and refused-format) bytes through decode, scan,
predict, the CLI and the Predict page. Only ImageDecodeError may come out, never a crash or a hang.

The seeds and mutations are shared with scripts/fuzz_decode.py (the longer, standalone run).
IMGCLF_FUZZ_EXAMPLES=20000 raises the number of decode examples (default 3000);
IMGCLF_FUZZ_RANDOM=1 draws new inputs each run instead of the same reproducible ones.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fuzz_decode import DecodeWorker, RandomChooser, mutate, refused_format_files, seed_files
from helpers.cli import run_imgclf
from helpers.pages import open_page
from helpers.runs import point_run_at, write_untrained_run
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from imgclf_core.data import images
from imgclf_core.data.images import ImageDecodeError, decode_image, decode_image_with_info

EXAMPLES = int(os.environ.get("IMGCLF_FUZZ_EXAMPLES", "3000"))
# Reproducible by default, so a red CI run points at the change under test; the script explores.
EXPLORE = os.environ.get("IMGCLF_FUZZ_RANDOM", "") == "1"
# The slowest legitimate inputs (an animated WebP whose canvas was edited to ~60 megapixels,
# composited frame by frame) take ~2 s on an idle machine and up to ~8 s on a loaded 2-core one.
DEADLINE = timedelta(seconds=30)
# Past this, a decode (or a scan of the fuzz folder) is stuck for good: the test fails.
HANG_LIMIT_S = 60
VARIANTS_PER_SEED = 4
DECODER_REASONS = {images.EMPTY_FILE, images.FILE_TOO_LARGE, images.NOT_AN_IMAGE, images.UNSUPPORTED_FORMAT,
                   images.TRUNCATED, images.CORRUPT, images.TOO_MANY_PIXELS, images.UNREADABLE}
IMAGE_SIZE = 32

# Pillow warns about damaged TIFF tags and big headers on the way to the error we expect.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:PIL"),
              pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]


def within_time_limit(function, seconds: float = HANG_LIMIT_S):
    """`function()`'s result or exception; a test failure if it runs past `seconds` (left running, daemon)."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = function()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds:.0f} s: a hang")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class HypothesisChooser:
    """The mutations' choices drawn from Hypothesis, so a failure shrinks to a small input."""

    def __init__(self, data: st.DataObject):
        self.data = data

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))

    def choice(self, options):
        return self.data.draw(st.sampled_from(options))

    def raw_bytes(self, length: int) -> bytes:
        return self.data.draw(st.binary(min_size=length, max_size=length))


def reason_code(reason: str) -> str:
    return reason.split(": ", 1)[0]


# ---------------------------------------------------------------- seeds


@pytest.mark.parametrize("name", sorted(set(seed_files()) - set(refused_format_files())))
def test_every_seed_is_a_real_photo_the_decoder_reads(name):
    decoded = decode_image_with_info(seed_files()[name])
    assert decoded.array.dtype == np.uint8 and decoded.array.shape[2] == 3
    assert decoded.array.std() > 10  # a photo, not a flat fill
    assert decoded.info.format in images.ALLOWED_FORMATS + ("MPO",)


@pytest.mark.parametrize("name", sorted(refused_format_files()))
def test_every_refused_format_seed_is_refused_by_name(name):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(refused_format_files()[name])
    assert caught.value.reason == images.UNSUPPORTED_FORMAT
    assert caught.value.detail  # says which format it is


# ---------------------------------------------------------------- decode


@pytest.fixture(scope="module")
def decode_worker():
    """A child process that decodes: a crash or a hang in Pillow's C code fails the example, not pytest."""
    worker = DecodeWorker()
    yield worker
    worker.close()


@settings(
    max_examples=EXAMPLES, deadline=DEADLINE, database=None, derandomize=not EXPLORE, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), color_mode=st.sampled_from(images.COLOR_MODES), size=st.sampled_from([None, 32]))
def test_mutated_files_decode_to_an_image_or_a_typed_error(decode_worker, data, color_mode, size):
    seed_name, mutated, applied = mutate(HypothesisChooser(data))
    note(f"seed {seed_name}, mutations {applied}, {len(mutated)} bytes")
    # The worker runs check_decode: a right-shaped uint8 array, or ImageDecodeError with a one-line message.
    kind, detail = decode_worker.decode(mutated, color_mode, size, time_limit=HANG_LIMIT_S)
    assert kind == "done", f"{kind}: {detail}"
    assert detail == "ok" or detail in DECODER_REASONS


# Found by scripts/fuzz_decode.py: float TIFFs (2x2, written by Pillow) holding a signalling NaN, a
# quiet NaN, 0.5 and +inf or -inf. The NaNs were cast to uint8 (undefined; numpy warns "invalid
# value"), and -inf in a 0..1 image overflowed when scaled (numpy warns "overflow").
FLOAT_TIFF_WITH_NANS = bytes.fromhex(
    "49492a00080000000a000001040001000000020000000101040001000000020000000201030001000000200000000301"
    "030001000000010000000601030001000000010000001101040001000000860000001601040001000000020000001701"
    "040001000000100000001c0103000100000001000000530103000100000003000000000000000000a07f0000c07f0000"
    "003f0000807f"
)
FLOAT_TIFF_WITH_NANS_AND_MINUS_INFINITY = FLOAT_TIFF_WITH_NANS[:-4] + bytes.fromhex("000080ff")


@pytest.mark.parametrize("data, expected", [
    # +inf makes the image "not 0..1", so 0.5 stays 0.5 -> 0 and +inf clips to 255.
    (FLOAT_TIFF_WITH_NANS, [[0, 0], [0, 255]]),
    # A 0..1 image: 0.5 -> 128, -inf -> 0.
    (FLOAT_TIFF_WITH_NANS_AND_MINUS_INFINITY, [[0, 0], [128, 0]]),
])
def test_float_tiff_with_nan_and_infinity_decodes_without_an_undefined_cast(data, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        decoded = decode_image_with_info(data, color_mode="grayscale")
    assert decoded.info.mode == "F"
    assert decoded.array[..., 0].tolist() == expected


# Found by scripts/fuzz_decode.py: an ISO-media header whose brand holds a newline ("avc\n") made the
# message "unsupported format: ISO media (avc\n)", two lines on a CLI that promises one.
FTYP_BRAND_WITH_NEWLINE = bytes.fromhex("00000020" "66747970" "6176630a")


def test_a_control_character_in_the_file_never_reaches_the_message():
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(FTYP_BRAND_WITH_NEWLINE)
    assert caught.value.reason == images.UNSUPPORTED_FORMAT
    assert str(caught.value) == "unsupported format: ISO media (avc?)"


needs_special_files = pytest.mark.skipif(
    not hasattr(os, "mkfifo") or not Path("/dev/null").exists(), reason="needs POSIX FIFOs and /dev/null"
)


@needs_special_files
def test_a_fifo_a_device_and_a_folder_are_unreadable_without_blocking(tmp_path):
    # Found while fuzzing paths: a FIFO blocked read_image_bytes forever, and a character device
    # was read to its end (st_size is 0 for both, so the size limit did not apply; /dev/zero never ends).
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for special in (fifo, Path("/dev/null"), tmp_path):
        with pytest.raises(ImageDecodeError) as caught:
            within_time_limit(lambda path=special: decode_image(path))
        assert (caught.value.reason, caught.value.detail) == (images.UNREADABLE, "not a regular file"), special


# ---------------------------------------------------------------- scan, predict, CLI, page


def format_folder(seed_name: str) -> str:
    """Class folder of a seed: its file extension (jpg, png, ..., and the refused ones)."""
    return seed_name.rsplit(".", 1)[1]


@pytest.fixture(scope="module")
def mutated_tree(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """(root, {relative path: bytes}): every seed and VARIANTS_PER_SEED mutations of it, one folder per kind."""
    root = tmp_path_factory.mktemp("fuzz") / "data"
    chooser = RandomChooser(seed=20260101)
    files: dict[str, bytes] = {}
    for seed_name, original in sorted(seed_files().items()):
        stem, extension = seed_name.rsplit(".", 1)
        files[f"{format_folder(seed_name)}/{stem}.{extension}"] = original
        for number in range(VARIANTS_PER_SEED):
            _, mutated, _ = mutate(chooser, seed_name)
            files[f"{format_folder(seed_name)}/{stem}-mutated-{number}.{extension}"] = mutated
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root, files


def model_can_read(data: bytes, color_mode: str = "rgb") -> bool:
    try:
        decode_image(data, color_mode=color_mode, size=IMAGE_SIZE)
    except ImageDecodeError:
        return False
    return True


def test_scan_indexes_or_skips_every_mutated_file_with_a_reason(mutated_tree):
    from imgclf_core.data.dataset import scan_dataset

    root, files = mutated_tree
    index = within_time_limit(lambda: scan_dataset(root, use_cache=False))
    indexed = {record.path for record in index.records}
    skipped = {item.path: item.reason for item in index.skipped}
    assert indexed | set(skipped) == set(files) and not indexed & set(skipped)
    assert all(reason.isprintable() and reason_code(reason) in DECODER_REASONS for reason in skipped.values())
    assert len(indexed) >= len(seed_files()) - len(refused_format_files())  # at least the unmutated photos
    assert {format_folder(path) for path in skipped} >= {"jpg", "png", "gif", "tif", "webp", "bmp"}
    assert {path for path in indexed} == {path for path, data in files.items() if model_can_read(data)}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_untrained_run(tmp_path_factory.mktemp("runs") / "run")


def test_predict_files_gives_one_error_line_per_unreadable_file_and_predicts_the_rest(mutated_tree, run_dir, tmp_path):
    from imgclf_core.inspection.predict import Predictor

    root, files = mutated_tree
    predictor = Predictor.from_run(run_dir)
    paths = [root / relative for relative in files]
    results = within_time_limit(lambda: predictor.predict_files(paths, top_k=2, gradcam_dir=tmp_path / "gradcam"))
    assert [result["path"] for result in results] == list(map(str, paths))
    for result, data in zip(results, files.values()):
        if model_can_read(data):
            assert "error" not in result and len(result["top_k"]) == 2 and Path(result["gradcam"]).is_file()
        else:
            assert set(result) == {"path", "error"}
            assert reason_code(result["error"]) in DECODER_REASONS and result["error"].isprintable()


def test_cli_scan_and_predict_json_on_mutated_files_exit_0_without_a_traceback(mutated_tree, run_dir, tmp_path):
    root, files = mutated_tree
    scanned = run_imgclf("scan", str(root), "--json", "--no-cache")
    assert scanned.returncode == 0 and "Traceback" not in scanned.stderr, scanned.stderr[-2000:]
    document = json.loads(scanned.stdout)
    assert document["num_images"] + len(document["skipped"]) == len(files)
    assert all(item["reason"] for item in document["skipped"])

    paths = [str(root / relative) for relative in files]
    special = []
    if hasattr(os, "mkfifo") and Path("/dev/null").exists():
        # A FIFO used to block the CLI forever (a character device was read to its end).
        os.mkfifo(tmp_path / "pipe.png")
        special = [str(tmp_path / "pipe.png"), "/dev/null"]
    predicted = run_imgclf("predict", str(run_dir), *paths, *special, "--json", "--top-k", "1")
    assert predicted.returncode == 0 and "Traceback" not in predicted.stderr, predicted.stderr[-2000:]
    results = json.loads(predicted.stdout)
    assert [result["path"] for result in results] == paths + special
    errors = [result["error"] for result in results[:len(paths)] if "error" in result]
    assert len(errors) == sum(not model_can_read(data) for data in files.values()) > 0
    assert all(reason_code(error) in DECODER_REASONS for error in errors)
    assert [result.get("error") for result in results[len(paths):]] == ["unreadable: not a regular file"] * len(special)


def test_predict_page_reports_each_bad_upload_by_name_and_classifies_the_rest(mutated_tree, run_dir, tmp_path):
    import shutil

    from imgclf_core.training import run_catalog

    root, files = mutated_tree
    page_run = shutil.copytree(run_dir, run_catalog.default_runs_root() / "20260101-000000-small_cnn")
    point_run_at(page_run, root)  # the sidebar's dataset: the page picks this run
    # One readable and one unreadable upload per kind keeps the page run short. The uploader only
    # takes image extensions, so refused formats come as they do in life: renamed to .jpg.
    uploads, seen = [], set()
    for relative, data in files.items():
        kind = (format_folder(relative), model_can_read(data))
        if kind not in seen:
            seen.add(kind)
            name = relative.replace("/", "-")
            if not name.endswith(images.IMAGE_EXTENSIONS):
                name += ".jpg"
            uploads.append((name, data, "application/octet-stream"))
    app = open_page("app_pages/predict.py", root)
    assert app.selectbox(key="predict_model").value == str(page_run)
    app.file_uploader(key="predict_files").set_value(uploads).run()
    assert not app.exception, app.exception
    bad = [name for name, data, _ in uploads if not model_can_read(data)]
    messages = [error.value for error in app.error]
    assert len(messages) == len(bad) and all(any(message.startswith(f"{name}: ") for message in messages) for name in bad)
    assert all(reason_code(message.split(": ", 1)[1]) in DECODER_REASONS for message in messages)
    table = next(frame.value for frame in app.dataframe if "predicted" in frame.value.columns)
    assert table["predicted"].notna().sum() == len(uploads) - len(bad)
