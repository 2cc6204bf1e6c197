"""Content fingerprints of float tensors, and the index that finds a new tensor's base by them.

A fingerprint is a tensor's values, as float32 bit patterns, at 32 fixed positions among its first
65,536 elements (scaled into smaller tensors): 128 bytes, whatever the tensor's name, dtype or
container. Fixed positions near the start keep a tensor grown by rows comparable with the one it
grew from. It is kept on the object's catalog row (``objects.fingerprint``), so the catalog
journal records it and ``recover`` rebuilds it without decoding a frame.

The index is locality-sensitive: the 32 positions form four bands of eight, and a band's key is a
hash of those eight values' sign and exponent (what a dtype cast keeps, and what fine-tuning
rarely changes). Each key is an indexed column of ``objects``, so a lookup is four B-tree probes:
O(log N) in the number of stored tensors plus the hits, never a scan (bench/fingerprint.py
measures it at up to 2 M tensors). A tensor is found when one band agrees entirely: at 97% of
positions agreeing in sign and exponent (fine-tunes and casts of the shared MiniLM repos agree on
97% or more, dedup/families.py) that is 1 - (1 - 0.97^8)^4 = 99.8%; tensors that merely look
alike statistically agree far less per position (0.2^8 per band), so unrelated hits stay rare.
A band of fewer than three distinct sign+exponent codes (a LayerNorm scale of ones, a zero
tensor) says nothing and is not indexed; such tensors are found by name only.

Candidates are ranked on the fingerprints alone, in the new tensor's dtype after casting the
candidate to it: the share agreeing in sign and exponent must reach ``SIMILAR_ENOUGH``, and the
mean number of leading bits a candidate's values share with ours predicts what an XOR delta
against it costs; the depth of its own delta chain breaks ties.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sqlalchemy import or_, select, update

from weightvault.store import journal
from weightvault.store.models import Object

FLOAT_DTYPES = ("F32", "BF16", "F16")
WINDOW = 1 << 16
BANDS = 4
BAND_WIDTH = 8
MIN_DISTINCT = 3
#: Same rule as family matching (dedup/families.py): share of positions agreeing in sign+exponent.
SIMILAR_ENOUGH = 0.75
#: Hits read per lookup. A key shared by more stored tensors than this (thousands of fine-tunes of
#: one base) returns an arbitrary subset of them; any of them predicts the new tensor about as well.
MAX_HITS = 64

#: Fixed forever: stored fingerprints depend on them. In random order, so that each band of eight
#: consecutive entries spreads over the whole window.
POSITIONS = np.random.default_rng(0x5EED).choice(WINDOW, BANDS * BAND_WIDTH, replace=False).astype(np.int64)
BAND_COLUMNS = (Object.fp_band0, Object.fp_band1, Object.fp_band2, Object.fp_band3)

_WIDTH = {"F32": np.uint32, "BF16": np.uint16, "F16": np.uint16}
BITS = {"F32": 32, "BF16": 16, "F16": 16}


def elements(raw_size: int, dtype: str | None) -> int:
    return raw_size * 8 // BITS[dtype] if dtype in BITS else 0


def of(data, dtype: str | None) -> bytes | None:
    """The fingerprint of a tensor's raw bytes, or None for a dtype that is not float."""
    if dtype not in FLOAT_DTYPES:
        return None
    n = len(data) * 8 // BITS[dtype]
    if n == 0:
        return None
    window = min(n, WINDOW)
    pos = POSITIONS if n >= WINDOW else (POSITIONS * window) >> 16
    values = np.frombuffer(data, dtype=_WIDTH[dtype], count=window)[pos]
    return _as_f32_bits(values, dtype).astype("<u4").tobytes()


