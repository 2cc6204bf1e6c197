"""Storage-savings figures: per repo, per family and overall, from one computation.

Every byte a repo's branches reach is charged once: to the first repo (in
ingest order) whose tree reached it. What a later repo reaches again counts as
saved by file dedup (the whole file was already stored) or tensor dedup (the
object was). What a repo brings new is split into what delta coding saved
(objects coded against a base) and what plain coding saved (the rest).
The CLI table, ``/api/v1/report`` and the dashboard all read ``build_report``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from weightvault.store.models import Commit, Family, File, IngestEvent, Object, Ref, Repo, Segment, TreeEntry

MECHANISMS = ("file_dedup", "tensor_dedup", "family_delta", "checkpoint_delta", "plane_coding")


@dataclass
class Savings:
    raw_bytes: int = 0
    stored_bytes: int = 0
    file_dedup: int = 0
    tensor_dedup: int = 0
    family_delta: int = 0
    checkpoint_delta: int = 0
    plane_coding: int = 0
    files: int = 0

    def add(self, other: "Savings") -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)

    @property
    def ratio(self) -> float:
        return self.stored_bytes / self.raw_bytes if self.raw_bytes else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": round(self.ratio, 6)}


@dataclass
class RepoReport:
    name: str
    kind: str
    family: str | None
    savings: Savings


@dataclass
class FamilyReport:
    name: str
    base: str | None
    members: list[str]
    savings: Savings


@dataclass
class Report:
    repos: list[RepoReport] = field(default_factory=list)
    families: list[FamilyReport] = field(default_factory=list)
    overall: Savings = field(default_factory=Savings)
    timeline: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "overall": self.overall.as_dict(),
            "repos": [{"name": r.name, "kind": r.kind, "family": r.family, **r.savings.as_dict()} for r in self.repos],
            "families": [{"name": f.name, "base": f.base, "members": f.members, **f.savings.as_dict()}
                         for f in self.families],
            "timeline": self.timeline,
        }


def build_report(session) -> Report:
    repos = session.execute(select(Repo.id, Repo.name, Repo.kind, Repo.family_id).order_by(Repo.id)).all()
    families = {f.id: f for f in session.scalars(select(Family)).all()}
    reached = session.execute(
        select(Commit.repo_id, File.id, File.size).distinct()
        .join(Ref, Ref.commit_id == Commit.id).join(TreeEntry, TreeEntry.commit_id == Commit.id)
        .join(File, File.id == TreeEntry.file_id)
    ).all()
    files_by_repo: dict[int, list[tuple[int, int]]] = {}
    for repo_id, file_id, size in reached:
        files_by_repo.setdefault(repo_id, []).append((file_id, size))
    segments: dict[int, list[tuple[int, bool, int | None]]] = {}
    for file_id, length, inline, object_id in session.execute(
            select(Segment.file_id, Segment.length, Segment.inline.is_not(None), Segment.object_id)):
        segments.setdefault(file_id, []).append((length, inline, object_id))
    objects = {o.id: o for o in session.execute(
        select(Object.id, Object.raw_size, Object.stored_size, Object.mechanism)).all()}

    report = Report()
    seen_files: set[int] = set()
    seen_objects: set[int] = set()
    names = {r.id: r.name for r in repos}
    for repo in repos:
        s = Savings()
        for file_id, size in sorted(files_by_repo.get(repo.id, [])):
            s.raw_bytes += size
            s.files += 1
            if file_id in seen_files:
                s.file_dedup += size
                continue
            seen_files.add(file_id)
            for length, inline, object_id in segments.get(file_id, []):
                if inline:
                    s.stored_bytes += length
                    continue
                if object_id in seen_objects:
                    s.tensor_dedup += length
                    continue
                seen_objects.add(object_id)
                o = objects[object_id]
                s.stored_bytes += o.stored_size
                saved = o.raw_size - o.stored_size
                setattr(s, o.mechanism, getattr(s, o.mechanism) + saved)
        fam = families.get(repo.family_id)
        report.repos.append(RepoReport(repo.name, repo.kind, fam.name if fam else None, s))
        report.overall.add(s)
    for fam in sorted(families.values(), key=lambda f: f.name):
        members = [r for r in report.repos if r.family == fam.name]
        total = Savings()
        for m in members:
            total.add(m.savings)
        report.families.append(FamilyReport(fam.name, names.get(fam.base_repo_id), [m.name for m in members], total))
    for ev in session.scalars(select(IngestEvent).order_by(IngestEvent.id)).all():
        report.timeline.append({"at": ev.created_at.isoformat(), "repo": ev.repo_name, "commit": ev.commit_oid,
                                "raw_bytes": ev.raw_bytes, "new_stored_bytes": ev.new_stored_bytes})
    return report
