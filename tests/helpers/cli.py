"""`imgclf` as a user runs it: a fresh Python process (each pays TensorFlow's import where the command needs it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_imgclf(*arguments: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m imgclf_core.cli *arguments` with this test's environment; text stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "imgclf_core.cli", *arguments],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)
