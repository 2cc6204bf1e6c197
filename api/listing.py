"""``GET /api/models``, ``/api/datasets``, ``/api/spaces``: repo listing and search (list_models, hf models ls).

Parameters as the hub takes them: ``search`` (substring of the id, any case),
``author`` (the namespace; ``search`` may repeat, all must match), ``filter`` (tags every result must carry, repeatable),
``pipeline_tag``, ``gated``, ``sort`` (``lastModified``, ``createdAt``, ``id``;
``downloads``, ``likes`` and ``trendingScore`` are accepted and are 0 for every
repo here), ``direction`` (``-1``, the default, for descending), ``limit`` (the
page size, at most ``WEIGHTVAULT_LIST_PAGE``), ``full`` (with ``siblings``),
``cardData`` and ``config``. Further pages follow the ``Link: rel="next"``
header, as on the hub. Filters this store has no data for (``apps``,
``inference``, ``inference_provider``, ``num_parameters``, ...) are refused with
400 instead of being ignored: an unfiltered answer would look like a filtered one.
"""
from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import and_, func, select
from starlette.concurrency import run_in_threadpool

from weightvault.dedup.commits import tree_of
from weightvault.errors import Unauthorized, UsageError
from weightvault.store.models import Commit, File, Ref, Repo, TreeEntry

from . import entries
from .auth import Access, ReadAccess
from .lookup import KINDS, next_page
from .repo_meta import repo_meta

router = APIRouter(tags=["hub"])

SORTS = {"lastModified", "createdAt", "id", "downloads", "likes", "trendingScore"}
FLAGS = {"full", "cardData", "config"}
KNOWN = {"search", "author", "filter", "pipeline_tag", "gated", "sort", "direction", "limit", "cursor", "expand",
         "expand[]", *FLAGS}


