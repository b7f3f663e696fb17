"""What a person sees when a page has a bug: one line of ours on the page, the traceback in the server's log."""

from __future__ import annotations

import logging

from helpers.pages import APP
from streamlit.testing.v1 import AppTest


def test_a_bug_in_a_page_shows_one_line_of_ours_and_logs_the_traceback(monkeypatch, caplog, tmp_path):
    import imgclf_app.sidebar

    def broken_sidebar():
        raise RuntimeError("the sidebar broke\nsecond line that stays in the log")

    monkeypatch.setattr(imgclf_app.sidebar, "sidebar_ui", broken_sidebar)
    with caplog.at_level(logging.ERROR, logger="imgclf"):
        app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception  # no Streamlit exception box (with or without traceback)
    assert [error.value for error in app.error] == [
        "Something went wrong on this page: RuntimeError: the sidebar broke. "
        "The full report is in the server's log; nothing was deleted. Reload the page to try again."
    ]
    logged = [record for record in caplog.records if record.name == "imgclf"]
    assert logged and logged[0].exc_info and "second line that stays in the log" in caplog.text
    assert "broken_sidebar" in caplog.text  # the traceback itself
