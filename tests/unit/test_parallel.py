"""map_in_threads: order, progress and errors across chunks."""

from __future__ import annotations

import pytest

from imgclf_core.parallel import CHUNK_SIZE, decode_thread_count, map_in_threads


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
