"""Issue 19's features in a real browser, one server: image quality, More like this, calibration, the
unfamiliar-image note, camera capture with Undo, and the data difference between two runs."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from helpers.browser import wait_for
from helpers.files import SAMPLE, photos_with_quality_issues
from PIL import Image
from streamlit_browser import chromium_page, metric_value, streamlit_server, wait_until_drawn, wait_until_idle

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PER_CLASS = 60  # with the from-scratch recipe: about 81% validation accuracy, and every skimage photo flagged


def fashion_subset(root: Path) -> Path:
    for folder in sorted(SAMPLE.iterdir()):
        (root / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.png"))[:PER_CLASS]:
            shutil.copy(image, root / folder.name / image.name)
    return root


def train(data: Path, run_dir: Path, epochs: int | None = None) -> Path:
    """small_cnn with the from-scratch recipe (`epochs` of it: fewer for a run that only needs to exist)."""
    import dataclasses

    from imgclf_core.config import DataConfig, ModelConfig, RunConfig
    from imgclf_core.training.recommend import FROM_SCRATCH_TRAINING
    from imgclf_core.training.run_folder import RunFolder
    from imgclf_core.training.trainer import train_run

    run_dir.mkdir(parents=True)
    training = dataclasses.replace(FROM_SCRATCH_TRAINING, epochs=epochs or FROM_SCRATCH_TRAINING.epochs)
    RunFolder(run_dir).write_config(RunConfig(
        data_dir=str(data), data=DataConfig(image_size=28, color_mode="grayscale", batch_size=32),
        model=ModelConfig(name="small_cnn"), training=training))
    assert train_run(run_dir) == "finished"
    return run_dir


def shirts_or_tops(similarity, data: Path) -> float:
    """The mean share of shirts and T-shirts/tops among the 8 nearest images of each shirt of `data`."""
    shirts = sorted(path.relative_to(data).as_posix() for path in (data / "shirt").glob("*.png"))
    return float(np.mean([sum(n.label in ("shirt", "tshirt_top") for n in similarity.nearest_to_path(shirt, top=8)) / 8
                          for shirt in shirts]))


def camera_frames(path: Path) -> Path:
    """A fake camera's video: the same JPEG frame over and over (Chromium reads .mjpeg files)."""
    frame = io.BytesIO()
    image = Image.fromarray(np.asarray(Image.open(next((SAMPLE / "shirt").glob("*.png"))).convert("RGB")))
    image.resize((320, 240)).save(frame, "JPEG")
    path.write_bytes(frame.getvalue() * 30)
    return path


def shot(page, name: str, top, height: int) -> None:
    """A screenshot of the main area from the element `top` down `height` px (no sidebar: it shows temporary paths)."""
    main = page.locator('[data-testid="stMain"]').bounding_box()
    start = top.bounding_box()["y"] - 16
    page.screenshot(path=str(SCREENSHOTS / name),
                    clip={"x": main["x"], "y": start, "width": main["width"], "height": height})


def main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def go(page, name: str) -> None:
    wait_until_idle(page)
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=name).click()
    wait_until_idle(page)


