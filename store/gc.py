"""Garbage collection: drop what no revision reaches, then the packs no frame uses.

Reachability: refs/commits -> tree entries -> files -> segments -> objects,
and objects -> their delta base (so removing a base repo keeps what its
members need). Packs go in two steps: first marked unreferenced, then deleted
once they have stayed so for the grace period, so a reader that looked up a
frame just before the mark still finds its bytes, and an ingest that is still
writing has time to claim its packs.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, exists, select, update

from .db import Catalog
from .backends import ObjectBackend
from .models import File, Frame, Object, Pack, Segment, TreeEntry, utcnow

DEFAULT_GRACE = timedelta(hours=1)


@dataclass
class GcResult:
    files: int = 0
    objects: int = 0
    packs_marked: int = 0
    packs_deleted: int = 0
    bytes_freed: int = 0


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
            Pack.condemned_at.is_(None), ~exists().where(Frame.pack_id == Pack.id)).values(condemned_at=utcnow())
        ).rowcount or 0
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
    return result
