"""Driving the app's pages under Streamlit's AppTest."""

from __future__ import annotations

import io
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from helpers.files import ROOT

APP = str(ROOT / "app.py")
TIMEOUT = 120


def open_page(page: str, data_dir: Path) -> AppTest:
    """A fresh session on `page` (e.g. "app_pages/train.py") with `data_dir` typed into the sidebar."""
    from imgclf_app.session_keys import DATASET_DIR_BOX

    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    app.sidebar.text_input(key=DATASET_DIR_BOX).set_value(str(data_dir)).run()
    app.switch_page(page).run()
    assert not app.exception, app.exception
    return app


def metrics(app: AppTest) -> dict[str, str]:
    """Each st.metric on the page: label -> value as shown."""
    return {metric.label: metric.value for metric in app.metric}


def chart_rows(app: AppTest) -> list[int]:
    """Rows of data behind each Vega-Lite chart on the page."""
    import pyarrow as pa

    counts = []
    for element in app.get("vega_lite_chart"):
        chart = element.proto
        tables = [pa.ipc.open_stream(io.BytesIO(dataset.data.data)).read_all() for dataset in chart.datasets]
        counts.append(sum(table.num_rows for table in tables))
    return counts


def wait_until(app: AppTest, condition, what: str, timeout_s: float = 180.0) -> None:
    """Rerun the page (as the live fragment does) until `condition(app)` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.run()
        assert not app.exception, app.exception
        if condition(app):
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; metrics {metrics(app)}")
