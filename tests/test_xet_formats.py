"""Xet formats (spec/hashing.md, xorb.md, shard.md): hashes, and the xorb and shard parsers on good and hostile input."""
from __future__ import annotations

import hashlib
import os
import struct

import pytest

from weightvault.errors import BadShard, BadXorb, XetContentMissing
from weightvault.dedup.xet import hashing, shard as shards, xorb as xorbs

import xet_build


def test_hash_strings_reverse_each_eight_byte_word():
    raw = bytes(range(32))
    # spec/api.md's example, whose printed string drops the byte 0x10 of the third word
    assert hashing.to_hex(raw) == "07060504030201000f0e0d0c0b0a0908" "1716151413121110" "1f1e1d1c1b1a1918"
    assert hashing.from_hex(hashing.to_hex(raw)) == raw
    for bad in ["", "00" * 31, "G" * 64, "AB" * 32, 5]:
        with pytest.raises(ValueError):
            hashing.from_hex(bad)


def test_merkle_tree_shapes():
    leaves = [(hashing.chunk_hash(bytes([i]) * 10), 10) for i in range(40)]
    assert hashing.xorb_hash(leaves[:1]) == leaves[0][0]  # one leaf is its own root
    two = "".join(f"{hashing.to_hex(h)} : {n}\n" for h, n in leaves[:2]).encode()
    from blake3 import blake3
    assert hashing.xorb_hash(leaves[:2]) == blake3(two, key=hashing.INTERNAL_NODE_KEY).digest()
    assert len({hashing.xorb_hash(leaves[:n]) for n in range(1, 41)}) == 40
    assert hashing.file_hash(leaves) == blake3(hashing.xorb_hash(leaves), key=bytes(32)).digest()
    assert hashing.file_hash([]) == bytes(32)


@pytest.mark.parametrize("with_footer", [True, False])
def test_xorb_round_trip_all_schemes(with_footer):
    floats = struct.pack("<4096f", *[i * 0.25 for i in range(4096)])
    chunks = [os.urandom(5000), b"a" * 70_000, floats, floats[:16_387]]
    name, body = xet_build.xorb(chunks, [0, 1, 2, 2], with_footer=with_footer)
    parsed = xorbs.parse(body, hashing.from_hex(name))
    assert [c.size for c in parsed.chunks] == [len(c) for c in chunks]
    assert [xorbs.chunk_bytes(body, c) for c in parsed.chunks] == chunks
    assert xorbs.ungroup4(xorbs.group4(floats[:10_001])) == floats[:10_001]


