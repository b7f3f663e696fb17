"""`imgclf` commands keep TensorFlow's start-up chatter off the terminal unless the user asks for it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imgclf_core.tf_quiet import LOG_LEVEL_VARIABLE, below_level_dropped

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
def test_tensorflow_says_nothing_by_default_and_what_the_users_log_level_lets_through():
    assert stderr_of(IMPORT_AND_COMPUTE) == ""
    # level 2 (infos and warnings filtered): the lines TensorFlow prints before it reads the level go too
    # (its own filter lets errors through at this level: "failed call to cuInit" may still show)
    at_two = stderr_of(IMPORT_AND_COMPUTE, **{LOG_LEVEL_VARIABLE: "2"})
    assert "absl::InitializeLog" not in at_two and "I0000" not in at_two, at_two
    chatty = stderr_of(IMPORT_AND_COMPUTE, **{LOG_LEVEL_VARIABLE: "0"})
    assert "cuda" in chatty.lower() or "oneDNN" in chatty  # the user's choice wins: the lines are there


TEXT = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796015833.332805    6631 port.cc:153] oneDNN custom operations are on.\n"
    "I0000 00:00:1796015833.427161    6631 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.\n"
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.\n"
    "W0000 00:00:1796015836.901021    6631 some_op.cc:52] a warning\n"
    "E0000 00:00:1796015836.901021    6631 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
    "Traceback (most recent call last): something of ours\n"
)


def test_lines_below_the_log_level_are_dropped_and_ours_are_kept():
    assert below_level_dropped(TEXT, 3) == "Traceback (most recent call last): something of ours\n"
    assert below_level_dropped(TEXT, 2) == (
        "E0000 00:00:1796015836.901021    6631 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
        "Traceback (most recent call last): something of ours\n"
    )
    kept = below_level_dropped(TEXT, 1)
    assert "a warning" in kept and "oneDNN" not in kept and "To enable" not in kept and "absl" not in kept
