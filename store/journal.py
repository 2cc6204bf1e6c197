"""Catalog records: what the bucket cannot derive from frames, written there before the catalog commits.

Frames say which object and frame number they hold (store/packs.py); everything else the
catalog knows (repos, commits, branches, tags, trees, files and their segments, objects'
coding and bases, families, tokens' hashes, ingest events) would be lost with the
database. So every write transaction that changes those rows also writes one *record*: a
zstd-compressed JSON list of operations naming rows by natural keys (repo kind and name,
commit id, sha256), never by database ids. The record is an entry of kind RECORD in a
small pack of its own under ``meta/``, uploaded (durable) inside the transaction just
before it commits and registered in the same transaction, so:

- committed transaction => its record is in the bucket (the order issue 15 asks for);
- a crash after the upload and before the commit leaves a ``meta/`` pack the catalog does
  not know; ``gc`` deletes such unknown packs after the grace period, and ``recover``
  run before that replays it (the write was complete: its frames were durable first).

Records are replayed in ``time_ns`` order by store/recover.py. Writers of one row are
serialised by the catalog (SQLite's write lock, PostgreSQL row locks on the branch), so a
later record about the same row always has a later time. Layout: docs/FORMAT.md "Records".

Rows changed by the ORM are captured by session events; a bulk UPDATE (rebase re-coding
objects) names its rows with :func:`touch`, and a bulk INSERT of frames or chunks (ingest)
names their objects with :func:`wrote_frames`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import zstandard
from sqlalchemy import event, select

from weightvault.errors import RecoverError

from . import leftovers
from .backends import ObjectBackend
from .models import (Chunk, Commit, Family, File, Frame, IngestEvent, Object, Pack, Ref, Repo, Segment, Tag, Token,
                     TreeEntry)
from .packs import MAGIC, RECORD, entry_header, pack_name

FORMAT = 1
META_PREFIX = "meta"
_INFO = "wv_journal"
_OFF = "wv_journal_off"

#: Row kinds a record holds, in the order a replay must create them (targets of a
#: reference before the rows that refer to them).
KINDS: dict[str, type] = {
    "family": Family, "repo": Repo, "object": Object, "file": File, "commit": Commit,
    "ref": Ref, "tag": Tag, "token": Token, "event": IngestEvent,
}
_KIND_OF = {model: kind for kind, model in KINDS.items()}
#: Foreign keys written as the natural key of the row they point at.
REFERENCES: dict[type, dict[str, tuple[str, type]]] = {
    Family: {"base_repo_id": ("base_repo", Repo)},
    Repo: {"family_id": ("family", Family), "base_repo_id": ("base_repo", Repo)},
    Commit: {"repo_id": ("repo", Repo)},
    Ref: {"repo_id": ("repo", Repo), "commit_id": ("commit", Commit)},
    Tag: {"repo_id": ("repo", Repo), "commit_id": ("commit", Commit)},
    Object: {"base_id": ("base", Object)},
    IngestEvent: {"repo_id": ("repo", Repo)},
}


#: What names a row of each kind in a record, whatever its database id.
_NATURAL_KEYS = {
    Family: lambda row: [row.name], Repo: lambda row: [row.kind, row.name], File: lambda row: [row.sha256],
    Object: lambda row: [row.digest], Token: lambda row: [row.digest],
}


def natural_key(row) -> list:
    return _NATURAL_KEYS[type(row)](row)


def encode_value(v):
    if isinstance(v, datetime):
        return {"t": v.isoformat()}
    if isinstance(v, (bytes, memoryview)):
        return {"b": base64.b64encode(bytes(v)).decode()}
    return v


def decode_value(v):
    if isinstance(v, dict):
        return datetime.fromisoformat(v["t"]) if "t" in v else base64.b64decode(v["b"])
    return v


def touch(session, model: type, row_id: int) -> None:
    """Record ``model`` row ``row_id`` as it stands at commit (for rows changed by a bulk UPDATE)."""
    session.info.setdefault(_INFO, _Pending()).touched.add((model, row_id))


def wrote_frames(session, object_ids) -> None:
    """Note objects whose frames or chunks were inserted in bulk (rows the flush events never see)."""
    session.info.setdefault(_INFO, _Pending()).objects_with_frames.update(object_ids)


def record_everything(session) -> None:
    """Put every catalog row into this transaction's record: a store written before records
    existed becomes recoverable (``weightvault db checkpoint``); later records still win."""
    pending = session.info.setdefault(_INFO, _Pending())
    for model in (*KINDS.values(), TreeEntry, Segment):
        for row in session.scalars(select(model)):
            pending.rows[(model, id(row))] = row
    pending.objects_with_frames.update(session.scalars(select(Object.id)))


def suppress(session) -> None:
    """Write no record for this transaction: ``recover`` rebuilds rows the bucket already records."""
    session.info[_OFF] = True


class _Pending:
    def __init__(self) -> None:
        self.rows: dict[tuple[type, object], object] = {}
        self.touched: set[tuple[type, int]] = set()
        self.objects_with_frames: set[int] = set()
        self.deleted: list[list] = []

    def __bool__(self) -> bool:
        return bool(self.rows or self.touched or self.objects_with_frames or self.deleted)


class Journal:
    """Hooks a catalog's sessions so that every write transaction records what it changed."""

    def __init__(self, catalog, backend: ObjectBackend, spool_dir: Path) -> None:
        self.backend = backend
        self.spool_dir = Path(spool_dir)
        event.listen(catalog.sessions, "after_flush", self._after_flush)
        event.listen(catalog.sessions, "before_commit", self._before_commit)

    # -- capture --------------------------------------------------------------------------

    def _after_flush(self, session, _ctx) -> None:
        if session.info.get(_OFF):
            return
        pending = session.info.setdefault(_INFO, _Pending())
        for row in list(session.new) + list(session.dirty):
            model = type(row)
            if model in _KIND_OF:
                pending.rows[(model, id(row))] = row
            elif model is TreeEntry or model is Segment:
                pending.rows[(model, id(row))] = row
            elif model is Frame or model is Chunk:
                pending.objects_with_frames.add(row.object_id)
        for row in session.deleted:
            model = type(row)
            if model in (Repo, Family, Token):
                pending.deleted.append(["del-" + _KIND_OF[model], natural_key(row)])
            elif model in (Ref, Tag):
                repo = session.get(Repo, row.repo_id)
                if repo is not None:
                    pending.deleted.append(["del-" + _KIND_OF[model], [repo.kind, repo.name, row.name]])

    def _before_commit(self, session) -> None:
        if session.info.pop(_OFF, False):
            return
        session.flush()
        pending = session.info.pop(_INFO, None)
        if not pending:
            return
        ops = _Serializer(session, pending).ops()
        if not ops:
            return
        record = {"format": FORMAT, "time_ns": time.time_ns(), "ops": ops}
        name, size = self.write(record)
        session.add(Pack(name=name, size=size, condemned_at=None))
        session.flush()
        session.info.pop(_INFO, None)

    # -- storage --------------------------------------------------------------------------

    def write(self, record: dict) -> tuple[str, int]:
        """Upload ``record`` as a one-entry pack under meta/; returns (name, size)."""
        payload = zstandard.ZstdCompressor(level=3).compress(json.dumps(record, separators=(",", ":")).encode())
        body = MAGIC + entry_header(payload, RECORD, hashlib.sha256(payload).digest(), 0) + payload
        name = pack_name(hashlib.sha256(body).hexdigest(), META_PREFIX)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.spool_dir, prefix=leftovers.prefix("record"))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            self.backend.put_file(name, Path(tmp))
        finally:
            Path(tmp).unlink(missing_ok=True)
        return name, len(body)


