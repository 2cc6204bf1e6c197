"""File bytes out of the compressed store: single byte ranges, decoded frame by frame.

The body comes from ``Reader.file_futures``, which decodes only the frames a range
touches, in chunks of a few MiB on a small pool of threads a few chunks ahead of the
socket, so memory stays flat whatever the file size. HEAD answers from the catalog alone. No transport compression
is ever applied: range offsets and resume points are offsets of the raw bytes.
"""
from __future__ import annotations

import asyncio
import re
from concurrent.futures import Future
from typing import AsyncIterator, Iterator

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from weightvault.dedup.reader import Reader
from weightvault.errors import RangeNotSatisfiable
from weightvault.store import Vault
from weightvault.store.models import File

from .conditional import precondition_status, range_applies

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
#: Digits past which a byte position is beyond any file (10^18 B = 1 EB), parsed no further.
_MAX_DIGITS = 18


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single ``bytes=`` range; None for no Range or one this server ignores.

    Multi-range requests are answered with the whole file (allowed by RFC 9110);
    hub clients never send them.
    """
    if not header:
        return None
    m = _RANGE.match(header)
    if m is None:
        return None
    first, last = (g.lstrip("0") or ("0" if g else "") for g in m.groups())
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        n = size if len(last) > _MAX_DIGITS else int(last)
        if n == 0:
            raise RangeNotSatisfiable(header=header)
        return max(size - n, 0), size
    if len(first) > _MAX_DIGITS:
        raise RangeNotSatisfiable(header=header)
    start = int(first)
    end = size if last == "" or len(last) > _MAX_DIGITS else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise RangeNotSatisfiable(header=header)
    return start, end


def file_response(request: Request, vault: Vault, file: File, headers: dict[str, str]) -> Response:
    """200 or 206 for ``file`` (HEAD without a body), with ``headers`` added (ETag, X-Repo-Commit, ...)."""
    size = file.size
    base = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    etag = headers.get("ETag", "")
    blocked = precondition_status(request.headers, etag, request.method)
    if blocked is not None:
        return Response(status_code=blocked, headers={k: v for k, v in base.items() if k != "Content-Type"})
    try:
        rng = parse_range(request.headers.get("range"), size) if range_applies(request.headers, etag) else None
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**base, "Content-Range": f"bytes */{size}"})
    start, end = rng if rng else (0, size)
    status = 206 if rng else 200
    if rng:
        base["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    base["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=base)
    futures = _body(vault, file, start, end)
    # The first chunk is decoded before any header is sent, so a missing pack or a corrupt frame
    # becomes an error status rather than a 200 that breaks off after the headers.
    try:
        first = next(futures, None)
        first = b"" if first is None else first.result()
    except BaseException:
        futures.close()
        raise
    return StreamingResponse(awaited(first, futures), status_code=status, headers=base)


def _body(vault: Vault, file: File, start: int, end: int) -> Iterator[Future]:
    reader = Reader(vault)
    if start == 0 and end == file.size:
        return reader.verified_file_futures(file, once=True)
    return reader.file_futures(file.id, start, end)


async def awaited(first, futures: Iterator[Future]) -> AsyncIterator:
    """``first``, then each chunk as the reader's pool finishes it: the event loop awaits the
    decode futures itself, so no thread stands between the pool and the socket.

    A thread that waited for the chunks and handed them over through a queue cost the server
    N ms of CPU per MB more. Asking ``futures`` for the next chunk runs no catalog query (the
    reader plans the file before the first chunk) and no decode, only the hand-over to the
    pool; when the client goes away, the chunks not yet started are dropped.
    """
    try:
        yield first
        for future in futures:
            yield future.result() if future.done() else await asyncio.wrap_future(future)
    finally:
        futures.close()
