"""Click-to-train in a real browser: Debian's Chromium (Playwright) against `streamlit run` on 127.0.0.1."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from streamlit_browser import (  # noqa: E402
    CHROMIUM, chromium_page, metric_value, streamlit_server, wait_until_drawn, wait_until_idle,
)

SCREENSHOTS = ROOT / "docs" / "screenshots"
SAMPLE = ROOT / "sample_data" / "fashion_mnist"

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(autouse=True)
def chromium_available():
    missing = not Path(CHROMIUM).exists()
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        message = f"needs {CHROMIUM} (apt-get install chromium chromium-driver) and pip's playwright"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs both: a missing browser there is a broken setup, not a skip
        pytest.skip(message)


def wait_for(condition, what: str, timeout_s: float = 180.0, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


def navigation_labels(page) -> list[str]:
    links = page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
    return [text.split()[-1] for text in links]  # the icon comes first


def epochs_done(page) -> int:
    shown = metric_value(page, "Epoch") or "0/0"
    return int(shown.split("/")[0]) if shown[0].isdigit() else 0


def test_click_to_train_survives_a_reload_stops_resumes_and_finishes(tmp_path):
    # Relative to the server's working folder (the project root), as a person would type it.
    environment = {"IMGCLF_DATA_DIR": str(SAMPLE.relative_to(ROOT)), "IMGCLF_RUNS_DIR": str(tmp_path / "runs")}
    with streamlit_server(environment) as url, chromium_page() as page:
        page.goto(url + "train")
        epochs_input = page.get_by_role("spinbutton", name="Epochs", exact=True)
        epochs_input.fill("15")
        epochs_input.press("Enter")
        page.get_by_role("button", name="Start training").click()
        wait_for(lambda: metric_value(page, "State") == "running", "state running")
        wait_for(lambda: epochs_done(page) >= 2, "two finished epochs on the page")

        page.reload()  # a reload is a new session: the page must find the running job by itself
        wait_for(lambda: metric_value(page, "State") == "running", "state running after the reload")
        assert navigation_labels(page) == ["Home", "Dataset", "Train", "Predict", "Mistakes", "Label", "Audit"]
        assert "· running" in page.locator('[data-testid="stSidebar"]').inner_text()
        seen = epochs_done(page)
        wait_for(lambda: epochs_done(page) > seen, "the page to keep updating after the reload")
        assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 2
        wait_until_drawn(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "train.png"), full_page=True)

        page.get_by_role("button", name="Stop").click()
        wait_for(lambda: metric_value(page, "State") == "stopped", "state stopped")
        stopped_at = epochs_done(page)
        page.get_by_role("button", name="Resume").click()
        wait_for(lambda: epochs_done(page) > stopped_at, "training to continue after Resume")
        wait_for(lambda: metric_value(page, "State") == "finished", "the run to finish", timeout_s=400)
        wait_for(lambda: metric_value(page, "Validation accuracy"), "the evaluation summary")
        accuracy = float(metric_value(page, "Validation accuracy").rstrip("%"))
        assert accuracy > 60, accuracy  # 10 classes: chance is 10%
        wait_until_drawn(page)
        page.screenshot(path=str(SCREENSHOTS / "train_finished.png"), full_page=True)


def test_upload_a_photo_to_the_builtin_imagenet_model_and_see_a_cat_and_its_grad_cam(tmp_path):
    from PIL import Image
    from skimage import data as skimage_data

    from imgclf_core.efficientnet_lite import imagenet_class_names

    photo = tmp_path / "chelsea.jpg"
    Image.fromarray(skimage_data.chelsea()).save(photo, quality=92)
    environment = {"IMGCLF_DATA_DIR": str(SAMPLE.relative_to(ROOT)), "IMGCLF_RUNS_DIR": str(tmp_path / "runs")}
    with streamlit_server(environment) as url, chromium_page(height=1400) as page:
        page.goto(url + "predict")
        page.get_by_text("Images to classify").first.wait_for(timeout=120_000)
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Images to classify")
        uploader.locator('input[type="file"]').set_input_files(str(photo))
        page.get_by_text("where the model looked for").first.wait_for(timeout=180_000)
        wait_until_drawn(page, expect_images=True)
        caption = page.get_by_text("where the model looked for").first.inner_text()
        names = imagenet_class_names()
        assert any(f"'{names[index]}'" in caption for index in range(281, 286)), caption  # the domestic cats
        assert page.locator('[data-testid="stImage"] img').count() >= 2  # the photo and its overlay
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "predict.png"), full_page=True)


def test_two_sessions_train_and_predict_at_once_without_getting_in_each_others_way(tmp_path):
    """Session A trains while session B classifies with the cached ImageNet model; both finish right."""
    from PIL import Image
    from skimage import data as skimage_data

    from imgclf_core import runs

    photo = tmp_path / "coffee.jpg"
    Image.fromarray(skimage_data.coffee()).save(photo, quality=92)
    runs_dir = tmp_path / "runs"
    environment = {"IMGCLF_DATA_DIR": str(SAMPLE.relative_to(ROOT)), "IMGCLF_RUNS_DIR": str(runs_dir)}
    with streamlit_server(environment) as url, chromium_page(height=1400) as trainer:
        predictor = trainer.context.browser.new_page(viewport={"width": 1400, "height": 1400})
        trainer.goto(url + "train")
        epochs_input = trainer.get_by_role("spinbutton", name="Epochs", exact=True)
        epochs_input.fill("6")
        epochs_input.press("Enter")
        wait_until_idle(trainer)
        trainer.get_by_role("button", name="Start training").click()
        wait_for(lambda: metric_value(trainer, "State") == "running", "session A's run to start")

        predictor.goto(url + "predict")
        predictor.get_by_text("Images to classify").first.wait_for(timeout=120_000)
        uploader = predictor.locator('[data-testid="stFileUploader"]').filter(has_text="Images to classify")
        uploader.locator('input[type="file"]').set_input_files(str(photo))
        predictor.get_by_text("where the model looked for").first.wait_for(timeout=180_000)
        caption = predictor.get_by_text("where the model looked for").first.inner_text()
        assert "espresso" in caption or "cup" in caption, caption  # skimage's coffee photo
        (run_dir,) = runs_dir.iterdir()
        assert runs.read_status(run_dir)["state"] == runs.RUNNING  # B's answer came while A was training

        wait_for(lambda: metric_value(trainer, "State") == "finished", "session A's run to finish", timeout_s=400)
        assert [row["epoch"] for row in runs.read_history(run_dir)] == list(range(1, 7))
        assert predictor.get_by_text("where the model looked for").first.inner_text() == caption  # B untouched
        assert not trainer.locator('[data-testid="stException"]').count()
        assert not predictor.locator('[data-testid="stException"]').count()


def main_area(page):
    """The page without the sidebar (whose folder box would show this test's temporary path)."""
    return page.locator('[data-testid="stMain"]')


def choose_option(page, select, option: str) -> None:
    """Open a Streamlit selectbox and click one of its options."""
    select.click()
    page.get_by_role("option", name=option, exact=True).click()


@pytest.fixture(scope="module")
def trained_template(tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the sample data (with its inbox beside it) and a small_cnn trained on it for 2 epochs, once."""
    import shutil

    from imgclf_core import runs
    from imgclf_core.config import DataConfig, RunConfig, TrainingConfig
    from imgclf_core.training import train_run

    base = tmp_path_factory.mktemp("trained")
    data = Path(shutil.copytree(SAMPLE, base / "fashion"))
    run_dir = base / "runs" / "20260101-000000-small_cnn"
    run_dir.mkdir(parents=True)
    runs.write_run_config(run_dir, RunConfig(
        data_dir=str(data.resolve()), data=DataConfig(image_size=28, color_mode="grayscale"),
        training=TrainingConfig(epochs=2),
    ))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGCLF_CACHE_DIR", str(base / "cache"))
        assert train_run(run_dir) == runs.FINISHED
    return data, run_dir


@pytest.fixture
def trained_sample(trained_template, tmp_path) -> tuple[Path, Path]:
    """This test's own copy of the trained template (relabeling and labeling move files), inbox beside it."""
    import json
    import shutil

    template_data, template_run = trained_template
    data = Path(shutil.copytree(template_data, tmp_path / "fashion"))
    shutil.copytree(SAMPLE.parent / "inbox", tmp_path / "inbox")
    run_dir = Path(shutil.copytree(template_run, tmp_path / "runs" / template_run.name))
    document = json.loads((run_dir / "config.json").read_text())
    document["run"]["data_dir"] = str(data.resolve())
    (run_dir / "config.json").write_text(json.dumps(document))
    return data, run_dir


def test_mistakes_relabel_undo_and_retrain_in_the_browser(trained_sample, tmp_path):
    data, run_dir = trained_sample
    files_before = sorted(str(path.relative_to(data)) for path in data.rglob("*.png"))
    environment = {"IMGCLF_DATA_DIR": str(data), "IMGCLF_RUNS_DIR": str(tmp_path / "runs")}
    with streamlit_server(environment) as url, chromium_page(height=2400) as page:
        page.goto(url + "mistakes")
        page.get_by_text("Images behind a confusion-matrix cell").wait_for(timeout=120_000)
        wait_until_drawn(page, expect_images=True)
        menu = page.get_by_role("combobox", name="Relabel").first
        choose_option(page, menu, "move to _quarantine")
        page.get_by_text("Moved ").first.wait_for(timeout=60_000)
        quarantined = list((data / "_quarantine").glob("*.png"))
        assert len(quarantined) == 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        wait_until_drawn(page, expect_images=True)
        main_area(page).screenshot(path=str(SCREENSHOTS / "mistakes.png"))

        page.get_by_role("button", name="Undo last move").click()
        page.get_by_text("Undid ").first.wait_for(timeout=60_000)
        assert sorted(str(path.relative_to(data)) for path in data.rglob("*.png")) == files_before

        page.get_by_role("button", name="Retrain with the same settings").click()
        page.get_by_text(f"Compared with {run_dir.name}").wait_for(timeout=400_000)
        assert metric_value(page, "Validation accuracy")
        wait_until_drawn(page, expect_images=True)
        main_area(page).screenshot(path=str(SCREENSHOTS / "mistakes_retrained.png"))


def test_label_inbox_images_by_accepting_suggestions_in_the_browser(trained_sample, tmp_path):
    import csv

    data, _ = trained_sample
    inbox = tmp_path / "inbox"
    answers = {row["file"]: row["label"] for row in csv.DictReader(open(SAMPLE.parent / "inbox_answers.csv"))}
    before = len(list(inbox.iterdir()))
    environment = {"IMGCLF_DATA_DIR": str(data), "IMGCLF_RUNS_DIR": str(tmp_path / "runs")}
    accepted = 10
    with streamlit_server(environment) as url, chromium_page(height=1600) as page:
        page.goto(url + "label")
        page.get_by_text("Model suggests:").wait_for(timeout=120_000)
        for number in range(accepted):
            wait_until_idle(page)
            left = metric_value(page, "Left in the inbox")
            page.get_by_role("button", name="Accept:").click()
            wait_for(lambda: metric_value(page, "Left in the inbox") not in (None, left),
                     f"acceptance {number + 1} to be filed")
        wait_until_drawn(page, expect_images=True)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        inbox_box = page.get_by_role("textbox", name="Inbox folder (images without a class)")
        main_area(page).screenshot(path=str(SCREENSHOTS / "label.png"), mask=[inbox_box])  # a temporary path
    filed = [(path.parent.name, path.name) for path in data.rglob("test_*.png")]
    assert len(filed) == accepted and len(list(inbox.iterdir())) == before - accepted
    right = sum(answers.get(name) == label for label, name in filed)
    assert right >= accepted // 2, f"only {right} of {accepted} suggestions were right: {filed}"


def test_audit_page_in_the_browser(tmp_path):
    import shutil

    data = tmp_path / "fashion"
    for folder in sorted(SAMPLE.iterdir()):
        (data / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.png"))[:12]:
            shutil.copy(image, data / folder.name / image.name)
    (data / "bag" / "mislabelled.png").write_bytes(next((SAMPLE / "trouser").glob("*.png")).read_bytes())
    environment = {"IMGCLF_DATA_DIR": str(data), "IMGCLF_RUNS_DIR": str(tmp_path / "runs")}
    with streamlit_server(environment) as url, chromium_page(height=2400) as page:
        page.goto(url + "audit")
        page.get_by_role("button", name="Run the audit").click()
        page.get_by_text("Labels most likely wrong").wait_for(timeout=300_000)
        wait_until_drawn(page, expect_images=True)
        first = page.get_by_text("labelled ").first.inner_text()
        assert "labelled bag · looks like trouser" in page.locator('[data-testid="stMain"]').inner_text(), first
        main_area(page).screenshot(path=str(SCREENSHOTS / "audit.png"))
        images = page.locator('[data-testid="stImage"]').count()
        chart = page.locator('[data-testid="stVegaLiteChart"]').last
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # nearest point is picked
        wait_for(lambda: page.locator('[data-testid="stImage"]').count() == images + 1, "the picked point's image")
