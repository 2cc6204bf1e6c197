"""Revisions: commits with 40-hex ids and branch refs, as a hub has them."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from weightvault.errors import CommitConflict, EntryNotFound, RepoNotFound, RevisionNotFound
from weightvault.store.models import Commit, Family, File, Ref, Repo, Tag, TreeEntry

from .names import check_message, check_path, check_repo_name, check_revision, check_tree


@dataclass(frozen=True)
class Resolved:
    repo: Repo
    commit: Commit
    revision: str
    #: True when ``revision`` named a branch (commits may move it), False for a tag or a commit id.
    branch: bool = False


def _storable(value: str, column) -> bool:
    """Whether ``value`` could be in ``column`` at all (no NUL, not longer than the column)."""
    return isinstance(value, str) and "\x00" not in value and len(value) <= column.type.length


def find_repo(session, name: str, kind: str = "model") -> Repo:
    if not _storable(name, Repo.name):
        raise RepoNotFound(name=name[:200])
    repo = session.scalar(select(Repo).where(Repo.kind == kind, Repo.name == name))
    if repo is None:
        raise RepoNotFound(name=name)
    return repo


def get_or_create_repo(session, name: str, kind: str = "model", private: bool = False) -> Repo:
    check_repo_name(name)
    repo = session.scalar(select(Repo).where(Repo.kind == kind, Repo.name == name))
    if repo is None:
        repo = Repo(kind=kind, name=name, private=private)
        session.add(repo)
        session.flush()
    return repo


#: A branch's repo and head commit in one round trip, built once: building the statement took more
#: of a download's request than the query (SQLAlchemy's expression construction and cache key,
#: ~0.4 ms of the ~2.6 ms of CPU a HEAD costs).
_BRANCH_HEAD = (select(Repo, Commit).join(Ref, Ref.repo_id == Repo.id).join(Commit, Commit.id == Ref.commit_id)
                .where(Repo.kind == bindparam("kind"), Repo.name == bindparam("name"), Ref.name == bindparam("ref")))


def resolve(session, name: str, revision: str = "main", kind: str = "model") -> Resolved:
    """A branch name, a tag, or a full or abbreviated (>= 7 hex) commit id, to a commit (in that order).

    Names that no repo or branch can have are not looked up at all: the catalog
    (PostgreSQL) would refuse a NUL in a query parameter with a server error.
    """
    if not _storable(name, Repo.name):
        raise RepoNotFound(name=name[:200])
    if not _storable(revision, Ref.name):
        raise RevisionNotFound(f"revision {revision[:200]!r} not found in {name!r}")
    # A branch, the common case on every download, in one round trip.
    row = session.execute(_BRANCH_HEAD, {"kind": kind, "name": name, "ref": revision}).first()
    if row is not None:
        return Resolved(row.Repo, row.Commit, revision, branch=True)
    repo = find_repo(session, name, kind)
    tagged = session.scalar(select(Commit).join(Tag, Tag.commit_id == Commit.id)
                            .where(Tag.repo_id == repo.id, Tag.name == revision))
    if tagged is not None:
        return Resolved(repo, tagged, revision)
    if 7 <= len(revision) <= 40 and all(c in "0123456789abcdef" for c in revision):
        commits = session.scalars(
            select(Commit).where(Commit.repo_id == repo.id, Commit.oid.startswith(revision)).limit(2)).all()
        if len(commits) == 1:
            return Resolved(repo, commits[0], revision)
    raise RevisionNotFound(revision=revision, name=name)


#: Every path of a branch's head with its file's id, size and sha256, in one statement on table columns
#: (Core): the ORM's resolve and tree_of cost a fresh process 10-12 ms (configuring the mappers,
#: compiling two entity queries), this statement 1.4-2.0 ms, the FP32 base's whole restore ~100 ms.
_TE, _FILES, _REPOS, _REFS = TreeEntry.__table__, File.__table__, Repo.__table__, Ref.__table__
_LISTING_COLUMNS = (_TE.c.path, _FILES.c.id, _FILES.c.size, _FILES.c.sha256)
_BRANCH_LISTING = (select(*_LISTING_COLUMNS)
                   .select_from(_REPOS.join(_REFS, _REFS.c.repo_id == _REPOS.c.id)
                                .join(_TE, _TE.c.commit_id == _REFS.c.commit_id)
                                .join(_FILES, _FILES.c.id == _TE.c.file_id))
                   .where(_REPOS.c.kind == bindparam("kind"), _REPOS.c.name == bindparam("name"),
                          _REFS.c.name == bindparam("ref")))
_COMMIT_LISTING = (select(*_LISTING_COLUMNS).join(_FILES, _FILES.c.id == _TE.c.file_id)
                   .where(_TE.c.commit_id == bindparam("commit")))


def listing(session, name: str, revision: str = "main", kind: str = "model") -> dict:
    """path -> row (``id``, ``size``, ``sha256`` of its file) of a revision, as ``resolve`` finds it:
    a branch in one query; a tag, a commit id, an empty tree or a missing name through ``resolve``
    (which raises the same errors)."""
    if _storable(name, _REPOS.c.name) and _storable(revision, _REFS.c.name):
        rows = session.execute(_BRANCH_LISTING, {"kind": kind, "name": name, "ref": revision}).all()
        if rows:
            return {row.path: row for row in rows}
    commit = resolve(session, name, revision, kind).commit
    return {row.path: row for row in session.execute(_COMMIT_LISTING, {"commit": commit.id})}


def tree_of(session, commit: Commit) -> dict[str, File]:
    rows = session.execute(
        select(TreeEntry.path, File).join(File, File.id == TreeEntry.file_id).where(TreeEntry.commit_id == commit.id)
    ).all()
    return {path: f for path, f in rows}


def write_commit(session, repo: Repo, revision: str, tree: dict[str, int], message: str,
                 expected_parent: str | None = None, author: str | None = None) -> Commit:
    """Point ``revision`` at a new commit whose tree is ``tree`` (path -> file id).

    ``expected_parent``, when given, must be the branch's current commit (the
    hub's ``parentCommit``), else ``CommitConflict``.
    """
    check_revision(revision)
    for path in tree:
        check_path(path)
    check_tree(tree)
    check_message(message)
    ref = session.scalar(select(Ref).where(Ref.repo_id == repo.id, Ref.name == revision).with_for_update())
    parent = session.get(Commit, ref.commit_id) if ref else None
    if expected_parent and (parent is None or not parent.oid.startswith(expected_parent)):
        raise CommitConflict(revision=revision, current=parent.oid if parent else "nothing", expected=expected_parent)
    listing = "".join(f"{p}\0{fid}\n" for p, fid in sorted(tree.items()))
    oid = hashlib.sha1(
        f"tree {hashlib.sha1(listing.encode()).hexdigest()}\nparent {parent.oid if parent else ''}\n"
        f"repo {repo.kind}/{repo.name}\ntime {time.time_ns()}\n\n{message}".encode()
    ).hexdigest()
    commit = Commit(repo_id=repo.id, oid=oid, parent_oid=parent.oid if parent else None, message=message,
                    author=author)
    session.add(commit)
    session.flush()
    session.add_all(TreeEntry(commit_id=commit.id, path=p, file_id=fid) for p, fid in tree.items())
    if ref is None:
        session.add(Ref(repo_id=repo.id, name=revision, commit_id=commit.id))
    else:
        ref.commit_id = commit.id
    session.flush()
    return commit


def retrying(catalog, work, attempts: int = 5):
    """Run ``work(session)`` in a write transaction, retrying when a concurrent writer won a race."""
    for attempt in range(attempts):
        try:
            with catalog.write_session() as session:
                return work(session)
        except (IntegrityError, OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def delete_repo(session, name: str, kind: str = "model") -> None:
    """Remove a repo and its revisions; its content stays until ``gc`` finds it unreferenced."""
    repo = find_repo(session, name, kind)
    session.execute(update(Family).where(Family.base_repo_id == repo.id).values(base_repo_id=None))
    session.delete(repo)
    session.flush()
