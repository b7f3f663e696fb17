"""In a real browser: after a relabel far down the Mistakes page, its message and Undo are in view, and
Undo (which names the move) puts the image back. Chromium (Playwright) against `streamlit run`."""

from __future__ import annotations

from helpers.browser import choose_option
from streamlit_browser import chromium_page, streamlit_server, wait_until_drawn, wait_until_idle

VIEWPORT_HEIGHT = 900  # a laptop screen


def in_view(page, locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= page.viewport_size["height"]


def test_after_a_relabel_far_down_the_gallery_the_message_and_its_undo_are_in_view(shapes_run):
    run_dir, data = shapes_run
    files_before = sorted(str(path.relative_to(data)) for path in data.rglob("*.png"))
    environment = {"IMGCLF_DATA_DIR": str(data), "IMGCLF_RUNS_DIR": str(run_dir.parent)}
    with streamlit_server(environment) as url, chromium_page(height=VIEWPORT_HEIGHT) as page:
        page.goto(url + "mistakes")
        page.get_by_text("Top losses").first.wait_for(timeout=120_000)
        wait_until_idle(page)
        wait_until_drawn(page, expect_images=True)
        menu = page.get_by_role("combobox", name="Relabel").last  # the last top-loss image's menu
        menu.scroll_into_view_if_needed()
        choose_option(page, menu, "move to _quarantine")
        message = page.get_by_test_id("stAlert").filter(has_text="Moved ")  # the message, not the "moved to" caption
        message.wait_for(timeout=60_000)
        wait_until_idle(page)
        undo = page.get_by_role("button", name="Undo: move ")
        assert undo.count() == 1
        assert in_view(page, message) and in_view(page, undo), (message.bounding_box(), undo.bounding_box())
        assert len(list((data / "_quarantine").glob("*.png"))) == 1

        undo.click()
        undid = page.get_by_test_id("stAlert").filter(has_text="Undid move ")
        undid.wait_for(timeout=60_000)
        wait_until_idle(page)
        assert sorted(str(path.relative_to(data)) for path in data.rglob("*.png")) == files_before
        redo = page.get_by_role("button", name="Redo: move ")
        assert in_view(page, undid) and in_view(page, redo), (undid.bounding_box(), redo.bounding_box())
