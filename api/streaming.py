"""File bytes out of the compressed store: single byte ranges, decoded frame by frame.

The body is ``Reader.iter_file``, which decodes one frame (a few hundred KiB)
at a time and only the frames a range touches, so memory stays flat whatever
the file size. HEAD answers from the catalog alone. No transport compression
is ever applied: range offsets and resume points are offsets of the raw bytes.
"""
from __future__ import annotations

import re
from typing import Iterator

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from weightvault.dedup.reader import Reader
from weightvault.store import Vault
from weightvault.store.models import File

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


class Unsatisfiable(ValueError):
    """A Range that selects no byte of the file."""


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
    first, last = m.groups()
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise Unsatisfiable(header)
        return max(size - n, 0), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise Unsatisfiable(header)
    return start, end


def file_response(request: Request, vault: Vault, file: File, headers: dict[str, str]) -> Response:
    """200 or 206 for ``file`` (HEAD without a body), with ``headers`` added (ETag, X-Repo-Commit, ...)."""
    size = file.size
    base = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    try:
        rng = parse_range(request.headers.get("range"), size)
    except Unsatisfiable:
        return Response(status_code=416, headers={**base, "Content-Range": f"bytes */{size}"})
    start, end = rng if rng else (0, size)
    status = 206 if rng else 200
    if rng:
        base["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    base["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=base)
    return StreamingResponse(_body(vault, file, start, end), status_code=status, headers=base)


def _body(vault: Vault, file: File, start: int, end: int) -> Iterator[bytes]:
    # A plain iterator: Starlette pulls it in a worker thread, one frame per step,
    # so decoding never blocks the event loop and nothing is read ahead.
    reader = Reader(vault)
    if start == 0 and end == file.size:
        yield from reader.verified_file(file)
    else:
        yield from reader.iter_file(file.id, start, end)
