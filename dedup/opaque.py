"""Opaque bytes (files not parsed as tensors, container bytes between tensors) matched
against everything stored before by content-defined chunks.

A run is cut into Xet chunks (codec/chunking.py); chunks some object already holds become
references into that object, contiguous ones merged into one piece, and each matched piece
is widened byte by byte over the neighbouring bytes that still match (the chunk that
straddles a tensor's start or end in another container, chunks cut out of step), so a tensor copied into an unknown
format costs its few differing bytes, not two whole chunks per tensor. What is left are runs
of new bytes, stored as new blob objects.

A matched piece that reaches its object's end is followed further along the layout of a stored
file that holds that object (``follow``): the objects that came next there are taken as long as
the run's bytes equal theirs. Tensors smaller than a chunk (biases, norms), which no chunk of
their own can find, are found that way when a container copies a stored one's tensors in order:
the base's tensors behind an unknown header (bench/hublike.py) left 0.90 MB of new bytes in runs
of small tensors between the large ones, where a CDC store over whole files keeps 0.10 MB.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from sqlalchemy import select

from weightvault.codec import chunking
from weightvault.store.models import Object, Segment

#: Where a chunk is held: (object digest, raw offset, length, object raw size).
Held = tuple[str, int, int, int]
#: What followed an object in a stored file: (object digest, or None for inline bytes; length; inline bytes).
Follow = Callable[[str], list[tuple[str | None, int, bytes | None]]]


@dataclass
class Piece:
    start: int  # offset in the run
    length: int
    digest: str | None = None  # None: new bytes
    object_offset: int = 0


def match_run(run: memoryview, find: Callable[[list[str]], dict[str, Held]],
              object_bytes: Callable[[str, int, int], bytes],
              follow: Follow | None = None,
              cuts: list[tuple[int, int, str]] | None = None) -> tuple[list[Piece], list[tuple[int, int, str]]]:
    """Pieces covering ``run`` in order, and its chunks (start, end, hash; ``cuts`` if the caller cut them)."""
    cuts = chunking.chunks(run) if cuts is None else cuts
    held = find([h for _, _, h in cuts])
    refs: list[Piece] = []
    sizes: dict[str, int] = {}
    for a, b, h in cuts:
        hit = held.get(h)
        if hit is None or hit[2] != b - a:
            continue
        digest, offset, _, size = hit
        sizes[digest] = size
        last = refs[-1] if refs else None
        if last and last.digest == digest and last.start + last.length == a and last.object_offset + last.length == offset:
            last.length += b - a
        else:
            refs.append(Piece(a, b - a, digest, offset))
    for i, p in enumerate(refs):
        _widen(run, p, refs[i - 1].start + refs[i - 1].length if i else 0,
               refs[i + 1].start if i + 1 < len(refs) else len(run), sizes[p.digest], object_bytes)
    if follow is not None:
        bridged = []
        for i, p in enumerate(refs):
            bridged.append(p)
            bridged += _bridge(run, p, refs[i + 1].start if i + 1 < len(refs) else len(run), sizes,
                               object_bytes, follow)
        refs = bridged
    pieces, pos = [], 0
    for p in refs:
        if p.start > pos:
            pieces.append(Piece(pos, p.start - pos))
        pieces.append(p)
        pos = p.start + p.length
    if pos < len(run):
        pieces.append(Piece(pos, len(run) - pos))
    return pieces, cuts


def _widen(run: memoryview, p: Piece, lo: int, hi: int, size: int,
           object_bytes: Callable[[str, int, int], bytes]) -> None:
    """Grow ``p`` left down to ``lo`` and right up to ``hi`` while the run's bytes equal the object's.
    Not only over one chunk: two chunkers that cut the same bytes from different starts can stay
    out of step for several chunks (up to 469 KB inside one tensor of the hub-like corpus)."""
    k = min(p.start - lo, p.object_offset)
    if k > 0:
        mine = np.frombuffer(run[p.start - k:p.start], np.uint8)[::-1]
        theirs = np.frombuffer(object_bytes(p.digest, p.object_offset - k, p.object_offset), np.uint8)[::-1]
        n = _common_prefix(mine, theirs)
        p.start -= n
        p.object_offset -= n
        p.length += n
    end, obj_end = p.start + p.length, p.object_offset + p.length
    k = min(hi - end, size - obj_end)
    if k > 0:
        mine = np.frombuffer(run[end:end + k], np.uint8)
        theirs = np.frombuffer(object_bytes(p.digest, obj_end, obj_end + k), np.uint8)
        p.length += _common_prefix(mine, theirs)


#: Segments followed past one object at most: a layer's small tensors between two large ones are ~10.
BRIDGE_SEGMENTS = 64


def next_segments(session, digest: str) -> list[tuple[str | None, int, bytes | None]]:
    """The segments after one holding the whole object ``digest`` in some stored file, up to the
    first that holds only part of an object."""
    first = session.execute(select(Segment.file_id, Segment.seq).join(Object, Object.id == Segment.object_id)
                            .where(Object.digest == digest, Segment.object_offset == 0,
                                   Segment.length == Object.raw_size).limit(1)).first()
    if first is None:
        return []
    rows = session.execute(
        select(Segment.length, Segment.inline, Object.digest, Segment.object_offset, Object.raw_size)
        .outerjoin(Object, Object.id == Segment.object_id)
        .where(Segment.file_id == first.file_id, Segment.seq > first.seq, Segment.seq <= first.seq + BRIDGE_SEGMENTS)
        .order_by(Segment.seq)).all()
    found = []
    for length, inline, held, offset, size in rows:
        if held is not None and (offset != 0 or length != size):
            break
        found.append((held, length, inline))
    return found


def _bridge(run: memoryview, p: Piece, hi: int, sizes: dict[str, int],
            object_bytes: Callable[[str, int, int], bytes], follow: Follow) -> list[Piece]:
    """References to the objects that followed ``p``'s object in a stored file, for as long as the
    run's bytes up to ``hi`` equal them (inline bytes that equal are passed over, as new bytes)."""
    pos = p.start + p.length
    if pos >= hi or p.object_offset + p.length != sizes[p.digest]:
        return []
    found = []
    for digest, length, inline in follow(p.digest):
        if pos + length > hi:
            break
        theirs = inline if digest is None else object_bytes(digest, 0, length)
        if bytes(run[pos:pos + length]) != bytes(theirs):
            break
        if digest is not None:
            found.append(Piece(pos, length, digest, 0))
        pos += length
    return found


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    diff = np.flatnonzero(a != b)
    return int(diff[0]) if len(diff) else len(a)
