"""Content fingerprints of float tensors, and the index that finds a new tensor's base by them.

A fingerprint is a tensor's values, as float32 bit patterns, at 32 fixed positions: 16 among its
first 65,536 elements (scaled into smaller tensors), which a tensor grown by rows shares with the
one it grew from, and 16 spread over the whole tensor, which see what training changed anywhere
(the first rows of a word embedding are tokens no fine-tune touches: sampled there alone, the
base and a later fine-tune looked alike, and the continued fine-tune of bench/hublike.py was
coded against the wrong one, 0.491 of raw instead of 0.45). 128 bytes, whatever the tensor's
name, dtype or container, kept on the object's catalog row (``objects.fingerprint``), so the
catalog journal records it and ``recover`` rebuilds it without decoding a frame.

The index is locality-sensitive: the 32 positions form four bands of eight (two of prefix
positions, two of spread ones), and a band's key is a hash of those eight values' sign and
exponent (what a dtype cast keeps, and what fine-tuning rarely changes). Each key is an indexed
column of ``objects``, so a lookup is four B-tree probes: O(log N) in the number of stored
tensors plus the hits, never a scan (bench/fingerprint.py measures it at up to 2 M tensors). A
tensor is found when one band agrees entirely: at 97% of positions agreeing in sign and exponent
(fine-tunes and casts of the shared MiniLM repos agree on 97% or more, dedup/families.py) that is
1 - (1 - 0.97^8)^4 = 99.8%; tensors that merely look alike statistically agree far less per
position (0.2^8 per band), so unrelated hits stay rare. A band of fewer than three distinct
sign+exponent codes (a LayerNorm scale of ones, a zero tensor) says nothing and is not indexed;
such tensors are found by name only.

Candidates are ranked on the fingerprints alone, in the new tensor's dtype after casting the
candidate to it: the share agreeing in sign and exponent must reach ``SIMILAR_ENOUGH``, and the
mean number of leading bits a candidate's values share with ours predicts what an XOR delta
against it costs; the depth of its own delta chain breaks ties.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sqlalchemy import bindparam, or_, select, update

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

#: Fixed forever: stored fingerprints depend on them. Prefix positions (the first two bands) in
#: random order, so that each band spreads over the whole window; spread positions (the last two
#: bands) as fractions of the tensor's length.
_rng = np.random.default_rng(0x5EED)
PREFIX = _rng.choice(WINDOW, 2 * BAND_WIDTH, replace=False).astype(np.int64)
SPREAD = _rng.random(2 * BAND_WIDTH)
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
    return _pack(np.frombuffer(data, dtype=_WIDTH[dtype], count=n)[positions(n)], dtype)


def positions(n: int) -> np.ndarray:
    """The 32 sampled element indices of a tensor of ``n`` elements."""
    prefix = PREFIX if n >= WINDOW else (PREFIX * n) >> 16
    return np.concatenate([prefix, (SPREAD * n).astype(np.int64)])


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
    return _columns(of(data, dtype))


def _columns(fp: bytes | None) -> dict:
    return {"fingerprint": fp, **{c.key: k for c, k in zip(BAND_COLUMNS, bands(fp))}}


@dataclass(frozen=True)
class Hit:
    object_id: int
    digest: str
    dtype: str
    raw_size: int
    depth: int
    fingerprint: bytes | None


#: One statement for every lookup (a band too uniform to index binds NULL, which matches nothing):
#: building the query per tensor cost 1.0 of its 1.7 ms.
_LOOKUP = (select(Object.id, Object.digest, Object.dtype, Object.raw_size, Object.depth, Object.fingerprint)
           .where(or_(*(col == bindparam(col.key) for col in BAND_COLUMNS))).limit(bindparam("limit")))


def lookup(session, fp: bytes | None, limit: int = MAX_HITS) -> list[Hit]:
    """Stored tensors sharing a band with ``fp`` (at most ``limit``)."""
    keys = bands(fp)
    if all(k is None for k in keys):
        return []
    params = {col.key: k for col, k in zip(BAND_COLUMNS, keys)}
    # On the session's connection (Core rows, no ORM result processing): ingest asks once per tensor
    # of the repo, and through the ORM the lookups were 0.6 of base_for's CPU.
    return [Hit(*r) for r in session.connection().execute(_LOOKUP, {**params, "limit": limit}).all()]


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
    how many. Each costs the decode of its frames holding sampled positions (at most 17, most in the
    first); rows are updated and recorded a batch per transaction."""
    with vault.catalog.read_session() as s:
        todo = s.execute(select(Object.id, Object.dtype, Object.raw_size).where(
            Object.kind == "tensor", Object.fingerprint.is_(None), Object.dtype.in_(FLOAT_DTYPES))).all()
    for at in range(0, len(todo), batch):
        rows = [{"id": oid, **_columns(_sampled(reader, oid, dtype, size))} for oid, dtype, size in todo[at:at + batch]]
        with vault.catalog.write_session() as s:
            s.execute(update(Object), rows)
            for row in rows:
                journal.touch(s, Object, row["id"])
    return len(todo)


def _sampled(reader, object_id: int, dtype: str, raw_size: int) -> bytes | None:
    """A stored object's fingerprint, reading only its values at the sampled positions."""
    width = BITS[dtype] // 8
    n = raw_size // width
    if n == 0:
        return None
    values = [reader.object_range(object_id, i * width, (i + 1) * width) for i in positions(n)]
    return _pack(np.frombuffer(b"".join(bytes(v) for v in values), dtype=_WIDTH[dtype]), dtype)


def _pack(values: np.ndarray, dtype: str) -> bytes:
    return _as_f32_bits(values, dtype).astype("<u4").tobytes()


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
