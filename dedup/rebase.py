"""Re-basing: once a family has grown, code each member against the sibling that predicts it best.

Ingest codes a repo against a base that is already stored, so a repo ingested
later can be a far better predictor of one ingested earlier.  On the shared
repos the BF16 fine-tune costs 4.09 MB against the family base and 0.17 MB
against the FP32 fine-tune of the same run, which arrives after it
(bench/family_bounds.py).  ``rebase`` looks for such pairs and re-codes the
tensors that gain, as git's repack re-chooses delta bases.

For each member, other members are screened on a sample (share of values equal
after casting the candidate to the member's dtype, against the same share for
the member's current base); a candidate that beats it codes every tensor of the
member again, and a tensor is switched only if it then costs at most
1 - MIN_SAVING of what it costs now.  The switch replaces the object's frames
and base in one transaction, like compaction: a reader holding the old frame
list still finds the old frames, which gc reclaims after its grace period.

Chains stay bounded and acyclic: an object is never re-based onto a base whose own
chain reaches it, and only when its new depth plus the height of what is coded
against it stays within choice.MAX_DEPTH; the switch moves those dependents' depths
with it (their bytes, hence their coding, do not change).
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from sqlalchemy import delete, exists, select, update

from weightvault.errors import FamilyNotFound
from weightvault.store import Vault, journal
from weightvault import codec
from weightvault.store.models import Commit, Family, Frame, IngestEvent, Object, Ref, Repo
from weightvault.store.packs import Location, claim_packs

from .formats import safetensors
from .choice import MAX_DEPTH, BaseCandidate, choose_and_encode, encode_pool
from .commits import retrying
from .families import LocalTensor, StoredTensor, cast_bits, mapped, similarity, stored_tensors
from .reader import Reader

#: A tensor is re-coded only when the new coding saves at least this share of its
#: stored bytes: a switch rewrites frames and leaves the old ones for gc, which
#: small gains do not repay.
MIN_SAVING = 0.05
#: A candidate must agree exactly on this much larger a share of sampled values
#: than the member's current base to be tried at all.  Same-run siblings agree
#: on 99.6% against 50% for the family base; unrelated fine-tunes differ by ~1%.
MIN_SIMILARITY_GAIN = 0.05
SAMPLE_TENSORS = 8
SAMPLE_ELEMENTS = 16384
#: Ingest's pass (``onto``): members screened, and tensor bytes re-coded per byte the newcomer
#: brought.  Screening a member reads 8 sampled ranges (~ms); re-coding costs about what coding
#: the newcomer did, so the budget bounds what re-basing adds to an ingest.
MAX_SCREENED = 16
#: Tensors re-coded ahead of the one being written to a pack, on the encode threads (each
#: holds its member's and base's bytes and its frames until written).
RECODE_AHEAD = 4
ONTO_BUDGET = 1.0
FLOAT_DTYPES = ("F32", "BF16", "F16")


@dataclass
class MemberRebase:
    repo: str
    base: str  # the sibling now predicting most of the re-based bytes
    tensors: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


@dataclass
class RebaseResult:
    members: list[MemberRebase] = field(default_factory=list)
    screened: dict[str, dict[str, float]] = field(default_factory=dict)  # repo -> candidate -> share equal
    deferred: list[str] = field(default_factory=list)  # members ``onto`` had no budget left to screen
    tried_bytes: int = 0  # raw bytes of the tensors coded again (kept or not)

    @property
    def bytes_saved(self) -> int:
        return sum(m.bytes_before - m.bytes_after for m in self.members)


@dataclass
class _Recoded:
    """A tensor coded against a new base, ready to replace its object's frames."""

    object_id: int
    raw_size: int
    old_size: int
    old_base: int | None
    base_id: int
    codec: str
    mechanism: str
    reason: str
    frames: list[tuple[int, int, str, int]]  # raw offset, raw size, codec, coded size
    payloads: list[bytes]  # the coded frames, until written to a pack
    locations: list[Location] = field(default_factory=list)

    @property
    def stored_size(self) -> int:
        return sum(f[3] for f in self.frames)


def _predicts(member_dtype: str | None, base_dtype: str | None) -> bool:
    """A base of this dtype can predict the member (same dtype, or an F32 base cast down)."""
    return member_dtype in FLOAT_DTYPES and (base_dtype == member_dtype or base_dtype == "F32")


