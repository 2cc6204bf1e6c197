"""Who may do what: bearer tokens (read or write scope) and self-authenticating upload URLs.

Use ``ReadAccess`` / ``WriteAccess`` as route dependencies (the dashboard can too).
The LFS protocol PUTs file bytes with no ``Authorization`` header, so an upload
URL carries its own credential: an HMAC over what it may upload, keyed with the
issuing token's stored digest. Every node finds that key in the shared catalog,
and deleting the token revokes its URLs.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select

from weightvault.dedup.tokens import allows, find_token, live_digest
from weightvault.errors import AccessDenied, RepoNotFound, Unauthorized
from weightvault.store import Vault
from weightvault.store.models import Repo, Token



@dataclass(frozen=True)
class Access:
    """The caller's rights: ``scope`` is None for an anonymous caller; ``user`` is whom the token speaks for."""

    scope: str | None
    token: str | None = None
    user: str | None = None
    #: Repo patterns the token is limited to (space-separated), None for every repo.
    repos: str | None = None

    @property
    def can_read(self) -> bool:
        return self.scope in ("read", "write")

    def sees(self, repo: Repo) -> bool:
        """Public repos are seen by anyone who may read; private ones only by tokens whose patterns cover them."""
        return not repo.private or (self.can_read and allows(self.repos, repo.name))

    def check_visible(self, repo: Repo) -> None:
        """Private repos the caller may not read look exactly like missing ones, as on the hub."""
        if not self.sees(repo):
            raise RepoNotFound(name=repo.name)

    def check_writable(self, repo_name: str) -> None:
        """403 unless this write token's patterns cover ``repo_name``."""
        if self.scope != "write" or not allows(self.repos, repo_name):
            raise AccessDenied(f"this token may not write to {repo_name!r} (it is limited to "
                           f"{self.repos or 'reading'})")


def get_vault(request: Request) -> Vault:
    return request.app.state.vault


VaultDep = Annotated[Vault, Depends(get_vault)]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    kind, _, secret = header.partition(" ")
    return secret.strip() if kind.lower() == "bearer" and secret.strip() else None


def token_access(request: Request, secret: str) -> Access | None:
    """The rights a presented token grants, None if it is unknown, revoked or expired (read from the
    shared catalog on every request, so revocation holds at once on every node)."""
    with request.app.state.vault.catalog.read_session() as s:
        token = find_token(s, secret)
        return Access(token.scope, secret, token.user, token.repos) if token is not None else None


def _access(request: Request) -> Access:
    secret = bearer(request)
    if secret is None:
        return Access(None)
    access = token_access(request, secret)
    if access is None:
        raise Unauthorized("Invalid, revoked or expired token in the Authorization header")
    return access


def require_read(request: Request) -> Access:
    access = _access(request)
    if access.scope is None and not request.app.state.settings.anonymous_reads:
        raise Unauthorized("A read token is required: Authorization: Bearer <token>")
    return access


def require_write(request: Request) -> Access:
    access = _access(request)
    if access.scope != "write":
        raise (Unauthorized if access.scope is None else AccessDenied)("A write token is required for this operation")
    params = request.path_params
    if "ns" in params and "name" in params:  # routes naming the repo in the body check it themselves
        access.check_writable(f"{params['ns']}/{params['name']}")
    return access


def require_token(request: Request) -> Access:
    """Any valid token, whatever its scope (the hub's rule for helper routes such as validate-yaml)."""
    access = _access(request)
    if access.scope is None:
        raise Unauthorized("A token is required: Authorization: Bearer <token>")
    return access


ReadAccess = Annotated[Access, Depends(require_read)]
AnyToken = Annotated[Access, Depends(require_token)]
WriteAccess = Annotated[Access, Depends(require_write)]


# -- signed upload URLs ---------------------------------------------------------------

def _key(session, token_id: int) -> bytes | None:
    digest = live_digest(session, token_id, "write")
    return digest.encode() if digest else None


def _message(target: str, oid: str, size: int, expires: int) -> bytes:
    return f"{target}\n{oid}\n{size}\n{expires}".encode()


def sign_upload(vault: Vault, access: Access, target: str, oid: str, size: int, ttl: int) -> dict[str, str]:
    """Query parameters that let an unauthenticated PUT store ``oid`` (``size`` bytes) for ``target``."""
    digest = hashlib.sha256((access.token or "").encode()).hexdigest()
    with vault.catalog.read_session() as s:
        token_id = s.scalar(select(Token.id).where(Token.digest == digest))
    expires = int(time.time()) + ttl
    sig = hmac.new(digest.encode(), _message(target, oid, size, expires), hashlib.sha256).hexdigest()
    return {"size": str(size), "expires": str(expires), "token": str(token_id), "sig": sig}


def check_upload(vault: Vault, target: str, oid: str, params: dict[str, str]) -> int:
    """The size a signed upload URL allows, or AccessDenied (403) if the signature is wrong or expired."""
    try:
        size, expires, token_id = int(params["size"]), int(params["expires"]), int(params["token"])
        sig = params["sig"]
    except (KeyError, ValueError):
        raise AccessDenied("upload URL is not signed") from None
    with vault.catalog.read_session() as s:
        key = _key(s, token_id)
    want = hmac.new(key or b"", _message(target, oid, size, expires), hashlib.sha256).hexdigest()
    if key is None or not hmac.compare_digest(want, sig) or expires < time.time():
        raise AccessDenied("upload URL signature is invalid or expired")
    return size
