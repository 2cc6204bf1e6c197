"""Catalog detail behind the savings report: family trees, revisions, files and tensors.

``report.build_report`` stays the one source of savings figures (who is charged
for which byte); this module only adds what a person drills into — which repo
is coded against which, what a revision holds, and how each tensor was coded
and why. Sizes here are per object as coded, not charged-once: a file's
``stored_bytes`` counts an object it shares with another file in full.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from weightvault.errors import EntryNotFound, FamilyNotFound
from weightvault.store.models import Commit, Family, File, Object, Pack, Ref, Repo, Segment, TreeEntry

from .commits import resolve, tree_of


@dataclass(frozen=True)
class Footprint:
    """What the object backend holds, as the catalog counts it: the disk (or bucket) side of "stored".

    It differs from the report's stored bytes by what the catalog keeps inline
    (safetensors headers), by content no branch reaches any more (until gc),
    and by packs gc has condemned but not yet deleted (readers may still use them).
    """

    packs: int
    pack_bytes: int
    condemned_packs: int
    condemned_bytes: int


def footprint(session: Session) -> Footprint:
    condemned = Pack.condemned_at.is_not(None)
    packs, pack_bytes, dead, dead_bytes = session.execute(select(
        func.count(Pack.id), func.coalesce(func.sum(Pack.size), 0),
        func.coalesce(func.sum(case((condemned, 1), else_=0)), 0),
        func.coalesce(func.sum(case((condemned, Pack.size), else_=0)), 0))).one()
    return Footprint(packs, int(pack_bytes), int(dead), int(dead_bytes))


@dataclass(frozen=True)
class Member:
    """A family member placed in the tree under the repo its tensors are coded against."""

    name: str
    kind: str
    depth: int
    coded_against: str | None
    reason: str | None


@dataclass(frozen=True)
class FamilyDetail:
    name: str
    base: str | None
    #: Depth-first, base first: each member follows the repo it is coded against.
    members: list[Member]


def family_detail(session: Session, name: str) -> FamilyDetail:
    """A family's base and members, each member placed under the repo it is delta-coded against."""
    fam = session.scalar(select(Family).where(Family.name == name))
    if fam is None:
        raise FamilyNotFound(name=name)
    rows = session.execute(select(Repo.id, Repo.name, Repo.kind, Repo.base_repo_id, Repo.family_reason)
                           .where(Repo.family_id == fam.id).order_by(Repo.id)).all()
    ids = {r.id for r in rows}
    names = {r.id: r.name for r in rows}
    # Bases outside the member list still need a name: a family base that left, or a checkpoint's
    # previous repo filed under another family.
    outside = ({r.base_repo_id for r in rows} | {fam.base_repo_id}) - ids - {None}
    if outside:
        names.update(session.execute(select(Repo.id, Repo.name).where(Repo.id.in_(outside))).all())
    children: dict[int | None, list] = {}
    for r in rows:
        # A member coded against a repo outside the family (or nothing) is a root of the tree.
        children.setdefault(r.base_repo_id if r.base_repo_id in ids else None, []).append(r)
    # The family base leads; other roots (exact duplicates, members coded alone) follow in ingest order.
    roots = sorted(children.get(None, []), key=lambda r: (r.id != fam.base_repo_id, r.id))
    members: list[Member] = []
    stack = [(r, 0) for r in reversed(roots)]
    while stack:
        r, depth = stack.pop()
        members.append(Member(r.name, r.kind, depth, names.get(r.base_repo_id) if r.base_repo_id else None,
                              r.family_reason))
        stack.extend((c, depth + 1) for c in reversed(children.get(r.id, [])))
    return FamilyDetail(fam.name, names.get(fam.base_repo_id), members)


@dataclass(frozen=True)
class Revision:
    oid: str
    parent_oid: str | None
    message: str
    created_at: datetime
    #: Branches pointing at this commit.
    refs: list[str]


@dataclass(frozen=True)
class FileRow:
    path: str
    size: int
    stored_bytes: int
    format: str
    sha256: str
    tensors: int
    #: The repo the report charges this file's bytes to: the first (by repo id, as ``build_report``
    #: walks them) whose branches reach it. Another repo's name here means file dedup saved it.
    charged_to: str | None


@dataclass(frozen=True)
class RepoDetail:
    name: str
    kind: str
    private: bool
    family: str | None
    coded_against: str | None
    family_reason: str | None
    #: The revision shown: the branch or commit asked for, resolved.
    revision: str
    commit: str
    refs: dict[str, str]
    #: Newest first, at most ``history_limit`` of them.
    history: list[Revision]
    #: Every commit the repo has, shown or not.
    commits: int
    files: list[FileRow]


