"""Every module of imgclf_core imported in a fresh interpreter loads no Streamlit: the core never draws
(the static check of its imports: unit/test_layers.py)."""

from __future__ import annotations

import subprocess
import sys

from helpers.files import ROOT


def test_importing_all_of_the_core_loads_no_streamlit():
    script = (
        "import importlib, pkgutil, sys\n"
        "import imgclf_core\n"
        "modules = sorted(info.name for info in pkgutil.walk_packages(imgclf_core.__path__, 'imgclf_core.'))\n"
        "for name in modules: importlib.import_module(name)\n"
        "print('streamlit' in sys.modules, 'imgclf_core.data.pipeline' in modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
