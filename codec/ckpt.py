"""Codec "ckpt" (id 4): a training checkpoint coded against the previous one.

Each float of a frame is predicted by the same element of the previous
checkpoint (the frame's ``base``); the residual is coded in C
(native/src/ckpt.c) by an adaptive binary range coder whose contexts come from
the prediction's exponent.  Every 256 KiB frame codes on its own (models reset
per frame), so ranges decode independently like every other codec's frames.

Use::

    frames = encode_frames(cur, "F32", codec="ckpt", base=prev, base_dtype="F32")
    decode_frame(frames[i], base=prev[base_range(...)])

Applies to F32, BF16 and F16 tensors with a base of the same dtype or one the
xor codec can cast from (F32 <-> BF16/F16).  Anything else (no base, other
dtypes, a frame the coder cannot shrink) returns None from ``encode``, and the
frame layer stores that frame raw.
"""
from __future__ import annotations

import threading

from ._lib import check, ffi, lib
from .dtypes import dtype_code
from .errors import CodecError
from .registry import register

CODEC_ID = 4
DTYPES = frozenset({"F32", "BF16", "F16"})

# Residual modes (native/src/ckpt.h); AUTO lets the C side choose per frame.
MODE_AUTO, MODE_XOR, MODE_MAG = 0, 1, 2
MODE_NEG_RAW = 4   # with MAG: the sign of the difference is stored raw
MODE_NO_FLIP = 8   # set by the encoder when no element changes sign (e.g. exp_avg_sq)
MODE_FLIP_RAW = 16  # the sign-change bit stored raw (chosen when it is a coin toss, e.g. exp_avg)

_local = threading.local()


def _out_buffer(size: int):
    """This thread's scratch output buffer (grown, never shrunk: no per-frame allocation)."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        buf = _local.buf = ffi.new("uint8_t[]", size)
    return buf


def _ptr(view):
    return ffi.from_buffer(view)


class CkptCodec:
    """The frame-layer codec protocol (codec/registry.py) over the C coder."""

    needs_base = True

    def __init__(self, mode: int = MODE_AUTO) -> None:
        self.mode = mode

    def encode(self, piece: memoryview, dtype: str | None, base: memoryview | None,
               base_dtype: str | None) -> bytes | None:
        if base is None or dtype not in DTYPES:
            return None
        base_dtype = dtype if base_dtype is None else base_dtype
        if base_dtype != dtype and not lib.wv_cast_supported(dtype_code(dtype), dtype_code(base_dtype)):
            return None
        n = len(piece)
        cap = lib.wv_ckpt_bound(n)
        out = _out_buffer(cap)
        rc = lib.wv_ckpt_encode(out, cap, _ptr(piece), _ptr(base), n, dtype_code(dtype),
                                dtype_code(base_dtype), self.mode)
        if lib.wv_isError(rc) and lib.wv_errorCode(rc) == lib.WV_ERR_NOT_COMPRESSIBLE:
            return None
        size = check(rc, "ckpt encode")
        return ffi.buffer(out, size)[:]

    def decode(self, payload: memoryview, out: memoryview, dtype: str | None,
               base: memoryview | None, base_dtype: str | None) -> None:
        if dtype not in DTYPES:
            raise CodecError(f"ckpt frame with dtype {dtype}: only F32, BF16 and F16 are coded")
        if base is None:
            raise CodecError("ckpt frame needs base=")
        base_dtype = dtype if base_dtype is None else base_dtype
        n = len(out)
        k = 4 if dtype == "F32" else 2
        bk = 4 if base_dtype == "F32" else 2
        if len(base) != n // k * bk:
            raise CodecError(f"base has {len(base)} bytes, frame needs {n // k * bk}")
        check(lib.wv_ckpt_decode(_ptr(out), n, _ptr(payload), len(payload), _ptr(base),
                                 dtype_code(dtype), dtype_code(base_dtype)), "ckpt decode")


def payload_mode(payload) -> int:
    """Residual mode of a ckpt payload: MODE_XOR or MODE_MAG, optionally | MODE_NEG_RAW (MAG only)
    and | MODE_NO_FLIP or MODE_FLIP_RAW."""
    view = memoryview(payload).cast("B")
    return check(lib.wv_ckpt_payload_mode(ffi.from_buffer(view), len(view)), "ckpt payload")


register("ckpt", CODEC_ID, CkptCodec())
