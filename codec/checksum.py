"""CRC32C of any buffer through the native library (hardware CRC, folded with carry-less
multiplies where the CPU has them: native/src/crc32c.c), the checksum frames carry."""
from __future__ import annotations

from ._lib import ffi, lib


def crc32c(data, crc: int = 0) -> int:
    """CRC32C of ``data`` (any contiguous buffer), continuing from ``crc``; releases the GIL."""
    view = memoryview(data)
    view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    return lib.wv_crc32c(crc, ffi.from_buffer(view), len(view))