def test_hostile_xorbs_are_refused():
    chunks = [os.urandom(3000), b"z" * 9000]
    name, body = xet_build.xorb(chunks, [0, 1], with_footer=False)
    other, _ = xet_build.xorb([b"x"])
    with pytest.raises(BadXorb, match="hash"):
        xorbs.parse(body, hashing.from_hex(other))
    for cut in (1, 7, 8, 100, len(body) - 1):
        with pytest.raises(BadXorb):
            xorbs.parse(body[:cut], hashing.from_hex(name))
    # a chunk that decompresses to more (or less) than its header claims
    for claim in (8999, 9001):
        bad = xet_build.chunk_record(b"z" * 9000, 1, claim=claim)
        with pytest.raises(BadXorb, match="exactly"):
            xorbs.parse(bad)
    with pytest.raises(BadXorb):
        xorbs.parse(xet_build.chunk_record(b"q" * 10, 0, claim=11))
    with pytest.raises(BadXorb, match="scheme"):
        xorbs.parse(bytes([0, 1, 0, 0, 7, 1, 0, 0, 0x41]))
    with pytest.raises(BadXorb, match="version"):
        xorbs.parse(bytes([3, 1, 0, 0, 0, 1, 0, 0, 0x41]))
    with pytest.raises(BadXorb, match="claims"):  # over the 128 KiB chunk bound
        xorbs.parse(bytes([0, 1, 0, 0, 1]) + (200_000).to_bytes(3, "little") + b"\0")
    with pytest.raises(BadXorb, match="at least one"):
        xorbs.parse(b"")
    # a footer that disagrees with the chunks
    _, good = xet_build.xorb(chunks, [0, 1])
    tampered = bytearray(good)
    tampered[-30] ^= 1
    with pytest.raises(BadXorb):
        xorbs.parse(bytes(tampered), hashing.from_hex(name))
    # a footer too short for the offsets it must restate (found by tests/fuzz/fuzz_xet.py: the parser
    # packed them negative and raised struct.error)
    short = b"XETBLOB\x01" + bytes(8)
    with pytest.raises(BadXorb, match="footer"):
        xorbs.parse(xet_build.chunk_record(b"s") + short + struct.pack("<I", len(short)))
    with pytest.raises(BadXorb, match="at most"):
        xorbs.parse(bytes(xorbs.MAX_BODY_BYTES + 1))
    small = xet_build.chunk_record(b"s")
    with pytest.raises(BadXorb, match="chunks"):
        xorbs.parse(small * (xorbs.MAX_CHUNKS + 1))
    big = xet_build.chunk_record(b"b" * xorbs.MAX_CHUNK_BYTES, 1)
    with pytest.raises(BadXorb, match="bytes of chunk data"):
        xorbs.parse(big * (xorbs.MAX_XORB_BYTES // xorbs.MAX_CHUNK_BYTES + 1))


def test_shard_round_trip_and_hostile_shards():
    chunks = [b"a" * 100, b"b" * 200, b"c" * 300]
    name, _ = xet_build.xorb(chunks)
    data = b"".join(chunks)
    body = xet_build.shard([(data, [(name, chunks, 0, 3)])], [(name, chunks)])
    parsed = shards.parse(body)
    (f,) = parsed.files
    assert hashing.to_hex(f.sha256) == hashlib.sha256(data).hexdigest()
    assert [(t.start, t.end, t.size) for t in f.terms] == [(0, 3, 600)]
    assert f.terms[0].verification == hashing.range_hash([hashing.chunk_hash(c) for c in chunks])
    assert [len(x.chunks) for x in parsed.xorbs] == [3]
    for cut in range(0, len(body), 17):
        with pytest.raises(BadShard):
            shards.parse(body[:cut])
    with pytest.raises(BadShard, match="magic"):
        shards.parse(b"\0" * len(body))
    with pytest.raises(BadShard, match="version"):
        shards.parse(body[:32] + struct.pack("<Q", 3) + body[40:])
    huge = bytearray(body)
    struct.pack_into("<I", huge, 48 + 36, 2**31 - 1)  # the file claims two billion terms
    with pytest.raises(BadShard, match="more than the shard holds"):
        shards.parse(bytes(huge))
    with pytest.raises(BadShard, match="after the CAS"):
        shards.parse(body + b"junk")


def test_gc_drops_abandoned_xet_staging(vault, tmp_path):
    import time

    from weightvault.dedup.xet import staging
    from weightvault.store import gc

    name, body = xet_build.xorb([os.urandom(1000)])
    path = tmp_path / "xorb"
    path.write_bytes(body)
    assert staging.stage_xorb(vault, 7, path, xorbs.parse(body))
    assert not staging.stage_xorb(vault, 7, path, xorbs.parse(body))
    assert staging.staged_bytes(vault, 7) > len(body)
    gc.collect(vault.catalog, vault.backend)
    assert staging.xorb_chunks(vault, 7, hashing.from_hex(name)).staged  # young staging stays
    old = time.time() - gc.UPLOAD_PARTS_TTL.total_seconds() - 60
    for p in (vault.settings.data_dir / "objects" / "xet").rglob("*"):
        if p.is_file():
            os.utime(p, (old, old))
    gc.collect(vault.catalog, vault.backend)
    assert staging.staged_bytes(vault, 7) == 0
    with pytest.raises(XetContentMissing):
        staging.xorb_chunks(vault, 7, hashing.from_hex(name))
