"""Each page's Undo and Redo walk only that page's moves, say which moves before the click, and sit right
under the message of the last action (the Label page under AppTest; the Mistakes page is in
test_predict_mistakes_pages.py, with its trained model)."""

from __future__ import annotations

from helpers.files import png_bytes
from helpers.pages import open_page
from streamlit.proto.LabelVisibility_pb2 import LabelVisibility

from imgclf_core.inspection.relabel import QUARANTINE, RelabelJournal


def page_order(app) -> list[str]:
    """The page's messages and buttons in the order they are drawn: "success: ...", "button:KEY"."""
    order = []
    for node in app.main:
        if node.type in ("success", "error"):
            order.append(f"{node.type}: {node.value}")
        elif node.type == "button":
            order.append(f"button:{node.key}")
    return order


def test_label_page_undo_says_which_filing_it_undoes_and_leaves_other_pages_moves_alone(dataset_with_inbox):
    data = dataset_with_inbox
    journal = RelabelJournal(data)
    journal.move("ring/000.png", "cross", origin="audit")  # made on the Audit page, before
    app = open_page("app_pages/label.py", data)
    undo = app.button(key="label_undo")
    assert undo.disabled and undo.label == "Undo"  # the audit move is not the Label page's to undo

    app.button(key="label_class:ring").click().run()
    assert not app.exception, app.exception
    undo = app.button(key="label_undo")
    assert undo.label == "Undo: move new-0.png from _inbox to ring" and not undo.disabled
    order = page_order(app)
    message = "success: Filed new-0.png from _inbox to ring."
    assert order[order.index(message) + 1] == "button:label_undo"  # right under the message

    journal.move("square/000.png", QUARANTINE, origin="audit")  # later, on the Audit page (another tab)
    app.run()
    assert app.button(key="label_undo").label == "Undo: move new-0.png from _inbox to ring"
    app.button(key="label_undo").click().run()
    assert not app.exception, app.exception
    assert (data / "_inbox" / "new-0.png").read_bytes() == png_bytes(0, (16, 16))
    assert (data / QUARANTINE / "000.png").exists() and (data / "cross" / "000-2.png").exists()  # both audit moves stay
    assert any(success.value == "Undid move new-0.png from _inbox to ring." for success in app.success)
    assert app.button(key="label_redo").label == "Redo: move new-0.png from _inbox to ring"
    assert app.button(key="label_undo").disabled
    assert [move.origin for move in journal.undoable()] == ["audit", "audit"]


def test_label_page_walks_several_moves_with_a_labelled_count_listed_in_the_help(dataset_with_inbox):
    data = dataset_with_inbox
    app = open_page("app_pages/label.py", data)
    assert not [box for box in app.number_input if box.key == "label_undo_count"]  # no count for one move or none
    for _ in range(3):
        app.button(key="label_class:cross").click().run()
    count = app.number_input(key="label_undo_count")
    assert count.label == "Moves per click" and count.max == 3
    assert count.proto.label_visibility.value == LabelVisibility.LabelVisibilityOptions.VISIBLE
    count.set_value(2).run()
    undo = app.button(key="label_undo")
    assert undo.label == "Undo 2 moves"
    assert undo.help.splitlines()[1:] == ["- move new-2.png from _inbox to cross", "- move new-1.png from _inbox to cross"]
    undo.click().run()
    assert not app.exception, app.exception
    assert sorted(path.name for path in (data / "_inbox").iterdir()) == ["new-1.png", "new-2.png"]
    assert app.button(key="label_redo").label == "Redo 2 moves"


def test_undoing_a_filing_that_another_page_moved_since_says_so_in_one_line(dataset_with_inbox):
    data = dataset_with_inbox
    app = open_page("app_pages/label.py", data)
    app.button(key="label_class:ring").click().run()
    RelabelJournal(data).move("ring/new-0.png", "cross", origin="mistakes")  # the Mistakes page moves it on
    app.run()
    app.button(key="label_undo").click().run()
    assert not app.exception, app.exception
    errors = [error.value for error in app.error]
    assert errors == ['cannot undo "move new-0.png from _inbox to ring": the image was moved again since from the '
                      'mistakes page and is now at cross/new-0.png; undo that move first']
    assert (data / "cross" / "new-0.png").read_bytes() == png_bytes(0, (16, 16))
    assert not (data / "_inbox" / "new-0.png").exists()
