"""The Audit page: no stray developer notes, ranked scores, phase times, readable duplicates, the map, its picked point.

Fast: the ImageNet backbone is replaced by each image's pixels (`pixel_embed` in conftest.py), so the
page runs the real audit (heads, near-duplicates, map) on real Fashion-MNIST images in seconds.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest
from helpers.files import ROOT, SAMPLE, copy_with_flipped_labels
from helpers.pages import metrics, open_page
from PIL import Image

from imgclf_app.session_keys import AUDIT_PICKED
from imgclf_core.inspection.audit import AUDIT_PHASES

PAGE = "app_pages/audit.py"


def stray_string_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of the bare expressions Streamlit's magic would draw: anything but a call, a yield, an
    await, or the first string of a module or function (its docstring). A class body is not drawn."""
    stray = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            continue
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            for position, statement in enumerate(statements if isinstance(statements, list) else []):
                if not isinstance(statement, ast.Expr):
                    continue
                value = statement.value
                if isinstance(value, (ast.Call, ast.Yield, ast.YieldFrom, ast.Await)):
                    continue
                docstring = (field == "body" and position == 0 and isinstance(value, ast.Constant)
                             and isinstance(value.value, str)
                             and isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)))
                if not docstring:
                    stray.append((statement.lineno, ast.unparse(value)[:60]))
    return stray


def test_no_page_draws_a_stray_string_or_expression_by_magic():
    """A second string literal in a page function (audit_ui's note on its return value) was drawn as body text."""
    assert stray_string_literals('def f():\n    """Doc."""\n    """Returns a note."""\n') == [(3, "'Returns a note.'")]
    for page in [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))]:
        assert stray_string_literals(page.read_text(encoding="utf-8")) == [], page.name


@pytest.fixture
def audited(tmp_path, pixel_embeddings):
    """The Audit page after "Run the audit" on 10 classes x 12 real images, 10% mislabelled, plus 2 near-copies."""
    root = tmp_path / "data"
    flipped = copy_with_flipped_labels(SAMPLE, root, 12, 0.1, seed=5)
    copies = []
    for source in (sorted((root / "coat").glob("train_*.png"))[0], sorted((root / "bag").glob("train_*.png"))[0]):
        copy = source.parent / f"copy-{source.stem}.jpg"
        Image.open(source).convert("L").resize((36, 36), Image.Resampling.BICUBIC).save(copy, quality=85)
        copies.append(copy)
    app = open_page(PAGE, root)
    app.button(key="audit_run").click().run()
    assert not app.exception, app.exception
    return app, root, flipped, copies


def texts(app) -> list[str]:
    return [element.value for kind in ("markdown", "caption", "text", "info") for element in app.get(kind)]


def image_captions(app) -> list[str]:
    return [image.captions[0] for image in app.get("image") if image.captions]


def scores_shown(app) -> list[float]:
    return [float(caption.rsplit("·", 1)[1]) for caption in image_captions(app) if "looks like" in caption]


def test_the_audit_page_ranks_by_distinct_scores_and_says_what_they_mean(audited):
    app, *_ = audited
    assert not any("Returns (report" in text for text in texts(app))
    scores = scores_shown(app)
    assert len(scores) == 12 and scores == sorted(scores, reverse=True)
    assert len(set(scores)) >= 8, scores  # the old score showed "+1.00" for every confident mistake
    assert any("in powers of ten" in text and "+1 means 10 times likelier" in text for text in texts(app))
    assert metrics(app)["Images audited"] == "122"


def test_the_audit_page_names_each_phase_with_its_seconds(audited):
    app, *_ = audited
    done = [text for text in texts(app) if text.startswith("Audited in ")]
    assert len(done) == 1
    assert [phase.lower() in done[0] for phase in AUDIT_PHASES] == [True] * len(AUDIT_PHASES), done[0]
    assert re.fullmatch(r"Audited in \d+\.\d s: (.+ \d+\.\d s · ){3}.+ \d+\.\d s\.", done[0]), done[0]
    app.run()  # a rerun (any widget) keeps the report and its times
    assert [text for text in texts(app) if text.startswith("Audited in ")] == done


