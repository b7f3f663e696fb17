"""TensorFlow's start-up chatter kept off the terminal, as far as TF_CPP_MIN_LOG_LEVEL says (3 unless set).

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
SEVERITIES = "IWE"  # TensorFlow's C++ lines start with I, W or E; the log level filters those below it
LOG_LINE = re.compile(r"^([IWE])\d{4} [\d:. ]+\d+ \S+\.(cc|h):\d+\] ")
# Printed at import, before TensorFlow reads the log level: the level never filters them itself.
PRE_INIT_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
INSTRUCTIONS_CONTINUATION = "To enable the following instructions: "  # the second line of an I line


def import_tensorflow_quietly() -> None:
    """Import TensorFlow now, keeping off stderr the start-up lines below the log level.

    The level is the user's TF_CPP_MIN_LOG_LEVEL when set (0 shows everything), else 3. TensorFlow
    prints some lines at import before it reads the level; those are filtered here by the same rule.
    """
    if "tensorflow" in sys.modules:
        return
    level = os.environ.setdefault(LOG_LEVEL_VARIABLE, QUIET_LOG_LEVEL)
    minimum = int(level) if level.isdigit() else 0
    if minimum == 0:
        import tensorflow  # noqa: F401
        return
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
            kept = below_level_dropped(captured.read().decode("utf-8", "replace"), minimum)
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def below_level_dropped(text: str, minimum: int) -> str:
    """`text` less TensorFlow's C++ log lines whose severity is below `minimum` (1: infos, 2: warnings too,
    3: errors too) and, from 1 up, the notice printed before logging starts; other lines are kept."""
    kept, dropping_continuation = [], False
    for line in text.splitlines(keepends=True):
        match = LOG_LINE.match(line)
        if match:
            dropping_continuation = SEVERITIES.index(match.group(1)) < minimum
            if not dropping_continuation:
                kept.append(line)
            continue
        if line.startswith(PRE_INIT_NOTICE) or (dropping_continuation and line.startswith(INSTRUCTIONS_CONTINUATION)):
            continue
        dropping_continuation = False
        kept.append(line)
    return "".join(kept)
