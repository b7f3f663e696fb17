"""Unexpected errors: the person sees one line of our own, the server log gets the whole traceback."""

from __future__ import annotations

import logging
import sys

import streamlit as st

LOGGER_NAME = "imgclf"


def app_logger() -> logging.Logger:
    """The app's logger, writing to the server's stderr (Streamlit leaves other loggers without a handler)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return logger


def run_page_reporting_errors(page: "st.navigation") -> None:
    """Run the chosen page; a bug in it becomes a one-line st.error here and a logged traceback there."""
    try:
        page.run()
    except Exception as error:  # st.rerun / st.stop are BaseExceptions and pass through untouched
        app_logger().exception("unexpected error on the %s page", getattr(page, "title", "?"))
        first_line = (str(error).splitlines() or [""])[0][:300]
        st.error(
            f"Something went wrong on this page: {type(error).__name__}: {first_line}. "
            "The full report is in the server's log; nothing was deleted. Reload the page to try again."
        )
