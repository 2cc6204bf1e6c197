"""Bounds on what one request may cost: body size per route kind, and how many expensive requests run at once.

``BodyLimit`` is a pure ASGI middleware: it refuses a declared ``Content-Length``
above the route kind's limit before the app runs, and counts bytes as the app
reads them, so a body without a length (chunked) is cut off at the same limit
without ever being held whole. Routes authenticate from headers in their
dependencies before they read a body, so an anonymous client costs no more
than its headers.

Route kinds, each with its own setting (see ``api.settings``):
- signed LFS PUTs: the size the signed URL announces (the handler checks the signature first);
- REST upload parts and Xet xorbs/shards: ``max_part_bytes``;
- NDJSON commits (small files arrive base64-encoded inside): ``max_commit_bytes``;
- everything else (JSON bodies, forms): ``max_json_bytes``.
A new route that takes large bodies must be listed in ``_KINDS``.
"""
from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import Depends, Request

from weightvault.errors import Busy, PayloadTooLarge, UsageError

from .errors import response
from .settings import ServerSettings

_LFS_PUT = re.compile(r"^/api/v1/lfs/")
_PART = re.compile(r"^/api/v1/uploads/[^/]+/parts/")
_XET = re.compile(r"/v1/(xorbs|shards)(/|$)")
_COMMIT = re.compile(r"^/api/[^/]+/[^/]+/[^/]+/commit/")
#: Digits of a declared size: more than this is larger than any limit (and than int() should parse).
_MAX_DIGITS = 18


def _declared_size(query: bytes) -> int | None:
    m = re.search(rb"(?:^|&)size=(\d{1,%d})(?:&|$)" % _MAX_DIGITS, query)
    return int(m.group(1)) if m else None


def body_limit(settings: ServerSettings, method: str, path: str, query: bytes) -> int:
    """The most body bytes a request to ``method path?query`` may carry."""
    if method == "PUT" and _LFS_PUT.match(path):
        declared = _declared_size(query)
        return min(declared, settings.max_upload_bytes) if declared is not None else 0
    if (method == "PUT" and _PART.match(path)) or _XET.search(path):
        return settings.max_part_bytes
    if method == "POST" and _COMMIT.match(path):
        return settings.max_commit_bytes
    return settings.max_json_bytes


def body_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than this route's limit of {limit} bytes")


class BodyLimit:
    """ASGI middleware: 413 before the app runs when ``Content-Length`` is over the limit, else count as read;
    400 for a URL holding NUL (found by tests/test_api_schema_fuzz.py: PostgreSQL refused it with a 500)."""

    def __init__(self, app, settings: ServerSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = (scope.get("raw_path") or b"") + b"?" + scope.get("query_string", b"")
        if b"%00" in raw or b"\x00" in raw or b"\x00" in scope["path"].encode("utf-8", "surrogateescape"):
            # No name, revision or parameter of this API holds NUL, and PostgreSQL refuses it in any query.
            return await response(UsageError("URLs must not contain NUL (%00)"))(scope, receive, send)
        limit = body_limit(self.settings, scope["method"], scope["path"], scope.get("query_string", b""))
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.strip().isdigit() and (len(length.strip()) > _MAX_DIGITS or int(length) > limit):
            refusal = response(body_too_large(limit))
            refusal.headers["Connection"] = "close"
            return await refusal(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise body_too_large(limit)
            return message

        await self.app(scope, counted, send)


class Gate:
    """At most ``slots`` expensive requests (storing and coding content) at once; others wait.

    A request that waits longer than ``wait`` seconds gets 503 with ``Retry-After``
    (hub clients retry those on their own) instead of piling up threads and memory.
    """

    def __init__(self, slots: int, wait: float) -> None:
        self.slots, self.wait = slots, wait
        self._sem: asyncio.Semaphore | None = None

    async def __aenter__(self) -> None:
        if self._sem is None:  # made on first use, inside the server's event loop
            self._sem = asyncio.Semaphore(self.slots)
        try:
            await asyncio.wait_for(self._sem.acquire(), self.wait)
        except asyncio.TimeoutError:
            raise Busy(f"{self.slots} uploads or commits are already running; retry shortly") from None

    async def __aexit__(self, *exc) -> None:
        self._sem.release()


async def _expensive(request: Request):
    async with request.app.state.gate:
        yield


#: Declare after the access parameter (dependencies resolve in order), so that only authenticated
#: requests ever wait for a slot: ``_: Expensive``.
Expensive = Annotated[None, Depends(_expensive)]
