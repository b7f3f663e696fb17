"""First paint: every page draws the sidebar and its title before anything slow, so importing what a
page imports stays cheap, and the sidebar reads top to bottom (folder box, recent folders, upload).

bench/bench_app_start.py measures the time itself, in a browser; these tests hold the causes.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.files import ROOT, shapes_tree, zip_of
from helpers.pages import APP, TIMEOUT, open_page
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from imgclf_app.session_keys import DATASET_DIR_BOX, RECENT_FOLDER_CHOICE, SAVED_DATASET_DIR
from imgclf_core import settings

FOLDER_BOX = "Dataset folder"
RECENT = "Recent folders"
UPLOAD = "…or upload a .zip (one folder per class)"
# Seconds of import (more on a busy machine) that must come after a page's title, not before it.
HEAVY = ("tensorflow", "keras", "pandas", "pyarrow", "altair", "numpy", "PIL", "matplotlib", "scipy")
# What the shared sidebar, the helpers and the core modules every page imports pull in at import time.
SHARED_MODULES = (
    "imgclf_app.sidebar", "imgclf_app.current_run", "imgclf_app.dataset_loaders", "imgclf_app.session_keys",
    "imgclf_app.views", "imgclf_app.charts", "imgclf_app.forms", "imgclf_app.model_state", "imgclf_app.errors",
    "imgclf_core.data.dataset", "imgclf_core.data.images", "imgclf_core.data.thumbnails", "imgclf_core.config",
    "imgclf_core.training.run_folder", "imgclf_core.training.run_catalog", "imgclf_core.training.run_process",
    "imgclf_core.training.run_setup", "imgclf_core.settings", "imgclf_core.data.archive", "imgclf_core.fileio",
    "imgclf_core.data.dataset_report", "imgclf_core.training.recommend", "imgclf_core.data.split",
)


def heavy_modules_after(statements: list[str]) -> list[str]:
    """The HEAVY top-level packages a fresh interpreter holds after `import streamlit` and `statements`."""
    script = "\n".join(["import sys", "import streamlit", *statements,
                        f"print(' '.join(name for name in {HEAVY!r} if name in sys.modules))"])
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def page_imports(page: str) -> list[str]:
    """The page file's top-level import statements (what runs before its first line of drawing)."""
    tree = ast.parse((ROOT / "app_pages" / f"{page}.py").read_text(encoding="utf-8"))
    return [ast.unparse(node) for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", None) != "__future__"]


def test_the_shared_sidebar_helpers_and_core_modules_import_nothing_heavy():
    assert heavy_modules_after([f"import {module}" for module in SHARED_MODULES]) == []


def test_home_imports_nothing_heavy():
    assert heavy_modules_after(page_imports("home")) == []


@pytest.mark.parametrize("page", ["home", "dataset", "train", "label"])
def test_a_page_imports_no_tensorflow_before_its_title(page):
    loaded = heavy_modules_after(page_imports(page))
    assert "tensorflow" not in loaded and "keras" not in loaded, loaded


def sidebar_widget_labels(app: AppTest) -> list[str]:
    """The sidebar's dataset widgets, top to bottom as drawn."""
    kinds = ("text_input", "selectbox", "file_uploader")
    return [node.label for node in app.sidebar if getattr(node, "type", None) in kinds]


def test_the_sidebar_reads_folder_box_then_recent_folders_then_upload(tmp_path):
    first, second = shapes_tree(tmp_path / "first", per_class=4), shapes_tree(tmp_path / "second", per_class=4)
    settings.remember_dataset_folder(first)
    settings.remember_dataset_folder(second)
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not app.exception, app.exception
    assert sidebar_widget_labels(app) == [FOLDER_BOX, RECENT, UPLOAD]
    # Every behaviour stays: the recent folder picked lands in the box above it...
    app.sidebar.selectbox(key=RECENT_FOLDER_CHOICE).set_value(str(first.resolve())).run()
    assert app.sidebar.text_input(key=DATASET_DIR_BOX).value == str(first.resolve())
    # ...and the folder survives a page switch (the widget key is put back from SAVED_DATASET_DIR).
    app.switch_page("app_pages/dataset.py").run()
    assert sidebar_widget_labels(app) == [FOLDER_BOX, RECENT, UPLOAD]
    assert app.sidebar.text_input(key=DATASET_DIR_BOX).value == str(first.resolve())


def test_a_folder_error_shows_under_the_folder_box_not_under_the_upload(tmp_path):
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    app.sidebar.text_input(key=DATASET_DIR_BOX).set_value(str(tmp_path / "nowhere")).run()
    order = [(node.type, getattr(node, "label", None) or getattr(node, "value", None)) for node in app.sidebar
             if getattr(node, "type", None) in ("text_input", "error", "file_uploader")]
    assert order == [("text_input", FOLDER_BOX), ("error", f"Folder not found: {tmp_path / 'nowhere'}"),
                     ("file_uploader", UPLOAD)]


def test_an_uploaded_zip_fills_the_folder_box_above_it_in_the_same_run(tmp_path):
    data = shapes_tree(tmp_path / "pets", per_class=2)
    files = {f"pets/{path.relative_to(data).as_posix()}": path.read_bytes()
             for path in sorted(data.rglob("*.png"))}
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    app.sidebar.file_uploader(key="dataset_zip").set_value(("pets.zip", zip_of(files).getvalue(),
                                                            "application/zip")).run()
    assert not app.exception, app.exception
    box = app.sidebar.text_input(key=DATASET_DIR_BOX).value
    assert box == app.session_state[SAVED_DATASET_DIR] and Path(box).name == "pets"
    assert [header.value for header in app.header] == ["Dataset: pets"]


@pytest.mark.parametrize("page", ["home", "dataset", "train", "label"])
def test_a_page_draws_its_title_before_anything_else_in_the_main_area(page, tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=4)
    app = open_page(f"app_pages/{page}.py", data)
    drawn = [node for node in app.main if not isinstance(node, Block)]
    assert drawn and drawn[0].type == "title", [node.type for node in drawn[:3]]


def test_the_dataset_page_loads_tensorflow_only_when_the_augmented_versions_are_asked_for(tmp_path):
    """In a fresh interpreter (this test process may hold TensorFlow already): the whole page, grid and
    charts included, runs without it; the preview's button imports it and draws the versions."""
    data = shapes_tree(tmp_path / "shapes", per_class=4)
    script = "\n".join([
        "import sys",
        "from streamlit.testing.v1 import AppTest",
        "from imgclf_app.session_keys import DATASET_DIR_BOX",
        f"app = AppTest.from_file({APP!r}, default_timeout={TIMEOUT}).run()",
        f"app.sidebar.text_input(key=DATASET_DIR_BOX).set_value({str(data)!r}).run()",
        "app.switch_page('app_pages/dataset.py').run()",
        "assert not app.exception, app.exception",
        "versions = lambda: [image for image in app.get('image') if image.captions and image.captions[0] == 'original']",
        "print('before', 'tensorflow' in sys.modules, len(versions()), len(app.get('vega_lite_chart')), 'altair' in sys.modules)",
        "print('order', '|'.join(node.value for node in app.main.get('subheader')))",
        "app.button(key='preview_show').click().run()",
        "assert not app.exception, app.exception",
        "print('after', 'tensorflow' in sys.modules, len(versions()))",
    ])
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    before, order, after = result.stdout.split("\n")[-4:-1]
    assert before.split()[:3] == ["before", "False", "0"] and int(before.split()[3]) > 0  # the charts are drawn
    assert before.split()[4] == "False"  # ...as plain Vega-Lite: no Altair import (~0.4 s) on a first visit
    # Computed after the grid (pandas' first import no longer holds up the images), drawn above it.
    headings = order.removeprefix("order ").split("|")
    assert headings.index("Images per class") < headings.index("Images"), headings
    assert after == "after True 1"
