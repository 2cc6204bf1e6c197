"""Bearer tokens: only their sha256 is stored; the secret is shown once, at creation."""
from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from weightvault.store.models import Token

from .names import check_user

SCOPES = ("read", "write")  # write implies read
PREFIX = "wv_"
#: The user of tokens created without ``--user`` (and of every token made before users existed).
DEFAULT_USER = "weightvault"


def create_token(session, scope: str, name: str = "", user: str = DEFAULT_USER) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    secret = PREFIX + secrets.token_urlsafe(32)
    session.add(Token(digest=hashlib.sha256(secret.encode()).hexdigest(), scope=scope, name=name,
                      user=check_user(user)))
    return secret


def find_token(session, secret: str) -> Token | None:
    """The stored token a presented secret matches, or None if it is unknown."""
    if not secret:
        return None
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return session.scalar(select(Token).where(Token.digest == digest))


def token_scope(session, secret: str) -> str | None:
    """The scope a presented token grants, or None if it is unknown."""
    token = find_token(session, secret)
    return token.scope if token else None
