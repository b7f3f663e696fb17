"""TensorFlow's start-up chatter kept off the terminal, unless the user set TF_CPP_MIN_LOG_LEVEL.

Importing TensorFlow 2.21 on a machine without a GPU prints, from C++ and before any Python code can
configure logging, lines such as "failed call to cuInit: CUDA error", "oneDNN custom operations are
on" and "All log messages before absl::InitializeLog() is called are written to STDERR". None of
them is an error of ours, and on every `imgclf train` they drown what the command itself says.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LOG_LEVEL = "3"  # errors filtered too: the cuInit "error" is how TensorFlow says there is no GPU
# What TensorFlow writes to stderr at import on a CPU-only machine; anything else is shown as written.
START_UP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard|cuda_platform|cuda_executor|cuda_dnn|cuda_fft"
    r"|cuda_blas|gpu_device|plugin_registry)\.cc:\d+\] .*"
    r"|To enable the following instructions: .*)$"
)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow now, keeping its start-up lines off stderr (the user's TF_CPP_MIN_LOG_LEVEL wins)."""
    if "tensorflow" in sys.modules:
        return
    if LOG_LEVEL_VARIABLE in os.environ:  # the user chose what to see
        import tensorflow  # noqa: F401
        return
    os.environ[LOG_LEVEL_VARIABLE] = QUIET_LOG_LEVEL
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = without_start_up_noise(captured.read().decode("utf-8", "replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def without_start_up_noise(text: str) -> str:
    """`text` less TensorFlow's known start-up lines."""
    return "".join(line for line in text.splitlines(keepends=True) if not START_UP_NOISE.match(line.rstrip("\n")))
