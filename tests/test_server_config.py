"""Server defaults (.streamlit/config.toml) and what a person sees when a page has a bug."""

from __future__ import annotations

import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgclf_core.data.images import DEFAULT_MAX_BYTES

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))


def test_the_server_listens_on_this_machine_only_with_xsrf_and_cors_on():
    assert CONFIG["server"]["address"] == "127.0.0.1"
    assert CONFIG["server"]["enableXsrfProtection"] is True
    assert CONFIG["server"]["enableCORS"] is True


def test_visitors_get_no_tracebacks():
    assert CONFIG["client"]["showErrorDetails"] == "none"


def test_the_upload_limit_is_the_decoders_limit():
    assert CONFIG["server"]["maxUploadSize"] * 1024 * 1024 == DEFAULT_MAX_BYTES


def listening_addresses(port: int) -> set[str]:
    """The local IPv4/IPv6 addresses with a socket listening on `port` (from /proc/net/tcp*)."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                addresses.add(address)
    return addresses


@pytest.mark.slow
def test_streamlit_run_without_flags_binds_to_localhost_only():
    sys.path.insert(0, str(ROOT / "scripts"))
    from streamlit_browser import free_port, wait_for_server

    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read listening sockets from")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_server(f"http://127.0.0.1:{port}/")
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and no 0.0.0.0 or :: socket
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_bug_in_a_page_shows_one_line_of_ours_and_logs_the_traceback(monkeypatch, caplog, tmp_path):
    import imgclf_app.dataset_state

    def broken_sidebar():
        raise RuntimeError("the sidebar broke\nsecond line that stays in the log")

    monkeypatch.setattr(imgclf_app.dataset_state, "sidebar_ui", broken_sidebar)
    with caplog.at_level(logging.ERROR, logger="imgclf"):
        app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not app.exception  # no Streamlit exception box (with or without traceback)
    assert [error.value for error in app.error] == [
        "Something went wrong on this page: RuntimeError: the sidebar broke. "
        "The full report is in the server's log; nothing was deleted. Reload the page to try again."
    ]
    logged = [record for record in caplog.records if record.name == "imgclf"]
    assert logged and logged[0].exc_info and "second line that stays in the log" in caplog.text
    assert "broken_sidebar" in caplog.text  # the traceback itself