def read_record(payload: bytes) -> dict:
    record = json.loads(zstandard.ZstdDecompressor().decompress(payload, max_output_size=1 << 30))
    if record.get("format") != FORMAT:
        raise RecoverError(f"record format {record.get('format')!r} is not {FORMAT} (written by a newer release?)")
    return record


class _Serializer:
    """Turns the rows one transaction changed into record operations, naming rows by natural keys."""

    def __init__(self, session, pending: _Pending) -> None:
        self.s = session
        self.p = pending
        self._keys: dict[tuple[type, int], list | None] = {}

    def key(self, model: type, row_id: int | None):
        if row_id is None:
            return None
        k = (model, row_id)
        if k not in self._keys:
            row = self.s.get(model, row_id)
            if row is None:
                self._keys[k] = None
            elif model is Commit:
                repo = self.s.get(Repo, row.repo_id)
                self._keys[k] = [repo.kind, repo.name, row.oid]
            else:
                self._keys[k] = natural_key(row)
        return self._keys[k]

    def _prefetch(self, model: type, ids: set[int]) -> None:
        """One query for the natural keys of rows this session did not load (reused files, objects)."""
        column = {File: File.sha256, Object: Object.digest}[model]
        missing = [i for i in ids if i is not None and (model, i) not in self._keys]
        for start in range(0, len(missing), 500):
            chunk = missing[start:start + 500]
            for rid, value in self.s.execute(select(model.id, column).where(model.id.in_(chunk))).all():
                self._keys[(model, rid)] = [value]

    def columns(self, row) -> dict:
        model = type(row)
        refs = REFERENCES.get(model, {})
        out = {}
        for col in model.__table__.columns:
            if col.name == "id":
                continue
            value = getattr(row, col.key)
            if col.name in refs:
                field, target = refs[col.name]
                out[field] = self.key(target, value)
            else:
                out[col.name] = encode_value(value)
        return out

    def ops(self) -> list:
        s, p = self.s, self.p
        touched: dict[type, list[int]] = {}
        for model, row_id in p.touched:
            touched.setdefault(model, []).append(row_id)
        for model, ids in touched.items():  # a query per model and 500 rows, not one ``get`` per row
            for start in range(0, len(ids), 500):
                for row in s.scalars(select(model).where(model.id.in_(ids[start:start + 500]))
                                     .execution_options(populate_existing=True)):
                    p.rows[(model, id(row))] = row
                    if model is Object:
                        p.objects_with_frames.add(row.id)
        rows = list(p.rows.values())
        trees: dict[int, dict[str, int]] = {}
        segments: dict[int, list[Segment]] = {}
        for row in rows:
            if isinstance(row, TreeEntry):
                trees.setdefault(row.commit_id, {})[row.path] = row.file_id
            elif isinstance(row, Segment):
                segments.setdefault(row.file_id, []).append(row)
        self._prefetch(File, {fid for t in trees.values() for fid in t.values()})
        self._prefetch(Object, {seg.object_id for segs in segments.values() for seg in segs})
        frame_rows: dict[int, list] = {}
        chunk_rows: dict[int, list] = {}
        if p.objects_with_frames:
            ids = sorted(p.objects_with_frames)
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                # Columns, not ORM rows: loading ~1,400 Chunk and ~400 Frame entities per ingest of
                # a 91 MB file was most of this hook's cost.
                for oid, *frame in s.execute(
                        select(Frame.object_id, Frame.seq, Frame.raw_offset, Frame.raw_size, Frame.codec, Frame.size,
                               Pack.name, Frame.pack_offset).join(Pack, Pack.id == Frame.pack_id)
                        .where(Frame.object_id.in_(part)).order_by(Frame.object_id, Frame.seq)):
                    frame_rows.setdefault(oid, []).append(frame)
                for oid, *chunk in s.execute(select(Chunk.object_id, Chunk.raw_offset, Chunk.length, Chunk.hash)
                                             .where(Chunk.object_id.in_(part)).order_by(Chunk.raw_offset)):
                    chunk_rows.setdefault(oid, []).append(chunk)
        ops: list = []
        by_kind: dict[str, list] = {k: [] for k in KINDS}
        for row in rows:
            kind = _KIND_OF.get(type(row))
            if kind is not None:
                by_kind[kind].append(row)
        loaded = {row.id for row in by_kind["object"]}
        for obj_id in p.objects_with_frames:  # frames replaced on an object this session did not load
            row = s.get(Object, obj_id)
            if row is not None and row.id not in loaded:
                by_kind["object"].append(row)
        by_kind["object"].sort(key=lambda o: o.depth)  # bases before the deltas that use them
        # A family member's objects name their bases: one query for all, not one ``get`` per delta
        # object (0.12 of the hook's 0.29 s over the six shared repos, profiled).
        self._prefetch(Object, {row.base_id for row in by_kind["object"]})
        for kind, kind_rows in by_kind.items():
            for row in kind_rows:
                values = self.columns(row)
                if kind == "object":
                    values["frames"] = frame_rows.get(row.id, [])
                    values["chunks"] = chunk_rows.get(row.id, [])
                elif kind == "file":
                    values["segments"] = [
                        [g.seq, g.offset, g.length, g.name, encode_value(g.inline),
                         self.key(Object, g.object_id)[0] if g.object_id is not None else None, g.object_offset]
                        for g in sorted(segments.get(row.id, []), key=lambda g: g.seq)]
                elif kind == "commit":
                    values["tree"] = {path: self.key(File, fid)[0] for path, fid in trees.get(row.id, {}).items()}
                ops.append([kind, values])
        ops.extend(p.deleted)
        return ops
