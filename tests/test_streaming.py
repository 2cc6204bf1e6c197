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


def test_a_body_of_one_chunk_is_checked_before_its_headers(vault, tmp_path):
    """A file or Range that fits the reader's first chunk is answered in one piece: whole files are
    checked against their sha256 before the status goes out, so damage is an error status, not a
    200 with wrong bytes."""
    from fastapi.testclient import TestClient
    from sqlalchemy import update

    from helpers import make_repo
    from weightvault.api.app import create_app
    from weightvault.api.settings import ServerSettings
    from weightvault.dedup.ingest import ingest_folder
    from weightvault.store.models import Segment

    config = b'{"model_type": "tiny", "hidden_size": 384}'
    ingest_folder(vault, make_repo(tmp_path / "r", {"config.json": config}), "org/r")
    client = TestClient(create_app(vault, ServerSettings(anonymous_reads=True)))
    url = "/org/r/resolve/main/config.json"
    r = client.get(url)
    assert (r.status_code, r.content, r.headers["content-length"]) == (200, config, str(len(config)))
    r = client.get(url, headers={"Range": "bytes=2-12"})
    assert (r.status_code, r.content, r.headers["content-range"]) == (206, config[2:13], f"bytes 2-12/{len(config)}")
    ingest_folder(vault, make_repo(tmp_path / "d", {"config.json": config + b" "}), "org/d")
    with vault.catalog.write_session() as s:  # its stored bytes damaged before any read of them
        s.execute(update(Segment).where(Segment.inline == config + b" ").values(inline=config + b"!"))
    r = client.get("/org/d/resolve/main/config.json")
    assert r.status_code >= 500 and r.headers.get("x-error-code") and b"!" not in r.content