def test_near_duplicates_are_captioned_by_class_and_file_name_only(audited):
    app, _, _, copies = audited
    assert any(header.value == "Near-duplicates (2 group(s))" for header in app.subheader)
    captions = [caption for caption in image_captions(app) if "looks like" not in caption]
    expected = [f"{copy.parent.name} · {name}" for copy in copies for name in (copy.name, copy.name[5:-4] + ".png")]
    assert sorted(captions) == sorted(expected), captions  # "bag · train_00023.png", never "bag/train_00023.png"


def map_spec(app) -> dict:
    charts = app.get("vega_lite_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def test_the_map_colours_and_shapes_points_by_class_with_a_categorical_palette(audited):
    app, root, *_ = audited
    encoding = map_spec(app)["encoding"]
    classes = sorted(folder.name for folder in root.iterdir())
    assert encoding["color"]["field"] == encoding["shape"]["field"] == "class"
    assert encoding["color"]["scale"] == {"domain": classes, "scheme": "tableau10"}
    shapes = encoding["shape"]["scale"]["range"]
    assert encoding["shape"]["scale"]["domain"] == classes and len(set(shapes)) == len(shapes) == len(classes)
    assert encoding["size"]["condition"]["test"] == "datum.misfit"  # likely errors: larger, outlined


def test_more_than_ten_classes_get_the_twenty_colour_palette(tmp_path, pixel_embeddings):
    root = tmp_path / "data"
    copy_with_flipped_labels(SAMPLE, root, 6, 0.0, seed=1)
    shutil.copytree(root / "bag", root / "bag_two")
    for number, image in enumerate(sorted((root / "bag_two").iterdir())):  # other pixels: not near-copies
        Image.open(image).rotate(90 + 30 * number).save(image)
    app = open_page(PAGE, root)
    app.button(key="audit_run").click().run()
    assert not app.exception, app.exception
    assert map_spec(app)["encoding"]["color"]["scale"]["scheme"] == "tableau20"


def test_a_point_picked_on_the_map_shows_its_image_label_and_relabel_menu(audited):
    app, root, *_ = audited
    top = next(caption for caption in image_captions(app) if "looks like" in caption)
    picked_path = app.selectbox[0].key.split(":", 1)[1]  # the first gallery item's menu: audit:<path>
    app.session_state[AUDIT_PICKED] = picked_path  # what a click on the map sets (its on_select callback)
    app.run()
    assert not app.exception, app.exception
    assert any(text == f"**Picked on the map:** {picked_path}" for text in texts(app))
    assert image_captions(app).count(top) == 2  # the gallery's and the picked point's, pixel-crisp PNGs
    menu = app.selectbox(key=f"audit-map:{picked_path}")
    target = next(option for option in menu.options if option.startswith("move to ") and "_quarantine" not in option)
    menu.set_value(target).run()
    assert not app.exception, app.exception
    moved = root / target.removeprefix("move to ") / Path(picked_path).name
    assert moved.exists() and not (root / picked_path).exists()
    assert any(text == f"moved to **{moved.relative_to(root).as_posix()}**" for text in texts(app))


def block_holding(app, key: str):
    """The innermost column that holds the widget `key` (AppTest's element tree)."""
    found = []

    def walk(node, column):
        for child in getattr(node, "children", {}).values():
            here = child if getattr(child, "type", None) == "column" else column
            if getattr(child, "key", None) == key:
                found.append(here)
            walk(child, here)

    walk(app._tree, None)
    return found[0]


def test_a_relabel_in_the_gallery_says_so_under_the_image_with_its_undo(audited):
    app, root, *_ = audited
    menu = app.selectbox[0]
    path = menu.key.split(":", 1)[1]
    target = next(option for option in menu.options if option.startswith("move to ") and "_quarantine" not in option)
    menu.set_value(target).run()
    assert not app.exception, app.exception
    column = block_holding(app, "audit_undo")  # the page's Undo, now inside the moved image's column
    successes = [element.value for element in column.get("success")]
    assert successes and successes[0].startswith(f"Moved {Path(path).name} from ")
    undo = next(button for button in column.get("button") if button.key == "audit_undo")
    assert undo.label.startswith(f"Undo: move {Path(path).name} from ")
    undo.click().run()
    assert (root / path).exists(), "undone: back in its class folder"
