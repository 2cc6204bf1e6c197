"""Bearer tokens: only their sha256 is stored; the secret is shown once, at creation."""
from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from weightvault.store.models import Token

SCOPES = ("read", "write")  # write implies read
PREFIX = "wv_"


def create_token(session, scope: str, name: str = "") -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    secret = PREFIX + secrets.token_urlsafe(32)
    session.add(Token(digest=hashlib.sha256(secret.encode()).hexdigest(), scope=scope, name=name))
    return secret


def token_scope(session, secret: str) -> str | None:
    """The scope a presented token grants, or None if it is unknown."""
    if not secret:
        return None
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return session.scalar(select(Token.scope).where(Token.digest == digest))
