"""The hand-over from a decoding thread to the event loop that sends a download."""
from __future__ import annotations

import asyncio
import time

import pytest

from weightvault.api.streaming import pipelined


def _collect(agen, limit: int | None = None) -> list:
    async def run():
        got = []
        async for item in agen:
            got.append(item)
            if limit is not None and len(got) == limit:
                await agen.aclose()
                break
        return got
    return asyncio.run(run())


def test_chunks_arrive_in_order_and_all_of_them():
    assert _collect(pipelined(iter(range(50)), depth=2)) == list(range(50))


def test_an_error_in_the_producer_reaches_the_consumer():
    def chunks():
        yield b"a"
        raise OSError("pack gone")
    with pytest.raises(OSError, match="pack gone"):
        _collect(pipelined(chunks()))


def test_a_consumer_that_stops_stops_the_producer_within_the_queue_depth():
    made = []

    def chunks():
        for i in range(1000):
            made.append(i)
            yield i
    assert _collect(pipelined(chunks(), depth=2), limit=3) == [0, 1, 2]
    time.sleep(0.2)  # a producer that did not stop makes all 1000 in far less
    assert len(made) <= 3 + 2 + 1  # the three taken, two queued, one waiting for room