def repo_detail(session: Session, name: str, revision: str = "main", kind: str = "model", *,
                history_limit: int = 50) -> RepoDetail:
    """A repo's branches, its latest commits and the files of ``revision`` with raw and coded sizes."""
    resolved = resolve(session, name, revision, kind)
    repo = resolved.repo
    refs = dict(session.execute(select(Ref.name, Commit.oid).join(Commit, Commit.id == Ref.commit_id)
                                .where(Ref.repo_id == repo.id).order_by(Ref.name)).all())
    by_oid: dict[str, list[str]] = {}
    for ref, oid in refs.items():
        by_oid.setdefault(oid, []).append(ref)
    history = [Revision(c.oid, c.parent_oid, c.message, c.created_at, by_oid.get(c.oid, []))
               for c in session.scalars(select(Commit).where(Commit.repo_id == repo.id)
                                        .order_by(Commit.id.desc()).limit(history_limit))]
    commits = session.scalar(select(func.count()).select_from(Commit).where(Commit.repo_id == repo.id))
    tree = tree_of(session, resolved.commit)
    file_ids = [f.id for f in tree.values()]
    coded = _coded_sizes(session, file_ids)
    charged = _charged_to(session, file_ids)
    files = [FileRow(path, f.size, coded.get(f.id, (0, 0))[0], f.format, f.sha256, coded.get(f.id, (0, 0))[1],
                     charged.get(f.id)) for path, f in sorted(tree.items())]
    family = session.scalar(select(Family.name).where(Family.id == repo.family_id)) if repo.family_id else None
    base = session.scalar(select(Repo.name).where(Repo.id == repo.base_repo_id)) if repo.base_repo_id else None
    return RepoDetail(repo.name, repo.kind, repo.private, family, base, repo.family_reason, resolved.revision,
                      resolved.commit.oid, refs, history, commits, files)


def _charged_to(session: Session, file_ids: list[int]) -> dict[int, str]:
    """file id -> name of the first repo (by id) whose branches reach it, the one ``build_report`` charges."""
    if not file_ids:
        return {}
    first = (select(TreeEntry.file_id, func.min(Commit.repo_id).label("repo_id"))
             .join(Commit, Commit.id == TreeEntry.commit_id).join(Ref, Ref.commit_id == Commit.id)
             .where(TreeEntry.file_id.in_(file_ids)).group_by(TreeEntry.file_id).subquery())
    return dict(session.execute(select(first.c.file_id, Repo.name).join(Repo, Repo.id == first.c.repo_id)).all())


def _coded_sizes(session: Session, file_ids: list[int]) -> dict[int, tuple[int, int]]:
    """file id -> (bytes its segments take as coded, number of tensor segments)."""
    out: dict[int, tuple[int, int]] = {}
    if not file_ids:
        return out
    rows = session.execute(
        select(Segment.file_id, Segment.length, Segment.name, Segment.inline.is_not(None), Object.stored_size,
               Object.kind)
        .outerjoin(Object, Object.id == Segment.object_id).where(Segment.file_id.in_(file_ids)))
    for file_id, length, seg_name, inline, stored, kind in rows:
        size, tensors = out.get(file_id, (0, 0))
        is_tensor = kind == "tensor" or (inline and _inline_tensor(seg_name))
        out[file_id] = (size + (length if inline else stored or 0), tensors + is_tensor)
    return out


def _inline_tensor(segment_name: str | None) -> bool:
    """Inline segments are headers (``__header__``), unnamed runs, or tensors too small to code."""
    return segment_name is not None and segment_name != "__header__"


@dataclass(frozen=True)
class TensorRow:
    """One segment of a file: inline bytes (a header) or an object, with how it was coded and why."""

    name: str | None
    offset: int
    raw_bytes: int
    stored_bytes: int
    kind: str  # inline | tensor | blob
    dtype: str | None
    shape: list[int] | None
    codec: str | None
    #: What the report credits this object's savings to (plane_coding, family_delta, checkpoint_delta).
    mechanism: str | None
    #: The tensor this one is delta-coded against, by name, if any.
    base: str | None
    depth: int
    reason: str | None
    digest: str | None


@dataclass(frozen=True)
class FileDetail:
    repo: str
    revision: str
    commit: str
    path: str
    size: int
    sha256: str
    format: str
    segments: list[TensorRow]


def file_detail(session: Session, name: str, revision: str, path: str, kind: str = "model") -> FileDetail:
    resolved = resolve(session, name, revision, kind)
    f = session.scalar(select(File).join(TreeEntry, TreeEntry.file_id == File.id)
                       .where(TreeEntry.commit_id == resolved.commit.id, TreeEntry.path == path))
    if f is None:
        raise EntryNotFound(f"{path!r} is not in {name}@{revision}")
    rows = session.execute(
        select(Segment.seq, Segment.offset, Segment.length, Segment.name, Segment.inline.is_not(None), Object)
        .outerjoin(Object, Object.id == Segment.object_id).where(Segment.file_id == f.id).order_by(Segment.seq)).all()
    base_ids = {o.base_id for *_, o in rows if o is not None and o.base_id is not None}
    base_names: dict[int, str | None] = {}
    if base_ids:
        # Any segment naming the base object will do: the same bytes under the same tensor name, in practice.
        for object_id, seg_name in session.execute(select(Segment.object_id, func.min(Segment.name))
                                                   .where(Segment.object_id.in_(base_ids)).group_by(Segment.object_id)):
            base_names[object_id] = seg_name
    segments = []
    for _seq, offset, length, seg_name, inline, o in rows:
        if inline or o is None:
            why = ("kept inline: under 1 KiB, a frame would cost more than it saves" if _inline_tensor(seg_name)
                   else "kept verbatim: a header is tiny and needed to rebuild the file")
            segments.append(TensorRow(seg_name or "(header)", offset, length, length, "inline", None, None, None, None,
                                      None, 0, why, None))
            continue
        segments.append(TensorRow(seg_name, offset, o.raw_size, o.stored_size, o.kind, o.dtype,
                                  json.loads(o.shape) if o.shape else None, o.codec, o.mechanism,
                                  base_names.get(o.base_id) if o.base_id else None, o.depth, o.reason, o.digest))
    return FileDetail(resolved.repo.name, revision, resolved.commit.oid, path, f.size, f.sha256, f.format, segments)
