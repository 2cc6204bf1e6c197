"""Bearer tokens: only their sha256 is stored; the secret is shown once, at creation.

A token has a scope (read, or write which implies read), optionally an expiry
and a list of repo patterns (``org/*``, ``org/name``) it is limited to: with
patterns, it writes only to those repos and reads private repos only among
them. Every check reads the catalog, so a revoked or expired token is refused
at once on every node sharing it.
"""
from __future__ import annotations

import fnmatch
import hashlib
import re
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, select

from weightvault.errors import UsageError
from weightvault.store.models import Token

from .names import InvalidName, check_user

SCOPES = ("read", "write")  # write implies read
PREFIX = "wv_"
#: The user of tokens created without ``--user`` (and of every token made before users existed).
DEFAULT_USER = "weightvault"
_PATTERN = re.compile(r"^[A-Za-z0-9*][A-Za-z0-9._*-]{0,95}/[A-Za-z0-9*][A-Za-z0-9._*-]{0,95}$")
_DURATION = re.compile(r"^(\d{1,6})([mhdw])$")
_UNIT = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _aware(at: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; every stored one is UTC."""
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``30d``, ``12h``, ``90m``, ``2w`` from now, or an ISO date/time (UTC unless it says otherwise)."""
    now = now or datetime.now(timezone.utc)
    m = _DURATION.match(text.strip())
    if m:
        return now + timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})
    try:
        at = _aware(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise InvalidName(f"expiry {text!r} is neither a duration (30d, 12h, 90m, 2w) nor an ISO date") from None
    if at <= now:
        raise InvalidName(f"expiry {text!r} is in the past")
    return at


def check_patterns(patterns) -> str | None:
    """Repo patterns as stored (space-separated), None for none; each is ``org/name`` with ``*`` allowed."""
    patterns = [p.strip() for p in patterns if p.strip()]
    for p in patterns:
        if not _PATTERN.match(p):
            raise InvalidName(f"repo pattern {p!r} must look like org/name or org/* (letters, digits, '.', '_', '-')")
    return " ".join(patterns) or None


def create_token(session, scope: str, name: str = "", user: str = DEFAULT_USER, *,
                 expires_at: datetime | None = None, repos=()) -> str:
    if scope not in SCOPES:
        raise UsageError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    secret = PREFIX + secrets.token_urlsafe(32)
    session.add(Token(digest=hashlib.sha256(secret.encode()).hexdigest(), scope=scope, name=name,
                      user=check_user(user), expires_at=expires_at, repos=check_patterns(repos)))
    return secret


def is_live(token: Token, now: datetime | None = None) -> bool:
    return token.expires_at is None or _aware(token.expires_at) > (now or datetime.now(timezone.utc))


#: Built once: constructing the statement on every request cost more than running it (see commits.resolve).
_BY_DIGEST = select(Token).where(Token.digest == bindparam("digest"))


def find_token(session, secret: str) -> Token | None:
    """The stored, unexpired token a presented secret matches, or None."""
    if not secret:
        return None
    digest = hashlib.sha256(secret.encode()).hexdigest()
    token = session.scalar(_BY_DIGEST, {"digest": digest})
    return token if token is not None and is_live(token) else None


def live_digest(session, token_id: int, scope: str | None = None) -> str | None:
    """The digest (signing key) of token ``token_id`` if it still exists and has not expired."""
    token = session.get(Token, token_id)
    if token is None or not is_live(token) or (scope is not None and token.scope != scope):
        return None
    return token.digest


def token_scope(session, secret: str) -> str | None:
    """The scope a presented token grants, or None if it is unknown or expired."""
    token = find_token(session, secret)
    return token.scope if token else None


def allows(patterns: str | None, repo_name: str) -> bool:
    """Whether a token limited to ``patterns`` (None: unlimited) covers ``repo_name``."""
    return patterns is None or any(fnmatch.fnmatchcase(repo_name, p) for p in patterns.split())


def list_tokens(session) -> list[Token]:
    return list(session.scalars(select(Token).order_by(Token.id)))


def revoke(session, token_or_id: str) -> Token | None:
    """Delete the token given by its secret or by the id ``token list`` shows; the deleted row, or None."""
    if token_or_id.isdigit():
        token = session.get(Token, int(token_or_id))
    else:
        digest = hashlib.sha256(token_or_id.encode()).hexdigest()
        token = session.scalar(select(Token).where(Token.digest == digest))
    if token is not None:
        session.delete(token)
        session.flush()
    return token
