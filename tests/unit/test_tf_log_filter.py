"""The filter behind `imgclf`'s quiet TensorFlow start-up: lines below the log level go, ours stay."""

from __future__ import annotations

from imgclf_core.tf_quiet import below_level_dropped

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
