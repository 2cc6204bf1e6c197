"""Turning file bytes into catalog rows: whole-file dedup, tensor dedup, coding into packs.

``ContentWriter`` stages everything in memory (rows) and in packs (bytes) and
touches the catalog only to ask what it already holds. ``land`` writes the rows
in the caller's transaction, so a repo appears whole or not at all.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import mmap
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import select

from weightvault import codec
from weightvault.errors import IntegrityError, StaleReference
from weightvault.store import Vault, journal
from weightvault.codec import chunking
from weightvault.store.models import Chunk, File, Frame, Object, Segment
from weightvault.store.packs import Location, claim_packs, payload_crc

from . import fingerprints, formats, opaque
from .choice import SLICE_BYTES, BaseCandidate, CodingChoice, choose_and_encode, encode_pool
from .hashing import FileDigest, digest_beside, in_lanes, object_digest
from .reader import Reader

#: Bytes between and around tensors (and safetensors headers) are kept inline in
#: the catalog up to this size; larger runs become blob objects.
INLINE_LIMIT = 1 << 20

#: A new tensor with no base is stored as references to stored bytes when they hold at least this
#: share of it (an embedding grown by a few hundred vocabulary rows shares > 99%); below it, plane
#: coding the whole tensor keeps its float structure for the part that is new.
SHARED_TENSOR = 0.9

#: Chunk hashes asked of the catalog per query (well under SQLite's and PostgreSQL's
#: bound-parameter limits).
CHUNK_LOOKUP_BATCH = 500

#: Whole files and tensors this small are kept inline too: a frame's header and a
#: zstd frame cost more than they save on a 200-byte card or a 128-byte bias (the
#: shared repos' small files and biases came out 4 to 32 bytes larger coded than raw).
SMALL_FILE = 1024

#: Objects are coded a slice per job on the two encode threads (choice.encode_pool) while this
#: thread hashes, looks up, indexes and writes the objects around them; at most this many slices
#: wait, coded or not, to be written (each holds its frames, at most a slice's). With one encode
#: thread, which coded a tensor under a slice on one core and left this thread waiting on each
#: larger one, the FP32 base's ingest used 1.05 cores (0.65 cpu-s in 0.62 s).
ENCODE_AHEAD = 6

Progress = Callable[[int], None]


@dataclass
class StagedObject:
    digest: str
    kind: str
    dtype: str | None
    shape: list[int] | None
    raw_size: int
    choice: CodingChoice | None  # None while it is being coded (ContentWriter._pending)
    frames: list[tuple[int, int, str, Location]] = field(default_factory=list)  # raw_offset, raw_size, codec, where
    stored_size: int = 0
    fingerprint: dict = field(default_factory=dict)  # objects row columns (dedup/fingerprints.py)
    landed: bool = False  # written by this ingest's land (not by a concurrent one first)


@dataclass
class StagedSegment:
    offset: int
    length: int
    name: str | None = None
    inline: bytes | None = None
    object_digest: str | None = None
    object_offset: int = 0  # where in the object this segment's bytes start


@dataclass
class StagedFile:
    digest: FileDigest
    format: str
    segments: list[StagedSegment] | None  # None: the catalog already holds this file


def _inline(view: memoryview, start: int, end: int, name: str | None, progress: Progress) -> StagedSegment:
    progress(end - start)
    return StagedSegment(start, end - start, name, inline=bytes(view[start:end]))


class ContentWriter:
    """Stages files for one ingest or commit; ``land`` writes them to the catalog."""

    def __init__(self, vault: Vault, *, base_for=None, threads: int = 2) -> None:
        self.vault = vault
        self.packs = vault.pack_writer()
        self.objects: dict[str, StagedObject] = {}
        self.known_objects: set[str] = set()  # digests already in the catalog
        self.absent_objects: set[str] = set()  # digests the catalog did not hold when this ingest asked
        self.files: dict[str, StagedFile] = {}
        self.base_for = base_for  # callable(file path, tensor name, dtype, shape, bytes) -> BaseCandidate | None
        self.threads = threads
        self.raw_bytes = 0
        #: Files stored as opaque bytes because they failed to parse as their name says (path: why).
        self.warnings: list[str] = []
        #: Chunks of the objects staged here, and those objects' bytes (views of the source files).
        self.chunk_index: dict[str, opaque.Held] = {}
        self.staged_bytes: dict[str, memoryview] = {}
        self.reader = Reader(vault)
        self.new_chunks: list[tuple[str, int, int, str]] = []  # object digest, raw offset, length, hash
        #: Slices of objects being coded on the encode threads (object, job, raw offset), in the
        #: order their frames go into packs.
        self._pending: deque[tuple[StagedObject, Future, int, Progress]] = deque()
        #: Tensor digest -> CRC32C of the bytes hashed into it: re-basing reads the folder's tensors
        #: again after landing, and checks them against these (``Rebaser.onto``).
        self.tensor_crcs: dict[str, int] = {}
        #: Chunk hash -> where the catalog held it when asked (None: nowhere); each is asked once.
        self._stored_chunks: dict[str, opaque.Held | None] = {}

    # -- staging -----------------------------------------------------------------

    def add_path(self, path: Path, rel: str, progress: Progress = lambda n: None) -> StagedFile:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size == 0:
                return self.add_bytes(b"", rel, progress)
            # Not closed explicitly: slices of it may live on in an exception's traceback;
            # the mapping goes when the last view does.
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self.add_bytes(memoryview(mm), rel, progress)

    def add_bytes(self, data, rel: str, progress: Progress = lambda n: None) -> StagedFile:
        view = memoryview(data)
        # The file parsed and its tensors hashed on this thread while the hash thread takes the
        # file's sha256 (for an LFS-size file, see digest_beside): one after the other, that sha256
        # was the first 65 ms of the FP32 base's 0.55 s ingest with the other core idle. A file the
        # catalog already holds (a mirror's) has its tensors hashed for nothing.
        digest, (parsed, pairs) = digest_beside(view, lambda: _survey(view, rel))
        self.raw_bytes += digest.size
        if digest.sha256 in self.files:
            progress(digest.size)
            return self.files[digest.sha256]
        with self.vault.catalog.read_session() as s:
            exists = s.scalar(select(File.id).where(File.sha256 == digest.sha256)) is not None
        if exists:
            staged = StagedFile(digest, "", None)
            progress(digest.size)
        else:
            if isinstance(parsed, formats.Parsed):
                staged = StagedFile(digest, parsed.format, self._stage_parsed(rel, view, parsed, progress, pairs))
            else:
                if parsed is not None:  # it looked like a container and did not parse
                    self.warnings.append(f"{parsed}; stored as opaque bytes (bit-exact, not split into tensors)")
                staged = StagedFile(digest, "blob", self._stage_run(view, 0, len(view), progress))
        self.files[digest.sha256] = staged
        return staged

    def _stage_parsed(self, rel: str, view: memoryview, parsed: formats.Parsed, progress: Progress,
                      pairs: list[tuple[str, int]]) -> list[StagedSegment]:
        """Tensors coded as tensors (small ones inline); typed opaque data (quantized blocks) and the
        bytes around tensors go through _stage_run, i.e. content-defined chunks. ``pairs``: the coded
        tensors' digests and CRCs (``_survey``)."""
        segments = [_inline(view, 0, parsed.header_end, "__header__", progress)] if parsed.header_end else []
        digests, cuts = self._prepare_tensors(view, _coded_tensors(parsed), pairs)
        pos = parsed.header_end
        for t in parsed.tensors:
            if t.start > pos:
                segments += self._stage_run(view, pos, t.start, progress)
            if t.dtype is None:
                opaque_segments = self._stage_run(view, t.start, t.end, progress, small=SMALL_FILE)
                opaque_segments[0].name = t.name
                segments += opaque_segments
            elif t.end - t.start <= SMALL_FILE:
                segments.append(_inline(view, t.start, t.end, t.name, progress))
            else:
                segments += self._stage_tensor(rel, view, t, digests[t.start], cuts.get(t.start), progress)
            pos = t.end
        if pos < len(view):
            segments += self._stage_run(view, pos, len(view), progress)
        return segments

    def _stage_run(self, view: memoryview, start: int, end: int, progress: Progress,
                   small: int | None = None) -> list[StagedSegment]:
        """Bytes that are no tensor: inline up to ``small`` bytes (default: the inline limit between
        tensors, SMALL_FILE for a whole file), else matched by chunk against what is stored
        (dedup/opaque.py); the new bytes become blob objects, whose chunks are indexed for later files."""
        if small is None:
            small = INLINE_LIMIT if start > 0 else SMALL_FILE
        if end - start <= small:
            return [_inline(view, start, end, None, progress)]
        run = view[start:end]
        pieces, _ = opaque.match_run(run, self._find_chunks, self._object_bytes, self._followers)
        return self._stage_pieces(run, start, pieces, progress)

    def _stage_tensor(self, rel: str, view: memoryview, t: formats.Tensor, digest: str,
                      cuts: list[tuple[int, int, str]] | None, progress: Progress) -> list[StagedSegment]:
        """A tensor as one object, delta-coded against its base if it has one. A new tensor with no
        base whose bytes stored objects mostly hold already (an embedding grown by added vocabulary
        rows, a tensor cut out of a stored one) becomes references to those bytes plus the rest."""
        data = view[t.start:t.end]
        shape = list(t.shape) if t.shape is not None else None
        base = None
        if not self._held(digest):
            base = self.base_for(rel, t.name, t.dtype, shape, data) if self.base_for else None
            if base is None:
                pieces, cuts = opaque.match_run(data, self._find_chunks, self._object_bytes, cuts=cuts)
                if sum(p.length for p in pieces if p.digest) >= SHARED_TENSOR * len(data):
                    return self._stage_pieces(data, t.start, pieces, progress)
        if base is not None and shape and (shared := _shared_rows(data, t.dtype, shape, base)) < shape[0]:
            if shared:
                return self._stage_grown(rel, data, t, shape, shared, base, progress)
            base = None  # it holds less than a row of ours
        obj = self._stage_object(rel, data, "tensor", t.name, t.dtype, shape, progress,
                                 digest=digest, base=base, cuts=cuts)
        return [StagedSegment(t.start, t.end - t.start, t.name, object_digest=obj)]

    def _stage_grown(self, rel: str, data: memoryview, t: formats.Tensor, shape: list[int], shared: int,
                     base: BaseCandidate, progress: Progress) -> list[StagedSegment]:
        """A tensor grown by rows (added vocabulary) whose base holds its first ``shared`` rows: those
        rows delta-coded against the base as the tensor's object, the added rows an object of their
        own after it in the file (the codecs and the read path see two ordinary objects)."""
        cut = len(data) * shared // shape[0]
        head = self._stage_object(rel, data[:cut], "tensor", t.name, t.dtype, [shared, *shape[1:]], progress,
                                  base=base)
        tail = self._stage_object(rel, data[cut:], "tensor", None, t.dtype, [shape[0] - shared, *shape[1:]],
                                  progress)
        return [StagedSegment(t.start, cut, t.name, object_digest=head),
                StagedSegment(t.start + cut, len(data) - cut, None, object_digest=tail)]

    def _prepare_tensors(self, view: memoryview, tensors: list[formats.Tensor], pairs: list[tuple[str, int]]
                         ) -> tuple[dict[int, str], dict[int, list[tuple[int, int, str]]]]:
        """Digests of a file's tensors and the chunks of those the catalog does not hold (by start),
        chunked on both cores, with the catalog asked about all of them a batch at a time. Chunked and
        looked up per tensor on this thread, they cost the FP32 base 0.18 of 0.44 main-thread cpu-s
        (107 queries)."""
        digests = self._hash_tensors(view, tensors, pairs)
        new = [t for t in tensors if not self._held(digests[t.start])]
        cuts = in_lanes(chunking.chunks, [view[t.start:t.end] for t in new])
        self._find_chunks([h for tensor_cuts in cuts for _, _, h in tensor_cuts])
        return digests, {t.start: c for t, c in zip(new, cuts)}

    def _hash_tensors(self, view: memoryview, tensors: list[formats.Tensor],
                      pairs: list[tuple[str, int]]) -> dict[int, str]:
        """Digests of a file's tensors (by start), from their (digest, CRC) ``pairs``, and which of them
        the catalog holds, in one query per batch: asking per tensor (twice: before choosing a base
        and before coding) was ~650 queries and 13% of the ingest's main-thread CPU over the six
        shared repos."""
        digests = [d for d, _ in pairs]
        self.tensor_crcs.update(pairs)
        unknown = sorted({d for d in digests if d not in self.objects and d not in self.known_objects})
        with self.vault.catalog.read_session() as s:
            for i in range(0, len(unknown), CHUNK_LOOKUP_BATCH):
                batch = unknown[i:i + CHUNK_LOOKUP_BATCH]
                held = set(s.scalars(select(Object.digest).where(Object.digest.in_(batch))))
                self.known_objects |= held
                self.absent_objects.update(d for d in batch if d not in held)
        return {t.start: d for t, d in zip(tensors, digests)}

    def _held(self, digest: str) -> bool:
        """Whether this ingest staged the object or the catalog holds it. A digest the catalog did
        not hold when asked is not asked again: an object a concurrent ingest lands meanwhile is
        found by land, which keeps the first row (StagedObject.landed)."""
        if digest in self.objects or digest in self.known_objects:
            return True
        if digest in self.absent_objects:
            return False
        with self.vault.catalog.read_session() as s:
            if s.scalar(select(Object.id).where(Object.digest == digest)) is None:
                self.absent_objects.add(digest)
                return False
        self.known_objects.add(digest)
        return True

    def _stage_pieces(self, run: memoryview, start: int, pieces: list[opaque.Piece],
                      progress: Progress) -> list[StagedSegment]:
        segments = []
        for p in pieces:
            if p.digest is None:
                p.digest = self._stage_object("", run[p.start:p.start + p.length], "blob", None, None, None, progress)
            else:
                progress(p.length)
            segments.append(StagedSegment(start + p.start, p.length, object_digest=p.digest,
                                          object_offset=p.object_offset))
        return segments

    def _find_chunks(self, hashes: list[str]) -> dict[str, opaque.Held]:
        """hash -> where a staged or stored object holds that chunk (the catalog is asked about a
        hash once per ingest)."""
        found = {h: self.chunk_index[h] for h in hashes if h in self.chunk_index}
        wanted = sorted(set(hashes) - found.keys() - self._stored_chunks.keys())
        if wanted:
            with self.vault.catalog.read_session() as s:
                for i in range(0, len(wanted), CHUNK_LOOKUP_BATCH):
                    for h, digest, offset, length, size in s.execute(
                            select(Chunk.hash, Object.digest, Chunk.raw_offset, Chunk.length, Object.raw_size)
                            .join(Object, Object.id == Chunk.object_id)
                            .where(Chunk.hash.in_(wanted[i:i + CHUNK_LOOKUP_BATCH]))):
                        if self._stored_chunks.get(h) is None:
                            self._stored_chunks[h] = (digest, offset, length, size)
            for h in wanted:
                self._stored_chunks.setdefault(h, None)
        for h in hashes:
            if h not in found and (held := self._stored_chunks[h]) is not None:
                found[h] = held
        return found

    def _followers(self, digest: str) -> list[tuple[str | None, int, bytes | None]]:
        """What followed the object ``digest`` (held whole) in a stored file: its next segments."""
        with self.vault.catalog.read_session() as s:
            return opaque.next_segments(s, digest)

    def _object_bytes(self, digest: str, start: int, end: int) -> bytes:
        if digest in self.staged_bytes:
            return self.staged_bytes[digest][start:end]
        with self.vault.catalog.read_session() as s:
            object_id = s.scalar(select(Object.id).where(Object.digest == digest))
        if object_id is None:
            raise StaleReference("an object matched by chunk was removed while this ingest ran; run it again")
        return self.reader.object_range(object_id, start, end)

    def _index_chunks(self, digest: str, data: memoryview, cuts=None) -> None:
        self.staged_bytes[digest] = data
        for a, b, h in cuts if cuts is not None else chunking.chunks(data):
            self.new_chunks.append((digest, a, b - a, h))
            self.chunk_index.setdefault(h, (digest, a, b - a, len(data)))

    def _stage_object(self, rel: str, data: memoryview, kind: str, name: str | None, dtype: str | None,
                      shape: list[int] | None, progress: Progress, *, digest: str | None = None,
                      base: BaseCandidate | None = None, cuts=None) -> str:
        """Code ``data`` as an object unless it is held already; ``base``: what to delta-code it
        against (looked up by the caller); ``cuts``: its chunks if the caller cut them."""
        digest = digest or object_digest(data)
        if self._held(digest):
            progress(len(data))
            return digest
        staged = StagedObject(digest, kind, dtype, shape, len(data), None,
                              fingerprint=fingerprints.columns(data, dtype) if kind == "tensor" else {})
        self.objects[digest] = staged
        # The first slice's job chooses the coding (a tensor of one slice is coded by it whole); the
        # later slices' jobs, queued behind it, code theirs the same way. A larger tensor's first
        # slice is coded on both cores: the other encode thread would wait for it.
        choice = encode_pool.submit(_first_slice, data, dtype, base,
                                    threads=1 if len(data) <= SLICE_BYTES else self.threads)
        self._pending.append((staged, choice, 0, progress))
        for offset in range(SLICE_BYTES, len(data), SLICE_BYTES):
            self._write_ahead(ENCODE_AHEAD)  # so memory holds a few slices' frames of a large tensor
            self._pending.append((staged, encode_pool.submit(_later_slice, choice, offset), offset, progress))
        self._index_chunks(digest, data, cuts)
        self._write_ahead(ENCODE_AHEAD)
        return digest

    def _write_ahead(self, limit: int) -> None:
        """Write the oldest coded slices until at most ``limit`` wait."""
        while len(self._pending) > limit:
            staged, future, offset, progress = self._pending.popleft()
            result = future.result()
            if offset == 0:
                staged.choice, frames = result
            else:
                frames = result
            self._write(staged, frames, offset, progress)
            if offset + SLICE_BYTES >= staged.raw_size:
                staged.choice.release()
                if staged.frames and sum(f[1] for f in staged.frames) != staged.raw_size:
                    raise IntegrityError(f"codec produced frames for {sum(f[1] for f in staged.frames)} "
                                         f"of {staged.raw_size} bytes")

    def _write(self, staged: StagedObject, frames: "Coded", offset: int, progress: Progress) -> None:
        key = bytes.fromhex(staged.digest)
        for frame, info, crc in frames:
            loc = self.packs.add(frame, key, len(staged.frames), crc=crc)
            staged.frames.append((offset, info.raw_size, info.codec, loc))
            staged.stored_size += len(frame)
            offset += info.raw_size
            progress(info.raw_size)

    # -- landing ------------------------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator["ContentWriter"]:
        """Stage inside the block; at its end every staged frame is durable (before the catalog
        transaction), or, if the block failed, the unfinished pack is dropped."""
        try:
            yield self
            self._write_ahead(0)
        except BaseException:
            for _, future, _, _ in self._pending:
                future.cancel()
            self._pending.clear()
            self.packs.abort()
            raise
        self.pack_ids = self.packs.flush()

    def land(self, session) -> dict[str, int]:
        """Write staged objects and files in ``session``; return file sha256 -> file id."""
        claim_packs(session, list(self.pack_ids.values()))
        object_ids = self._land_objects(session)
        file_ids: dict[str, int] = {}
        new_files: list[tuple[File, StagedFile]] = []
        for sha, staged in self.files.items():
            existing = session.scalar(select(File.id).where(File.sha256 == sha))
            if existing is not None:
                file_ids[sha] = existing
                continue
            if staged.segments is None:
                raise StaleReference(f"file {sha[:12]} was removed while this ingest ran; run it again")
            new_files.append((File(sha256=sha, git_sha1=staged.digest.git_sha1, size=staged.digest.size,
                                   format=staged.format), staged))
        # ORM rows (the catalog journal records them), flushed together: one multi-row INSERT each.
        session.add_all(row for row, _ in new_files)
        session.flush()
        for row, staged in new_files:
            session.add_all(Segment(
                file_id=row.id, seq=seq, offset=seg.offset, length=seg.length, name=seg.name, inline=seg.inline,
                object_id=object_ids[seg.object_digest] if seg.object_digest else None, object_offset=seg.object_offset,
            ) for seq, seg in enumerate(staged.segments))
            file_ids[row.sha256] = row.id
        session.flush()
        return file_ids

    def _land_objects(self, session) -> dict[str, int]:
        needed = {seg.object_digest for f in self.files.values() if f.segments for seg in f.segments if seg.object_digest}
        # and the stored bases of delta-coded objects: asked one by one they were a query per
        # tensor of a family member (206 over the six shared repos)
        needed |= {o.choice.base_digest for o in self.objects.values() if o.choice.base_digest}
        ids: dict[str, int] = {}
        wanted = sorted(needed)
        for i in range(0, len(wanted), CHUNK_LOOKUP_BATCH):
            ids.update(session.execute(select(Object.digest, Object.id)
                                       .where(Object.digest.in_(wanted[i:i + CHUNK_LOOKUP_BATCH]))).all())
        for staged in self.objects.values():
            staged.landed = False  # a retried transaction starts over
        frames: list[dict] = []
        # Bases first, so that a delta's base_id resolves: the objects of one depth are flushed
        # together (one multi-row INSERT); a flush per object cost 0.4 s of a 2.4 s ingest of the
        # FP32 base. They stay ORM rows because the catalog journal records objects.
        staged_objects = sorted(self.objects.values(), key=lambda o: o.choice.depth)
        for _, level in itertools.groupby(staged_objects, key=lambda o: o.choice.depth):
            landing = []
            for staged in level:
                if staged.digest in ids:
                    continue  # a concurrent ingest stored it first: ours stays unreferenced for gc
                base_id = None
                if staged.choice.base_digest:
                    base_id = ids.get(staged.choice.base_digest) or session.scalar(
                        select(Object.id).where(Object.digest == staged.choice.base_digest))
                    if base_id is None:
                        raise StaleReference("a base tensor was removed while this ingest ran; run it again")
                landing.append((staged, Object(
                    digest=staged.digest, kind=staged.kind, dtype=staged.dtype,
                    shape=json.dumps(staged.shape) if staged.shape is not None else None,
                    raw_size=staged.raw_size, stored_size=staged.stored_size, codec=staged.choice.codec,
                    mechanism=staged.choice.mechanism,
                    base_id=base_id, depth=staged.choice.depth, reason=staged.choice.reason,
                    **staged.fingerprint,
                )))
            session.add_all(row for _, row in landing)
            session.flush()
            for staged, row in landing:
                ids[staged.digest] = row.id
                frames.extend(
                    {"object_id": row.id, "seq": seq, "raw_offset": raw_offset, "raw_size": raw_size,
                     "codec": codec_name, "pack_id": self.pack_ids[loc.pack], "pack_offset": loc.offset,
                     "size": loc.size}
                    for seq, (raw_offset, raw_size, codec_name, loc) in enumerate(staged.frames))
                staged.landed = True
        # One executemany each, as Core statements: ORM rows per frame cost 0.3 s of a 1.6 s ingest of
        # the FP32 base, and an ORM bulk INSERT still went through its per-row bookkeeping (this
        # method's CPU for the FP32 base, median of 6: 56 -> 50 ms); the journal is told of both below.
        if frames:
            session.execute(Frame.__table__.insert(), frames)
            journal.wrote_frames(session, {f["object_id"] for f in frames})
        missing = needed - ids.keys()
        if missing:
            raise StaleReference(f"{len(missing)} tensors were removed while this ingest ran; run it again")
        chunks = [{"object_id": ids[digest], "raw_offset": offset, "length": length, "hash": h}
                  for digest, offset, length, h in self.new_chunks
                  if digest in self.objects and self.objects[digest].landed]
        if chunks:  # ~1,400 rows per 91 MB file: as ORM rows they cost more than the frames did
            session.execute(Chunk.__table__.insert(), chunks)
            journal.wrote_frames(session, {c["object_id"] for c in chunks})
        return ids

    @property
    def new_stored_bytes(self) -> int:
        return sum(o.stored_size for o in self.objects.values())


