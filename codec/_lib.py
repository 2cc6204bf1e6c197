"""Access to the C library: the cffi module, error checking and per-thread contexts.

cffi (API mode) releases the GIL around every C call, so frames coded on a thread
pool run on all cores.  Each thread owns one ``wv_ctx`` (scratch buffers, rANS
tables, an output buffer), created on first use and reused for every frame, so the
hot path allocates nothing in C; Python allocates only the ``bytes`` it returns.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._native import ffi, lib
from .errors import (CodecError, CodecMisuse, CodecOutOfMemory, CorruptFrame, MissingBase, UnknownCodec,
                     UnsupportedCast)

HEADER_SIZE: int = lib.WV_FRAME_HEADER_SIZE

_new_nonzero = ffi.new_allocator(should_clear_after_alloc=False)


def new_output(size: int) -> memoryview:
    """A writable, uninitialised buffer for decoded bytes.

    numpy backs large allocations with transparent huge pages (madvise), which matters
    here: first-touch page faults are the most expensive part of decoding into fresh
    memory on this VM (45 MB: bytearray 24 ms, np.empty 5 ms, measured).
    """
    return memoryview(np.empty(size, np.uint8))


#: C error code -> the class raised for it (weightvault/errors); the message is the C why-string.
ERROR_CLASSES: dict[int, type[CodecError]] = {
    lib.WV_ERR_NO_MEMORY: CodecOutOfMemory,
    lib.WV_ERR_DST_TOO_SMALL: CodecMisuse,
    lib.WV_ERR_BAD_SIZE: CodecMisuse,
    lib.WV_ERR_BAD_MODE: CodecMisuse,
    lib.WV_ERR_SRC_TRUNCATED: CorruptFrame,
    lib.WV_ERR_CORRUPT: CorruptFrame,
    lib.WV_ERR_BAD_MAGIC: CorruptFrame,
    lib.WV_ERR_BAD_VERSION: CorruptFrame,
    lib.WV_ERR_HEADER_CHECKSUM: CorruptFrame,
    lib.WV_ERR_PAYLOAD_CHECKSUM: CorruptFrame,
    lib.WV_ERR_RAW_CHECKSUM: CorruptFrame,
    lib.WV_ERR_RESERVED_BITS: CorruptFrame,
    lib.WV_ERR_BAD_DTYPE: CorruptFrame,
    lib.WV_ERR_UNSUPPORTED_CAST: UnsupportedCast,
    lib.WV_ERR_BASE_MISSING: MissingBase,
    lib.WV_ERR_UNKNOWN_CODEC: UnknownCodec,
    lib.WV_ERR_NOT_COMPRESSIBLE: CodecMisuse,  # callers that expect it test the code before check()
}


def check(rc: int, what: str) -> int:
    """Return ``rc`` or raise the class of the C error, naming ``what`` and the C why-string."""
    if lib.wv_isError(rc):
        cls = ERROR_CLASSES.get(lib.wv_errorCode(rc), CodecError)
        raise cls(f"{what}: {ffi.string(lib.wv_getErrorName(rc)).decode()}")
    return rc


class Context:
    """One thread's C context plus an output buffer that grows to the largest frame seen."""

    def __init__(self) -> None:
        ctx = lib.wv_ctx_create()
        if ctx == ffi.NULL:
            raise CodecOutOfMemory("wv_ctx_create could not allocate a C context")
        self.ctx = ffi.gc(ctx, lib.wv_ctx_free)
        self.out = _new_nonzero("uint8_t[]", 0)
        self.out_cap = 0

    def out_buffer(self, size: int):
        """A scratch output buffer of at least ``size`` bytes (reused across calls)."""
        if size > self.out_cap:
            self.out = _new_nonzero("uint8_t[]", size)
            self.out_cap = size
        return self.out


_local = threading.local()
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``threads`` workers, kept so that their contexts (scratch
    buffers, ~6 MiB each once warm) are allocated and faulted in once, not per call."""
    with _pools_lock:
        executor = _pools.get(threads)
        if executor is None:
            executor = _pools[threads] = ThreadPoolExecutor(max_workers=threads,
                                                            thread_name_prefix="weightvault-codec")
        return executor


def context() -> Context:
    """The calling thread's Context."""
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = _local.ctx = Context()
    return ctx
