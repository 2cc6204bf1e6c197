"""Container: the frames of one tensor back to back behind a 4-byte magic.

    container = b"WVC" + version(1) + frame_0 + frame_1 + ...

Frames are self-delimiting (their header holds the payload size), so the
container needs no index; a store that wants random access keeps its own
(offset, raw offset) list per frame, as store/ does.
"""
from __future__ import annotations

from collections.abc import Iterator

from . import _lib
from . import frames as _frames
from ._lib import HEADER_SIZE, check, ffi, lib
from .errors import CodecError
from .dtypes import dtype_code
from .frames import FRAME_SIZE

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


def _scan(body: memoryview) -> tuple[list[int], list[int], bool]:
    """(frame offsets, raw sizes, all frames coded in C) of the frames in ``body``."""
    room = len(body) // (FRAME_SIZE // 8) + 16
    while True:
        offsets = ffi.new("uint64_t[]", room)
        raw_sizes = ffi.new("uint32_t[]", room)
        native = ffi.new("uint32_t *")
        count = check(lib.wv_scan_frames(ffi.from_buffer(body), len(body), offsets, raw_sizes, room, native),
                      "scanning container")
        if count <= room:
            return list(offsets[0:count]), list(raw_sizes[0:count]), bool(native[0])
        room = count


def decode(data, out=None, *, base=None, base_dtype: str | None = None, threads: int = 1) -> memoryview:
    """Decode a container into ``out`` (or a new buffer); ``base`` is the WHOLE base tensor."""
    view = _frames._bytes_view(data)
    if bytes(view[:4]) != MAGIC:
        raise CodecError("not a weightvault container (bad magic)")
    body = view[4:]
    offsets, raw_sizes, native = _scan(body)
    total = sum(raw_sizes)
    target = _lib.new_output(total) if out is None else out
    out_view = _frames._bytes_view(target, writable=True)
    if len(out_view) != total:
        raise CodecError(f"out has {len(out_view)} bytes, container holds {total}")
    base_view = _frames._bytes_view(base) if base is not None else None
    raw_starts = [0]
    for size in raw_sizes:
        raw_starts.append(raw_starts[-1] + size)
    ends = offsets[1:] + [len(body)]

    if native:
        def run(first: int) -> None:
            last = min(first + _frames.BATCH_FRAMES, len(offsets))
            n = last - first
            start, stop = raw_starts[first], raw_starts[last]
            failed = ffi.new("uint64_t *")
            rc = lib.wv_decode_many(_lib.context().ctx, ffi.from_buffer(body), ffi.new("uint64_t[]", offsets[first:last]),
                                    n, ends[last - 1], ffi.from_buffer(out_view[start:stop]), stop - start, start,
                                    ffi.from_buffer(base_view) if base_view is not None else ffi.NULL,
                                    len(base_view) if base_view is not None else 0,
                                    dtype_code(base_dtype) if base_dtype is not None else 0, failed)
            check(rc, f"decoding frame {first + failed[0]}")
        units = range(0, len(offsets), _frames.BATCH_FRAMES)
    else:
        def run(i: int) -> None:
            frame = body[offsets[i]:ends[i]]
            info = _frames.frame_info(frame)
            b = None
            if info.needs_base:
                if base_view is None:
                    raise CodecError(f"frame {i} needs base=")
                b_off, b_len = _frames.base_range(raw_starts[i], info.raw_size, info.dtype,
                                                  base_dtype or info.base_dtype)
                b = base_view[b_off:b_off + b_len]
            _frames.decode_frame(frame, out_view[raw_starts[i]:raw_starts[i + 1]], base=b,
                                 base_dtype=base_dtype if b is not None else None)
        units = range(len(offsets))
    if threads <= 1 or len(units) <= 1:
        for u in units:
            run(u)
    else:
        list(_lib.pool(threads).map(run, units))
    return out_view