def _digest_and_crc(view: memoryview) -> tuple[str, int]:
    return object_digest(view), codec.crc32c(view)


def _parse(view: memoryview, rel: str) -> formats.Parsed | formats.FormatError | None:
    """Where the file's tensors sit; None, or the error if it looked like a container and did not
    parse: it is then stored opaque."""
    try:
        return formats.parse(view, rel)
    except formats.FormatError as exc:
        return exc


def _coded_tensors(parsed: formats.Parsed) -> list[formats.Tensor]:
    """The tensors coded as objects of their own (typed, larger than SMALL_FILE)."""
    return [t for t in parsed.tensors if t.dtype is not None and t.end - t.start > SMALL_FILE]


def _survey(view: memoryview, rel: str) -> tuple[formats.Parsed | formats.FormatError | None,
                                                 list[tuple[str, int]] | None]:
    """The file parsed, and its coded tensors' (digest, CRC32C) if it parsed."""
    parsed = _parse(view, rel)
    if not isinstance(parsed, formats.Parsed):
        return parsed, None
    return parsed, [_digest_and_crc(view[t.start:t.end]) for t in _coded_tensors(parsed)]


#: A slice's frames as the encode thread hands them over: (frame, its header, its pack entry CRC).
Coded = list[tuple[bytes, codec.FrameInfo, int]]


