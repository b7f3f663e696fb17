"""`imgclf` commands keep TensorFlow's start-up chatter off the terminal unless the user asks for it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imgclf_core.tf_quiet import LOG_LEVEL_VARIABLE, without_start_up_noise

pytest.importorskip("tensorflow")

IMPORT_AND_COMPUTE = (
    "from imgclf_core.tf_quiet import import_tensorflow_quietly; import_tensorflow_quietly(); "
    "import tensorflow as tf; print(int(tf.constant(1) + 1))"
)


def stderr_of(code: str, **environment: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != LOG_LEVEL_VARIABLE}
    completed = subprocess.run([sys.executable, "-c", code], env={**env, **environment},
                               capture_output=True, text=True, timeout=120, check=True)
    assert completed.stdout.strip() == "2"
    return completed.stderr


@pytest.mark.slow
def test_tensorflow_says_nothing_by_default_and_everything_when_the_user_sets_the_log_level():
    assert stderr_of(IMPORT_AND_COMPUTE) == ""
    chatty = stderr_of(IMPORT_AND_COMPUTE, **{LOG_LEVEL_VARIABLE: "0"})
    assert "cuda" in chatty.lower() or "oneDNN" in chatty  # the user's choice wins: the lines are there


def test_only_tensorflows_start_up_lines_are_dropped():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796015833.332805    6631 port.cc:153] oneDNN custom operations are on.\n"
        "E0000 00:00:1796015836.901021    6631 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
        "Traceback (most recent call last): something of ours\n"
        "E0000 00:00:1796015836.901021    6631 some_kernel.cc:52] a real kernel error\n"
    )
    assert without_start_up_noise(text) == (
        "Traceback (most recent call last): something of ours\n"
        "E0000 00:00:1796015836.901021    6631 some_kernel.cc:52] a real kernel error\n"
    )
