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
from dataclasses import fields as dataclass_fields
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from weightvault.store.db import Catalog
from weightvault.store.models import Family, IngestEvent, Ref, Repo

from .report import Savings, build_report

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


def visible_report(catalog: Catalog, sees: Callable[[Repo], bool]) -> dict:
    """The report as a caller who sees only the repos ``sees`` accepts may read it.

    Hidden (private) repos leave no trace: not their rows, not their family
    membership, not their ingest events, and not their bytes in the totals,
    which are summed again over what remains. The dashboard and
    ``/api/v1/report`` both answer with this.
    """
    report = report_dict(catalog)
    with catalog.read_session() as s:
        hidden = {r.name for r in s.scalars(select(Repo).where(Repo.private.is_(True))) if not sees(r)}
    if not hidden:
        return report
    # The cached report is shared between requests: filter into new lists, never in place.
    repos = [r for r in report["repos"] if r["name"] not in hidden]
    by_name = {r["name"]: r for r in repos}
    families = []
    for f in report["families"]:
        members = [m for m in f["members"] if m not in hidden]
        families.append({**f, **_summed([by_name[m] for m in members if m in by_name]), "members": members,
                         "base": f["base"] if f["base"] not in hidden else None})
    return {**report, "overall": _summed(repos), "repos": repos,
            "families": [f for f in families if f["members"]],
            "timeline": [ev for ev in report["timeline"] if ev["repo"] not in hidden]}


def _summed(rows: list[dict]) -> dict:
    """The Savings fields of ``rows`` added up, with the ratio recomputed (as ``Savings.as_dict``)."""
    total = Savings()
    for row in rows:
        total.add(Savings(**{f.name: row[f.name] for f in dataclass_fields(Savings)}))
    return total.as_dict()
