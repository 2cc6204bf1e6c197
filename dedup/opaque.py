"""Opaque bytes (files not parsed as tensors, container bytes between tensors) matched
against everything stored before by content-defined chunks.

A run is cut into Xet chunks (codec/chunking.py); chunks some object already holds become
references into that object, contiguous ones merged into one piece, and each matched piece
is widened byte by byte over the neighbouring chunks that only partly match (the chunk that
straddles a tensor's start or end in another container), so a tensor copied into an unknown
format costs its few differing bytes, not two whole chunks per tensor. What is left are runs
of new bytes, stored as new blob objects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from weightvault.codec import chunking

#: Where a chunk is held: (object digest, raw offset, length, object raw size).
Held = tuple[str, int, int, int]


@dataclass
class Piece:
    start: int  # offset in the run
    length: int
    digest: str | None = None  # None: new bytes
    object_offset: int = 0


def match_run(run: memoryview, find: Callable[[list[str]], dict[str, Held]],
              object_bytes: Callable[[str, int, int], bytes]) -> tuple[list[Piece], list[tuple[int, int, str]]]:
    """Pieces covering ``run`` in order, and its chunks (start, end, hash)."""
    cuts = chunking.chunks(run)
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
    """Grow ``p`` left down to ``lo`` and right up to ``hi`` (at most a chunk each way) while
    the run's bytes equal the object's."""
    k = min(chunking.MAX_CHUNK, p.start - lo, p.object_offset)
    if k > 0:
        mine = np.frombuffer(run[p.start - k:p.start], np.uint8)[::-1]
        theirs = np.frombuffer(object_bytes(p.digest, p.object_offset - k, p.object_offset), np.uint8)[::-1]
        n = _common_prefix(mine, theirs)
        p.start -= n
        p.object_offset -= n
        p.length += n
    end, obj_end = p.start + p.length, p.object_offset + p.length
    k = min(chunking.MAX_CHUNK, hi - end, size - obj_end)
    if k > 0:
        mine = np.frombuffer(run[end:end + k], np.uint8)
        theirs = np.frombuffer(object_bytes(p.digest, obj_end, obj_end + k), np.uint8)
        p.length += _common_prefix(mine, theirs)


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    diff = np.flatnonzero(a != b)
    return int(diff[0]) if len(diff) else len(a)
