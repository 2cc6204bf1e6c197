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

from ..auth import Access, bearer, token_access

COOKIE = "wv_token"


class LoginRequired(Exception):
    """The page needs a read token; ``invalid`` says one was presented and refused."""

    def __init__(self, invalid: bool) -> None:
        super().__init__("a read token is required")
        self.invalid = invalid


class TokenInQuery(Exception):
    """A valid ``?token=`` arrived: answer with a redirect that stores it in the cookie."""

    def __init__(self, token: str, clean_url: str) -> None:
        super().__init__("token moved to cookie")
        self.token, self.clean_url = token, clean_url


def page_access(request: Request) -> Access:
    """The caller's rights for a page, or ``LoginRequired`` when reads need a token and none is valid.

    A header, then ``?token=``, then the cookie: the first valid one counts, so a
    stale cookie or a mistyped link never hides a good token presented beside it.
    """
    query_token = request.query_params.get("token")
    presented = [t for t in (bearer(request), query_token, request.cookies.get(COOKIE)) if t]
    for secret in presented:
        access = token_access(request, secret)
        if access is None:
            continue
        if secret == query_token:
            raise TokenInQuery(secret, without_token(request))
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
