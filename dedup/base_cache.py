"""Decoded base elements, kept per process for the delta frames coded against them.

A delta frame decodes from the same elements of its base. Every member of a family
needs the base it shares, so the decoded base is kept, bounded in bytes, and found
by what it holds: a base object's digest (which fixes its raw bytes, whatever happens
to the catalog) and the dtype it is held in.

* **Views.** A base is held in the dtype its members' frames predict in: a BF16
  member of an FP32 base gets the base cast to BF16, once, rather than on every frame
  it decodes (the cast was 9% of the server's CPU streaming the BF16 fine-tune). A
  view is an anonymous mapping the size of the whole base in that dtype, so the bytes
  under any run of member frames are one contiguous slice: nothing is joined.
* **Units.** A view fills ``UNIT`` bytes at a time, as frames ask for them. Only
  filled units hold memory; the least recently used are given back to the kernel
  (``MADV_DONTNEED``) when the cache is over its bound. A unit is pinned while a
  decode reads it, so it is never given back under a reader.
* **Threads.** A unit missing is claimed by the first thread to want it and filled
  outside the lock; others wanting it wait. A thread fills its own claims before it
  waits for anyone else's, and bases form no cycle, so no two threads wait on each
  other.
"""
from __future__ import annotations

import mmap
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterator

from weightvault import codec

#: Bytes of a view per unit: one member frame's worth, so that the base under a frame
#: of a member in the view's dtype is exactly one unit.
UNIT = codec.FRAME_SIZE

_EMPTY, _FILLING, _READY = 0, 1, 2
#: madvise(MADV_POPULATE_WRITE) (Linux 5.14), which Python's mmap module does not name.
_MADV_POPULATE_WRITE = 23
_populate = True

#: ``fill(out, lo, hi)`` writes bytes [lo, hi) of a view into ``out``.
Fill = Callable[[memoryview, int, int], None]


class _View:
    """One base object's elements in one dtype."""

    def __init__(self, size: int) -> None:
        self.size = size
        # Private: a shared anonymous map is shmem, whose pages MADV_DONTNEED does not free and
        # whose faults cost more (shmem_fault was a third of the page-fault time).
        self.map = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.bytes = memoryview(self.map)
        units = -(-size // UNIT)
        self.state = bytearray(units)
        self.pins = [0] * units
        self.live = 0  # units not empty (filling or filled)
        self.pinned = 0  # sum of pins

    def unit_bytes(self, u: int) -> int:
        return min(UNIT, self.size - u * UNIT)

    def populate(self, lo: int, hi: int) -> None:
        """Map pages [lo, hi) in one call before a fill writes them: faulting 91 MiB in page by
        page cost 52 ms of CPU on this machine's VM, populating it 39-45 ms."""
        global _populate
        if _populate:
            try:
                self.map.madvise(_MADV_POPULATE_WRITE, lo, hi - lo)
            except OSError:  # a kernel before 5.14: pages fault in as they are written
                _populate = False


class BaseCache:
    """Views of base objects, held to ``capacity`` bytes of filled units (pinned units may
    take it over while they are read)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._cond = threading.Condition()
        self._views: dict[tuple, _View] = {}
        self._ready: OrderedDict[tuple, None] = OrderedDict()  # (key, unit) of filled units, least recent first
        self.held = 0

    @contextmanager
    def pinned(self, key: tuple, size: int, lo: int, hi: int, fill: Fill) -> Iterator[memoryview]:
        """Bytes [lo, hi) of the view ``key`` (``size`` bytes in all), filled by ``fill`` where
        missing, and kept in memory until the with-block ends."""
        units = range(lo // UNIT, -(-hi // UNIT)) if hi > lo else range(0)
        with self._cond:
            view = self._views.get(key)
            if view is None:  # a digest fixes the bytes, so a view's size never changes
                view = self._views[key] = _View(size)
            ready = True
            view.pinned += len(units)
            for u in units:
                view.pins[u] += 1
                if view.state[u] == _READY:
                    self._ready.move_to_end((key, u))
                else:
                    ready = False
        try:
            if not ready:
                self._make_ready(key, view, units, fill)
            yield view.bytes[lo:hi].toreadonly()
        finally:
            with self._cond:
                for u in units:
                    view.pins[u] -= 1
                view.pinned -= len(units)
                self._evict()

    def _make_ready(self, key: tuple, view: _View, units: range, fill: Fill) -> None:
        while True:
            with self._cond:
                mine = [u for u in units if view.state[u] == _EMPTY]
                for u in mine:
                    view.state[u] = _FILLING
                view.live += len(mine)
            for first, last in _runs(mine):
                lo, hi = first * UNIT, min((last + 1) * UNIT, view.size)
                try:
                    view.populate(lo, hi)
                    fill(view.bytes[lo:hi], lo, hi)
                except BaseException:
                    with self._cond:  # this run and the ones not filled yet go back to whoever wants them
                        for u in mine:
                            if view.state[u] == _FILLING:
                                view.state[u] = _EMPTY
                                view.live -= 1
                        self._cond.notify_all()
                    raise
                with self._cond:
                    for u in range(first, last + 1):
                        view.state[u] = _READY
                        self._ready[(key, u)] = None
                        self.held += view.unit_bytes(u)
                    self._cond.notify_all()
            with self._cond:
                while any(view.state[u] == _FILLING for u in units):
                    self._cond.wait()
                if all(view.state[u] == _READY for u in units):  # else another thread's fill failed: claim it
                    for u in units:
                        self._ready.move_to_end((key, u))
                    return

    def _evict(self) -> None:
        """Give back the least recently used unpinned units until the cache is within its bound."""
        if self.held <= self.capacity:
            return
        for key, u in list(self._ready):
            if self.held <= self.capacity:
                break
            view = self._views[key]
            if view.pins[u]:
                continue
            del self._ready[(key, u)]
            view.state[u] = _EMPTY
            view.live -= 1
            self.held -= view.unit_bytes(u)
            view.map.madvise(mmap.MADV_DONTNEED, u * UNIT, view.unit_bytes(u))
            if not view.live and not view.pinned:
                del self._views[key]


def _runs(units: list[int]) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of consecutive numbers in a sorted list."""
    i = 0
    while i < len(units):
        j = i
        while j + 1 < len(units) and units[j + 1] == units[j] + 1:
            j += 1
        yield units[i], units[j]
        i = j + 1
