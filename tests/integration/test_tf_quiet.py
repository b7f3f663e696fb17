"""`imgclf` commands keep TensorFlow's start-up chatter off the terminal unless the user asks for it: a fresh
interpreter per log level (the line filter itself: unit/test_tf_log_filter.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imgclf_core.tf_quiet import LOG_LEVEL_VARIABLE

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


def test_tensorflow_says_nothing_by_default_and_what_the_users_log_level_lets_through():
    assert stderr_of(IMPORT_AND_COMPUTE) == ""
    # level 2 (infos and warnings filtered): the lines TensorFlow prints before it reads the level go too
    # (its own filter lets errors through at this level: "failed call to cuInit" may still show)
    at_two = stderr_of(IMPORT_AND_COMPUTE, **{LOG_LEVEL_VARIABLE: "2"})
    assert "absl::InitializeLog" not in at_two and "I0000" not in at_two, at_two
    chatty = stderr_of(IMPORT_AND_COMPUTE, **{LOG_LEVEL_VARIABLE: "0"})
    assert "cuda" in chatty.lower() or "oneDNN" in chatty  # the user's choice wins: the lines are there
