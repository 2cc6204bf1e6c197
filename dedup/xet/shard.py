"""Shards (spec/shard.md) as uploaded to ``POST /v1/shards``: file reconstructions and the xorbs they use.

Layout: a 48-byte header, the file info section (per file: a header, its
terms, one verification entry per term, one metadata entry holding the
sha256), a bookend, the CAS info section (per xorb: a header and one entry
per chunk), a bookend, then the footer, which uploads may leave out (hf_xet
does, and sets the header's footer size to 0). Every count is checked
against the bytes left before anything is built from it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from weightvault.errors import BadShard

HEADER_TAG = bytes([72, 70, 82, 101, 112, 111, 77, 101, 116, 97, 68, 97, 116, 97, 0, 85,
                    105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169])
HEADER_VERSION, FOOTER_VERSION = 2, 1
FOOTER_SIZE = 200
ENTRY = 48
BOOKEND = b"\xff" * 32 + bytes(16)
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA = 1 << 30
#: xet-core's target shard size (MDB_SHARD_TARGET_SIZE) is 64 MiB; uploads are bounded by it.
MAX_SHARD_BYTES = 64 << 20

_U32X4 = struct.Struct("<IIII")
_U32U32 = struct.Struct("<II")


@dataclass(frozen=True)
class Term:
    """``[start, end)`` chunks of ``xorb``, ``size`` bytes once unpacked, and the term's verification hash."""

    xorb: bytes
    size: int
    start: int
    end: int
    verification: bytes | None


@dataclass
class FileInfo:
    hash: bytes
    terms: list[Term]
    sha256: bytes | None  # like every hash in a shard, four little-endian u64 words: hashing.to_hex reads it


@dataclass
class XorbInfo:
    hash: bytes
    chunks: list[tuple[bytes, int, int]]  # (chunk hash, byte offset in the xorb, unpacked size)
    unpacked_bytes: int
    stored_bytes: int


@dataclass
class Shard:
    files: list[FileInfo] = field(default_factory=list)
    xorbs: list[XorbInfo] = field(default_factory=list)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def entries_left(self) -> int:
        return (len(self.data) - self.pos) // ENTRY

    def take(self) -> bytes:
        if len(self.data) - self.pos < ENTRY:
            raise BadShard(f"truncated at byte {self.pos}")
        out = self.data[self.pos:self.pos + ENTRY]
        self.pos += ENTRY
        return out

    def count(self, n: int, what: str) -> int:
        if n > self.entries_left():
            raise BadShard(f"{what} at byte {self.pos} claims {n} entries, more than the shard holds")
        return n


def parse(data: bytes) -> Shard:
    if len(data) > MAX_SHARD_BYTES:
        raise BadShard(f"a shard is at most {MAX_SHARD_BYTES} bytes")
    if len(data) < ENTRY or data[:32] != HEADER_TAG:
        raise BadShard("not a shard (wrong magic number)")
    version, footer_size = struct.unpack_from("<QQ", data, 32)
    if version != HEADER_VERSION:
        raise BadShard(f"shard header version {version}, expected {HEADER_VERSION}")
    cur, shard = _Cursor(data), Shard()
    cur.pos = ENTRY
    while (head := cur.take()) != BOOKEND:
        if head[:32] == BOOKEND[:32]:
            raise BadShard("malformed file info bookend")
        flags, n = _U32U32.unpack_from(head, 32)
        cur.count(n * (1 + bool(flags & FLAG_VERIFICATION)) + bool(flags & FLAG_METADATA), "file entry")
        raw_terms = [cur.take() for _ in range(n)]
        checks = [cur.take()[:32] for _ in range(n)] if flags & FLAG_VERIFICATION else [None] * n
        sha256 = cur.take()[:32] if flags & FLAG_METADATA else None
        terms = []
        for raw, check in zip(raw_terms, checks):
            _flags, size, start, end = _U32X4.unpack_from(raw, 32)
            if not start < end:
                raise BadShard(f"a term's chunk range [{start}, {end}) is empty")
            terms.append(Term(raw[:32], size, start, end, check))
        shard.files.append(FileInfo(head[:32], terms, sha256))
    while (head := cur.take()) != BOOKEND:
        if head[:32] == BOOKEND[:32]:
            raise BadShard("malformed CAS info bookend")
        _flags, n, unpacked, stored = _U32X4.unpack_from(head, 32)
        cur.count(n, "CAS entry")
        chunks = []
        for _ in range(n):
            raw = cur.take()
            offset, size = _U32U32.unpack_from(raw, 32)
            chunks.append((raw[:32], offset, size))
        shard.xorbs.append(XorbInfo(head[:32], chunks, unpacked, stored))
    rest = len(data) - cur.pos
    if rest and not (footer_size == FOOTER_SIZE and rest >= FOOTER_SIZE
                     and struct.unpack_from("<Q", data, len(data) - FOOTER_SIZE)[0] == FOOTER_VERSION):
        raise BadShard(f"{rest} bytes after the CAS info section are not a shard footer")
    return shard


def dedup_response(xorbs: list[tuple[bytes, list[tuple[bytes, int]]]], key: bytes, created: int, expiry: int) -> bytes:
    """A whole shard answering a global deduplication query: no files, the given xorbs' chunks.

    The client stores it in its shard cache as is, so it is written in full as
    xet-core's reader expects: both sections, then the file, xorb and chunk lookup
    tables (sorted by the first little-endian u64 of each hash), then the footer.
    Chunk hashes are keyed with ``key`` (the footer's HMAC key): a client can match
    chunks it holds, not learn the others.
    """
    from . import hashing

    out = [HEADER_TAG, struct.pack("<QQ", HEADER_VERSION, FOOTER_SIZE), BOOKEND]
    xorb_lookup, chunk_lookup, index = [], [], 0
    unpacked_total = 0
    for xorb_hash, chunks in sorted(xorbs, key=lambda x: struct.unpack("<4Q", x[0])):
        total = sum(size for _, size in chunks)
        unpacked_total += total
        out.append(xorb_hash + struct.pack("<IIII", 0, len(chunks), total, total))
        xorb_lookup.append((struct.unpack_from("<Q", xorb_hash)[0], index))
        offset = 0
        for i, (h, size) in enumerate(chunks):
            keyed = hashing.keyed(h, key)
            out.append(keyed + struct.pack("<II", offset, size) + bytes(8))
            chunk_lookup.append((struct.unpack_from("<Q", keyed)[0], index, i))
            offset += size
        index += 1 + len(chunks)
    out.append(BOOKEND)
    sections = b"".join(out)
    xorb_table = b"".join(struct.pack("<QI", k, v) for k, v in sorted(xorb_lookup))
    chunk_table = b"".join(struct.pack("<QII", *e) for e in sorted(chunk_lookup))
    file_lookup = len(sections)
    xorb_lookup_at = file_lookup
    chunk_lookup_at = xorb_lookup_at + len(xorb_table)
    footer_at = chunk_lookup_at + len(chunk_table)
    footer = struct.pack("<9Q", FOOTER_VERSION, ENTRY, 2 * ENTRY, file_lookup, 0, xorb_lookup_at, len(xorb_lookup),
                         chunk_lookup_at, len(chunk_lookup))
    footer += key + struct.pack("<2Q", created, expiry) + bytes(48)
    footer += struct.pack("<4Q", unpacked_total, unpacked_total, unpacked_total, footer_at)
    return sections + xorb_table + chunk_table + footer
