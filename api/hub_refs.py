"""Hub-compatible branch and tag routes: list refs, create and delete branches and tags.

Branches move with commits; tags stay on the commit they were made on. Both
share one namespace here (a tag may not take a branch's name, nor the other
way round), so a revision such as ``v1.0`` resolves to one thing everywhere.
The default branch ``main`` cannot be deleted, as on the hub.
"""
from __future__ import annotations

import json

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from weightvault.dedup.commits import RepoNotFound, RevisionNotFound, find_repo, resolve, retrying
from weightvault.dedup.names import check_message, check_revision
from weightvault.errors import AccessDenied, ConflictError, UsageError
from weightvault.store.models import Ref, Tag

from .auth import ReadAccess, VaultDep, WriteAccess
from .lookup import api_revision, kind_of, ref_heads, tag_heads

router = APIRouter(tags=["hub"])

DEFAULT_BRANCH = "main"


def _json_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        raise UsageError("the body must be JSON") from None
    if not isinstance(body, dict):
        raise UsageError("the body must be a JSON object")
    wrong = [k for k, v in body.items() if k in ("startingPoint", "tag", "message") and not isinstance(v, (str, type(None)))]
    if wrong:
        raise UsageError(f"{wrong[0]!r} must be a string")
    return body


def _taken(session, repo_id: int, name: str) -> str | None:
    """'branch' or 'tag' when ``name`` is already one in the repo."""
    if session.get(Ref, (repo_id, name)) is not None:
        return "branch"
    if session.get(Tag, (repo_id, name)) is not None:
        return "tag"
    return None


@router.get("/api/{t}/{ns}/{name}/refs", summary="Branches, tags and pull-request refs (list_repo_refs)")
def refs(request: Request, vault: VaultDep, access: ReadAccess, t: str, ns: str, name: str) -> dict:
    kind, repo_name = kind_of(t), f"{ns}/{name}"

    def read() -> tuple[list, list]:
        with vault.catalog.read_session() as s:
            repo = find_repo(s, repo_name, kind)
            access.check_visible(repo)
            return ref_heads(s, repo), tag_heads(s, repo)

    try:
        heads, tags = read()
    except RepoNotFound:
        mirror = request.app.state.mirror
        if mirror is None or not mirror.fetch(kind, repo_name, DEFAULT_BRANCH):
            raise
        heads, tags = read()
    branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid} for n, oid in heads
                if not n.startswith("refs/")]
    prs = [{"name": n, "ref": n, "targetCommit": oid} for n, oid in heads if n.startswith("refs/pr/")]
    return {"branches": branches, "converts": [],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": oid} for n, oid in tags],
            "pullRequests": prs}


@router.post("/api/{t}/{ns}/{name}/branch/{rest:path}", summary="Create a branch (create_branch)")
async def create_branch(request: Request, vault: VaultDep, access: WriteAccess, t: str, ns: str, name: str,
                        rest: str) -> dict:
    kind, repo_name = kind_of(t), f"{ns}/{name}"
    branch = check_revision(api_revision(request))
    start = _json_body(await request.body()).get("startingPoint") or DEFAULT_BRANCH

    def work(session) -> None:
        source = resolve(session, repo_name, str(start), kind)
        if (taken := _taken(session, source.repo.id, branch)) is not None:
            raise ConflictError(f"{branch!r} already exists as a {taken}")
        session.add(Ref(repo_id=source.repo.id, name=branch, commit_id=source.commit.id))

    await run_in_threadpool(retrying, vault.catalog, work)
    return {}


@router.delete("/api/{t}/{ns}/{name}/branch/{rest:path}", summary="Delete a branch (delete_branch)")
def delete_branch(request: Request, vault: VaultDep, access: WriteAccess, t: str, ns: str, name: str,
                  rest: str) -> dict:
    kind, repo_name, branch = kind_of(t), f"{ns}/{name}", api_revision(request)
    if branch == DEFAULT_BRANCH:
        raise AccessDenied(f"the default branch {DEFAULT_BRANCH!r} cannot be deleted")

    def work(session) -> None:
        repo = find_repo(session, repo_name, kind)
        ref = session.get(Ref, (repo.id, branch))
        if ref is None:
            raise RevisionNotFound(f"branch {branch!r} not found in {repo_name!r}")
        session.delete(ref)

    retrying(vault.catalog, work)
    return {}


@router.post("/api/{t}/{ns}/{name}/tag/{rest:path}", summary="Tag a revision (create_tag)")
async def create_tag(request: Request, vault: VaultDep, access: WriteAccess, t: str, ns: str, name: str,
                     rest: str) -> dict:
    kind, repo_name, revision = kind_of(t), f"{ns}/{name}", api_revision(request)
    body = _json_body(await request.body())
    tag, message = check_revision(str(body.get("tag") or "")), check_message(str(body.get("message") or ""))

    def work(session) -> None:
        target = resolve(session, repo_name, revision, kind)
        if (taken := _taken(session, target.repo.id, tag)) is not None:
            raise ConflictError(f"{tag!r} already exists as a {taken}")
        session.add(Tag(repo_id=target.repo.id, name=tag, commit_id=target.commit.id, message=message))

    await run_in_threadpool(retrying, vault.catalog, work)
    return {}


@router.delete("/api/{t}/{ns}/{name}/tag/{rest:path}", summary="Delete a tag (delete_tag)")
def delete_tag(request: Request, vault: VaultDep, access: WriteAccess, t: str, ns: str, name: str,
               rest: str) -> dict:
    kind, repo_name, tag = kind_of(t), f"{ns}/{name}", api_revision(request)

    def work(session) -> None:
        repo = find_repo(session, repo_name, kind)
        row = session.get(Tag, (repo.id, tag))
        if row is None:
            raise RevisionNotFound(f"tag {tag!r} not found in {repo_name!r}")
        session.delete(row)

    retrying(vault.catalog, work)
    return {}
