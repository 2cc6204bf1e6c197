"""Finding what a request names: repo kinds, revisions taken from the raw path, and snapshots.

Hub clients send revisions as ``quote(rev, safe="")`` (``refs/pr/1`` arrives as
``refs%2Fpr%2F1``) while Starlette hands routes an already-decoded path, where
``resolve/dev/v1/config.json`` is ambiguous. Routes therefore match on the
decoded path only to pick a handler, and take revision and file path from
``scope["raw_path"]``, unquoting each segment.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode

from fastapi import Request
from sqlalchemy import bindparam, select

from weightvault.dedup.commits import RepoNotFound, RevisionNotFound, resolve, tree_of
from weightvault.errors import NotFound
from weightvault.store.models import Commit, File, Ref, Repo, Tag, TreeEntry

from .auth import Access
from .errors import entry_not_found

#: API path segment -> catalog kind, and the URL prefix of each kind on file and git URLs.
KINDS = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def kind_of(plural: str) -> str:
    try:
        return KINDS[plural]
    except KeyError:
        raise NotFound(f"unknown repo type {plural!r}") from None


#: Index of the revision in the raw path segments ("" first, for the leading slash): /api/{t}/{ns}/{name}/<verb>/{rev}.
API_REV = 6


def raw_path(request: Request) -> str:
    """The request path as the client sent it, still percent-encoded."""
    return (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1")


def raw_segments(request: Request) -> list[str]:
    """The request path split on '/', each segment percent-decoded on its own."""
    return [unquote(s) for s in raw_path(request).split("/")]


def api_revision(request: Request) -> str:
    """The revision of an ``/api/{t}/{ns}/{name}/<verb>/{rev}`` route (slashes kept, as in ``refs/pr/1``)."""
    return "/".join(raw_segments(request)[API_REV:])


def next_page(request: Request, cursor: int) -> dict[str, str]:
    """The ``Link: <...>; rel="next"`` header of a paginated answer: this request with ``cursor`` replaced."""
    query = urlencode([*((k, v) for k, v in parse_qsl(request.url.query) if k != "cursor"), ("cursor", str(cursor))])
    return {"Link": f'<{str(request.base_url).rstrip("/")}{raw_path(request)}?{query}>; rel="next"'}


def repo_url(request: Request, kind: str, name: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/{URL_PREFIX[kind]}{name}"


@dataclass
class Snapshot:
    """A resolved revision, detached from its session: the repo, the commit and (optionally) its tree."""

    repo: Repo
    commit: Commit
    tree: dict[str, File]


def snapshot(request: Request, access: Access, name: str, revision: str, kind: str, *, with_tree: bool = True,
             only: str | None = None, fetch: bool = True) -> Snapshot:
    """Resolve ``name@revision``; on a miss, a pull-through server fetches it upstream once and retries.

    ``only`` loads just that path's entry (if present) instead of the whole tree:
    a download should not pay for listing a repo of thousands of files.
    """
    vault = request.app.state.vault
    try:
        return _resolve(vault, access, name, revision, kind, with_tree, only)
    except (RepoNotFound, RevisionNotFound):
        mirror = request.app.state.mirror
        if not fetch or mirror is None or not mirror.fetch(kind, name, revision):
            raise
    return _resolve(vault, access, name, revision, kind, with_tree, only)


def ref_heads(session, repo: Repo) -> list[tuple[str, str]]:
    """(ref name, commit oid) of each branch and PR ref of ``repo``, by name."""
    return session.execute(select(Ref.name, Commit.oid).join(Commit, Commit.id == Ref.commit_id)
                           .where(Ref.repo_id == repo.id).order_by(Ref.name)).all()


def tag_heads(session, repo: Repo) -> list[tuple[str, str]]:
    """(tag name, commit oid) of each tag of ``repo``, by name."""
    return session.execute(select(Tag.name, Commit.oid).join(Commit, Commit.id == Tag.commit_id)
                           .where(Tag.repo_id == repo.id).order_by(Tag.name)).all()


def snapshot_file(request: Request, access: Access, name: str, revision: str, kind: str,
                  path: str) -> tuple[Snapshot, File]:
    """One file of ``name@revision``, loading only its entry; EntryNotFound (with the commit) when absent."""
    snap = snapshot(request, access, name, revision, kind, only=path)
    file = snap.tree.get(path)
    if file is None:
        raise entry_not_found(path, snap.commit.oid)
    return snap, file


#: One tree entry's file, built once (as commits.resolve's branch lookup).
_ENTRY = (select(File).join(TreeEntry, TreeEntry.file_id == File.id)
          .where(TreeEntry.commit_id == bindparam("commit"), TreeEntry.path == bindparam("path")))


def _resolve(vault, access: Access, name: str, revision: str, kind: str, with_tree: bool,
             only: str | None) -> Snapshot:
    with vault.catalog.read_session() as s:
        r = resolve(s, name, revision, kind)
        access.check_visible(r.repo)
        if only is not None:
            file = s.scalar(_ENTRY, {"commit": r.commit.id, "path": only})
            tree = {only: file} if file is not None else {}
        else:
            tree = tree_of(s, r.commit) if with_tree else {}
        return Snapshot(r.repo, r.commit, tree)
