"""One cached model shared by many threads (as st.cache_resource shares it between app sessions):
predictions and Grad-CAM heatmaps are identical to serial ones, and the weights are never written."""

from __future__ import annotations

import io
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.pages import open_page
from helpers.runs import point_run_at, write_untrained_run
from PIL import Image

pytest.importorskip("tensorflow")

from imgclf_core.inspection.predict import Predictor  # noqa: E402

THREADS = 10
NUM_IMAGES = 20
# Generous: 10 threads x 20 images x (predict + Grad-CAM) of a 32 px model take seconds, not minutes.
JOIN_TIMEOUT_S = 600


def photo_bytes(count: int, size: int = 48) -> list[bytes]:
    """`count` distinct PNGs: crops of real photos (skimage.data), then random-pixel images."""
    from skimage import data as skimage_data

    photos = [getattr(skimage_data, name)() for name in ("chelsea", "coffee", "astronaut", "camera", "rocket")]
    files = []
    rng = np.random.default_rng(0)
    for number in range(count):
        if number < 3 * len(photos):
            photo = photos[number % len(photos)]
            top, left = (number // len(photos)) * 40, (number // len(photos)) * 60
            pixels = photo[top:top + 200, left:left + 200]
        else:
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).resize((size, size)).save(buffer, "PNG")
        files.append(buffer.getvalue())
    return files


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder with a saved (untrained, seeded) small_cnn for three classes at 32 px RGB."""
    return write_untrained_run(tmp_path_factory.mktemp("runs") / "run")


@pytest.fixture(scope="module")
def images(run_dir) -> np.ndarray:
    predictor = Predictor.from_run(run_dir)
    return np.stack([predictor.load_image(data) for data in photo_bytes(NUM_IMAGES)])


def predict_and_explain(predictor: Predictor, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a Predict page session does with one upload: probabilities, and Grad-CAM's own pass."""
    probabilities = predictor.predict_arrays(image[None])[0]
    explained_probabilities, heatmap = predictor.explain(image)
    return probabilities, explained_probabilities, heatmap


def run_in_threads(predictor: Predictor, images: np.ndarray) -> list[list[tuple]]:
    """Every thread handles every image, each thread in its own order, all starting together."""
    results: list[list[tuple | None]] = [[None] * len(images) for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(thread_number: int) -> None:
        try:
            start.wait()
            for position in np.random.default_rng(thread_number).permutation(len(images)):
                results[thread_number][position] = predict_and_explain(predictor, images[position])
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(number,), daemon=True) for number in range(THREADS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a prediction thread hung"
    assert not errors, errors
    return results


def assert_identical(threaded: list[list[tuple]], serial: list[tuple]) -> None:
    for thread_results in threaded:
        for got, expected in zip(thread_results, serial):
            for got_array, expected_array in zip(got, expected):
                assert got_array.dtype == expected_array.dtype
                # Bitwise: TF on CPU runs the same kernels in the same order for each call, threads or not.
                assert np.array_equal(got_array, expected_array), np.abs(got_array - expected_array).max()


def weights_of(predictor: Predictor) -> list[np.ndarray]:
    return [np.array(weight, copy=True) for weight in predictor.model.get_weights()]


def test_ten_threads_sharing_one_warm_model_get_the_serial_results_and_leave_the_weights_alone(run_dir, images):
    predictor = Predictor.from_run(run_dir)
    before = weights_of(predictor)
    serial = [predict_and_explain(predictor, image) for image in images]
    assert len({row[0].tobytes() for row in serial}) == NUM_IMAGES  # distinct images, distinct answers
    # Real heatmaps to compare (an untrained model's Grad-CAM may be all zero for some images).
    assert sum(row[2].max() > 0 for row in serial) >= NUM_IMAGES // 2

    assert_identical(run_in_threads(predictor, images), serial)
    after = weights_of(predictor)
    assert len(after) == len(before) and all(np.array_equal(a, b) for a, b in zip(after, before))


def test_ten_threads_racing_on_a_cold_model_trace_it_safely(run_dir, images):
    """The first calls trace the predict and Grad-CAM graphs: ten of them at once must still agree."""
    reference = Predictor.from_run(run_dir)
    serial = [predict_and_explain(reference, image) for image in images]
    cold = Predictor.from_run(run_dir)
    assert_identical(run_in_threads(cold, images), serial)


def test_two_app_sessions_share_one_cached_predictor_and_agree(run_dir, tmp_path, monkeypatch):
    from imgclf_app import model_state
    from imgclf_core.training import run_catalog

    data = tmp_path / "data"
    for label in ("circle", "square"):
        (data / label).mkdir(parents=True)
        (data / label / "a.png").write_bytes(photo_bytes(2)[label == "square"])
    page_run = Path(shutil.copytree(run_dir, run_catalog.default_runs_root() / "20260101-000000-small_cnn"))
    point_run_at(page_run, data)  # the sidebar's dataset: the Predict page picks this run

    loaded: list[Predictor] = []
    original_from_run = Predictor.from_run.__func__

    def counting_from_run(cls, folder):
        loaded.append(original_from_run(cls, folder))
        return loaded[-1]

    monkeypatch.setattr(Predictor, "from_run", classmethod(counting_from_run))
    upload = [("photo.png", photo_bytes(3)[2], "image/png")]
    tables = []
    for _ in range(2):  # two browser tabs: two sessions, one server process
        app = open_page("app_pages/predict.py", data)
        assert app.selectbox(key="predict_model").value == str(page_run)
        app.file_uploader(key="predict_files").set_value(upload).run()
        assert not app.exception, app.exception
        tables.append(next(frame.value for frame in app.dataframe if "predicted" in frame.value.columns))
    assert len(loaded) == 1  # the second session found the model in st.cache_resource
    stamp = model_state.model_file_stamp(str(page_run))
    assert model_state._cached_predictor(str(page_run), stamp) is loaded[0]
    assert tables[0].equals(tables[1])
    assert tables[0]["predicted"].notna().all()
