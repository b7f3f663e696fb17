"""map_in_threads and map_in_processes (order, progress and errors across chunks) and the page-cache
hints' bounded run-ahead."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

from imgclf_core.parallel import (
    CHUNK_SIZE, PROCESS_CHUNK_SIZE, PageCacheHints, decode_thread_count, map_in_processes, map_in_threads,
)


@pytest.mark.parametrize("workers", [1, 3])
def test_results_keep_input_order_across_chunks(workers):
    items = list(range(CHUNK_SIZE * 3 + 5))
    calls = []
    results = list(map_in_threads(lambda number: number * number, items, workers, lambda d, t: calls.append((d, t))))
    assert results == [number * number for number in items]
    assert calls == [(CHUNK_SIZE, len(items)), (2 * CHUNK_SIZE, len(items)), (3 * CHUNK_SIZE, len(items)),
                     (len(items), len(items))]


def test_progress_is_complete_even_when_the_consumer_stops_at_the_last_item():
    calls = []
    items = list(range(10))
    for _item, _result in zip(items, map_in_threads(str, items, 2, lambda d, t: calls.append(d))):
        pass
    assert calls[-1] == 10


def test_an_error_in_a_worker_reaches_the_caller():
    def explode(number):
        if number == 70:
            raise ValueError("bad item 70")
        return number

    with pytest.raises(ValueError, match="bad item 70"):
        list(map_in_threads(explode, range(100), 2))


def test_tiny_images_decode_in_one_thread():
    assert decode_thread_count(tiny_images=True) == 1
    assert decode_thread_count(tiny_images=False) >= 1


def test_page_cache_hints_run_at_most_a_window_ahead_of_the_pass_and_skip_missing_files(tmp_path, monkeypatch):
    paths = []
    for number in range(100):
        path = tmp_path / f"{number}.png"
        path.write_bytes(b"x")
        paths.append(str(path))
    paths[5] = str(tmp_path / "gone.png")  # removed since the walk: skipped
    hinted = []
    monkeypatch.setattr(os, "posix_fadvise", lambda descriptor, offset, length, advice: hinted.append(advice))

    def hinted_reaches(count: int) -> int:
        deadline = time.monotonic() + 5
        while len(hinted) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # and goes no further
        return len(hinted)

    hints = PageCacheHints(paths, window=10)
    try:
        assert hinted_reaches(10) == 10  # positions 0-10, one of them missing
        hints.passed(50)
        assert hinted_reaches(60) == 60
        hints.passed(100)
        assert hinted_reaches(99) == 99
        assert set(hinted) == {os.POSIX_FADV_WILLNEED}
    finally:
        hints.stop()


def test_processes_keep_input_order_and_report_progress_per_chunk():
    items = [float(number) for number in range(PROCESS_CHUNK_SIZE * 2 + 7)]
    calls = []
    results = list(map_in_processes(math.sqrt, items, 2, lambda done, total: calls.append((done, total))))
    assert results == [math.sqrt(item) for item in items]
    assert calls == [(PROCESS_CHUNK_SIZE, len(items)), (2 * PROCESS_CHUNK_SIZE, len(items)), (len(items), len(items))]


def test_an_error_in_a_process_reaches_the_caller():
    with pytest.raises(ValueError, match="math domain error"):
        list(map_in_processes(math.sqrt, [4.0, -1.0], 2))


# A script without a main guard, with a second thread running: the processes must be spawned, and each
# spawned child re-runs the script and dies; the map goes on in one thread.
UNGUARDED = """
import math, threading
from imgclf_core.parallel import map_in_processes
threading.Thread(target=lambda: threading.Event().wait(5), daemon=True).start()
print(sum(map_in_processes(math.sqrt, [float(n) for n in range(3000)], 2)) == sum(math.sqrt(n) for n in range(3000)))
"""


def test_processes_that_cannot_start_fall_back_to_a_thread(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "True"
