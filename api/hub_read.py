"""Hub-compatible read routes: repo info, tree, paths-info, commits, and ``/resolve`` downloads.

Only what huggingface_hub (0.36 to 2.x) reads is produced; see
/work/shared/docs/hub-protocol.md section 1a. No response ever carries Xet
metadata (``X-Xet-*`` headers, ``xetHash``), so clients download over plain
HTTP even with ``hf_xet`` installed.
"""
from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from weightvault.dedup.history import last_changes
from weightvault.dedup.names import check_path
from weightvault.errors import UsageError
from weightvault.store.models import Commit

from . import entries
from .auth import ReadAccess, VaultDep
from .bodies import documented, invalid
from .errors import entry_not_found
from .lookup import API_REV, api_revision, kind_of, next_page, raw_segments, snapshot, snapshot_file
from .repo_meta import repo_meta
from .streaming import file_response

router = APIRouter(tags=["hub"])

def _info(request: Request, access, t: str, ns: str, name: str, revision: str) -> dict:
    kind = kind_of(t)
    snap = snapshot(request, access, f"{ns}/{name}", revision, kind)
    meta = repo_meta(request.app.state.vault, snap.commit.oid, lambda: snap.tree)
    return {
        **entries.repo_item(snap.repo, snap.commit),
        **meta.fields(kind),
        "siblings": [entries.sibling(p, f) for p, f in sorted(snap.tree.items())],
        "usedStorage": sum(f.size for f in snap.tree.values()),
    }


@router.get("/api/{t}/{ns}/{name}", summary="Repo info at the default branch (model_info, dataset_info)")
def repo_info(request: Request, access: ReadAccess, t: str, ns: str, name: str) -> dict:
    return _info(request, access, t, ns, name, "main")


@router.get("/api/{t}/{ns}/{name}/revision/{rest:path}", summary="Repo info at a revision")
def repo_info_at(request: Request, access: ReadAccess, t: str, ns: str, name: str, rest: str) -> dict:
    return _info(request, access, t, ns, name, api_revision(request))


@router.get("/api/{t}/{ns}/{name}/tree/{rest:path}", summary="List files and folders (paginated, Link header)")
def tree(request: Request, access: ReadAccess, t: str, ns: str, name: str, rest: str, recursive: str = "false",
         cursor: int = 0, expand: str = "false") -> Response:
    segs = raw_segments(request)
    revision, prefix = segs[API_REV], "/".join(segs[API_REV + 1:]).strip("/")
    snap = snapshot(request, access, f"{ns}/{name}", revision, kind_of(t))
    if prefix:
        check_path(prefix)
        if not any(p.startswith(prefix + "/") for p in snap.tree):
            raise entry_not_found(prefix, snap.commit.oid)
    items = entries.listing(snap.tree, prefix, recursive.lower() == "true")
    page = request.app.state.settings.tree_page_size
    body = items[cursor:cursor + page]
    if expand.lower() == "true":
        _add_last_commits(request.app.state.vault, snap.commit, body)
    return JSONResponse(body, headers=next_page(request, cursor + page) if cursor + page < len(items) else {})


def _add_last_commits(vault, head: Commit, items: list[dict]) -> None:
    """``lastCommit`` on each tree entry (``expand=True``): the newest commit that changed the file or folder."""
    files = {i["path"] for i in items if i["type"] == "file"}
    dirs = {i["path"] for i in items if i["type"] == "directory"}
    with vault.catalog.read_session() as s:
        found = last_changes(s, head, files, dirs)
    for item in items:
        c = found.get(item["path"])
        if c is not None:
            item["lastCommit"] = {"id": c.oid, "title": c.message.partition("\n\n")[0], "date": entries.iso(c.created_at)}


class PathsQuery(BaseModel):
    paths: list[str] = Field(default_factory=list, max_length=10_000)
    expand: bool = False


