"""Content arriving over HTTP: files stored ahead of the commit that names them, and commits.

The hub protocol uploads large files first (LFS) and commits paths later, so
an uploaded file is stored as a ``File`` with no tree entry; ``gc`` spares
young files for that reason. ``commit_changes`` then edits a branch's tree.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from weightvault.errors import UsageError
from weightvault.store import Vault
from weightvault.store.models import File, IngestEvent, Repo

from . import families
from .commits import (
    EntryNotFound, RevisionNotFound, find_repo, get_or_create_repo, resolve, retrying, tree_of, write_commit,
)
from .content import ContentWriter
from .names import InvalidName, check_path, check_repo_name
from .reader import Reader
from .rebase import onto_landed

log = logging.getLogger(__name__)


@dataclass
class Changes:
    """A commit's edits: paths to add (sha256 of stored files, or bytes), paths and folders to delete."""

    add_stored: dict[str, str] = field(default_factory=dict)  # path -> sha256 of an already-stored File
    add_bytes: dict[str, bytes] = field(default_factory=dict)
    delete_files: set[str] = field(default_factory=set)
    delete_folders: set[str] = field(default_factory=set)


def has_file(vault: Vault, sha256: str) -> bool:
    with vault.catalog.read_session() as s:
        return s.scalar(select(File.id).where(File.sha256 == sha256)) is not None


def _base_for(vault: Vault, repo_name: str, rel: str, path: Path | None):
    """Coding base for a file uploaded into ``repo_name``: the repo's recorded base, else a family match;
    besides, the repo's own stored tensors and any stored tensor its fingerprint finds. Returns the
    base function and, when this file decided the family, the decision and profile to record."""
    matcher = families.FamilyMatcher(vault, Reader(vault))
    with vault.catalog.read_session() as s:
        repo = s.scalar(select(Repo).where(Repo.name == repo_name))
        if repo is not None and repo.base_repo_id:
            return matcher.base_for(s.get(Repo, repo.base_repo_id).name, repo=repo_name), None
        placed = repo is not None and repo.family_id is not None
    if path is None:
        return matcher.base_for(None, repo=repo_name), None
    profile = families.profile_folder([(rel, path)])
    decision = matcher.decide(repo_name, profile)
    # The first tensor file uploaded into a repo with no family yet places it, as ingest does for a
    # folder: later repos then find it by signature, and re-basing at commit works within the family.
    verdict = (decision, profile) if profile.tensors and not placed else None
    return matcher.base_for(decision.base_repo, repo=repo_name), verdict


def store_file(vault: Vault, repo_name: str, path: Path, rel: str = "upload.bin") -> tuple[str, list[str]]:
    """Store one uploaded file's content (deduplicated and coded); returns its sha256 and any warnings
    (a ``*.safetensors`` file that does not parse is stored as opaque bytes, not refused)."""
    check_repo_name(repo_name)
    base_for, verdict = _base_for(vault, repo_name, rel, path)
    writer = ContentWriter(vault, base_for=base_for)
    with writer.staging():
        sha = writer.add_path(path, rel).digest.sha256

    def land(session) -> None:
        writer.land(session)
        repo = session.scalar(select(Repo).where(Repo.name == repo_name))
        if verdict is not None and repo is not None and repo.family_id is None:
            families.record(session, repo, *verdict)

    retrying(vault.catalog, land)
    return sha, writer.warnings


def commit_changes(vault: Vault, repo_name: str, revision: str, changes: Changes, message: str, *,
                   kind: str = "model", expected_parent: str | None = None, create_repo: bool = False,
                   author: str | None = None) -> str:
    """Apply ``changes`` to the branch's tree as one new commit; returns the commit id."""
    for path in [*changes.add_stored, *changes.add_bytes, *changes.delete_files]:
        check_path(path)
    writer = ContentWriter(vault, base_for=_base_for(vault, repo_name, "", None)[0])
    with writer.staging():
        small = {p: writer.add_bytes(data, p).digest.sha256 for p, data in changes.add_bytes.items()}

    def land(session) -> str:
        file_ids = writer.land(session)
        repo = get_or_create_repo(session, repo_name, kind) if create_repo else find_repo(session, repo_name, kind)
        try:
            head = resolve(session, repo_name, revision, kind)
        except RevisionNotFound:
            tree = {}
        else:
            if not head.branch:
                raise InvalidName(f"{revision!r} is a tag or a commit, not a branch: commit to a branch")
            tree = {p: f.id for p, f in tree_of(session, head.commit).items()}
        # Deleting what is not there is an error, as on the hub: an empty commit would hide a typo.
        for path in changes.delete_files:
            if tree.pop(path, None) is None:
                raise EntryNotFound(f"cannot delete {path!r}: no such file in {revision!r}")
        for folder in changes.delete_folders:
            prefix = folder.rstrip("/") + "/"
            inside = [p for p in tree if p.startswith(prefix)]
            if not inside:
                raise EntryNotFound(f"cannot delete folder {folder!r}: no such folder in {revision!r}")
            for path in inside:
                del tree[path]
        raw = 0
        for path, sha in changes.add_stored.items():
            row = session.scalar(select(File).where(File.sha256 == sha))
            if row is None:
                raise UsageError(f"{path}: no uploaded content with sha256 {sha}")
            tree[path] = row.id
            raw += row.size
        for path, sha in small.items():
            tree[path] = file_ids[sha]
            raw += len(changes.add_bytes[path])
        commit = write_commit(session, repo, revision, tree, message, expected_parent, author)
        session.add(IngestEvent(repo_id=repo.id, repo_name=repo_name, commit_oid=commit.oid, raw_bytes=raw,
                                new_stored_bytes=writer.new_stored_bytes))
        return commit.oid

    oid = retrying(vault.catalog, land)
    if changes.add_stored:  # re-code earlier family members the new weights predict better, as ingest does
        _, warning = onto_landed(vault, repo_name)
        if warning:  # the commit stands; the client is not the one to run `weightvault rebase`
            log.warning(warning)
    return oid
