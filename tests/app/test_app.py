"""The Streamlit app: the home page renders the sample dataset, and the core stays Streamlit-free."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers.pages import APP
from PIL import Image
from streamlit.testing.v1 import AppTest


def test_home_page_shows_the_sample_dataset():
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert [header.value for header in app.header] == ["Dataset: fashion_mnist"]
    assert [metric.value for metric in app.metric] == ["2,000", "10", "0", "0"]
    class_labels = [markdown.value for markdown in app.markdown if "images" in markdown.value]
    assert len(class_labels) == 10 and "**bag**  \n200 images" in class_labels
    assert len(app.get("image")) == 40


def test_home_page_reports_a_missing_folder(tmp_path):
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.sidebar.text_input[0].set_value(str(tmp_path / "nowhere")).run()
    assert not app.exception
    assert [error.value for error in app.sidebar.error] == [f"Folder not found: {tmp_path / 'nowhere'}"]
    assert not app.header


def test_home_page_warns_about_a_broken_dataset(tmp_path):
    (tmp_path / "only").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "only" / "a.png")
    (tmp_path / "only" / "b.png").write_bytes(b"")
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.sidebar.text_input[0].set_value(str(tmp_path)).run()
    assert [metric.value for metric in app.metric] == ["1", "1", "1", "0"]
    assert any("single class" in warning.value for warning in app.warning)


@pytest.mark.parametrize("page", ["app_pages/home.py", "app_pages/train.py"])
def test_pages_without_models_do_not_import_tensorflow(page):
    script = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"app = AppTest.from_file({APP!r}, default_timeout=60).run()\n"
        f"app.switch_page({page!r}).run()\n"
        "assert not app.exception, app.exception\n"
        "assert app.title, 'the page drew nothing'\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False"
