"""Test-side writers of Xet xorbs and shards (spec/xorb.md, spec/shard.md), to feed the server good and bad input.

Written from the spec independently of ``weightvault.dedup.xet``'s parsers, so a
misreading of the spec in one shows up as a disagreement with the other.
"""
from __future__ import annotations

import hashlib
import struct

import lz4.frame

from weightvault.dedup.xet import hashing
from weightvault.dedup.xet.shard import BOOKEND, FLAG_METADATA, FLAG_VERIFICATION, HEADER_TAG


def chunk_record(data: bytes, scheme: int = 0, *, claim: int | None = None) -> bytes:
    if scheme == 0:
        stored = data
    elif scheme == 1:
        stored = lz4.frame.compress(data)
    else:
        grouped = b"".join(data[k::4] for k in range(4))
        stored = lz4.frame.compress(grouped)
    size = len(data) if claim is None else claim
    return bytes([0]) + len(stored).to_bytes(3, "little") + bytes([scheme]) + size.to_bytes(3, "little") + stored


def footer(chunks: list[bytes], records: list[bytes]) -> bytes:
    """hf_xet's XorbObjectInfoV1 footer and its trailing length."""
    hashes = [hashing.chunk_hash(c) for c in chunks]
    n = len(chunks)
    bounds, unpacked, phys, logic = [], [], 0, 0
    for c, r in zip(chunks, records):
        phys += len(r)
        logic += len(c)
        bounds.append(phys)
        unpacked.append(logic)
    head = b"XETBLOB\x01" + hashing.xorb_hash([(h, len(c)) for h, c in zip(hashes, chunks)])
    hsec = b"XBLBHSH\x00" + struct.pack("<I", n) + b"".join(hashes)
    bsec = b"XBLBBND\x01" + struct.pack("<I", n) + struct.pack(f"<{n}I", *bounds) + struct.pack(f"<{n}I", *unpacked)
    tail_len = 12 + 16
    info = head + hsec + bsec + struct.pack("<III", n, len(hsec) + len(bsec) + tail_len, len(bsec) + tail_len) + bytes(16)
    return info + struct.pack("<I", len(info))


def xorb(chunks: list[bytes], schemes: list[int] | None = None, *, with_footer: bool = True) -> tuple[str, bytes]:
    """(hash string, body) of a xorb holding ``chunks``."""
    schemes = schemes or [0] * len(chunks)
    records = [chunk_record(c, s) for c, s in zip(chunks, schemes)]
    body = b"".join(records) + (footer(chunks, records) if with_footer else b"")
    return hashing.to_hex(hashing.xorb_hash([(hashing.chunk_hash(c), len(c)) for c in chunks])), body


def shard(files: list[tuple[bytes, list[tuple[str, list[bytes], int, int]]]],
          xorbs: list[tuple[str, list[bytes]]] = (), *, sha256: bytes | None = None) -> bytes:
    """A shard upload: ``files`` as (file bytes, terms); a term is (xorb hash, the xorb's chunks, start, end)."""
    out = [HEADER_TAG + struct.pack("<QQ", 2, 0)]
    for data, terms in files:
        leaves = [(hashing.chunk_hash(c), len(c)) for _, chunks, a, b in terms for c in chunks[a:b]]
        out.append(hashing.file_hash(leaves) + struct.pack("<II", FLAG_VERIFICATION | FLAG_METADATA, len(terms)) + bytes(8))
        for xh, chunks, a, b in terms:
            out.append(hashing.from_hex(xh) + struct.pack("<IIII", 0, sum(len(c) for c in chunks[a:b]), a, b))
        for xh, chunks, a, b in terms:
            out.append(hashing.range_hash([hashing.chunk_hash(c) for c in chunks[a:b]]) + bytes(16))
        digest = sha256 if sha256 is not None else hashlib.sha256(data).digest()
        out.append(hashing.from_hex(digest.hex()) + bytes(16))  # stored as four little-endian u64 words
    out.append(BOOKEND)
    for xh, chunks in xorbs:
        out.append(hashing.from_hex(xh) + struct.pack("<IIII", 0, len(chunks), sum(map(len, chunks)), 0))
        offset = 0
        for c in chunks:
            out.append(hashing.chunk_hash(c) + struct.pack("<II", offset, len(c)) + bytes(8))
            offset += 8 + len(c)
    out.append(BOOKEND)
    return b"".join(out)
