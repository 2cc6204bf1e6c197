"""Xet hashes (spec/hashing.md): keyed BLAKE3 chunk hashes, the aggregated Merkle hash of xorbs and files.

A hash is 32 raw bytes (blake3's output). Its *string* form, used in URLs and in
the Merkle nodes' text, prints the four little-endian u64 words in order, so
each 8-byte group appears byte-reversed (spec/api.md "Converting Hashes to Strings").
"""
from __future__ import annotations

import re

from blake3 import blake3

from weightvault.codec.chunking import DATA_KEY, chunk_hash  # noqa: F401 (Xet's chunk hash, one definition)
from weightvault.errors import XetError

INTERNAL_NODE_KEY = bytes([1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230,
                           93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63])
VERIFICATION_KEY = bytes([127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243,
                          164, 205, 38, 213, 181, 219, 73, 230, 65, 36, 152, 127, 40, 251, 148, 195])
ZERO_KEY = bytes(32)

#: A Merkle node merges 2..9 children (mean branching 4): xet-core's aggregated_hashes.rs.
_MEAN_BRANCHING = 4
_MAX_GROUP = 2 * _MEAN_BRANCHING + 1
_HEX = re.compile(r"^[0-9a-f]{64}$")


def to_hex(raw: bytes) -> str:
    return "".join(raw[i:i + 8][::-1].hex() for i in range(0, 32, 8))


def from_hex(text: str) -> bytes:
    """Raw bytes of a hash's string form; XetError (a ValueError) unless 64 lowercase hex digits."""
    if not isinstance(text, str) or not _HEX.match(text):
        raise XetError(f"not a Xet hash string: {text!r:.80}")
    raw = bytes.fromhex(text)
    return b"".join(raw[i:i + 8][::-1] for i in range(0, 32, 8))


def keyed(raw: bytes, key: bytes) -> bytes:
    """``hash.hmac(key)`` of xet-core: BLAKE3 keyed with ``key`` over the raw hash."""
    return blake3(raw, key=key).digest()


def _cut(nodes: list[tuple[bytes, int]], start: int) -> int:
    """End (exclusive) of the group starting at ``start``: a child whose last u64 is 0 mod 4 closes it."""
    n = len(nodes) - start
    if n <= 2:
        return len(nodes)
    end = min(_MAX_GROUP, n)
    for i in range(2, end):
        if int.from_bytes(nodes[start + i][0][24:32], "little") % _MEAN_BRANCHING == 0:
            return start + i + 1
    return start + end


def merkle_root(nodes: list[tuple[bytes, int]]) -> bytes:
    """The aggregated hash of (chunk hash, chunk size) leaves; 32 zero bytes for no leaves."""
    if not nodes:
        return bytes(32)
    level = list(nodes)
    while len(level) > 1:
        merged, start = [], 0
        while start < len(level):
            end = _cut(level, start)
            group = level[start:end]
            text = "".join(f"{to_hex(h)} : {size}\n" for h, size in group).encode()
            merged.append((blake3(text, key=INTERNAL_NODE_KEY).digest(), sum(size for _, size in group)))
            start = end
        level = merged
    return level[0][0]


def xorb_hash(chunks: list[tuple[bytes, int]]) -> bytes:
    return merkle_root(chunks)


def file_hash(chunks: list[tuple[bytes, int]]) -> bytes:
    """A file's Xet hash: the Merkle root keyed once more with 32 zero bytes (zero for an empty file)."""
    return keyed(merkle_root(chunks), ZERO_KEY) if chunks else bytes(32)


def range_hash(chunk_hashes: list[bytes]) -> bytes:
    """The verification hash of a reconstruction term: keyed BLAKE3 over the raw chunk hashes it covers."""
    return blake3(b"".join(chunk_hashes), key=VERIFICATION_KEY).digest()
