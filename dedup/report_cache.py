"""The savings report, recomputed only when the catalog changed in a way that can change it.

``build_report`` walks every segment the store holds: hundreds of milliseconds
with a thousand repos, on every page view. What it reads splits into rows that
change (repos, families, branch refs, the ingest log) and rows that never do
once written (a commit's tree, a file's segments, an object's sizes and
mechanism are content-addressed and immutable; gc only removes rows no branch
reaches; a rebase re-codes objects but logs an event for each repo it changes). So a fingerprint of the changing rows — a scan of three small tables
plus the ingest log's high-water mark — says exactly when the cached report is
stale. Same catalog state in, same figures out: the page still shows exactly
what ``weightvault report`` and ``/api/v1/report`` compute.
"""
from __future__ import annotations

import hashlib
import threading
import weakref

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from weightvault.store.db import Catalog
from weightvault.store.models import Family, IngestEvent, Ref, Repo

from .report import build_report

_cache: "weakref.WeakKeyDictionary[Catalog, tuple[str, dict]]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def fingerprint(session: Session) -> str:
    """A digest of every catalog row ``build_report`` reads that can change after it is written."""
    h = hashlib.sha1()
    for query in (select(Repo.id, Repo.name, Repo.kind, Repo.family_id).order_by(Repo.id),
                  select(Family.id, Family.name, Family.base_repo_id).order_by(Family.id),
                  select(Ref.repo_id, Ref.name, Ref.commit_id).order_by(Ref.repo_id, Ref.name),
                  select(func.count(IngestEvent.id), func.max(IngestEvent.id))):
        for row in session.execute(query):
            h.update(repr(tuple(row)).encode())
        h.update(b"|")
    return h.hexdigest()


def report_dict(catalog: Catalog) -> dict:
    """``build_report(...).as_dict()`` for the catalog as it is now; callers must not modify it."""
    with catalog.read_session() as session:
        key = fingerprint(session)
        with _lock:
            hit = _cache.get(catalog)
        if hit is not None and hit[0] == key:
            return hit[1]
        # Computed after the fingerprint, so the report reflects at least the keyed state; if a
        # writer moved a ref in between, the next request's fingerprint differs and recomputes.
        report = build_report(session).as_dict()
    with _lock:
        _cache[catalog] = (key, report)
    return report


def visible_report(catalog: Catalog, can_read_private: bool) -> dict:
    """The report without private repos' rows for a caller who cannot read them.

    Totals stay store-wide: they are what the disk holds, whoever is looking. The
    dashboard and ``/api/v1/report`` both answer with this.
    """
    report = report_dict(catalog)
    if can_read_private:
        return report
    with catalog.read_session() as s:
        hidden = set(s.scalars(select(Repo.name).where(Repo.private.is_(True))))
    if not hidden:
        return report
    # The cached report is shared between requests: filter into new lists, never in place. The timeline
    # keeps private repos' events (the totals include them) but not their names or commits.
    return {**report, "repos": [r for r in report["repos"] if r["name"] not in hidden],
            "families": [{**f, "members": [m for m in f["members"] if m not in hidden]} for f in report["families"]],
            "timeline": [{**ev, "repo": "(a private repo)", "commit": ""} if ev["repo"] in hidden else ev
                         for ev in report["timeline"]]}
