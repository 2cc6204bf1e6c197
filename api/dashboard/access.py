"""Who may look at the pages: the API's read rule, with a token a browser can carry.

The REST routes take ``Authorization: Bearer``, which a browser following a
link never sends. Pages also accept the token from a cookie (set by the small
form at ``/ui/login``) or once as ``?token=``, which is moved into the cookie
and stripped from the address so it does not linger in history. Which tokens
are valid and whether anonymous reads are on is decided exactly as in
``api.auth``.
"""
from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request

from weightvault.errors import LoginRequired

from ..auth import Access, bearer, token_access

COOKIE = "wv_token"


def token_to_move(request: Request) -> str | None:
    """A valid ``?token=`` that no valid ``Authorization`` header comes before: the page answers
    with a redirect that stores it in the cookie instead of running."""
    query_token = request.query_params.get("token")
    if not query_token:
        return None
    header = bearer(request)
    if header and token_access(request, header) is not None:
        return None
    return query_token if token_access(request, query_token) is not None else None


def page_access(request: Request) -> Access:
    """The caller's rights for a page, or ``LoginRequired`` when reads need a token and none is valid.

    A header, then ``?token=``, then the cookie: the first valid one counts, so a
    stale cookie or a mistyped link never hides a good token presented beside it
    (a valid ``?token=`` never gets here: :func:`token_to_move` redirects first).
    """
    presented = [t for t in (bearer(request), request.query_params.get("token"), request.cookies.get(COOKIE)) if t]
    for secret in presented:
        access = token_access(request, secret)
        if access is not None:
            return access
    if not request.app.state.settings.anonymous_reads:
        raise LoginRequired(invalid=bool(presented))
    return Access(None)


def without_token(request: Request) -> str:
    """This request's path and query, minus any ``token`` parameter (never echoed into links or history)."""
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    return request.url.path + (f"?{urlencode(rest)}" if rest else "")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
