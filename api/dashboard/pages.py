"""The dashboard's routes: overview at ``/``, then a page per family, repo and file under ``/ui/``.

Every figure about savings comes from ``dedup.report.build_report`` — the same
call behind ``weightvault report`` and ``/api/v1/report`` — so the three never
disagree (``report_cache`` only skips recomputing it while the catalog is
unchanged). Drill-down detail (trees, revisions, tensors) comes from
``dedup.report_detail``. Pages are plain HTML with inline SVG charts and one
local stylesheet: nothing is loaded from the internet.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote
from typing import Annotated, Any, Callable, Coroutine

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from weightvault.dedup.commits import find_repo
from weightvault.dedup.report_detail import FamilyNotFound, family_detail, file_detail, footprint, repo_detail
from weightvault.errors import AccessDenied, EntryNotFound, LoginRequired, NotFound

from ..auth import Access, token_access
from ..errors import header_value
from ..lookup import snapshot
from ..streaming import file_response
from . import charts, fmt, listing
from .access import COOKIE, page_access, safe_next, token_to_move, without_token
from weightvault.dedup import report_cache
from .tree import tree_prefixes

HERE = Path(__file__).resolve().parent
STATIC = HERE.parent / "static"
templates = Jinja2Templates(directory=HERE.parent / "templates")
templates.env.filters.update(size=fmt.human_bytes, when=fmt.when, breakable=fmt.breakable)


def asset(name: str) -> str:
    """A shipped static file's URL, versioned by its content so a browser never keeps a stale copy."""
    return f"/ui/static/{name}?v={hashlib.sha1((STATIC / name).read_bytes()).hexdigest()[:10]}"


templates.env.globals.update(percent=fmt.percent, ratio=fmt.ratio, mini_bar=charts.mini_bar,
                             stylesheet=asset("dashboard.css"))

#: Families the overview lists (largest stored first); ``/ui/families`` lists them all.
TOP_FAMILIES = 25
#: A year: the login cookie lives as long as the token does (deleting the token revokes it).
#: Seconds a dashboard session lasts: a working day, then the token is asked for again
#: (the cookie holds the token, so revoking or expiring it ends the session sooner).
COOKIE_MAX_AGE = 12 * 3600


