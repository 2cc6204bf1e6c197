"""Xorbs (spec/xorb.md): a run of chunks, each an 8-byte header and its (maybe compressed) bytes.

hf_xet appends a footer after the chunks (xet-core's ``XorbObjectInfoV1``:
the xorb hash, every chunk hash, the chunk boundaries, then its own length as
a trailing u32); the spec's format has none. Both are accepted, and a footer
must agree with what the chunks hash to. Every chunk is decompressed (no
more bytes than its header claims), hashed, and the xorb hash recomputed:
a xorb is accepted only whole and only under the hash it was named by.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import lz4.frame
import numpy as np

from weightvault.errors import BadXorb

from . import hashing

#: hf_xet closes a xorb at 64 MiB of chunk data or 8 Ki chunks (xet-core MAX_XORB_BYTES,
#: MAX_XORB_CHUNKS); spec/xorb.md names the same 64 MiB. The body adds 8 bytes of header a
#: chunk, and hf_xet's footer 40 bytes a chunk: 1 MiB on top covers both.
MAX_XORB_BYTES = 64 << 20
MAX_CHUNKS = 8 << 10
MAX_FOOTER_BYTES = 1 << 20
MAX_BODY_BYTES = MAX_XORB_BYTES + MAX_FOOTER_BYTES
#: A chunk is at most 128 KiB before compression (spec/chunking.md: 2 x the 64 KiB target).
MAX_CHUNK_BYTES = 128 << 10

NONE, LZ4, BG4_LZ4 = 0, 1, 2
_HEADER = struct.Struct("<B3sB3s")
_FOOTER_IDENT, _HASHES_IDENT, _BOUNDS_IDENT = b"XETBLOB", b"XBLBHSH", b"XBLBBND"


@dataclass(frozen=True)
class Chunk:
    hash: bytes       # raw 32 bytes
    size: int         # uncompressed
    offset: int       # of its header in the body
    stored: int       # compressed bytes after the header
    scheme: int


@dataclass(frozen=True)
class Xorb:
    hash: bytes
    chunks: list[Chunk]

    @property
    def size(self) -> int:
        return sum(c.size for c in self.chunks)


def ungroup4(grouped: bytes) -> bytes:
    """Undo byte grouping: group k holds bytes k, k+4, k+8, ...; the first ``n % 4`` groups are one longer."""
    n = len(grouped)
    out = np.empty(n, dtype=np.uint8)
    src = np.frombuffer(grouped, dtype=np.uint8)
    pos = 0
    for k in range(4):
        length = len(range(k, n, 4))
        out[k::4] = src[pos:pos + length]
        pos += length
    return out.tobytes()


def group4(data: bytes) -> bytes:
    src = np.frombuffer(data, dtype=np.uint8)
    return b"".join(src[k::4].tobytes() for k in range(4))


def _lz4(data: bytes, size: int) -> bytes:
    d = lz4.frame.LZ4FrameDecompressor()
    try:
        out = d.decompress(data, max_length=size)
    except RuntimeError as exc:
        raise BadXorb(f"LZ4 data is corrupt: {exc}") from None
    if len(out) != size or not d.eof or d.unused_data:
        raise BadXorb(f"LZ4 data does not decompress to exactly the {size} bytes its header claims")
    return out


def decompress(stored: bytes, scheme: int, size: int) -> bytes:
    if scheme == NONE:
        if len(stored) != size:
            raise BadXorb("an uncompressed chunk's two sizes differ")
        return stored
    if scheme == LZ4:
        return _lz4(stored, size)
    if scheme == BG4_LZ4:
        return ungroup4(_lz4(stored, size))
    raise BadXorb(f"unknown compression scheme {scheme}")


def chunk_bytes(body: bytes, chunk: Chunk) -> bytes:
    start = chunk.offset + _HEADER.size
    return decompress(body[start:start + chunk.stored], chunk.scheme, chunk.size)


def _split_footer(body: bytes) -> tuple[int, bytes | None]:
    """(end of the chunk data, footer bytes or None)."""
    if len(body) >= 4:
        (n,) = struct.unpack_from("<I", body, len(body) - 4)
        start = len(body) - 4 - n
        if 0 <= start and n <= MAX_FOOTER_BYTES and body[start:start + 7] == _FOOTER_IDENT:
            return start, body[start:len(body) - 4]
    return len(body), None


def parse(body: bytes, expected_hash: bytes | None = None) -> Xorb:
    """Parse and verify a serialized xorb; BadXorb on anything malformed or mismatched."""
    if len(body) > MAX_BODY_BYTES:
        raise BadXorb(f"a xorb is at most {MAX_XORB_BYTES} bytes")
    end, footer = _split_footer(body)
    chunks, pos, unpacked = [], 0, 0
    while pos < end:
        if len(chunks) == MAX_CHUNKS:
            raise BadXorb(f"a xorb holds at most {MAX_CHUNKS} chunks")
        if end - pos < _HEADER.size:
            raise BadXorb(f"truncated chunk header at byte {pos}")
        version, stored, scheme, size = _HEADER.unpack_from(body, pos)
        stored, size = int.from_bytes(stored, "little"), int.from_bytes(size, "little")
        if version != 0:
            raise BadXorb(f"chunk at byte {pos} has header version {version}, not 0")
        if not 0 < size <= MAX_CHUNK_BYTES:
            raise BadXorb(f"chunk at byte {pos} claims {size} bytes (1..{MAX_CHUNK_BYTES} allowed)")
        start = pos + _HEADER.size
        if start + stored > end:
            raise BadXorb(f"chunk at byte {pos} is truncated")
        unpacked += size
        if unpacked > MAX_XORB_BYTES:
            raise BadXorb(f"a xorb holds at most {MAX_XORB_BYTES} bytes of chunk data")
        data = decompress(body[start:start + stored], scheme, size)
        chunks.append(Chunk(hashing.chunk_hash(data), size, pos, stored, scheme))
        pos = start + stored
    if not chunks:
        raise BadXorb("a xorb holds at least one chunk")
    xorb = Xorb(hashing.xorb_hash([(c.hash, c.size) for c in chunks]), chunks)
    if footer is not None:
        _check_footer(footer, xorb)
    if expected_hash is not None and xorb.hash != expected_hash:
        raise BadXorb(f"the chunks hash to {hashing.to_hex(xorb.hash)}, not {hashing.to_hex(expected_hash)}")
    return xorb


def _check_footer(footer: bytes, xorb: Xorb) -> None:
    """hf_xet's footer (xet-core XorbObjectInfoV1) must restate exactly what the chunks are."""
    n = len(xorb.chunks)
    hashes = b"".join(c.hash for c in xorb.chunks)
    bounds, unpacked, physical, logical = [], [], 0, 0
    for c in xorb.chunks:
        physical += _HEADER.size + c.stored
        logical += c.size
        bounds.append(physical)
        unpacked.append(logical)
    hashes_start, bounds_start = 40, 40 + 12 + 32 * n
    size = bounds_start + 12 + 8 * n + 12 + 16
    # the offsets it restates are taken from the size it must have, not the one it has (a short
    # footer made them negative, and struct.pack raised)
    want = b"".join([
        _FOOTER_IDENT, b"\x01", xorb.hash,
        _HASHES_IDENT, b"\x00", struct.pack("<I", n), hashes,
        _BOUNDS_IDENT, b"\x01", struct.pack("<I", n), struct.pack(f"<{n}I", *bounds), struct.pack(f"<{n}I", *unpacked),
        struct.pack("<III", n, size - hashes_start, size - bounds_start),
    ])
    if len(footer) != size or footer[:len(want)] != want:
        raise BadXorb("the xorb footer does not match its chunks")