def test_quality_similar_calibration_unfamiliar_camera_and_data_difference_in_the_browser(tmp_path):
    from imgclf_core.data.dataset import scan_dataset
    from imgclf_core.inspection.relabel import RelabelJournal
    from imgclf_core.inspection.predict import Predictor
    from imgclf_core.inspection.similar import SimilarityIndex

    data = fashion_subset(tmp_path / "fashion")
    runs = tmp_path / "runs"
    before = train(data, runs / "20260101-000000-small_cnn", epochs=1)
    moved = sorted((data / "shirt").glob("*.png"))[-1].relative_to(data).as_posix()
    RelabelJournal(data).move(moved, "tshirt_top", origin="mistakes")
    after = train(data, runs / "20260101-000001-small_cnn")
    photos = photos_with_quality_issues(tmp_path / "photos")
    cat = tmp_path / "chelsea.png"
    import skimage.data

    Image.fromarray(skimage.data.chelsea()).save(cat)
    shirt = sorted((data / "shirt").glob("*.png"))[0].relative_to(data).as_posix()
    model_index = SimilarityIndex.of_run(Predictor.from_run(after), scan_dataset(data))
    imagenet_index = SimilarityIndex.of_dataset(scan_dataset(data))
    by_model, by_imagenet = (similarity.nearest_to_path(shirt, top=8) for similarity in (model_index, imagenet_index))
    # Shirts or tops among the 8 nearest of every shirt: one shirt's count swings with the training (2-5 of 8
    # for the first one over three trainings of this ~80% model), the mean over the 60 shirts does not
    # (0.73-0.77 by the model, 0.64 by ImageNet).
    by_model_mean, by_imagenet_mean = (shirts_or_tops(similarity, data) for similarity in (model_index, imagenet_index))
    assert by_model_mean > by_imagenet_mean, (by_model_mean, by_imagenet_mean)

    environment = {"IMGCLF_DATA_DIR": str(data), "IMGCLF_RUNS_DIR": str(runs)}
    camera = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-video-capture={camera_frames(tmp_path / 'camera.mjpeg')}")
    with streamlit_server(environment) as url, chromium_page(width=1400, height=2400, extra_flags=camera) as page:
        # Train: the newest run's calibration, and what changed in the data between the two runs.
        page.goto(url + "train")
        page.get_by_text("Confidence calibration").first.wait_for(timeout=120_000)
        assert metric_value(page, "ECE before") and metric_value(page, "ECE calibrated")
        assert float(metric_value(page, "Temperature")) > 0
        compare = page.get_by_role("combobox", name="Compare runs")
        for name in (before.name, after.name):
            compare.click()
            page.keyboard.type(name)
            page.get_by_role("option", name=name).click()
            wait_until_idle(page)
        page.keyboard.press("Escape")
        summary = f"{before.name} → {after.name}: 0 added, 0 removed, 1 relabelled, {10 * PER_CLASS - 1} unchanged"
        page.get_by_text(summary).wait_for(timeout=60_000)
        wait_until_drawn(page)
        page.get_by_text("Confidence calibration").first.scroll_into_view_if_needed()
        shot(page, "train_calibration.png", page.get_by_text("Confidence calibration").first, height=900)

        # Predict: a cat photo on a Fashion-MNIST model carries the unfamiliar-image note.
        go(page, "Predict")
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Images to classify")
        uploader.locator('input[type="file"]').set_input_files(str(cat))
        page.get_by_text("where the model looked for").first.wait_for(timeout=180_000)
        note = page.locator('[data-testid="stAlert"]').filter(has_text="Unlike the training data")
        note.first.wait_for(timeout=30_000)
        assert "has never seen anything like it" in note.first.inner_text()
        wait_until_drawn(page, expect_images=True)
        shot(page, "predict_unfamiliar.png", note.first, height=560)
        wait_until_idle(page)
        page.get_by_role("button", name="More like this").first.click()  # the upload's look-alikes in the dataset
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("nearest to chelsea.png").wait_for(timeout=180_000)
        wait_until_idle(page)
        assert len([line for line in dialog.inner_text().splitlines() if line.endswith(".png")]) == 8
        page.keyboard.press("Escape")

        # Dataset: Inspect a shirt, More like this: the core's nearest images by the run's model, in its order;
        # then by the ImageNet embeddings.
        go(page, "Dataset")
        page.get_by_text("Image quality").first.wait_for(timeout=120_000)
        wait_until_idle(page)
        page.get_by_role("combobox", name="Class").click()
        page.get_by_role("option", name="shirt", exact=True).click()
        wait_until_idle(page)
        page.get_by_role("button", name="Inspect").first.click()  # the grid's first shirt, in path order
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("button", name="More like this").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("nearest to").wait_for(timeout=180_000)
        wait_until_idle(page)
        def shown() -> list[str]:
            return [line for line in dialog.inner_text().splitlines() if line.endswith(".png") and "/" not in line]

        assert shown() == [Path(n.path).name for n in by_model], (shown(), by_model)
        wait_until_drawn(page, expect_images=True)
        dialog.screenshot(path=str(SCREENSHOTS / "dataset_similar.png"))
        dialog.get_by_text("ImageNet embeddings", exact=True).click()
        dialog.get_by_text("nearest to shirt").filter(has_text="by ImageNet embeddings").wait_for(timeout=180_000)
        wait_until_idle(page)
        assert shown() == [Path(n.path).name for n in by_imagenet], (shown(), by_imagenet)

        # Label: a photo from the camera filed into "shirt", then Undo.
        page.keyboard.press("Escape")
        go(page, "Label")
        page.get_by_text("Capture from the camera").click()
        wait_until_idle(page)
        page.get_by_role("combobox", name="Into class").click()
        page.get_by_role("option", name="shirt", exact=True).click()
        wait_until_idle(page)
        page.get_by_role("button", name="Take Photo").click()
        wait_for(lambda: list((data / "shirt").glob("camera-*.jpg")), "the photo filed into shirt", timeout_s=60)
        page.get_by_text("Undo puts it back into the inbox").wait_for(timeout=60_000)
        wait_until_idle(page)
        wait_until_drawn(page, expect_images=True)
        shot(page, "label_camera.png", page.get_by_text("Capture from the camera"), height=1000)
        page.get_by_role("button", name="Undo").first.click()
        wait_for(lambda: not list((data / "shirt").glob("camera-*.jpg")), "Undo to take the photo out of shirt",
                 timeout_s=60)

        # Dataset of the spoiled photos: each listed under its issue.
        box = page.get_by_role("textbox", name="Dataset folder")
        box.fill(str(photos))
        box.press("Enter")
        go(page, "Dataset")
        page.get_by_text("Image quality").first.wait_for(timeout=120_000)
        wait_until_drawn(page, expect_images=True)
        for title, name in (("Too dark (1)", "cat/night.jpg"), ("Blurry (1)", "dog/shaky.jpg"),
                            ("Low information (1)", "dog/lens-cap.png")):
            expander = page.locator('[data-testid="stExpander"]').filter(has_text=title)
            expander.get_by_text(title).click()
            expander.get_by_text(name).wait_for(timeout=30_000)
        wait_until_drawn(page, expect_images=True)
        heading = page.get_by_role("heading", name="Image quality")
        heading.scroll_into_view_if_needed()
        shot(page, "dataset_quality.png", heading, height=1100)
        assert "Traceback" not in main_text(page)
