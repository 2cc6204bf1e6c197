"""The process-wide cache of decoded bases (dedup/base_cache.py): each unit filled once
whatever the threads, bounded in bytes, never given back while pinned, and a failed fill
left for the next reader to retry."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from weightvault.dedup.base_cache import UNIT, BaseCache

SIZE = 10 * UNIT + 123  # a short last unit


_BYTES = ((np.arange(SIZE, dtype=np.uint64) * 7 + 3) & 0xFF).astype(np.uint8).tobytes()


def _pattern(lo: int, hi: int) -> bytes:
    return _BYTES[lo:hi]


class Filler:
    """Writes the view's known bytes and counts the units it filled."""

    def __init__(self, fail_once: bool = False) -> None:
        self.units: list[int] = []
        self.fail_once = fail_once
        self.lock = threading.Lock()

    def __call__(self, out: memoryview, lo: int, hi: int) -> None:
        if self.fail_once:
            self.fail_once = False
            raise OSError("pack unreadable")
        out[:] = _pattern(lo, hi)
        with self.lock:
            self.units += range(lo // UNIT, -(-hi // UNIT))


def test_ranges_read_back_and_each_unit_fills_once_across_threads():
    cache, fill = BaseCache(64 * UNIT), Filler()
    ranges = [(i * 13001 % SIZE, min(i * 13001 % SIZE + 3 * UNIT, SIZE)) for i in range(200)] + [(SIZE - 5, SIZE)]

    def read(r):
        with cache.pinned(("b", "F32"), SIZE, *r, fill) as view:
            assert bytes(view) == _pattern(*r)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(read, ranges))
    assert sorted(fill.units) == sorted(set(fill.units))
    assert cache.held == SIZE


def test_bounded_and_pinned_units_are_kept():
    cache, fill = BaseCache(2 * UNIT), Filler()
    with cache.pinned(("b", "F32"), SIZE, 0, UNIT, fill) as first:
        for u in range(1, 10):  # every other unit comes and goes while the first stays pinned
            with cache.pinned(("b", "F32"), SIZE, u * UNIT, (u + 1) * UNIT, fill) as view:
                assert bytes(view) == _pattern(u * UNIT, (u + 1) * UNIT)
        assert bytes(first) == _pattern(0, UNIT)
    assert cache.held <= 2 * UNIT
    with cache.pinned(("b", "F32"), SIZE, 0, SIZE, fill) as view:  # evicted units fill again
        assert bytes(view) == _pattern(0, SIZE)


def test_a_failed_fill_is_retried_by_the_next_reader():
    cache, fill = BaseCache(64 * UNIT), Filler(fail_once=True)
    with pytest.raises(OSError):
        with cache.pinned(("b", "F32"), SIZE, 0, 3 * UNIT, fill):
            pass
    assert cache.held == 0
    with cache.pinned(("b", "F32"), SIZE, UNIT, 2 * UNIT + 9, fill) as view:
        assert bytes(view) == _pattern(UNIT, 2 * UNIT + 9)


def test_views_of_one_base_in_two_dtypes_are_apart():
    cache = BaseCache(64 * UNIT)
    with cache.pinned(("b", "F32"), 2 * UNIT, 0, 2 * UNIT, Filler()) as f32, \
            cache.pinned(("b", "BF16"), UNIT, 0, UNIT, lambda out, lo, hi: out.__setitem__(slice(None), bytes(hi - lo))):
        assert bytes(f32) == _pattern(0, 2 * UNIT)
    assert cache.held == 3 * UNIT



def test_a_view_given_back_whole_is_dropped():
    cache = BaseCache(UNIT)
    with cache.pinned(("a", "F32"), SIZE, 0, SIZE, Filler()):
        pass
    with cache.pinned(("b", "F32"), UNIT, 0, UNIT, Filler()):
        pass
    assert list(cache._views) == [("b", "F32")] and cache.held == UNIT
