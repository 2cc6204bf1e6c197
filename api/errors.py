"""Errors as the hub reports them: a status, an ``X-Error-Code`` header and ``{"error": message}``.

huggingface_hub maps ``X-Error-Code`` to its exception classes
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``); on plain
``http://`` endpoints it has no other way to tell a missing repo from a
missing file, so every error this server raises goes through ``ApiError``.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from weightvault.dedup.commits import CommitConflict, RepoNotFound, RevisionNotFound
from weightvault.dedup.content import StaleReference
from weightvault.dedup.names import InvalidName
from weightvault.dedup.reader import IntegrityError
from weightvault.dedup.safetensors import SafetensorsError
from weightvault.store.backends import ObjectMissing


class ApiError(Exception):
    """An HTTP error with the hub's error code and, for a missing file, the commit it was looked up in."""

    def __init__(self, status: int, code: str, message: str, *, commit: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})
        if commit:
            # With the commit, the client records ``.no_exist/<commit>/<path>`` and does not ask again.
            self.headers["X-Repo-Commit"] = commit

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message, "code": self.code}, status_code=self.status,
                            headers={"X-Error-Code": self.code, "X-Error-Message": self.message, **self.headers})


def repo_not_found(name: str) -> ApiError:
    return ApiError(404, "RepoNotFound", f"Repository {name!r} not found")


def entry_not_found(path: str, commit: str) -> ApiError:
    return ApiError(404, "EntryNotFound", f"Entry {path!r} not found", commit=commit)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def install(app: FastAPI) -> None:
    """Map store exceptions raised anywhere in a handler to hub-style responses."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RepoNotFound)
    async def _repo(_: Request, exc: RepoNotFound) -> JSONResponse:
        return ApiError(404, "RepoNotFound", str(exc)).response()

    @app.exception_handler(RevisionNotFound)
    async def _rev(_: Request, exc: RevisionNotFound) -> JSONResponse:
        return ApiError(404, "RevisionNotFound", str(exc)).response()

    @app.exception_handler(InvalidName)
    async def _name(_: Request, exc: InvalidName) -> JSONResponse:
        return ApiError(400, "InvalidName", str(exc)).response()

    @app.exception_handler(SafetensorsError)
    async def _st(_: Request, exc: SafetensorsError) -> JSONResponse:
        return ApiError(400, "BadSafetensors", str(exc)).response()

    @app.exception_handler(StaleReference)
    async def _stale(_: Request, exc: StaleReference) -> JSONResponse:
        # A concurrent gc removed content this write reused; hub clients retry 503s on their own.
        return ApiError(503, "Retry", str(exc), headers={"Retry-After": "1"}).response()

    @app.exception_handler(IntegrityError)
    @app.exception_handler(ObjectMissing)
    async def _storage(_: Request, exc: Exception) -> JSONResponse:
        return ApiError(500, "StorageError", f"stored content could not be read: {exc}").response()

    @app.exception_handler(CommitConflict)
    async def _conflict(_: Request, exc: CommitConflict) -> JSONResponse:
        # The hub answers a stale ``parentCommit`` with 412 Precondition Failed.
        return ApiError(412, "CommitConflict", str(exc)).response()
