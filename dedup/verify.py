"""Re-read the store and check it: every pack entry's CRC, every frame's checksum, every file's sha256."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import select

from weightvault.store import Vault
from weightvault.store.models import Commit, File, Frame, Pack, Repo, Segment, TreeEntry
from weightvault.store.packs import PackCorrupt, iter_entries

from .commits import find_repo
from .reader import IntegrityError, Reader


@dataclass
class VerifyReport:
    packs: int = 0
    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    #: Litter that is no damage but takes space: temp files of dead processes, pack objects no catalog
    #: row names. ``weightvault gc`` removes them.
    leftovers: list[str] = field(default_factory=list)
    leftover_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(vault: Vault, repo: str | None = None, *, kind: str = "model",
           progress: Callable[[int], None] = lambda n: None) -> VerifyReport:
    report = VerifyReport()
    _leftovers(vault, report)
    with vault.catalog.read_session() as s:
        files_q = select(File).distinct()
        packs_q = select(Pack).where(Pack.condemned_at.is_(None))
        if repo is not None:
            repo_row = find_repo(s, repo, kind)
            files_q = (files_q.join(TreeEntry, TreeEntry.file_id == File.id)
                       .join(Commit, Commit.id == TreeEntry.commit_id).where(Commit.repo_id == repo_row.id))
            packs_q = packs_q.where(Pack.id.in_(
                select(Frame.pack_id).join(Segment, Segment.object_id == Frame.object_id)
                .where(Segment.file_id.in_(files_q.with_only_columns(File.id)))))
        files = s.scalars(files_q.order_by(File.id)).all()
        packs = s.scalars(packs_q.order_by(Pack.id)).all()
        repo_paths = _paths_by_file(s)
    for pack in packs:
        try:
            for _ in iter_entries(vault.backend, pack.name, pack.size):
                pass
        except (PackCorrupt, KeyError, OSError) as exc:
            report.problems.append(f"pack {pack.name}: {exc}")
        report.packs += 1
    reader = Reader(vault)
    for file in files:
        try:
            for piece in reader.verified_file(file):
                report.bytes += len(piece)
                progress(len(piece))
        except (IntegrityError, KeyError, OSError) as exc:
            where = ", ".join(repo_paths.get(file.id, [])[:3]) or f"file {file.sha256[:16]}"
            report.problems.append(f"{where}: {exc}")
        report.files += 1
    return report


def _leftovers(vault: Vault, report: VerifyReport) -> None:
    temp = vault.sweep_leftovers(dry_run=True)
    report.leftovers += [f"temp file of a dead process: {p}" for p in temp.describe()]
    report.leftover_bytes += temp.bytes
    listed = list(vault.backend.list("packs/"))  # before the catalog: a pack's row is written before its bytes
    with vault.catalog.read_session() as s:
        known = set(s.scalars(select(Pack.name)))
    for obj in listed:
        if obj.name not in known:
            report.leftovers.append(f"pack object the catalog does not know: {obj.name}")
            report.leftover_bytes += obj.size


def _paths_by_file(session) -> dict[int, list[str]]:
    rows = session.execute(
        select(TreeEntry.file_id, Repo.name, TreeEntry.path)
        .join(Commit, Commit.id == TreeEntry.commit_id).join(Repo, Repo.id == Commit.repo_id).distinct()
    ).all()
    out: dict[int, list[str]] = {}
    for fid, name, path in rows:
        out.setdefault(fid, []).append(f"{name}/{path}")
    return out
