"""Reading files back: stream any byte range, decoding only the frames it touches.

A read is planned, then run in chunks:

* **Plan.** A file's segments (one query) and the frame lists of its objects (two
  queries, shared by the process for ``PLAN_TTL_SECONDS``) give, for any byte range,
  the frames to decode and where their payloads lie in which pack.
* **Chunks.** The range is cut into chunks of about ``CHUNK_BYTES`` of raw bytes. A
  chunk reads each run of neighbouring frames of one pack with one backend read,
  then decodes every frame straight into the chunk's output buffer.
* **Both cores.** Chunks are decoded on a small process-wide pool, a few ahead of
  the consumer and handed over in order, so memory per stream stays bounded
  (about ``(READ_AHEAD + 1) x CHUNK_BYTES``) whatever the file's size.
* **Bases.** A delta frame needs the same elements of its base: only the base
  frames under it are decoded (never a whole base tensor), into a process-wide
  cache bounded in bytes (dedup/base_cache.py), so the base a family shares is
  decoded, and cast to a member's dtype, once for every member, file and request.
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import sys
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from sqlalchemy import select

from weightvault import codec
from weightvault.errors import IntegrityError
from weightvault.store import Vault
from weightvault.store.models import File, Frame, Object, Pack, Segment

from .base_cache import UNIT, BaseCache

#: Raw bytes per chunk: 16 frames. Per-chunk costs (a pool hand-over, one backend read
#: per pack run, one buffer) stay near 1% of the decode time, and the chunk is small
#: enough that the first byte waits for little (see FIRST_CHUNK_BYTES).
CHUNK_BYTES = 16 * codec.FRAME_SIZE
#: The first chunk of a stream is one frame, so that the first byte waits for one
#: frame's decode rather than sixteen.
FIRST_CHUNK_BYTES = codec.FRAME_SIZE
#: Chunks decoded ahead of the one being consumed. Two keep both decode threads busy
#: while the consumer (a socket, a file, sha256) takes the third.
READ_AHEAD = 3
#: Decode threads shared by every stream of the process: one per core of the 2-core
#: machines this runs on; more only queue behind each other.
DECODE_THREADS = max(2, min(4, os.cpu_count() or 2))
#: Two frames whose payloads are at most this far apart in a pack are fetched with one
#: read (the gap is an entry header, or a few small frames of other objects).
COALESCE_GAP = 64 * 1024

#: Decoded base bytes kept per process: a family base of the shared set (91 MB FP32) fits
#: with its casts to BF16 for the cast and the fine-tunes (181 MB in all).
#: ``WEIGHTVAULT_BASE_CACHE_MB`` overrides it.
BASE_CACHE_BYTES = int(os.environ.get("WEIGHTVAULT_BASE_CACHE_MB", "256")) << 20

#: Frame lists are shared by the readers of a process for this long, so that a
#: Range request on an object read recently needs no catalog query. Kept far
#: below gc's grace period (an hour): compaction may move frames, and their old
#: pack stays readable for the grace period.
PLAN_TTL_SECONDS = 300.0
PLAN_CACHE_OBJECTS = 4096
#: Object ids per ``IN (...)`` list: far under SQLite's and PostgreSQL's parameter limits.
PREFETCH_BATCH = 900

# The read path's queries name table columns, not mapped attributes: Core statements skip the
# ORM's compile step. Preloading a repo's plans in a fresh process (three queries), median of 6
# alternating runs: 11.6 -> 9.4 ms.
_FILES, _SEGMENTS = File.__table__, Segment.__table__
_OBJECTS, _FRAMES, _PACKS = Object.__table__, Frame.__table__, Pack.__table__


@dataclass(frozen=True)
class FrameRef:
    seq: int
    raw_offset: int
    raw_size: int
    pack: str
    offset: int
    size: int
    codec: str


@dataclass
class ObjectPlan:
    id: int
    digest: str
    dtype: str | None
    base_id: int | None
    base_dtype: str | None
    frames: list[FrameRef]
    starts: list[int]

    def frames_in(self, start: int, end: int) -> Iterator[FrameRef]:
        """The frames holding bytes [start, end) of the object, in order."""
        i = max(bisect.bisect_right(self.starts, start) - 1, 0)
        while i < len(self.frames) and self.frames[i].raw_offset < end:
            yield self.frames[i]
            i += 1


class _Lru:
    """A thread-safe LRU of at most ``capacity`` entries, whose entries older than ``ttl``
    seconds are not returned."""

    def __init__(self, capacity: int, *, ttl: float | None = None) -> None:
        self.capacity, self.ttl = capacity, ttl
        self._lock = threading.Lock()
        self._entries: OrderedDict = OrderedDict()  # key -> (time stored, value)

    def get(self, key):
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or (self.ttl is not None and time.monotonic() - hit[0] > self.ttl):
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key, value) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (time.monotonic(), value)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def drop(self, key) -> None:
        with self._lock:
            self._entries.pop(key, None)


class _Buffers:
    """Chunk buffers, reused once nothing but the pool refers to them.

    Fresh pages cost a page fault and a zeroing each: 9% of the server's CPU streaming the
    FP32 base in new 4 MiB buffers. A consumer may hold a chunk after asking for the next
    (a socket transport keeps it until the kernel has taken every byte), so a buffer is
    handed out again only when its reference count says no view of it is left.
    """

    #: References to an idle buffer while ``take`` looks at it: the pool's list, the loop
    #: variable and getrefcount's argument.
    IDLE_REFS = 3

    def __init__(self, size: int, count: int) -> None:
        self.size, self.count = size, count
        self._lock = threading.Lock()
        self._arrays: list[np.ndarray] = []

    def take(self, n: int) -> memoryview:
        """A writable buffer of ``n`` bytes, for as long as the caller holds it."""
        if n <= self.size:
            with self._lock:
                for a in self._arrays:
                    if sys.getrefcount(a) == self.IDLE_REFS:
                        return memoryview(a)[:n]
                if len(self._arrays) < self.count:
                    self._arrays.append(np.empty(self.size, np.uint8))
                    return memoryview(self._arrays[-1])[:n]
        return memoryview(np.empty(n, np.uint8))


#: (catalog, object id) -> ObjectPlan.
_shared_plans = _Lru(PLAN_CACHE_OBJECTS, ttl=PLAN_TTL_SECONDS)
#: (catalog, file id, sha256) -> the ObjectPlans a read that matched the sha256 went through.
_verified = _Lru(PLAN_CACHE_OBJECTS)
#: Buffers for chunks (which end at the frame that takes them past CHUNK_BYTES), and for the
#: bases of a read that keeps none: enough for two streams' chunks in flight (read ahead, the
#: one consumed, the socket's queue) or one restore's chunks with their bases and a cast's
#: scratch, 68 MiB at most once touched.
_buffers = _Buffers(CHUNK_BYTES + codec.FRAME_SIZE, 16)
#: Bases under the delta frames read by this process (see dedup/base_cache.py).
_bases = BaseCache(BASE_CACHE_BYTES)


#: Codecs whose frames may need their object's base.
_BASE_CODECS = frozenset(name for name in codec.CODECS if codec.CODECS.impl(name).needs_base)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _decode_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="wv-read")
        return _pool


@dataclass(frozen=True)
class _Piece:
    """Part of a chunk: inline bytes, or bytes [lo, hi) of one frame of an object."""

    size: int
    inline: bytes | memoryview | None = None
    plan: ObjectPlan | None = None
    ref: FrameRef | None = None
    lo: int = 0
    hi: int = 0


class Reader:
    """Decodes objects and files of one vault; cheap to create, one per request or stream.

    With ``keep_bases`` False, the bases of delta frames are decoded into pooled buffers for the
    run of frames that needs them and not kept: for a repo read once (``get``), where filling
    the process-wide cache costs more than it saves. New pages cost 0.55 ms per MB on
    this machine, decoding the FP32 base's frames 0.19 ms per MB: the cache's pages cost a
    restore of the FP32 fine-tune more than decoding its base again would.
    """

    def __init__(self, vault: Vault, *, keep_bases: bool = True) -> None:
        self.vault = vault
        self.keep_bases = keep_bases
        self._plans: dict[int, ObjectPlan] = {}
        self._layouts: dict[int, tuple[int, list]] = {}  # file id -> (size, segments), see preload

    # -- plans ------------------------------------------------------------------

    def plan(self, object_id: int) -> ObjectPlan:
        if object_id not in self._plans:
            self.prefetch([object_id])
        return self._plans[object_id]

    def prefetch(self, object_ids) -> None:
        """Load the frame lists of several objects, and of their bases, in two queries per
        PREFETCH_BATCH objects and level of bases."""
        url = self.vault.catalog.url
        wanted = []
        for i in set(object_ids):
            if i in self._plans:
                continue
            shared = _shared_plans.get((url, i))
            if shared is not None:
                self._plans[i] = shared
            else:
                wanted.append(i)
        if not wanted:
            return
        bases = _OBJECTS.alias("base")
        o, base, f, p = _OBJECTS.c, bases.c, _FRAMES.c, _PACKS.c
        objects, frames = [], {i: [] for i in wanted}
        with self.vault.catalog.read_session() as s:
            for at in range(0, len(wanted), PREFETCH_BATCH):
                batch = wanted[at:at + PREFETCH_BATCH]
                objects += s.execute(
                    select(o.id, o.digest, o.dtype, o.base_id, base.dtype)
                    .outerjoin(bases, base.id == o.base_id).where(o.id.in_(batch))).all()
                for row in s.execute(
                        select(f.object_id, f.seq, f.raw_offset, f.raw_size, p.name, f.pack_offset, f.size, f.codec)
                        .join(_PACKS, p.id == f.pack_id).where(f.object_id.in_(batch)).order_by(f.object_id, f.seq)):
                    frames[row[0]].append(FrameRef(*row[1:]))
        for oid, digest, dtype, base_id, base_dtype in objects:
            refs = frames[oid]
            self._plans[oid] = ObjectPlan(oid, digest, dtype, base_id, base_dtype, refs, [f.raw_offset for f in refs])
            _shared_plans.put((url, oid), self._plans[oid])
        # Their bases too, one level per call (chains are bounded in depth): decode threads asked
        # for each base tensor's frames on its own, two queries per tensor of a cold member.
        self.prefetch(b for _, _, _, b, _ in objects if b is not None)

    def forget(self, object_ids) -> None:
        """Drop cached frame lists (this process's) of objects whose frames were just replaced."""
        for i in object_ids:
            self._plans.pop(i, None)
            _shared_plans.drop((self.vault.catalog.url, i))

    # -- decoding -----------------------------------------------------------------

    def _fail(self, plan: ObjectPlan, ref: FrameRef, why) -> IntegrityError:
        return IntegrityError(f"object {plan.digest[:16]} frame {ref.seq} (pack {ref.pack} @ {ref.offset}): {why}")

    def _decode_into(self, plan: ObjectPlan, ref: FrameRef, payload: memoryview, out: memoryview) -> None:
        """Decode one frame whose payload was read into ``out`` (exactly its raw size).

        Whether it needs a base comes from the catalog's codec name, not from parsing the frame
        header first (that parse was 9% of the CPU of serving the BF16 cast): a frame that needs
        a base it was not given is refused by the decoder all the same.
        """
        try:
            if plan.base_id is not None and ref.codec in _BASE_CODECS:
                with self._base(plan, ref.codec, ref.raw_offset, ref.raw_size) as (base, base_dtype):
                    codec.decode_frame(payload, out, base=base, base_dtype=base_dtype)
            else:
                codec.decode_frame(payload, out)
        except codec.CodecError as exc:
            raise self._fail(plan, ref, exc) from exc

    @contextmanager
    def _base(self, plan: ObjectPlan, codec_name: str, raw_offset: int, raw_size: int):
        """(bytes, dtype) of the base elements under member bytes [raw_offset, +raw_size) of
        ``plan``'s object, from the base's own frames only, held until the with-block ends.

        A base kept in the cache is held in the member's dtype for frames of codecs coded in C
        (cast once, when the cache fills). A base decoded for one run of frames and let go is
        handed over in its own dtype: the C decoder casts it straight into the member's bytes,
        where casting it first cost a pass into a pooled buffer and then a copy of it.
        """
        base = self.plan(plan.base_id)
        dtype = plan.dtype if self.keep_bases and codec_name in codec.BATCH_CODECS else plan.base_dtype
        k, bk, base_k = codec.itemsize(plan.dtype), codec.itemsize(dtype), codec.itemsize(plan.base_dtype)
        if raw_offset % k or raw_size % k:
            raise self._fail(plan, plan.frames[0], f"bytes {raw_offset}+{raw_size} are not whole {plan.dtype} elements")
        base_size = base.frames[-1].raw_offset + base.frames[-1].raw_size if base.frames else 0
        size = base_size // base_k * bk
        lo, hi = raw_offset // k * bk, (raw_offset + raw_size) // k * bk
        if hi > size:
            raise self._fail(plan, plan.frames[0], f"base object {base.digest[:16]} has no elements under bytes "
                                                   f"{raw_offset}+{raw_size}")

        def decode(out: memoryview, lo: int, hi: int) -> None:
            self._run_chunk(list(self._object_pieces(base.id, lo, hi)), out)

        def cast(out: memoryview, lo: int, hi: int) -> None:
            # Through pooled chunk buffers, a few units at a time: new pages cost more than the
            # decode on this machine (0.55 ms per MB faulted in), and a cast view of the base is
            # all that is kept (the base's own view, kept too, cost the BF16 cast's first read
            # 91 MB of new pages to spare a later FP32 member one decode of the base).
            step = max(_buffers.size // base_k * bk // UNIT * UNIT, UNIT)
            for at in range(lo, hi, step):
                end = min(at + step, hi)
                part = self._run_chunk(list(self._object_pieces(base.id, at // bk * base_k, end // bk * base_k)))
                codec.cast(part, plan.base_dtype, dtype, out[at - lo:end - lo])

        fill = decode if dtype == plan.base_dtype else cast
        if not self.keep_bases:
            out = _buffers.take(hi - lo)
            fill(out, lo, hi)
            yield out.toreadonly(), dtype
            return
        with _bases.pinned((base.digest, dtype), size, lo, hi, fill) as view:
            yield view, dtype

    def _run_chunk(self, pieces: list[_Piece], out: memoryview | None = None) -> memoryview:
        """Decode one chunk: neighbouring frames of a pack in one read, every frame into ``out``
        (a new buffer if None)."""
        if out is None:
            out = _buffers.take(sum(p.size for p in pieces))
        at, i = 0, 0
        while i < len(pieces):
            p = pieces[i]
            if p.inline is not None:
                out[at:at + p.size] = p.inline
                at += p.size
                i += 1
                continue
            j = i + 1  # pieces[i:j] are frames of one pack read with one call
            while (j < len(pieces) and pieces[j].ref is not None and pieces[j].ref.pack == p.ref.pack
                   and 0 <= pieces[j].ref.offset - (pieces[j - 1].ref.offset + pieces[j - 1].ref.size) <= COALESCE_GAP):
                j += 1
            first, last = p.ref, pieces[j - 1].ref
            span = memoryview(self.vault.read(first.pack, first.offset, last.offset + last.size - first.offset))
            while i < j:
                q = pieces[i]
                k = self._batch_end(pieces, i, j)  # pieces[i:k] are whole frames that decode in one call
                if k - i > 1:
                    size = sum(p.size for p in pieces[i:k])
                    try:
                        if any(p.ref.codec in _BASE_CODECS for p in pieces[i:k]):
                            with self._base(q.plan, q.ref.codec, q.ref.raw_offset, size) as (base, base_dtype):
                                codec.decode_frames(span, [p.ref.offset - first.offset for p in pieces[i:k]],
                                                    out[at:at + size], base=base, base_dtype=base_dtype)
                        else:
                            codec.decode_frames(span, [p.ref.offset - first.offset for p in pieces[i:k]], out[at:at + size])
                    except (codec.CodecError, IntegrityError) as exc:  # one by one, so that the error names the frame
                        for p in pieces[i:k]:
                            self._decode_piece(p, span[p.ref.offset - first.offset:][:p.ref.size], memoryview(bytearray(p.size)))
                        raise self._fail(pieces[i].plan, pieces[i].ref, exc) from exc
                    at += size
                    i = k
                    continue
                self._decode_piece(q, span[q.ref.offset - first.offset:][:q.ref.size], out[at:at + q.size])
                at += q.size
                i += 1
        return out

    def _batch_end(self, pieces: list[_Piece], i: int, j: int) -> int:
        """The end k of the run pieces[i:k] (within a pack read pieces[i:j]) that decodes in one C call:
        whole frames of codecs coded in C that need no base, of any objects; or, from a frame that
        needs its base, neighbouring frames of that one member, which then share one slice of the
        base (one cache lookup and one call per run instead of a Python call per frame: 25-40 us of
        a 256 KiB frame's decode)."""
        def whole(p: _Piece) -> bool:
            return p.ref.codec in codec.BATCH_CODECS and p.size == p.ref.raw_size
        k, first = i, pieces[i]
        if first.ref.codec in _BASE_CODECS:
            if first.plan.base_id is None:
                return i
            end = first.ref.raw_offset
            # A base decoded for this run alone is in its own dtype, up to twice the member's
            # bytes (F32 under BF16): the run stops where it would outgrow a pooled buffer.
            limit = float("inf") if self.keep_bases else first.ref.raw_offset + (
                _buffers.size * codec.itemsize(first.plan.dtype) // codec.itemsize(first.plan.base_dtype))
            while (k < j and pieces[k].plan is first.plan and pieces[k].ref.raw_offset == end and whole(pieces[k])
                   and (k == i or end + pieces[k].ref.raw_size <= limit)):
                end += pieces[k].ref.raw_size
                k += 1
            return k
        while k < j and pieces[k].ref.codec not in _BASE_CODECS and whole(pieces[k]):
            k += 1
        return k

    def _decode_piece(self, q: _Piece, payload: memoryview, out: memoryview) -> None:
        if (q.lo, q.hi) == (0, q.ref.raw_size):
            self._decode_into(q.plan, q.ref, payload, out)
        else:  # a Range that cuts a frame: decode it whole, keep the part asked for
            whole = memoryview(bytearray(q.ref.raw_size))
            self._decode_into(q.plan, q.ref, payload, whole)
            out[:] = whole[q.lo:q.hi]

    def _chunks(self, pieces: Iterator[_Piece]) -> Iterator[list[_Piece]]:
        """Group pieces into chunks: the first about one frame, then about CHUNK_BYTES each."""
        chunk: list[_Piece] = []
        held, goal = 0, FIRST_CHUNK_BYTES
        for p in pieces:
            chunk.append(p)
            held += p.size
            if held >= goal:
                yield chunk
                chunk, held, goal = [], 0, CHUNK_BYTES
        if chunk:
            yield chunk

    def _decoded(self, pieces: Iterator[_Piece]) -> Iterator[memoryview]:
        """Chunks decoded READ_AHEAD ahead of the consumer, yielded in order. The first chunk (one
        frame) is decoded in the caller's thread while the pool starts on the next READ_AHEAD: the
        first byte waits for one frame's decode and no hand-over to the pool and back, and a read
        of one chunk (a small file, most Range requests) never touches the pool."""
        chunks = self._chunks(pieces)
        first = next(chunks, None)
        if first is None:
            return
        pool = _decode_pool()
        pending: deque = deque(pool.submit(self._run_chunk, c) for c in itertools.islice(chunks, READ_AHEAD))
        try:
            yield self._run_chunk(first)
            for chunk in chunks:
                pending.append(pool.submit(self._run_chunk, chunk))
                yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:  # the consumer stopped early: drop what was not started
                f.cancel()

    def _object_pieces(self, object_id: int, start: int, end: int) -> Iterator[_Piece]:
        plan = self.plan(object_id)
        for ref in plan.frames_in(start, end):
            lo, hi = max(start - ref.raw_offset, 0), min(end - ref.raw_offset, ref.raw_size)
            yield _Piece(hi - lo, plan=plan, ref=ref, lo=lo, hi=hi)

    # -- objects ----------------------------------------------------------------

    def iter_object(self, object_id: int, start: int, end: int) -> Iterator[memoryview]:
        """Bytes [start, end) of an object, in chunks."""
        return self._decoded(self._object_pieces(object_id, start, end))

    def object_range(self, object_id: int, start: int, end: int) -> memoryview:
        """Bytes [start, end) of an object in one buffer."""
        pieces = list(self._object_pieces(object_id, start, end))
        if len(pieces) <= 1:
            return self._run_chunk(pieces)
        # Each chunk decodes straight into its place in the result: decoding into chunk buffers and
        # copying them over was a memmove of every byte (the FP32 base an ingest codes the FP32
        # fine-tune against: 91 MB). At most READ_AHEAD chunks wait on the pool, which streams
        # share; this thread decodes a chunk whenever that many do.
        out = memoryview(np.empty(sum(p.size for p in pieces), np.uint8))
        pool, pending, at = _decode_pool(), deque(), 0
        try:
            for chunk in self._chunks(iter(pieces)):
                size = sum(p.size for p in chunk)
                while pending and pending[0].done():
                    pending.popleft().result()
                if len(pending) < READ_AHEAD:
                    pending.append(pool.submit(self._run_chunk, chunk, out[at:at + size]))
                else:
                    self._run_chunk(chunk, out[at:at + size])
                at += size
            while pending:
                pending.popleft().result()
        finally:
            for job in pending:  # on an error: drop what was not started, wait for what was
                job.cancel()
            wait(pending)
        return out

    # -- files ------------------------------------------------------------------

    def preload(self, files) -> None:
        """Load the segments of many files, and the frame lists of their objects, in a few queries
        (one per PREFETCH_BATCH files, then ``prefetch``'s), for reading them one after another:
        restoring the FP32 fine-tune asked 29 queries of the catalog one file at a time, 40 of
        the 180 ms of its restore in a fresh process."""
        files = {f.id: f.size for f in files}
        ids = list(files)
        layouts: dict[int, list] = {i: [] for i in ids}
        g = _SEGMENTS.c
        with self.vault.catalog.read_session() as s:
            for at in range(0, len(ids), PREFETCH_BATCH):
                for row in s.execute(
                        select(g.file_id, g.offset, g.length, g.inline, g.object_id, g.object_offset)
                        .where(g.file_id.in_(ids[at:at + PREFETCH_BATCH])).order_by(g.file_id, g.seq)):
                    layouts[row[0]].append(row[1:])
        self._layouts.update((i, (files[i], segs)) for i, segs in layouts.items())
        self.prefetch(seg[3] for segs in layouts.values() for seg in segs if seg[3] is not None)

    def _segments(self, file_id: int) -> tuple[int, list]:
        """(size, segments) of a file, in one query: a restore asks it of every file it writes."""
        if file_id in self._layouts:
            return self._layouts.pop(file_id)
        f, g = _FILES.c, _SEGMENTS.c
        with self.vault.catalog.read_session() as s:
            rows = s.execute(
                select(f.size, g.offset, g.length, g.inline, g.object_id, g.object_offset)
                .outerjoin(_SEGMENTS, g.file_id == f.id).where(f.id == file_id).order_by(g.seq)
            ).all()
        if not rows:
            raise IntegrityError(f"file {file_id} is not in the catalog")
        return rows[0][0], [r[1:] for r in rows if r[1] is not None]

    def iter_file(self, file_id: int, start: int = 0, end: int | None = None, *,
                  _layout: tuple[int, list] | None = None) -> Iterator[memoryview]:
        """Bytes [start, end) of a file, in chunks of about CHUNK_BYTES."""
        size, segments = _layout or self._segments(file_id)
        end = size if end is None else min(end, size)
        self.prefetch(oid for off, length, _, oid, _ in segments if oid is not None and off < end and off + length > start)

        def pieces() -> Iterator[_Piece]:
            for seg_off, seg_len, inline, object_id, obj_off in segments:
                lo, hi = max(start, seg_off), min(end, seg_off + seg_len)
                if lo >= hi:
                    continue
                if inline is not None:
                    yield _Piece(hi - lo, inline=memoryview(inline)[lo - seg_off:hi - seg_off])
                else:
                    yield from self._object_pieces(object_id, obj_off + lo - seg_off, obj_off + hi - seg_off)
        return self._decoded(pieces())

    def verified_file(self, file: File, *, once: bool = False) -> Iterator[memoryview]:
        """The whole file, checking its size and sha256 at the end (raises IntegrityError).

        With ``once``, a file whose bytes this process already checked, through the same frame
        lists, is not hashed again: what a second read could get wrong is then only what lies
        in the packs, and every frame's CRC32C is checked as it is decoded (as for every Range
        read). The server uses it: sha256 was a quarter of its CPU per download of the FP32 base.
        ``get`` and ``verify`` always hash.
        """
        layout = self._segments(file.id)
        key = (self.vault.catalog.url, file.id, file.sha256)
        if once:
            self.prefetch(oid for _, _, _, oid, _ in layout[1] if oid is not None)
            plans = tuple(self._plans[oid] for _, _, _, oid, _ in layout[1] if oid is not None)
            seen = _verified.get(key)
            if seen is not None and len(seen) == len(plans) and all(a is b for a, b in zip(seen, plans)):
                yield from self.iter_file(file.id, _layout=layout)
                return
        h, n = hashlib.sha256(), 0
        for piece in self.iter_file(file.id, _layout=layout):
            h.update(piece)
            n += len(piece)
            yield piece
        if n != file.size or h.hexdigest() != file.sha256:
            raise IntegrityError(f"file {file.sha256[:16]}: restored bytes do not match its sha256")
        if once:
            _verified.put(key, plans)
