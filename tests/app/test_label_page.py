"""The Label page under AppTest: filing by class button and undo, uploads into the inbox, the grid."""

from __future__ import annotations

from helpers.files import png_bytes
from helpers.pages import metrics, open_page

from imgclf_core.inspection.relabel import QUARANTINE, RelabelJournal


def test_label_page_files_an_image_by_class_button_and_undo_puts_it_back(dataset_with_inbox):
    data = dataset_with_inbox
    app = open_page("app_pages/label.py", data)
    assert metrics(app)["Left in the inbox"] == "3"
    assert app.text_input(key=f"label_inbox:{data}").value == str(data / "_inbox")
    app.button(key="label_class:ring").click().run()
    assert not app.exception, app.exception
    assert (data / "ring" / "new-0.png").read_bytes() == png_bytes(0, (16, 16))
    assert metrics(app)["Left in the inbox"] == "2" and metrics(app)["Labelled from the inbox"] == "1"
    app.button(key="label_skip").click().run()  # new-1 goes to the back: new-2 is shown
    app.button(key="label_quarantine").click().run()
    assert (data / QUARANTINE / "new-2.png").exists()
    app.text_input(key="label_new_class").set_value("star").run()
    app.button(key="label_new").click().run()
    assert (data / "star" / "new-1.png").exists()
    for _ in range(3):
        app.button(key="label_undo").click().run()
    assert sorted(path.name for path in (data / "_inbox").iterdir()) == ["new-0.png", "new-1.png", "new-2.png"]
    assert not RelabelJournal(data).can_undo()


def test_label_page_uploads_into_the_inbox_without_overwriting(dataset_with_inbox):
    data = dataset_with_inbox
    app = open_page("app_pages/label.py", data)
    app.file_uploader(key="label_upload").set_value([
        ("new-0.png", png_bytes(90, (16, 16)), "image/png"), ("photo.png", png_bytes(91, (16, 16)), "image/png"),
    ]).run()
    assert not app.exception, app.exception
    assert (data / "_inbox" / "new-0.png").read_bytes() == png_bytes(0, (16, 16))  # the old one is kept
    assert (data / "_inbox" / "new-0-2.png").read_bytes() == png_bytes(90, (16, 16))
    assert (data / "_inbox" / "photo.png").exists() and metrics(app)["Left in the inbox"] == "5"


def test_label_page_grid_assigns_one_class_to_the_ticked_images(dataset_with_inbox):
    data = dataset_with_inbox
    app = open_page("app_pages/label.py", data)
    app.radio(key="label_mode").set_value("Grid").run()
    app.checkbox(key=f"label_pick:{data / '_inbox' / 'new-0.png'}").check().run()
    app.checkbox(key=f"label_pick:{data / '_inbox' / 'new-2.png'}").check().run()
    app.selectbox(key="label_grid_class").set_value("cross").run()
    app.button(key="label_grid_assign").click().run()
    assert not app.exception, app.exception
    assert sorted(path.name for path in (data / "cross").glob("new-*")) == ["new-0.png", "new-2.png"]
    assert [path.name for path in (data / "_inbox").iterdir()] == ["new-1.png"]