class Rebaser:
    def __init__(self, vault: Vault, *, dry_run: bool = False, keep_bases: bool = True,
                 progress: Callable[[int], None] = lambda n: None) -> None:
        """``keep_bases``: the reader's (dedup/reader.py), False for a pass that reads each member
        once and few of them (``onto``), True for one over whole families sharing a base (``run``)."""
        self.vault = vault
        self.reader = Reader(vault, keep_bases=keep_bases)
        self.dry_run = dry_run
        self.progress = progress
        #: Object id -> where the newcomer's folder holds that tensor, and tensor digest -> CRC32C of
        #: the bytes the ingest hashed into it (``onto``).
        self.local: dict[int, LocalTensor] = {}
        self.local_crcs: dict[str, int] = {}
        self.mapped_used: list[tuple[str, memoryview]] = []  # (digest, bytes) mapped from the folder, see _raw
        #: Objects the newcomer's tensors are coded against, directly or not (``onto``): coding
        #: them against it would close a loop, so they are not even screened (a family base).
        self.ancestors: set[int] = set()
        #: Repo id -> its stored tensors, for the newcomer ``onto`` screens every member against
        #: (asked once, not once per member), and object id -> the sample screening compares.
        self.known: dict[int, dict[str, StoredTensor]] = {}
        self.samples: dict[int, memoryview] = {}

    def run(self, family: str | None = None) -> RebaseResult:
        result = RebaseResult()
        with self.vault.catalog.read_session() as s:
            query = select(Family.id, Family.name)
            if family is not None:
                query = query.where(Family.name == family)
            families = s.execute(query.order_by(Family.id)).all()
            if family is not None and not families:
                raise FamilyNotFound(name=family)
            members = {fid: s.execute(select(Repo.id, Repo.name, Repo.base_repo_id).where(Repo.family_id == fid)
                                      .where(exists().where(Ref.repo_id == Repo.id)).order_by(Repo.id)).all()
                       for fid, _ in families}
        for fid, _ in families:
            for repo_id, name, base_repo_id in members[fid]:
                siblings = [(rid, n) for rid, n, _ in members[fid] if rid != repo_id]
                done = self._member(repo_id, name, base_repo_id, siblings, result)
                if done is not None:
                    result.members.append(done)
        return result

    def onto(self, newcomer: str, local: dict[str, LocalTensor] | None = None,
             local_crcs: dict[str, int] | None = None) -> RebaseResult:
        """Re-code the members of ``newcomer``'s family that it predicts better than their current base:
        what ingest runs once a repo has landed, so the best base needs no operator.

        Bounded: at most MAX_SCREENED members are screened (those ingested last first: a run's
        siblings arrive together), and re-coding stops once it has re-coded ONTO_BUDGET times the
        newcomer's tensor bytes; members left over wait for ``weightvault rebase``. ``local`` (tensor
        name -> place in the folder just ingested) spares decoding the newcomer's tensors again,
        where they still hold what the ingest hashed (``local_crcs``: digest -> CRC32C of those bytes)."""
        result = RebaseResult()
        with self.vault.catalog.read_session() as s:
            new = s.execute(select(Repo.id, Repo.family_id).where(Repo.name == newcomer)).one_or_none()
            if new is None or new.family_id is None:
                return result
            members = s.execute(select(Repo.id, Repo.name, Repo.base_repo_id)
                                .where(Repo.family_id == new.family_id, Repo.id != new.id)
                                .where(exists().where(Ref.repo_id == Repo.id))
                                .order_by(Repo.id.desc()).limit(MAX_SCREENED)).all()
            landed = stored_tensors(s, new.id)
            budget = ONTO_BUDGET * sum(t.raw_size for t in landed.values())
            self.ancestors = _ancestors(s, [t.object_id for t in landed.values()])
        self.local = {t.object_id: local[n] for n, t in landed.items()
                      if local and n in local and local_crcs and t.digest in local_crcs}
        self.local_crcs = local_crcs or {}
        self.known = {new.id: landed}
        for repo_id, name, base_repo_id in members:
            if result.tried_bytes >= budget:
                result.deferred.append(name)
                continue
            done = self._member(repo_id, name, base_repo_id, [(new.id, newcomer)], result)
            if done is not None:
                result.members.append(done)
        return result

    # -- one member -------------------------------------------------------------------

    def _member(self, repo_id: int, name: str, base_repo_id: int | None, siblings: list[tuple[int, str]],
                result: RebaseResult) -> MemberRebase | None:
        with self.vault.catalog.read_session() as s:
            own = {n: t for n, t in stored_tensors(s, repo_id).items()
                   if t.dtype in FLOAT_DTYPES and t.object_id not in self.ancestors}
            theirs = {sid: self.known[sid] if sid in self.known else stored_tensors(s, sid) for sid, _ in siblings}
            current = stored_tensors(s, base_repo_id) if base_repo_id else {}
        if not own:
            return None
        # Every frame list this may read, in two queries per 900 objects, not two per tensor read
        # (one per tensor was 0.45 of the 1.3 cpu-s re-coding the shared BF16 fine-tune took).
        self.reader.prefetch([t.object_id for t in own.values()] + [t.object_id for t in current.values()]
                             + [t.object_id for tensors in theirs.values() for t in tensors.values()])
        floor = self._share_equal(own, current)
        scores = {sname: self._share_equal(own, theirs[sid]) for sid, sname in siblings}
        result.screened[name] = {k: round(v, 4) for k, v in scores.items()}
        picked = [(sid, sname) for sid, sname in siblings if scores[sname] >= floor + MIN_SIMILARITY_GAIN]
        if not picked:
            return None
        picked.sort(key=lambda c: -scores[c[1]])
        result.tried_bytes += sum(t.raw_size for t in own.values())
        with self.vault.catalog.read_session() as s:  # the chains above the candidates and below ours
            graph = _Graph.load(s, [theirs[sid][n].object_id for sid, _ in picked for n in own if n in theirs[sid]],
                                [t.object_id for t in own.values()])
        recoded: dict[int, tuple[str, _Recoded]] = {}
        writer = None if self.dry_run else self.vault.pack_writer()
        jobs: deque[tuple[StoredTensor, Future | None]] = deque()

        def take(limit: int) -> None:
            """Into a pack now, in order: memory holds the frames of a few tensors at a time."""
            while len(jobs) > limit:
                mine, job = jobs.popleft()
                best = job.result() if job is not None else None
                if best is not None:
                    rec = best[1]
                    key = bytes.fromhex(mine.digest)
                    rec.locations = [writer.add(p, key, i) for i, p in enumerate(rec.payloads)] if writer else []
                    rec.payloads = []
                    recoded[mine.object_id] = best
                self.progress(mine.raw_size)
        try:
            for tname, mine in own.items():
                cands = [(sname, cand) for sid, sname in picked
                         if (cand := theirs[sid].get(tname)) is not None and self._allowed(mine, cand, graph)]
                jobs.append((mine, encode_pool.submit(self._recode, mine, tname, cands, graph.rows[mine.object_id])
                             if cands else None))
                take(RECODE_AHEAD)
            take(0)
            shipped = writer.flush() if writer else {}
        except BaseException:
            for _, job in jobs:
                if job is not None:
                    job.cancel()
            if writer:
                writer.abort()
            raise
        if not recoded or not self._folder_unchanged():  # shipped packs no row names: gc takes them
            return None
        by_base: dict[str, int] = {}
        for sname, rec in recoded.values():
            by_base[sname] = by_base.get(sname, 0) + rec.raw_size
        top = max(by_base, key=by_base.get)
        chosen = [rec for _, rec in recoded.values()]
        if not self.dry_run:
            top_id = next(sid for sid, sname in siblings if sname == top)
            before = next((n for sid, n in siblings if sid == base_repo_id), "no base")
            why = (f"re-based on {top}: {scores[top]:.1%} of sampled values equal "
                   f"(against {before}: {floor:.1%})")
            chosen = self._commit(repo_id, name, top_id, why, chosen, shipped)
        if not chosen:
            return None
        return MemberRebase(name, top, len(chosen), sum(r.old_size for r in chosen), sum(r.stored_size for r in chosen))

    def _share_equal(self, own: dict[str, StoredTensor], other: dict[str, StoredTensor]) -> float:
        """Mean share of sampled values equal to ``other``'s (cast to our dtype), over the largest common tensors."""
        common = sorted((n for n in own if n in other and _predicts(own[n].dtype, other[n].dtype)
                         and self._elements(own[n]) == self._elements(other[n])),
                        key=lambda n: -own[n].raw_size)[:SAMPLE_TENSORS]
        if not common:
            return 0.0
        shares = []
        for n in common:
            mine, theirs = own[n], other[n]
            m = cast_bits(self._sample(mine), mine.dtype, mine.dtype)
            b = cast_bits(self._sample(theirs), theirs.dtype, mine.dtype)
            shares.append(similarity(m, b)[0])
        return float(np.mean(shares))

    def _sample(self, t: StoredTensor) -> memoryview:
        """A tensor's first SAMPLE_ELEMENTS elements, kept for the pass: a member's are compared with its
        base's and each candidate's, the newcomer's with every member's. The newcomer's come from its
        folder (screening only ranks candidates; coding against them checks them, ``_raw``): decoding
        them, each against its own base, was half of screening's 30 ms for the FP32 fine-tune."""
        got = self.samples.get(t.object_id)
        if got is None:
            n = min(SAMPLE_ELEMENTS * self._itemsize(t), t.raw_size)
            local = self._in_folder(t)
            got = local[:n] if local is not None else self.reader.object_range(t.object_id, 0, n)
            self.samples[t.object_id] = got
        return got

    @staticmethod
    def _itemsize(t: StoredTensor) -> int:
        return safetensors.DTYPE_BITS[t.dtype] // 8

    def _elements(self, t: StoredTensor) -> int:
        return t.raw_size // self._itemsize(t)

    def _allowed(self, mine: StoredTensor, cand: StoredTensor, graph: "_Graph") -> bool:
        """Whether ``mine`` may be coded against ``cand`` (dtypes, sizes, chain rules)."""
        return cand.object_id != mine.object_id and _predicts(mine.dtype, cand.dtype) \
            and self._elements(cand) == self._elements(mine) and cand.depth < MAX_DEPTH \
            and graph.refusal(mine.object_id, cand.object_id) is None

    def _recode(self, mine: StoredTensor, tname: str, cands: list[tuple[str, StoredTensor]],
                row: "_Row") -> tuple[str, _Recoded] | None:
        """On an encode thread: the tensor coded against the candidate that codes it smallest, if
        that saves enough (sibling name, coding); the tensor is decoded once for all of them."""
        data = memoryview(self.reader.object_range(mine.object_id, 0, mine.raw_size))
        best = None
        for sname, cand in cands:
            choice = choose_and_encode(data, mine.dtype, BaseCandidate(cand.digest, cand.dtype, cand.depth,
                                                                       self._raw(cand), why=f"{sname}:{tname}"),
                                       threads=1)
            if choice.base_digest != cand.digest:
                continue  # plain coding beat the delta
            frames, payloads = [], []
            for slice_frames, offset in choice.frame_slices(threads=1):
                for f in slice_frames:
                    info = codec.frame_info(f)
                    frames.append((offset, info.raw_size, info.codec, len(f)))
                    payloads.append(f)
                    offset += info.raw_size
            rec = _Recoded(mine.object_id, mine.raw_size, row.stored_size, row.base_id, cand.object_id,
                           choice.codec, choice.mechanism, choice.reason, frames, payloads)
            if rec.stored_size <= (1 - MIN_SAVING) * row.stored_size \
                    and (best is None or rec.stored_size < best[1].stored_size):
                best = (sname, rec)
        return best

    def _raw(self, t: StoredTensor):
        """A tensor's bytes: mapped from the folder just ingested while it holds what the ingest hashed
        (its CRC32C checked: 0.004 cpu-s for the 91 MB FP32 fine-tune, where reading it and checking
        its sha256 took 0.09 and decoding it 0.24), else from the store."""
        data = self._in_folder(t)
        if data is not None and codec.crc32c(data) == self.local_crcs[t.digest]:
            self.mapped_used.append((t.digest, data))
            return data
        return self.reader.object_range(t.object_id, 0, t.raw_size)

    def _in_folder(self, t: StoredTensor) -> memoryview | None:
        """The newcomer's tensor mapped from the folder it was ingested from, if ``t`` is one of
        them and the place the ingest found it still has its size (not yet checked against it)."""
        place = self.local.get(t.object_id)
        return mapped(place) if place is not None and place.end - place.start == t.raw_size else None

    def _folder_unchanged(self) -> bool:
        """Whether the folder's tensors coded against still hold what the ingest hashed, checked again
        once the coding is done: a file rewritten while it was coded against would leave a member
        coded against bytes the store does not hold."""
        used, self.mapped_used = self.mapped_used, []
        return all(codec.crc32c(data) == self.local_crcs[digest] for digest, data in used)

    def _commit(self, repo_id: int, name: str, base_repo_id: int, why: str, recoded: list[_Recoded],
                shipped: dict[str, int]) -> list[_Recoded]:
        """Switch the objects to their new frames (already in ``shipped`` packs) in one transaction;
        returns those switched (an object another writer changed meanwhile keeps its coding, and
        our frames for it go to gc)."""
        def land(session) -> list[_Recoded]:
            claim_packs(session, list(shipped.values()))
            # Locked, so that a concurrent switch or ingest touching these chains waits for us (or
            # deadlocks and is retried), then sees what we did: never a loop, never past the bound.
            graph = _Graph.load(session, [rec.base_id for rec in recoded], [rec.object_id for rec in recoded],
                                lock=True)
            switched = []
            # One executemany for the switched objects' rows (an UPDATE statement per object was
            # 0.1 of the 0.3 cpu-s re-basing the BF16 fine-tune took), in order with the shifts below.
            rows: list[dict] = []
            for rec in recoded:
                now = graph.rows.get(rec.object_id)
                if now is None or (now.stored_size, now.base_id) != (rec.old_size, rec.old_base) \
                        or graph.refusal(rec.object_id, rec.base_id):
                    continue  # re-coded by another writer meanwhile, or no longer allowed
                depth = graph.rows[rec.base_id].depth + 1
                below = graph.below(rec.object_id)
                rows.append({"id": rec.object_id, "stored_size": rec.stored_size, "codec": rec.codec,
                             "mechanism": rec.mechanism, "base_id": rec.base_id, "depth": depth, "reason": rec.reason})
                journal.touch(session, Object, rec.object_id)
                if below and depth != now.depth:  # what is coded against it moves along (bytes unchanged)
                    session.execute(update(Object), rows)
                    rows = []
                    for i in range(0, len(below), 900):
                        session.execute(update(Object).where(Object.id.in_(below[i:i + 900]))
                                        .values(depth=Object.depth + depth - now.depth))
                    for oid in below:
                        journal.touch(session, Object, oid)
                graph.move(rec.object_id, rec.base_id, rec.stored_size)
                switched.append(rec)
            if rows:
                session.execute(update(Object), rows)
            ids = [rec.object_id for rec in switched]
            for i in range(0, len(ids), 900):
                session.execute(delete(Frame).where(Frame.object_id.in_(ids[i:i + 900])))
            frames = [{"object_id": rec.object_id, "seq": seq, "raw_offset": raw_offset, "raw_size": raw_size,
                       "codec": codec_name, "pack_id": shipped[loc.pack], "pack_offset": loc.offset, "size": loc.size}
                      for rec in switched
                      for seq, ((raw_offset, raw_size, codec_name, _), loc) in enumerate(zip(rec.frames, rec.locations))]
            if frames:  # the touched objects' records carry their frames (journal.touch)
                session.execute(Frame.__table__.insert(), frames)  # Core: no ORM per-row bookkeeping
            if switched:
                session.execute(update(Repo).where(Repo.id == repo_id).values(base_repo_id=base_repo_id,
                                                                              family_reason=why))
                journal.touch(session, Repo, repo_id)
                head = session.scalar(select(Commit.oid).join(Ref, Ref.commit_id == Commit.id)
                                      .where(Ref.repo_id == repo_id).order_by(Ref.name != "main").limit(1))
                session.add(IngestEvent(repo_id=repo_id, repo_name=name, commit_oid=head, raw_bytes=0,
                                        new_stored_bytes=sum(r.stored_size - r.old_size for r in switched)))
            return switched

        switched = retrying(self.vault.catalog, land)
        self.reader.forget(rec.object_id for rec in switched)
        return switched



