"""Ingest a model repository folder: walk, hash, dedup, code, and commit it as one revision."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlalchemy import select

from weightvault.store import Vault
from weightvault.store.models import Commit, IngestEvent, Ref

from . import families, series
from .commits import get_or_create_repo, retrying, tree_of, write_commit
from .content import ContentWriter
from .names import InvalidName, check_path, check_repo_name, check_revision, check_tree
from .reader import Reader
from .rebase import onto_landed

#: Folders a repo checkout may carry that are not part of the repo.
SKIPPED_DIRS = {".git", ".cache", "__pycache__"}

#: Decides a repo's family and looks up its tensors' bases while its files are hashed: done first,
#: on one core, that was the first 36-69 ms of the FP32 fine-tune's ingest.
_decide_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wv-decide")


@dataclass(frozen=True)
class IngestResult:
    repo: str
    revision: str
    commit: str
    family: str
    base: str | None
    family_reason: str
    family_candidates: dict[str, float]  # repos considered as base -> bitwise similarity
    files: int
    raw_bytes: int
    new_stored_bytes: int
    #: False when the branch already held exactly these files: no commit was added (``commit`` is the head).
    changed: bool = True
    #: Files stored as opaque bytes because they did not parse as their name says.
    warnings: list[str] = field(default_factory=list)
    #: Family members re-coded against this repo because it predicts them better than their base
    #: (repo, tensors, bytes saved), and members left for ``weightvault rebase`` (over the budget).
    rebased: list[tuple[str, int, int]] = field(default_factory=list)
    rebase_deferred: list[str] = field(default_factory=list)
    #: Seconds of that re-basing pass, part of the ingest's own time (0.0 when it did not run).
    rebase_seconds: float = 0.0


def walk_repo(root: Path) -> list[tuple[str, Path]]:
    """Every regular file under ``root`` as (repo path, real path), refusing anything that escapes it."""
    root = root.resolve()
    if not root.is_dir():
        raise InvalidName(f"{root} is not a folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for d in dirnames:
            _inside(root, Path(dirpath) / d)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            real = _inside(root, path)
            if not real.is_file():
                raise InvalidName(f"{path} is not a regular file")
            found.append((check_path(path.relative_to(root).as_posix()), real))
    return found


def _inside(root: Path, path: Path) -> Path:
    real = path.resolve()
    if real != root and root not in real.parents:
        raise InvalidName(f"{path} is a link that leads outside the repo folder ({real})")
    return real


def ingest_folder(vault: Vault, folder: Path, repo: str, revision: str = "main", *, message: str | None = None,
                  kind: str = "model", progress: Callable[[int], None] = lambda n: None,
                  on_file: Callable[[str], None] = lambda p: None, previous: str | None = None,
                  keyframe_every: int = series.DEFAULT_KEYFRAME_EVERY, rebase: bool = True) -> IngestResult:
    """``previous`` names the checkpoint this one continues (coded with the checkpoint codec against it);
    otherwise the repo's family decides the base its tensors are delta-coded against. A folder of
    ``checkpoint-<step>/`` sub-folders is a series: each checkpoint is coded against the previous one.

    Once the revision has landed, family members this repo predicts better than their current base
    are re-coded against it (``rebase``: in transactions of their own, bounded by
    rebase.ONTO_BUDGET); a crash in between leaves them as they were, for ``weightvault rebase``."""
    check_repo_name(repo)
    check_revision(revision)
    files = series.order_files(walk_repo(Path(folder)))
    check_tree(rel for rel, _ in files)
    profile = families.profile_folder(files)
    matcher = families.FamilyMatcher(vault, Reader(vault))
    deciding = None
    if previous is not None:
        check_repo_name(previous)
        decision = families.Decision(previous, previous, f"checkpoint following {previous}")
        with vault.catalog.read_session() as s:
            decision.family = families.family_of(s, previous)
        base_for = matcher.base_for(previous, codec="ckpt")
    elif series.is_series(files):
        decision = families.Decision(repo, None, "checkpoint series: each checkpoint coded against the previous")
        base_for = series.SeriesBases(Path(folder), files, keyframe_every)
    else:
        def decide():
            decided = matcher.decide(repo, profile)
            return decided, matcher.base_for(decided.base_repo, repo=repo, revision=revision, prof=profile)
        deciding = _decide_pool.submit(decide)
        base_for = lambda *args: deciding.result()[1](*args)  # noqa: E731 (the first tensor that needs it waits)
    writer = ContentWriter(vault, base_for=base_for)
    staged: dict[str, str] = {}
    try:
        with writer.staging():
            for rel, real in files:
                on_file(rel)
                staged[rel] = writer.add_path(real, rel, progress).digest.sha256
        if deciding is not None:
            decision = deciding.result()[0]
    finally:
        if deciding is not None:
            wait([deciding])  # nothing of this ingest outlives it

    def land(session):
        file_ids = writer.land(session)
        repo_row = get_or_create_repo(session, repo, kind)
        families.record(session, repo_row, decision, profile)
        tree = {p: file_ids[sha] for p, sha in staged.items()}
        head = session.scalar(select(Commit).join(Ref, Ref.commit_id == Commit.id)
                              .where(Ref.repo_id == repo_row.id, Ref.name == revision))
        if head is not None and {p: f.id for p, f in tree_of(session, head).items()} == tree:
            return head.oid, False  # the same files again: an empty commit would only clutter the history
        commit = write_commit(session, repo_row, revision, tree, message or f"Ingest {Path(folder).name}")
        session.add(IngestEvent(repo_id=repo_row.id, repo_name=repo, commit_oid=commit.oid,
                                raw_bytes=writer.raw_bytes, new_stored_bytes=writer.new_stored_bytes))
        return commit.oid, True

    oid, changed = retrying(vault.catalog, land)
    done, rebase_seconds = None, 0.0
    if rebase and changed and previous is None and profile.tensors:
        started = time.perf_counter()
        done, warning = onto_landed(vault, repo, profile.tensors, writer.tensor_crcs)
        rebase_seconds = time.perf_counter() - started
        if warning:
            writer.warnings.append(warning)
    return IngestResult(repo, revision, oid, decision.family, decision.base_repo, decision.reason, decision.scores,
                        len(files), writer.raw_bytes, writer.new_stored_bytes, changed, writer.warnings,
                        [(m.repo, m.tensors, m.bytes_before - m.bytes_after) for m in done.members] if done else [],
                        done.deferred if done else [], rebase_seconds)
