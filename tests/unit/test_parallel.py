"""map_in_threads and map_after_reading: order, progress and errors across chunks, and a bounded read-ahead."""

from __future__ import annotations

import pytest

import threading

from imgclf_core.parallel import (
    CHUNK_SIZE, READ_AHEAD_CHUNKS, decode_thread_count, map_after_reading, map_in_threads,
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


def test_reads_run_ahead_on_other_threads_in_order_and_never_too_far():
    items = list(range(CHUNK_SIZE * (READ_AHEAD_CHUNKS + 10) + 3))
    read_threads, consumer = set(), threading.get_ident()
    furthest_read = []  # after each processed item: how far the reads had got

    def read(number):
        read_threads.add(threading.get_ident())
        furthest_read.append(number)
        return number * 2

    def process(number, content):
        assert threading.get_ident() == consumer
        assert content == number * 2
        return max(furthest_read) - number

    calls = []
    ahead = list(map_after_reading(read, process, items, lambda d, t: calls.append(d)))
    assert len(ahead) == len(items) and calls[-1] == len(items)
    assert consumer not in read_threads
    assert max(ahead) < (READ_AHEAD_CHUNKS + 1) * CHUNK_SIZE  # the read-ahead is bounded


def test_a_failed_read_reaches_the_caller():
    def read(number):
        if number == 70:
            raise OSError("unreadable 70")
        return number

    with pytest.raises(OSError, match="unreadable 70"):
        list(map_after_reading(read, lambda number, content: content, list(range(200))))