@dataclass
class _Row:
    base_id: int | None
    depth: int
    stored_size: int


@dataclass
class _Graph:
    """Part of the object graph, in memory: the chains above some objects and what is coded
    against others, so that the cycle and depth rules need no query per tensor."""

    rows: dict[int, _Row]
    children: dict[int, list[int]]

    @classmethod
    def load(cls, session, above: list[int], below: list[int], lock: bool = False) -> "_Graph":
        """``above`` and ``below`` with every object they are coded against, and every object coded
        against ``below``: a query per level and 900 objects (chains are at most MAX_DEPTH long)."""
        rows: dict[int, _Row] = {}

        def fetch(column, ids) -> list[int]:
            got = []
            for i in range(0, len(ids), 900):
                query = select(Object.id, Object.base_id, Object.depth, Object.stored_size) \
                    .where(column.in_(ids[i:i + 900]))
                for oid, base_id, depth, size in session.execute(query.with_for_update() if lock else query):
                    if oid not in rows:
                        rows[oid] = _Row(base_id, depth, size)
                        got.append(oid)
            return got

        frontier = list(set(above) | set(below))
        while frontier:  # up
            fetch(Object.id, frontier)
            frontier = list({r.base_id for r in rows.values() if r.base_id is not None} - rows.keys())
        frontier = list(set(below))
        while frontier:  # down
            frontier = fetch(Object.base_id, frontier)
        children: dict[int, list[int]] = {}
        for oid, r in rows.items():
            if r.base_id is not None:
                children.setdefault(r.base_id, []).append(oid)
        return cls(rows, children)

    def chain(self, object_id: int) -> set[int]:
        seen, at = set(), object_id
        while at is not None and at not in seen and at in self.rows:
            seen.add(at)
            at = self.rows[at].base_id
        return seen

    def below(self, object_id: int) -> list[int]:
        """Everything coded against ``object_id``, directly or not."""
        seen, stack = {object_id}, list(self.children.get(object_id, ()))
        while stack:
            at = stack.pop()
            if at not in seen:
                seen.add(at)
                stack.extend(self.children.get(at, ()))
        return sorted(seen - {object_id})

    def refusal(self, object_id: int, base_id: int) -> str | None:
        """Why ``object_id`` may not be coded against ``base_id`` now (None: it may)."""
        if object_id in self.chain(base_id):
            return "a loop: the base is coded against it"
        shift = self.rows[base_id].depth + 1 - self.rows[object_id].depth
        if max((self.rows[b].depth for b in self.below(object_id)), default=self.rows[object_id].depth) \
                + shift > MAX_DEPTH:
            return "past the depth bound"
        return None

    def move(self, object_id: int, base_id: int, stored_size: int) -> None:
        row = self.rows[object_id]
        shift = self.rows[base_id].depth + 1 - row.depth
        for b in self.below(object_id):
            self.rows[b].depth += shift
        if row.base_id is not None:
            self.children[row.base_id].remove(object_id)
        self.children.setdefault(base_id, []).append(object_id)
        self.rows[object_id] = _Row(base_id, row.depth + shift, stored_size)


def onto_landed(vault, repo: str, local: dict | None = None,
                local_crcs: dict[str, int] | None = None) -> tuple[RebaseResult | None, str | None]:
    """``Rebaser.onto`` run once ``repo``'s revision has landed (ingest, hub commit): a failure comes
    back as a warning naming ``weightvault rebase`` rather than raised, since the revision stands
    and the members keep their coding."""
    try:
        # Its few members are read once each: decoding their bases run by run, not into the process's
        # cache, cut re-coding the shared BF16 fine-tune's tensors (cold process, read one after
        # the other) from 138 to 78 ms, 171 to 97 ms of CPU (the cache's new pages cost more).
        return Rebaser(vault, keep_bases=False).onto(repo, local, local_crcs), None
    except Exception as exc:
        return None, (f"{repo} is stored, but re-coding earlier family members against it failed "
                      f"({type(exc).__name__}: {exc}); they keep their coding: run `weightvault rebase`")


def _ancestors(session, ids: list[int]) -> set[int]:
    """The objects ``ids`` are coded against, directly or not."""
    graph = _Graph.load(session, ids, [])
    return set(graph.rows) - set(ids)
