"""Container: the frames of one tensor back to back behind a 4-byte magic.

    container = b"WVC" + version(1) + frame_0 + frame_1 + ...

Frames are self-delimiting (their header holds the payload size), so the
container needs no index; a store that wants random access keeps its own
(offset, raw offset) list per frame, as store/ does.
"""
from __future__ import annotations

from collections.abc import Iterator

from . import frames as _frames
from ._lib import HEADER_SIZE
from .dtypes import itemsize
from .errors import CodecError

MAGIC = b"WVC\x01"


def encode(data, dtype: str | None = None, **kw) -> bytes:
    """Code ``data`` into a container; ``kw`` as for :func:`encode_frames`."""
    return b"".join([MAGIC, *_frames.encode_frames(data, dtype, **kw)])


def iter_frames(container) -> Iterator[memoryview]:
    """Yield each frame of ``container`` as a memoryview (headers validated, payloads not)."""
    view = _frames._bytes_view(container)
    if bytes(view[:4]) != MAGIC:
        raise CodecError("not a weightvault container (bad magic)")
    pos = 4
    while pos < len(view):
        if len(view) - pos < HEADER_SIZE:
            raise CodecError(f"truncated frame header at byte {pos}")
        size = _frames.frame_info(view[pos:]).frame_size
        yield view[pos:pos + size]
        pos += size


def decode(data, out=None, *, base=None, base_dtype: str | None = None, threads: int = 1) -> memoryview:
    """Decode a container into ``out`` (or a new buffer); ``base`` is the WHOLE base tensor."""
    parts = [(f, _frames.frame_info(f)) for f in iter_frames(data)]
    total = sum(info.raw_size for _, info in parts)
    target = bytearray(total) if out is None else out
    out_view = _frames._bytes_view(target, writable=True)
    if len(out_view) != total:
        raise CodecError(f"out has {len(out_view)} bytes, container holds {total}")
    base_view = _frames._bytes_view(base) if base is not None else None
    jobs = []
    offset = 0
    for frame, info in parts:
        b = None
        if info.needs_base:
            if base_view is None:
                raise CodecError(f"frame at raw offset {offset} needs base=")
            if itemsize(info.dtype) and offset % itemsize(info.dtype):
                raise CodecError("frames do not cover whole elements")
            b_off, b_len = _frames.base_range(offset, info.raw_size, info.dtype, info.base_dtype)
            b = base_view[b_off:b_off + b_len]
        jobs.append((frame, out_view[offset:offset + info.raw_size], b))
        offset += info.raw_size

    def run(job) -> None:
        frame, dst, b = job
        _frames.decode_frame(frame, dst, base=b, base_dtype=base_dtype if b is not None else None)

    if threads <= 1 or len(jobs) <= 1:
        for job in jobs:
            run(job)
    else:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(run, jobs))
    return out_view
