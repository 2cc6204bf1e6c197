"""Garbage collection: drop what no revision reaches, then the packs no frame uses.

Reachability: refs/commits -> tree entries -> files -> segments -> objects,
and objects -> their delta base (so removing a base repo keeps what its
members need). Packs go in two steps: first marked unreferenced, then deleted
once they have stayed so for the grace period, so a reader that looked up a
frame just before the mark still finds its bytes, and an ingest that is still
writing has time to claim its packs.

Compaction (as borg's ``compact``): a pack whose live frames fill less than a
threshold of it is rewritten, its live frames copied into new packs and the
catalog repointed in one transaction; the old pack then goes the two-step way.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, timezone

from sqlalchemy import delete, exists, func, select, update

from .db import Catalog
from .backends import ObjectBackend
from .models import File, Frame, Object, Pack, Segment, TreeEntry, utcnow
from .journal import META_PREFIX
from .packs import ENTRY, NAME_HEX, PackWriter, claim_packs, pack_name

DEFAULT_GRACE = timedelta(hours=1)
#: REST multipart uploads keep their parts under ``uploads/`` until completed, and Xet
#: uploads their xorbs and shards under ``xet/staging/`` until a commit names their
#: files; anything there older than this belongs to an abandoned upload.
UPLOAD_PARTS_TTL = timedelta(days=1)
STAGING_PREFIXES = ("uploads/", "xet/staging/")
#: Rewrite a pack when less than this share of it is still referenced: at 0.5 a
#: compaction copies at most as many bytes as it frees.
DEFAULT_COMPACT_BELOW = 0.5


@dataclass
class GcResult:
    files: int = 0
    objects: int = 0
    packs_marked: int = 0
    packs_deleted: int = 0
    bytes_freed: int = 0
    packs_compacted: int = 0
    bytes_moved: int = 0
    upload_parts_deleted: int = 0
    #: Pack objects in the backend the catalog does not know (a gc or ingest killed between its two steps).
    orphan_packs_deleted: int = 0
    #: Temp files of dead processes on this node (``store.leftovers``).
    leftovers_deleted: int = 0
    #: Unreferenced packs still inside their grace period: freed by a gc run after ``pending_until``.
    pending_packs: int = 0
    #: Unreferenced files younger than the grace period (an upload stores a file before its commit).
    pending_files: int = 0
    pending_bytes: int = 0
    pending_until: str | None = None


def collect(catalog: Catalog, backend: ObjectBackend, grace: timedelta = DEFAULT_GRACE) -> GcResult:
    result = GcResult()
    cutoff = utcnow() - grace
    with catalog.write_session() as s:
        # Young files are spared: an upload stores its file before the commit that names it.
        result.files = s.execute(delete(File).where(
            ~exists().where(TreeEntry.file_id == File.id), File.created_at <= cutoff)).rowcount or 0
        base = Object.__table__.alias("dependent")
        while True:  # a removed member may free its base: repeat until nothing more goes
            n = s.execute(delete(Object).where(
                ~exists().where(Segment.object_id == Object.id),
                ~exists().where(base.c.base_id == Object.id),
            )).rowcount or 0
            result.objects += n
            if not n:
                break
        s.execute(update(Pack).where(exists().where(Frame.pack_id == Pack.id)).values(condemned_at=None))
        result.packs_marked = s.execute(update(Pack).where(
            Pack.condemned_at.is_(None), ~exists().where(Frame.pack_id == Pack.id),
            ~Pack.name.startswith(f"{META_PREFIX}/"),  # catalog records hold no frames and are kept
        ).values(condemned_at=utcnow())).rowcount or 0
    cutoff = utcnow() - grace
    with catalog.write_session() as s:
        doomed = s.execute(select(Pack.id, Pack.name, Pack.size).where(
            Pack.condemned_at.is_not(None), Pack.condemned_at <= cutoff,
            ~exists().where(Frame.pack_id == Pack.id))).all()
        if doomed:
            s.execute(delete(Pack).where(Pack.id.in_([d.id for d in doomed])))
    for _, name, size in doomed:  # catalog rows are gone and committed: now the bytes
        backend.delete(name)
        result.packs_deleted += 1
        result.bytes_freed += size
    # listed before the catalog is read: a pack's row exists before its bytes
    listed = [*backend.list("packs/"), *backend.list(f"{META_PREFIX}/")]
    with catalog.read_session() as s:
        waiting = s.execute(select(func.count(Pack.id), func.coalesce(func.sum(Pack.size), 0),
                                   func.max(Pack.condemned_at)).where(Pack.condemned_at.is_not(None))).one()
        young = s.execute(select(func.count(File.id), func.max(File.created_at)).where(
            ~exists().where(TreeEntry.file_id == File.id))).one()
        known = set(s.scalars(select(Pack.name)))
    result.pending_packs, result.pending_bytes, result.pending_files = waiting[0], int(waiting[1]), young[0]
    latest = [t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in (waiting[2], young[1]) if t is not None]
    if latest:
        # Files go one gc after their grace, and the packs they free one grace after that.
        result.pending_until = (max(latest) + grace * (2 if young[0] else 1)).isoformat(timespec="seconds")
    # Pack objects no catalog row names: a pack row is written before its bytes and deleted before them,
    # so these are the bytes of a gc killed between its two steps, or a catalog record uploaded by a
    # transaction killed before it committed (store/journal.py). The grace keeps this safe anyway.
    for obj in listed:
        if obj.name not in known and obj.mtime < cutoff.timestamp():
            backend.delete(obj.name)
            result.orphan_packs_deleted += 1
            result.bytes_freed += obj.size
    stale = utcnow().timestamp() - UPLOAD_PARTS_TTL.total_seconds()
    for obj in [o for prefix in STAGING_PREFIXES for o in backend.list(prefix)]:
        if obj.mtime < stale:
            backend.delete(obj.name)
            result.upload_parts_deleted += 1
            result.bytes_freed += obj.size
    return result


def compact(catalog: Catalog, backend: ObjectBackend, writer: PackWriter,
            below: float = DEFAULT_COMPACT_BELOW, result: GcResult | None = None) -> GcResult:
    """Copy the live frames of sparse packs, and of every version 1 pack, into new packs and mark
    the old ones unreferenced. Version 1 packs (uuid names, shorter than content names) are
    rewritten whatever their fill: their entries do not say what they hold, so until then
    ``recover`` cannot place their frames (docs/FORMAT.md "Pack")."""
    result = result or GcResult()
    live = func.sum(Frame.size + ENTRY.size)
    with catalog.read_session() as s:
        sparse = [(pid, name, size) for pid, name, size, used in s.execute(
            select(Pack.id, Pack.name, Pack.size, live).join(Frame, Frame.pack_id == Pack.id)
            .where(Pack.condemned_at.is_(None)).group_by(Pack.id, Pack.name, Pack.size)).all()
            if used < below * size or len(name) < len(pack_name("0" * NAME_HEX))]
    for pack_id, name, size in sparse:
        with catalog.read_session() as s:
            frames = s.execute(select(Frame.object_id, Frame.seq, Frame.pack_offset, Frame.size, Object.digest)
                               .join(Object, Object.id == Frame.object_id)
                               .where(Frame.pack_id == pack_id).order_by(Frame.pack_offset)).all()
        data = backend.read(name, 0, size)
        # Copies carry their object and frame number, so compaction also rewrites version 1 packs into v2.
        moves = [(oid, seq, writer.add(data[off:off + n], bytes.fromhex(digest), seq))
                 for oid, seq, off, n, digest in frames]
        shipped = writer.flush()
        with catalog.write_session() as s:
            claim_packs(s, list(shipped.values()))
            for oid, seq, loc in moves:
                s.execute(update(Frame).where(Frame.object_id == oid, Frame.seq == seq, Frame.pack_id == pack_id)
                          .values(pack_id=shipped[loc.pack], pack_offset=loc.offset))
            s.execute(update(Pack).where(Pack.id == pack_id, ~exists().where(Frame.pack_id == Pack.id))
                      .values(condemned_at=utcnow()))
        writer.shipped.clear()
        result.packs_compacted += 1
        result.bytes_moved += sum(f.size for f in frames)
    return result
