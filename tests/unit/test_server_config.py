"""Server defaults (.streamlit/config.toml): this machine only, XSRF and CORS on, no tracebacks, the upload limit."""

from __future__ import annotations

import tomllib

from helpers.files import ROOT

from imgclf_core.data.images import DEFAULT_MAX_BYTES

CONFIG = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))


def test_the_server_listens_on_this_machine_only_with_xsrf_and_cors_on():
    assert CONFIG["server"]["address"] == "127.0.0.1"
    assert CONFIG["server"]["enableXsrfProtection"] is True
    assert CONFIG["server"]["enableCORS"] is True


def test_visitors_get_no_tracebacks():
    assert CONFIG["client"]["showErrorDetails"] == "none"


def test_the_upload_limit_is_the_decoders_limit():
    assert CONFIG["server"]["maxUploadSize"] * 1024 * 1024 == DEFAULT_MAX_BYTES
