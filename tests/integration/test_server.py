"""`streamlit run app.py` without flags, as a user starts it: the server listens on 127.0.0.1 only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers.files import ROOT
from streamlit_browser import free_port, wait_for_server


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


def test_streamlit_run_without_flags_binds_to_localhost_only():
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
