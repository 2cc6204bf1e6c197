"""Frames: a tensor's bytes cut into FRAME_SIZE pieces, each coded into one
self-contained frame (32-byte header + payload; docs/FORMAT.md "Frame").

Every frame carries its codec, dtype, sizes and two CRC32Cs (payload, checked
before decoding; raw bytes, checked after), so a Range read decodes only the
frames it touches and any frame can be verified alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import _lib
from ._lib import HEADER_SIZE, check, ffi, lib
from .dtypes import FLOAT_DTYPES, canonical, dtype_code, dtype_name, itemsize
from .errors import CodecError, CodecMisuse
from .registry import CODECS, CodecImpl, NativeCodec

# 256 KiB: large enough that per-frame costs (tables, 32 rANS states, header) stay
# under 0.2% and small enough that a Range read decodes little extra; a multiple of
# every element size.  Decoders accept frames up to 16 MiB (WV_MAX_RAW).
FRAME_SIZE: int = 262144

_FLAG_NEEDS_BASE = 0x01


@dataclass(frozen=True)
class FrameInfo:
    """What a frame header says."""

    codec: str          # registry name of the codec that coded this frame
    dtype: str | None
    raw_size: int       # original bytes in this frame
    frame_size: int     # total bytes of this frame, header included
    needs_base: bool    # True if decode_frame requires base=
    base_dtype: str | None = None  # dtype of the base bytes it needs (None unless needs_base)


def _bytes_view(data, writable: bool = False) -> memoryview:
    view = memoryview(data)
    if not view.c_contiguous:
        raise CodecError("buffer is not contiguous")
    view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    if writable and view.readonly:
        raise CodecError("out is not writable")
    return view


def _parse(frame: memoryview):
    header = ffi.new("wv_frame_header *")
    size = check(lib.wv_frame_parse(ffi.from_buffer(frame), len(frame), header), "frame header")
    return header, size


def frame_info(frame) -> FrameInfo:
    """Parse and validate a frame header (not the payload); CodecError on garbage."""
    view = _bytes_view(frame)
    header, size = _parse(view)
    needs_base = bool(header.flags & _FLAG_NEEDS_BASE)
    return FrameInfo(codec=CODECS.name(header.codec), dtype=dtype_name(header.dtype),
                     raw_size=header.raw_size, frame_size=size, needs_base=needs_base,
                     base_dtype=dtype_name(header.base_dtype) if needs_base else None)


def base_range(raw_offset: int, raw_size: int, dtype: str | None,
               base_dtype: str | None) -> tuple[int, int]:
    """(offset, length) in the base tensor's bytes covering member bytes
    [raw_offset, raw_offset + raw_size): same elements, base element size."""
    k, bk = itemsize(dtype), itemsize(base_dtype)
    if raw_offset % k or raw_size % k:
        raise CodecMisuse(f"range {raw_offset}+{raw_size} does not cover whole {dtype} elements")
    return raw_offset // k * bk, raw_size // k * bk


def crc32c(data, crc: int = 0) -> int:
    """CRC32C of ``data`` (any contiguous buffer), continuing from ``crc``: the checksum frames carry
    (hardware CRC, folded with carry-less multiplies where the CPU has them: native/src/crc32c.c);
    releases the GIL."""
    view = _bytes_view(data)
    return lib.wv_crc32c(crc, ffi.from_buffer(view), len(view))


def cast(base, base_dtype: str, dtype: str, out) -> None:
    """Write into ``out`` the prediction a ``dtype`` member's decoder makes from ``base`` (its
    elements in ``base_dtype``): the same cast, so ``out`` can be given to :func:`decode_frame`
    and :func:`decode_frames` with ``base_dtype=dtype`` for every frame coded against ``base``."""
    base_dtype, dtype = canonical(base_dtype), canonical(dtype)
    src, dst = _bytes_view(base), _bytes_view(out, writable=True)
    k, bk = itemsize(dtype), itemsize(base_dtype)
    if len(src) % bk or len(dst) != len(src) // bk * k:
        raise CodecMisuse(f"{len(src)} bytes of {base_dtype} do not cast into {len(dst)} bytes of {dtype}")
    if not lib.wv_cast_supported(dtype_code(dtype), dtype_code(base_dtype)):
        raise CodecMisuse(f"no prediction from {base_dtype} to {dtype}")
    check(lib.wv_cast(ffi.from_buffer(dst), dtype_code(dtype), ffi.from_buffer(src), dtype_code(base_dtype),
                      len(src) // bk), "casting")


# ---- encoding ----

def _native_frame(codec_id: int, piece: memoryview, dtype: str | None,
                  base: memoryview | None, base_dtype: str | None) -> bytes:
    ctx = _lib.context()
    cap = lib.wv_frame_bound(len(piece))
    out = ctx.out_buffer(cap)
    base_ptr = ffi.from_buffer(base) if base is not None else ffi.NULL
    size = check(lib.wv_encode_frame(ctx.ctx, codec_id, out, cap, ffi.from_buffer(piece), len(piece),
                                     dtype_code(dtype), base_ptr, len(base) if base is not None else 0,
                                     dtype_code(base_dtype)), "encoding frame")
    return ffi.buffer(out, size)[:]


def _python_frame(codec_id: int, impl: CodecImpl, piece: memoryview, dtype: str | None,
                  base: memoryview | None, base_dtype: str | None) -> bytes:
    payload = impl.encode(piece, dtype, base, base_dtype)
    if payload is None or len(payload) >= len(piece):
        return _native_frame(CODECS["raw"], piece, dtype, None, None)
    with_base = impl.needs_base and base is not None
    header = ffi.new("wv_frame_header *", {
        "codec": codec_id, "dtype": dtype_code(dtype),
        "flags": _FLAG_NEEDS_BASE if with_base else 0,
        "base_dtype": dtype_code(base_dtype) if with_base else 0,
        "raw_size": len(piece), "payload_size": len(payload),
        "raw_crc": crc32c(piece),
        "payload_crc": crc32c(payload),
    })
    raw_header = ffi.new("uint8_t[]", HEADER_SIZE)
    lib.wv_frame_write_header(raw_header, header)
    return b"".join((ffi.buffer(raw_header), payload))


# Frames per C call in bulk paths: 16 x 256 KiB keeps each thread's output scratch
# at 4 MiB (peak memory stays near the output size) while the per-call Python cost
# (~20 us) is spread over 4 MiB of coding.
BATCH_FRAMES = 16


def _native_batch(codec_id: int, view: memoryview, offset: int, dtype: str | None,
                  base_view: memoryview | None, base_dtype: str | None) -> list[bytes]:
    """Frames of view[offset : offset + BATCH_FRAMES * FRAME_SIZE], coded in one C call."""
    piece = view[offset:offset + BATCH_FRAMES * FRAME_SIZE]
    count = -(-len(piece) // FRAME_SIZE)
    ctx = _lib.context()
    cap = count * lib.wv_frame_bound(FRAME_SIZE)
    out = ctx.out_buffer(cap)
    sizes = ffi.new("uint32_t[]", count)
    base_ptr, base_len = ffi.NULL, 0
    if base_view is not None:
        b_off, base_len = base_range(offset, len(piece), dtype, base_dtype)
        base_ptr = ffi.from_buffer(base_view[b_off:b_off + base_len])
    total = check(lib.wv_encode_many(ctx.ctx, codec_id, out, cap, ffi.from_buffer(piece), len(piece),
                                     dtype_code(dtype), base_ptr, base_len, dtype_code(base_dtype),
                                     FRAME_SIZE, sizes), "encoding frames")
    buf = ffi.buffer(out, total)
    frames, pos = [], 0
    for size in sizes:
        frames.append(buf[pos:pos + size])
        pos += size
    return frames


def encode_frames(data, dtype: str | None = None, *, codec: str = "auto", base=None,
                  base_dtype: str | None = None, threads: int = 1) -> list[bytes]:
    """Code ``data`` (any buffer) into one self-contained frame per FRAME_SIZE piece.

    Args:
        dtype: a safetensors, numpy or torch dtype name (BF16, bfloat16, torch.bfloat16);
            None, and safetensors dtypes without a header code (C64, F4), are coded as opaque bytes.
        codec: "auto" (planes for float dtypes, zstd otherwise), "planes", "zstd", "raw",
            "xor" (needs ``base``) or any registered codec name.  Each frame falls back
            on its own to the cheapest candidate (raw; plain planes for xor), so
            ``frame_info(f).codec`` may differ per frame.
        base: the WHOLE base tensor's bytes (same element count); ``base_dtype`` its
            dtype (defaults to ``dtype``), e.g. an F32 base for a BF16 member.
        threads: frames coded concurrently (the C coder releases the GIL).

    Raises:
        CodecError: ``data`` is not whole elements, ``base`` is missing or mismatched,
            or ``codec`` is unknown; UnknownDtype for a dtype name no table knows.
    """
    dtype, base_dtype = canonical(dtype), canonical(base_dtype)
    view = _bytes_view(data)
    k = itemsize(dtype)
    if len(view) % k:
        raise CodecError(f"{len(view)} bytes is not a whole number of {dtype} elements")
    if codec == "auto":
        codec = "planes" if dtype in FLOAT_DTYPES else "zstd"
    impl = CODECS.impl(codec)
    base_view = None
    if base is not None:
        base_dtype = dtype if base_dtype is None else base_dtype
        base_view = _bytes_view(base)
        expected = len(view) // k * itemsize(base_dtype)
        if len(base_view) != expected:
            raise CodecError(f"base has {len(base_view)} bytes, expected {expected} "
                             f"({base_dtype} for {len(view) // k} elements)")
    elif impl.needs_base and codec == "xor":
        raise CodecError("codec 'xor' needs base=")
    if codec == "xor" and not lib.wv_cast_supported(dtype_code(dtype), dtype_code(base_dtype)):
        codec, impl = "planes", CODECS.impl("planes")  # no prediction between these dtypes
    if isinstance(impl, NativeCodec):
        codec_id = CODECS[codec]
        b = base_view if codec == "xor" else None

        def unit(offset: int) -> list[bytes]:
            return _native_batch(codec_id, view, offset, dtype, b, base_dtype)
        step = BATCH_FRAMES * FRAME_SIZE
    else:
        def unit(offset: int) -> list[bytes]:
            size = min(FRAME_SIZE, len(view) - offset)
            piece_base = None
            if base_view is not None:
                b_off, b_len = base_range(offset, size, dtype, base_dtype)
                piece_base = base_view[b_off:b_off + b_len]
            return [_python_frame(CODECS[codec], impl, view[offset:offset + size], dtype, piece_base, base_dtype)]
        step = FRAME_SIZE
    offsets = range(0, len(view), step)
    if threads <= 1 or len(offsets) <= 1:
        return [f for o in offsets for f in unit(o)]
    return [f for frames in _lib.pool(threads).map(unit, offsets) for f in frames]


# ---- decoding ----

def decode_frame(frame, out=None, *, base=None, base_dtype: str | None = None) -> memoryview:
    """Verify and decode one frame; returns a memoryview of its raw bytes.

    Args:
        out: optional writable buffer of exactly ``raw_size`` bytes to decode into.
        base: the base bytes of exactly this frame's elements (see :func:`base_range`);
            required iff ``frame_info(frame).needs_base``.
        base_dtype: the dtype ``base`` is in: the base dtype recorded in the frame (the
            default), or, for frames of codecs coded in C, the frame's own dtype when the
            base was already cast to it with :func:`cast` (a reader keeping a base for
            members of another dtype casts it once instead of on every frame).

    Raises:
        CodecError: bad header, checksum, payload, ``out`` size or ``base``.
    """
    view = _bytes_view(frame)
    header, size = _parse(view)
    if size != len(view):
        raise CodecError(f"frame is {size} bytes but {len(view)} were given")
    raw_size = header.raw_size
    target = _lib.new_output(raw_size) if out is None else out
    out_view = _bytes_view(target, writable=True)
    if len(out_view) != raw_size:
        raise CodecError(f"out has {len(out_view)} bytes, frame holds {raw_size}")
    name = CODECS.name(header.codec)
    impl = CODECS.impl(name)
    base_view = None
    dtype = dtype_name(header.dtype)
    frame_base_dtype = given = None
    if header.flags & _FLAG_NEEDS_BASE:
        frame_base_dtype = dtype_name(header.base_dtype)
        if base is None:
            raise CodecError(f"frame coded with {name!r} needs base=")
        given = frame_base_dtype if base_dtype is None else canonical(base_dtype)
        if given != frame_base_dtype and not (given == dtype and isinstance(impl, NativeCodec)):
            raise CodecError(f"frame was coded against a {frame_base_dtype} base, not {base_dtype}")
        base_view = _bytes_view(base)
        expected = raw_size // itemsize(dtype) * itemsize(given)
        if len(base_view) != expected:
            raise CodecError(f"base has {len(base_view)} bytes, frame needs {expected}")
    if isinstance(impl, NativeCodec):
        check(lib.wv_decode_frame(_lib.context().ctx, ffi.from_buffer(view), len(view),
                                  ffi.from_buffer(out_view), raw_size,
                                  ffi.from_buffer(base_view) if base_view is not None else ffi.NULL,
                                  len(base_view) if base_view is not None else 0,
                                  dtype_code(given) if given is not None else 0), f"decoding {name} frame")
        return out_view
    payload = view[HEADER_SIZE:]
    if crc32c(payload) != header.payload_crc:
        raise CodecError("payload checksum mismatch")
    impl.decode(payload, out_view, dtype, base_view, frame_base_dtype)
    if crc32c(out_view) != header.raw_crc:
        raise CodecError("decoded data checksum mismatch")
    return out_view


def decode_frames(src, offsets: list[int], out, *, base=None, base_dtype: str | None = None) -> None:
    """Decode frames of codecs coded in C (raw, planes, xor) lying at ``offsets`` in ``src`` back
    to back into ``out``, in one call without the GIL. Bytes between frames (a store's entry
    headers) are skipped.

    Args:
        base: for frames that need one, the base bytes under ALL the frames, which must then be
            neighbouring frames of one object: ``base_range(first frame's raw offset, len(out),
            dtype, base_dtype)`` of the base tensor. Each frame takes its slice; frames that
            need a base are refused without it.
        base_dtype: the dtype ``base`` is in: the base dtype the frames record (the default),
            or the frames' own dtype for a base already cast to it (see :func:`decode_frame`).

    Raises:
        CodecError: naming the index of the first frame that does not decode.
    """
    src_view, out_view = _bytes_view(src), _bytes_view(out, writable=True)
    base_view = _bytes_view(base) if base is not None else None
    failed = ffi.new("uint64_t *")
    rc = lib.wv_decode_many(_lib.context().ctx, ffi.from_buffer(src_view), ffi.new("uint64_t[]", offsets), len(offsets),
                            len(src_view), ffi.from_buffer(out_view), len(out_view), 0,
                            ffi.from_buffer(base_view) if base_view is not None else ffi.NULL,
                            len(base_view) if base_view is not None else 0,
                            dtype_code(base_dtype) if base_dtype is not None else 0, failed)
    check(rc, f"decoding frame {failed[0]} of {len(offsets)}")
