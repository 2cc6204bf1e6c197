"""Errors as the hub reports them: a status, an ``X-Error-Code`` header and ``{"error": message}``.

huggingface_hub maps ``X-Error-Code`` to its exception classes
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``); on plain
``http://`` endpoints it has no other way to tell a missing repo from a
missing file, so every error this server raises goes through ``ApiError``.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from weightvault.dedup.commits import CommitConflict, EntryNotFound, RepoNotFound, RevisionNotFound
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


#: Store and dedup exceptions -> (HTTP status, hub error code). A stale reference means a
#: concurrent gc removed content a write reused: hub clients retry 503s on their own. A stale
#: ``parentCommit`` is 412 Precondition Failed, as on the hub.
STATUS_OF: dict[type[Exception], tuple[int, str]] = {
    RepoNotFound: (404, "RepoNotFound"),
    RevisionNotFound: (404, "RevisionNotFound"),
    EntryNotFound: (404, "EntryNotFound"),
    InvalidName: (400, "InvalidName"),
    SafetensorsError: (400, "BadSafetensors"),
    StaleReference: (503, "Retry"),
    IntegrityError: (500, "StorageError"),
    ObjectMissing: (500, "StorageError"),
    CommitConflict: (412, "CommitConflict"),
}


def install(app: FastAPI) -> None:
    """Map store exceptions raised anywhere in a handler to hub-style responses."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    async def _mapped(_: Request, exc: Exception) -> JSONResponse:
        status, code = next(v for cls, v in STATUS_OF.items() if isinstance(exc, cls))
        message = f"stored content could not be read: {exc}" if code == "StorageError" else str(exc)
        headers = {"Retry-After": "1"} if status == 503 else None
        return ApiError(status, code, message, headers=headers).response()

    for cls in STATUS_OF:
        app.add_exception_handler(cls, _mapped)
