"""Content-defined chunking as Xet does it: gear-hash cut points (native/src/cdc.c) and
Xet's chunk hash (blake3 keyed with DATA_KEY, huggingface/xet-core spec/hashing.md).

Chunks average 64 KiB (8 KiB min, 128 KiB max). Equal bytes give equal chunks wherever
they sit in a file, so runs shared between files are found by chunk hash; speaking Xet's
exact boundaries and hash lets chunks cut here be matched with a Xet client's.
"""
from __future__ import annotations

import numpy as np
from blake3 import blake3

from ._lib import check, ffi, lib

MIN_CHUNK = 8 * 1024
MAX_CHUNK = 128 * 1024

#: Xet's DATA_KEY: the blake3 key of chunk hashes.
DATA_KEY = bytes([102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
                  157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41])


def chunk_ends(data) -> np.ndarray:
    """End offsets (exclusive, increasing, the last one len(data)) of the chunks of ``data``."""
    view = memoryview(data).cast("B")
    n = len(view)
    if n == 0:
        return np.zeros(0, np.uint64)
    cap = lib.wv_cdc_bound(n)
    ends = np.empty(cap, np.uint64)
    count = check(lib.wv_cdc_cuts(ffi.from_buffer(view), n, ffi.cast("uint64_t *", ends.ctypes.data), cap),
                  "chunking")
    return ends[:count]


def chunk_hash(data) -> bytes:
    """Xet's chunk hash of ``data``: 32 raw bytes."""
    return blake3(data, key=DATA_KEY).digest()


def chunks(data) -> list[tuple[int, int, str]]:
    """(start, end, chunk hash) of every chunk of ``data``; the hash as 64 hex digits of its raw
    bytes (Xet's API prints each 8-byte word reversed: dedup/xet/hashing.to_hex)."""
    view = memoryview(data).cast("B")
    out, start = [], 0
    for end in chunk_ends(view).tolist():
        out.append((start, end, blake3(view[start:end], key=DATA_KEY).hexdigest()))
        start = end
    return out