def _coded(frames: list[bytes]) -> Coded:
    """Each frame with its header parsed and its pack entry CRC, taken on the encode thread: on the
    thread writing frames, each header parse (a C call) waited for the GIL, and the CRC added to the
    work of the pack writer's thread, which every byte of an ingest goes through."""
    return [(f, codec.frame_info(f), payload_crc(f)) for f in frames]


def _first_slice(data: memoryview, dtype: str | None, base: BaseCandidate | None,
                 threads: int) -> tuple[CodingChoice, Coded]:
    """On an encode thread: the tensor's coding, chosen on its first slice, and that slice's frames."""
    choice = choose_and_encode(data, dtype, base, threads=threads)
    return choice, _coded(choice.first)


def _later_slice(first: Future, offset: int) -> Coded:
    """On an encode thread: the frames of the slice at ``offset``, coded as the first slice's job
    chose (submitted before this job, so already taken by the other thread or done)."""
    return _coded(first.result()[0].encode_slice(offset))


def _shared_rows(data: memoryview, dtype: str | None, shape: list[int], base: BaseCandidate) -> int:
    """How many of the tensor's leading rows ``base`` holds (all of them unless it grew)."""
    base_elements = fingerprints.elements(base.raw_size, base.dtype)
    elements = fingerprints.elements(len(data), dtype)
    row = elements // shape[0] if shape[0] else 0
    return base_elements // row if row and base_elements < elements else shape[0]
