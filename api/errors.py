"""Errors as the hub reports them: a status, an ``X-Error-Code`` header and ``{"error": message}``.

huggingface_hub maps ``X-Error-Code`` to its exception classes
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``); on plain
``http://`` endpoints it has no other way to tell a missing repo from a
missing file, so every error this server raises is answered through
:func:`response`: weightvault errors (status and code from their class,
weightvault/errors), FastAPI's own 404/405/422s, and (as a 500 that tells the
client nothing about the server's internals) anything unexpected.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from weightvault.errors import EntryNotFound, InvalidBody, WeightvaultError


log = logging.getLogger("weightvault.api")

#: Characters of a message kept in the ``X-Error-Message`` header (the JSON body has it whole).
HEADER_MESSAGE_CHARS = 1000


def header_value(text: str) -> str:
    """``text`` as an HTTP header value: printable ASCII, anything else as a Python escape (``\\xe9``, ``\\u4e2d``).

    Header values must be Latin-1 and may not hold line breaks; a file or repo
    name can hold anything, so the message is escaped rather than refused.
    """
    text = text[:HEADER_MESSAGE_CHARS]
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in escaped)


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status,
                        headers={"X-Error-Code": code, "X-Error-Message": header_value(message), **(headers or {})})


def response(exc: WeightvaultError) -> JSONResponse:
    """The answer to ``exc``: status and ``X-Error-Code`` from its class, plus its own headers."""
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers.setdefault("Retry-After", str(exc.retry_after))
    return json_error(exc.http_status, exc.hub_code, exc.message, headers)


def entry_not_found(path: str, commit: str) -> EntryNotFound:
    # With the commit, the client records ``.no_exist/<commit>/<path>`` and does not ask again.
    return EntryNotFound(f"Entry {path!r} not found", headers={"X-Repo-Commit": commit})


#: Codes for FastAPI's and Starlette's own errors (no route, wrong method, bad query parameter).
HTTP_CODES = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 422: "ValidationError"}


def install(app: FastAPI) -> None:
    """Answer every weightvault error raised in a handler as the hub would: the status, the
    ``X-Error-Code`` and the message come from the exception's class (weightvault/errors)."""

    @app.exception_handler(WeightvaultError)
    async def _mapped(_: Request, exc: WeightvaultError) -> JSONResponse:
        return response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return response(InvalidBody(f"invalid request: {problems}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "Error")
        return json_error(exc.status_code, code, str(exc.detail), exc.headers)

    app.add_middleware(Unexpected)


class Unexpected:
    """ASGI middleware: an exception no handler claimed becomes a bare 500 and one log line, not a traceback.

    The body says nothing of the server's internals. If the response had already
    started (a download whose frame failed mid-stream), it is cut short: the
    client sees a short body, never a spliced or padded one.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 -- the last line of defence, logged
            log.error("%s %s failed: %s: %s", scope["method"], header_value(scope["path"]), type(exc).__name__,
                      header_value(str(exc)))
            if not started:
                await response(WeightvaultError("internal server error; the server log has the cause")
                               )(scope, receive, send)
