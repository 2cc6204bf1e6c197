"""Reading files back: stream any byte range, decoding only the frames it touches.

Delta frames need the same elements of their base; those are decoded through
the same path (bounded by the depth recorded at ingest) and kept in a small
LRU so that a file streaming through consecutive frames decodes each base frame
once.
"""
from __future__ import annotations

import bisect
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import select

from weightvault import codec
from weightvault.errors import IntegrityError
from weightvault.store import Vault
from weightvault.store.models import File, Frame, Object, Pack, Segment

#: Decoded frames kept per reader; 16 x 256 KiB = 4 MiB, enough for a base and
#: its own base while a member file streams frame after frame.
CACHE_FRAMES = 16


#: Frame lists are shared by the readers of a process for this long, so that a
#: Range request on an object read recently needs no catalog query. Kept far
#: below gc's grace period (an hour): compaction may move frames, and their old
#: pack stays readable for the grace period.
PLAN_TTL_SECONDS = 300.0
PLAN_CACHE_OBJECTS = 4096


class _SharedPlans:
    """A thread-safe LRU of object plans with an age limit, keyed by catalog and object id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: OrderedDict[tuple[str, int], tuple[float, "ObjectPlan"]] = OrderedDict()

    def get(self, key: tuple[str, int]) -> "ObjectPlan | None":
        with self._lock:
            hit = self._plans.get(key)
            if hit is None or time.monotonic() - hit[0] > PLAN_TTL_SECONDS:
                return None
            self._plans.move_to_end(key)
            return hit[1]

    def drop(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._plans.pop(key, None)

    def put(self, key: tuple[str, int], plan: "ObjectPlan") -> None:
        with self._lock:
            self._plans[key] = (time.monotonic(), plan)
            self._plans.move_to_end(key)
            while len(self._plans) > PLAN_CACHE_OBJECTS:
                self._plans.popitem(last=False)


_shared_plans = _SharedPlans()


@dataclass(frozen=True)
class FrameRef:
    seq: int
    raw_offset: int
    raw_size: int
    pack: str
    offset: int
    size: int


@dataclass
class ObjectPlan:
    id: int
    digest: str
    dtype: str | None
    base_id: int | None
    base_dtype: str | None
    frames: list[FrameRef]
    starts: list[int]


class Reader:
    """Decodes objects and files of one vault; cheap to create, one per request or stream."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._plans: dict[int, ObjectPlan] = {}
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    # -- objects ----------------------------------------------------------------

    def plan(self, object_id: int) -> ObjectPlan:
        if object_id not in self._plans:
            self.prefetch([object_id])
        return self._plans[object_id]

    def prefetch(self, object_ids) -> None:
        """Load the frame lists of several objects in two queries (a file's tensors, typically)."""
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
        base = Object.__table__.alias("base")
        with self.vault.catalog.read_session() as s:
            objects = s.execute(
                select(Object.id, Object.digest, Object.dtype, Object.base_id, base.c.dtype)
                .outerjoin(base, base.c.id == Object.base_id).where(Object.id.in_(wanted))).all()
            frames: dict[int, list[FrameRef]] = {i: [] for i in wanted}
            for row in s.execute(
                    select(Frame.object_id, Frame.seq, Frame.raw_offset, Frame.raw_size, Pack.name, Frame.pack_offset,
                           Frame.size).join(Pack, Pack.id == Frame.pack_id)
                    .where(Frame.object_id.in_(wanted)).order_by(Frame.object_id, Frame.seq)):
                frames[row[0]].append(FrameRef(*row[1:]))
        for oid, digest, dtype, base_id, base_dtype in objects:
            refs = frames[oid]
            self._plans[oid] = ObjectPlan(oid, digest, dtype, base_id, base_dtype, refs, [f.raw_offset for f in refs])
            _shared_plans.put((url, oid), self._plans[oid])

    def forget(self, object_ids) -> None:
        """Drop cached frame lists (this process's) of objects whose frames were just replaced."""
        for i in object_ids:
            self._plans.pop(i, None)
            _shared_plans.drop((self.vault.catalog.url, i))
            for key in [k for k in self._cache if k[0] == i]:
                del self._cache[key]

    def frame(self, plan: ObjectPlan, ref: FrameRef) -> bytes:
        key = (plan.id, ref.seq)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        payload = self.vault.read(ref.pack, ref.offset, ref.size)
        try:
            info = codec.frame_info(payload)
            kw = {}
            if info.needs_base:
                if plan.base_id is None:
                    raise codec.CodecError("delta frame but the object has no base")
                b_off, b_len = codec.base_range(ref.raw_offset, ref.raw_size, plan.dtype, plan.base_dtype)
                kw = {"base": self.object_range(plan.base_id, b_off, b_off + b_len), "base_dtype": plan.base_dtype}
            raw = bytes(codec.decode_frame(payload, **kw))
        except codec.CodecError as exc:
            raise IntegrityError(f"object {plan.digest[:16]} frame {ref.seq} (pack {ref.pack} @ {ref.offset}): {exc}") from exc
        if len(raw) != ref.raw_size:
            raise IntegrityError(f"object {plan.digest[:16]} frame {ref.seq}: {len(raw)} bytes, catalog says {ref.raw_size}")
        self._cache[key] = raw
        if len(self._cache) > CACHE_FRAMES:
            self._cache.popitem(last=False)
        return raw

    def iter_object(self, object_id: int, start: int, end: int) -> Iterator[bytes]:
        plan = self.plan(object_id)
        i = max(bisect.bisect_right(plan.starts, start) - 1, 0)
        while i < len(plan.frames) and plan.frames[i].raw_offset < end:
            ref = plan.frames[i]
            raw = self.frame(plan, ref)
            lo, hi = max(start - ref.raw_offset, 0), min(end - ref.raw_offset, ref.raw_size)
            yield raw if (lo, hi) == (0, ref.raw_size) else raw[lo:hi]
            i += 1

    def object_range(self, object_id: int, start: int, end: int) -> bytes:
        return b"".join(self.iter_object(object_id, start, end))

    # -- files ------------------------------------------------------------------

    def iter_file(self, file_id: int, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) of a file, in pieces of at most one frame."""
        with self.vault.catalog.read_session() as s:
            size = s.scalar(select(File.size).where(File.id == file_id))
            segments = s.execute(
                select(Segment.offset, Segment.length, Segment.inline, Segment.object_id, Segment.object_offset)
                .where(Segment.file_id == file_id).order_by(Segment.seq)
            ).all()
        end = size if end is None else min(end, size)
        self.prefetch(oid for off, length, _, oid, _ in segments if oid is not None and off < end and off + length > start)
        for seg_off, seg_len, inline, object_id, obj_off in segments:
            lo, hi = max(start, seg_off), min(end, seg_off + seg_len)
            if lo >= hi:
                continue
            if inline is not None:
                yield inline[lo - seg_off:hi - seg_off]
            else:
                yield from self.iter_object(object_id, obj_off + lo - seg_off, obj_off + hi - seg_off)

    def verified_file(self, file: File) -> Iterator[bytes]:
        """The whole file, checking its size and sha256 at the end (raises IntegrityError)."""
        h, n = hashlib.sha256(), 0
        for piece in self.iter_file(file.id):
            h.update(piece)
            n += len(piece)
            yield piece
        if n != file.size or h.hexdigest() != file.sha256:
            raise IntegrityError(f"file {file.sha256[:16]}: restored bytes do not match its sha256")
