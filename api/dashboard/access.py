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

from weightvault.dedup.tokens import token_scope

from ..auth import Access, bearer

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


def scope_of(request: Request, secret: str) -> str | None:
    with request.app.state.vault.catalog.read_session() as s:
        return token_scope(s, secret)


def page_access(request: Request) -> Access:
    """The caller's rights for a page, or ``LoginRequired`` when reads need a token and none is valid."""
    query_token = request.query_params.get("token")
    secret = bearer(request) or query_token or request.cookies.get(COOKIE)
    scope = scope_of(request, secret) if secret else None
    if scope is not None and query_token == secret:
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        raise TokenInQuery(secret, request.url.path + (f"?{urlencode(rest)}" if rest else ""))
    if scope is None and not request.app.state.settings.anonymous_reads:
        raise LoginRequired(invalid=secret is not None)
    return Access(scope, secret if scope else None)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