class PageRoute(APIRoute):
    """Turns the access outcomes into what a browser needs: a login form or a cookie-setting redirect."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            token = token_to_move(request)
            if token is not None:
                response = RedirectResponse(without_token(request), status_code=303)
                set_token_cookie(response, request, token)
                return response
            try:
                return await handler(request)
            except LoginRequired as need:
                return login_page(request, need.fields["invalid"], without_token(request))
            except (NotFound, AccessDenied) as err:  # private repos look missing, as in the API
                return page(request, "missing.html", {"message": err.message}, status_code=err.http_status)

        return guarded


router = APIRouter(route_class=PageRoute, include_in_schema=False)
PageAccess = Annotated[Access, Depends(page_access)]


def page(request: Request, name: str, context: dict, status_code: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def set_token_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")


def login_page(request: Request, invalid: bool, next_url: str) -> HTMLResponse:
    return page(request, "login.html", {"invalid": invalid, "next": safe_next(next_url)}, status_code=401)


def visible_report(request: Request, access: Access) -> dict:
    return report_cache.visible_report(request.app.state.vault.catalog, access.sees)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, access: PageAccess,
             q: Annotated[str, Query(description="Show repos whose name or family contains this")] = "",
             sort: Annotated[str, Query(description=f"One of {', '.join(listing.SORTS)}")] = listing.DEFAULT_SORT,
             page_no: Annotated[int, Query(alias="page")] = 1,
             per_page: Annotated[int, Query()] = listing.PER_PAGE) -> HTMLResponse:
    report = visible_report(request, access)
    overall = report["overall"]
    with request.app.state.vault.catalog.read_session() as s:
        disk = footprint(s)
    return page(request, "overview.html", {
        "disk": disk,
        "report": report,
        "listing": listing.page_of(report["repos"], query=q, sort=sort, page=page_no, per_page=per_page),
        "top_families": sorted(report["families"], key=lambda f: -f["stored_bytes"])[:TOP_FAMILIES],
        "overall": overall,
        "bar": charts.stacked_bar(overall),
        "parts": charts.parts_of(overall),
        "timeline": charts.timeline_chart(report["timeline"]),
        "access": access,
    })


@router.get("/ui/families", response_class=HTMLResponse)
def families(request: Request, access: PageAccess) -> HTMLResponse:
    report = visible_report(request, access)
    return page(request, "families.html", {"families": sorted(report["families"], key=lambda f: f["name"]),
                                           "access": access})


@router.get("/ui/families/{name:path}", response_class=HTMLResponse)
def family(request: Request, name: str, access: PageAccess) -> HTMLResponse:
    report = visible_report(request, access)
    fam = next((f for f in report["families"] if f["name"] == name), None)
    if fam is None:
        raise FamilyNotFound(name=name)
    with request.app.state.vault.catalog.read_session() as s:
        detail = family_detail(s, name)
    shown = set(fam["members"])
    members = [m for m in detail.members if m.name in shown]
    by_name = {r["name"]: r for r in report["repos"]}
    return page(request, "family.html", {
        "family": fam,
        "detail": detail,
        "rows": list(zip(members, tree_prefixes([m.depth for m in members]))),
        "figures": by_name,
        "bar": charts.stacked_bar(fam),
        "parts": charts.parts_of(fam),
        "access": access,
    })


@router.get("/ui/repos/{org}/{name}", response_class=HTMLResponse)
def repo(request: Request, org: str, name: str, access: PageAccess,
         rev: Annotated[str, Query(description="Branch or commit id")] = "main",
         kind: Annotated[str, Query(pattern="^(model|dataset|space)$")] = "model") -> HTMLResponse:
    full = f"{org}/{name}"
    with request.app.state.vault.catalog.read_session() as s:
        access.check_visible(find_repo(s, full, kind))
        detail = repo_detail(s, full, rev, kind)
    report = visible_report(request, access)
    figures = next(r for r in report["repos"] if r["name"] == full and r["kind"] == kind)
    endpoint = str(request.base_url).rstrip("/")
    return page(request, "repo.html", {
        "repo": detail,
        "figures": figures,
        "bar": charts.stacked_bar(figures),
        "parts": charts.parts_of(figures),
        "endpoint": endpoint,
        "download_prefix": f"/ui/download/{full}/{detail.commit}/",
        "needs_token": not request.app.state.settings.anonymous_reads or detail.private,
        "access": access,
    })


@router.get("/ui/files/{org}/{name}", response_class=HTMLResponse)
def file(request: Request, org: str, name: str, access: PageAccess,
         path: Annotated[str, Query(description="Path of the file in the repo")],
         rev: Annotated[str, Query(description="Branch or commit id")] = "main",
         kind: Annotated[str, Query(pattern="^(model|dataset|space)$")] = "model") -> HTMLResponse:
    full = f"{org}/{name}"
    with request.app.state.vault.catalog.read_session() as s:
        access.check_visible(find_repo(s, full, kind))
        detail = file_detail(s, full, rev, path, kind)
    by_coding: dict[tuple[str, str], list[int]] = {}
    for seg in detail.segments:
        totals = by_coding.setdefault((seg.mechanism or "kept verbatim", seg.codec or "inline"), [0, 0, 0])
        totals[0] += 1
        totals[1] += seg.raw_bytes
        totals[2] += seg.stored_bytes
    rows = [(*key, *totals) for key, totals in sorted(by_coding.items(), key=lambda kv: -kv[1][1])]
    return page(request, "file.html", {"file": detail, "kind": kind, "by_coding": rows,
                                       "access": access})


@router.api_route("/ui/download/{org}/{name}/{rev}/{path:path}", methods=["GET", "HEAD"], response_model=None)
def download(request: Request, org: str, name: str, rev: str, path: str, access: PageAccess,
             kind: Annotated[str, Query(pattern="^(model|dataset|space)$")] = "model") -> Response:
    """A file of a revision, for a browser: the hub's ``/resolve`` route wants an Authorization
    header, which a link cannot send, so this one takes the page's cookie instead."""
    snap = snapshot(request, access, f"{org}/{name}", rev, kind, only=path, fetch=False)
    found = snap.tree.get(path)
    if found is None:
        raise EntryNotFound(f"{path!r} is not in {org}/{name}@{rev}")
    filename = path.rsplit("/", 1)[-1]
    # RFC 6266/8187: an ASCII fallback plus the exact UTF-8 name (header values cannot carry it raw).
    fallback = header_value(filename).replace('"', "").replace("\\", "_")
    headers = {"X-Repo-Commit": snap.commit.oid,
               "Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"}
    return file_response(request, request.app.state.vault, found, headers)


@router.get("/ui/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return page(request, "login.html", {"invalid": False, "next": safe_next(next)})


@router.post("/ui/login", response_model=None)
def login(request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/") -> Response:
    if token_access(request, token.strip()) is None:
        return login_page(request, True, next)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_token_cookie(response, request, token.strip())
    return response


@router.post("/ui/logout")
def logout() -> RedirectResponse:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/ui/static/{name}")
def static(name: str) -> FileResponse:
    # Only the files shipped beside the templates; a name with a slash or dot-dot never matches.
    shipped = {p.name: p for p in STATIC.iterdir() if p.is_file()}
    if name not in shipped:
        raise NotFound(f"no static file {name!r}")
    return FileResponse(shipped[name], headers={"Cache-Control": "public, max-age=3600"})