def _params(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in parse_qsl(request.url.query, keep_blank_values=True):
        params.setdefault(key, []).append(value)
    unknown = sorted(set(params) - KNOWN)
    if unknown:
        raise UsageError(f"unsupported listing parameter(s) {', '.join(unknown)}: this store can filter by "
                          "search, author, filter (tags), pipeline_tag and gated")
    return params


def _int(params: dict, key: str, default: int) -> int:
    try:
        return int(params.get(key, [default])[-1])
    except ValueError:
        raise UsageError(f"{key} must be an integer") from None


def _listing(request: Request, access: Access, kind: str) -> JSONResponse:
    params = _params(request)
    first = {k: v[-1] for k, v in params.items()}
    flag = {f: first.get(f, "").lower() in ("1", "true") for f in FLAGS}  # requests sends True, httpx true
    sort, page_max = first.get("sort") or "lastModified", request.app.state.settings.list_page_size
    if sort not in SORTS:
        raise UsageError(f"sort must be one of {', '.join(sorted(SORTS))}")
    descending = _int(params, "direction", -1) < 0
    page = min(max(_int(params, "limit", page_max), 1), page_max)
    cursor = max(_int(params, "cursor", 0), 0)
    searches, author = [q.lower() for q in params.get("search", [])], first.get("author")
    tags = set(params.get("filter", []))
    if first.get("pipeline_tag"):
        tags.add(first["pipeline_tag"])
    if first.get("gated", "").lower() == "true":
        return JSONResponse([])  # nothing here is gated

    vault = request.app.state.vault
    with vault.catalog.read_session() as s:
        rows = s.execute(select(Repo, Commit).outerjoin(Ref, and_(Ref.repo_id == Repo.id, Ref.name == "main"))
                         .outerjoin(Commit, Commit.id == Ref.commit_id).where(Repo.kind == kind)).all()
    rows = [(r, c) for r, c in rows if access.sees(r) and all(q in r.name.lower() for q in searches)
            and (author is None or r.name.split("/", 1)[0] == author)]
    keys = {"lastModified": lambda rc: (rc[1] or rc[0]).created_at, "createdAt": lambda rc: rc[0].created_at}
    key = keys.get(sort)
    # Ties (and sorts by counters that are 0 everywhere here) fall back to the id, so pages are stable.
    rows.sort(key=lambda rc: rc[0].name)
    if key is not None:
        rows.sort(key=key, reverse=descending)
    elif sort == "id" and descending:
        rows.reverse()

    trees: dict[int, dict] = {}

    def tree(repo: Repo, head: Commit | None) -> dict:
        if repo.id not in trees:
            with vault.catalog.read_session() as s:
                trees[repo.id] = tree_of(s, head) if head is not None else {}
        return trees[repo.id]

    def meta(repo: Repo, head: Commit | None):
        return repo_meta(vault, head.oid, lambda: tree(repo, head)) if head is not None else None

    if tags:  # filtering by tag reads every candidate's metadata (cached per commit)
        rows = [(r, c) for r, c in rows if (m := meta(r, c)) is not None and tags <= set(m.tags)]
    body = []
    for repo, head in rows[cursor:cursor + page]:
        item = entries.repo_item(repo, head)
        m = meta(repo, head)
        if m is not None:
            fields = m.fields(kind)
            if not (flag["cardData"] or flag["full"]):
                fields.pop("cardData", None)
            if not flag["config"]:
                fields.pop("config", None)
            item.update(fields)
        if flag["full"]:
            item["siblings"] = [entries.sibling(p, f) for p, f in sorted(tree(repo, head).items())]
        body.append(item)
    return JSONResponse(body, headers=next_page(request, cursor + page) if cursor + page < len(rows) else {})


def _add_route(plural: str, kind: str) -> None:
    @router.get(f"/api/{plural}", summary=f"List and search {plural} (list_{plural})", name=f"list_{plural}")
    async def listing(request: Request, access: ReadAccess) -> JSONResponse:
        return await run_in_threadpool(_listing, request, access, kind)


for _plural, _kind in KINDS.items():
    _add_route(_plural, _kind)


def _namespace_repos(request: Request, access: Access, namespace: str) -> JSONResponse:
    """One namespace's repos with the bytes each one's ``main`` holds (``hf repos ls``, list_user_repos).

    ``storage`` is the logical size, as ``usedStorage`` in model_info: what a repo costs after dedup
    and coding depends on what it shares with others, which ``weightvault report`` shows.
    """
    vault = request.app.state.vault
    with vault.catalog.read_session() as s:
        rows = s.execute(select(Repo, Commit).outerjoin(Ref, and_(Ref.repo_id == Repo.id, Ref.name == "main"))
                         .outerjoin(Commit, Commit.id == Ref.commit_id)
                         .where(Repo.name.startswith(namespace + "/", autoescape=True)).order_by(Repo.name)).all()
        rows = [(r, c) for r, c in rows if access.sees(r)]
        sizes = dict(s.execute(
            select(Ref.repo_id, func.sum(File.size)).join(TreeEntry, TreeEntry.commit_id == Ref.commit_id)
            .join(File, File.id == TreeEntry.file_id)
            .where(Ref.name == "main", Ref.repo_id.in_([r.id for r, _ in rows])).group_by(Ref.repo_id)).all())
    total = sum(sizes.values()) or 1
    items = [{"id": r.name, "type": r.kind, "updatedAt": entries.iso((c or r).created_at),
              "visibility": "private" if r.private else "public", "storage": int(sizes.get(r.id, 0)),
              "storagePercent": 100.0 * sizes.get(r.id, 0) / total} for r, c in rows]
    return JSONResponse(items)


@router.get("/api/settings/repositories", summary="The token user's repos with their sizes (hf repos ls)")
def user_repositories(request: Request, access: ReadAccess) -> JSONResponse:
    if access.user is None:
        raise Unauthorized("listing your repos needs a token: Authorization: Bearer <token>")
    return _namespace_repos(request, access, access.user)


@router.get("/api/organizations/{namespace}/settings/repositories",
            summary="A namespace's repos with their sizes (hf repos ls --namespace)")
def namespace_repositories(request: Request, access: ReadAccess, namespace: str) -> JSONResponse:
    return _namespace_repos(request, access, namespace)