def _paths(raw: bytes, content_type: str) -> tuple[list[str], bool]:
    """(paths, expand) from a form-urlencoded body (what clients send) or a JSON ``{"paths": [...]}`` body."""
    if content_type.startswith("application/json"):
        try:
            query = PathsQuery.model_validate_json(raw)
        except ValidationError as exc:
            raise invalid(exc) from None
        return query.paths, query.expand
    try:
        form = parse_qsl(raw.decode("utf-8"), max_num_fields=10_000)
    except (UnicodeDecodeError, ValueError):
        raise UsageError("paths-info takes a form-urlencoded (UTF-8) or JSON list of paths") from None
    return [v for k, v in form if k == "paths"], any(k == "expand" and v.lower() == "true" for k, v in form)


@router.post("/api/{t}/{ns}/{name}/paths-info/{rest:path}", summary="Entries for a list of paths",
             openapi_extra=documented(PathsQuery, media_type="application/x-www-form-urlencoded"))
async def paths_info(request: Request, access: ReadAccess, t: str, ns: str, name: str, rest: str) -> list[dict]:
    paths, expand = _paths(await request.body(), request.headers.get("content-type", ""))
    revision = api_revision(request)
    snap = await run_in_threadpool(snapshot, request, access, f"{ns}/{name}", revision, kind_of(t))
    found = []
    for path in paths:
        path = path.strip("/")
        if path in snap.tree:
            found.append(entries.file_entry(path, snap.tree[path]))
        elif any(p.startswith(path + "/") for p in snap.tree):
            found.append(entries.dir_entry(path, [p for p in snap.tree if p.startswith(path + "/")]))
    if expand:
        await run_in_threadpool(_add_last_commits, request.app.state.vault, snap.commit, found)
    return found


@router.get("/api/{t}/{ns}/{name}/commits/{rest:path}", summary="Commit history of a revision (list_repo_commits)")
def commits(request: Request, vault: VaultDep, access: ReadAccess, t: str, ns: str, name: str, rest: str) -> list[dict]:
    revision = api_revision(request)
    snap = snapshot(request, access, f"{ns}/{name}", revision, kind_of(t), with_tree=False)
    with vault.catalog.read_session() as s:
        by_oid = {c.oid: c for c in s.scalars(select(Commit).where(Commit.repo_id == snap.repo.id))}
    history, oid = [], snap.commit.oid
    while oid in by_oid and len(history) < len(by_oid):  # the length bound guards against a cycle
        c = by_oid[oid]
        title, _, message = c.message.partition("\n\n")
        history.append({"id": c.oid, "title": title, "message": message,
                        "authors": [{"user": c.author, "avatar": None}] if c.author else [],
                        "date": entries.iso(c.created_at)})
        oid = c.parent_oid
    return history


def _resolve_file(request: Request, vault, access, kind: str, ns: str, name: str, rev_index: int) -> Response:
    segs = raw_segments(request)
    if len(segs) <= rev_index + 1:
        raise UsageError("expected /resolve/{revision}/{path}")
    revision, path = segs[rev_index], "/".join(segs[rev_index + 1:])
    check_path(path)
    snap, file = snapshot_file(request, access, f"{ns}/{name}", revision, kind, path)
    tag = entries.etag(path, file)
    headers = {"X-Repo-Commit": snap.commit.oid, "ETag": f'"{tag}"', "X-Linked-Etag": f'"{tag}"',
               "X-Linked-Size": str(file.size)}
    return file_response(request, vault, file, headers)


@router.api_route("/{ns}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"], summary="Download a model file")
def resolve_model(request: Request, vault: VaultDep, access: ReadAccess, ns: str, name: str, rest: str) -> Response:
    return _resolve_file(request, vault, access, "model", ns, name, 4)


@router.api_route("/datasets/{ns}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"],
                  summary="Download a dataset file")
def resolve_dataset(request: Request, vault: VaultDep, access: ReadAccess, ns: str, name: str,
                    rest: str) -> Response:
    return _resolve_file(request, vault, access, "dataset", ns, name, 5)


@router.api_route("/spaces/{ns}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"], include_in_schema=False)
def resolve_space(request: Request, vault: VaultDep, access: ReadAccess, ns: str, name: str, rest: str) -> Response:
    return _resolve_file(request, vault, access, "space", ns, name, 5)


@router.get("/api/agent-harnesses", include_in_schema=False)
def agent_harnesses() -> dict:
    # The ``hf`` CLI asks once a day; this answer stops it from asking again.
    return {"standardEnvVars": [], "harnesses": {}}