def bands(fp: bytes | None) -> list[int | None]:
    """The four band keys of a fingerprint (None: a band too uniform to say anything)."""
    if fp is None:
        return [None] * BANDS
    codes = (np.frombuffer(fp, dtype="<u4") >> 23).astype("<u2")
    keys: list[int | None] = []
    for b in range(BANDS):
        band = codes[b * BAND_WIDTH:(b + 1) * BAND_WIDTH]
        if len(set(band.tolist())) < MIN_DISTINCT:
            keys.append(None)
            continue
        digest = hashlib.blake2b(bytes([b]) + band.tobytes(), digest_size=8).digest()
        keys.append(int.from_bytes(digest, "little", signed=True))
    return keys


def columns(data, dtype: str | None) -> dict:
    """An object row's fingerprint columns for ``data``."""
    fp = of(data, dtype)
    return {"fingerprint": fp, **{c.key: k for c, k in zip(BAND_COLUMNS, bands(fp))}}


@dataclass(frozen=True)
class Hit:
    object_id: int
    digest: str
    dtype: str
    raw_size: int
    depth: int
    fingerprint: bytes | None


def lookup(session, fp: bytes | None, limit: int = MAX_HITS) -> list[Hit]:
    """Stored tensors sharing a band with ``fp`` (at most ``limit``)."""
    conds = [col == key for col, key in zip(BAND_COLUMNS, bands(fp)) if key is not None]
    if not conds:
        return []
    rows = session.execute(select(Object.id, Object.digest, Object.dtype, Object.raw_size, Object.depth,
                                  Object.fingerprint).where(or_(*conds)).limit(limit)).all()
    return [Hit(*r) for r in rows]


def score(ours: bytes, theirs: bytes, dtype: str) -> tuple[float, float]:
    """(share agreeing in sign and exponent, mean leading bits equal) of a candidate's fingerprint
    against ours, both as ``dtype`` holds them (the candidate cast to it, as the delta codec does)."""
    a = np.frombuffer(ours, dtype="<u4")
    b = np.frombuffer(theirs, dtype="<u4")
    agree = float(np.mean((a >> 23) == (b >> 23)))
    x = (_cast(a, dtype) ^ _cast(b, dtype)).astype(np.float64)
    _, bit_length = np.frexp(x)  # 0 for equal values
    return agree, float(BITS[dtype] - np.mean(bit_length))


def backfill(vault, reader, batch: int = 500) -> int:
    """Fingerprint the float tensors stored before fingerprints existed (catalog schema 0005); returns
    how many. Each costs the decode of its first frame (every sampled position is in its first
    65,536 elements); rows are updated and recorded a batch per transaction."""
    with vault.catalog.read_session() as s:
        todo = s.execute(select(Object.id, Object.dtype, Object.raw_size).where(
            Object.kind == "tensor", Object.fingerprint.is_(None), Object.dtype.in_(FLOAT_DTYPES))).all()
    for at in range(0, len(todo), batch):
        rows = [{"id": oid, **columns(reader.object_range(oid, 0, min(size, WINDOW * BITS[dtype] // 8)), dtype)}
                for oid, dtype, size in todo[at:at + batch]]
        with vault.catalog.write_session() as s:
            s.execute(update(Object), rows)
            for row in rows:
                journal.touch(s, Object, row["id"])
    return len(todo)


def _as_f32_bits(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "F32":
        return values.astype(np.uint32)
    if dtype == "BF16":
        return values.astype(np.uint32) << 16
    return values.view(np.float16).astype(np.float32).view(np.uint32)


def _cast(f32_bits: np.ndarray, dtype: str) -> np.ndarray:
    """float32 bit patterns as ``dtype``'s bit patterns (round to nearest even, as families.cast_bits)."""
    if dtype == "F32":
        return f32_bits
    if dtype == "BF16":
        wide = f32_bits.astype(np.uint64)
        return ((wide + 0x7FFF + ((wide >> 16) & 1)) >> 16).astype(np.uint16)
    with np.errstate(over="ignore"):
        return f32_bits.view(np.float32).astype(np.float16).view(np.uint16)
