"""Repo ids without a namespace (``gpt2``): answered as the hub answers a missing repo.

Repos here are always ``org/name``. Without these routes a one-segment id
matches no route, and the bare 404 carries no ``X-Error-Code``: the client
then reports a connection problem, and ``repo_exists("gpt2")`` raises instead
of returning False. Included last, so that every two-segment route wins.
"""
from __future__ import annotations

from fastapi import APIRouter

from weightvault.errors import NotFound, RepoNotFound

from .lookup import KINDS

router = APIRouter(include_in_schema=False)

#: What follows the repo id in ``/api/{type}/{id}/...`` routes; anything else is an unknown route.
VERBS = {"revision", "tree", "paths-info", "refs", "commits", "preupload", "commit", "branch", "tag",
         "xet-write-token", "xet-read-token"}
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE"]


def _missing(name: str) -> RepoNotFound:
    return RepoNotFound(f"Repository {name!r} not found: repo ids here have a namespace (org/name)")


@router.api_route("/api/{t}/{name}", methods=METHODS)
def api_repo(t: str, name: str) -> None:
    if t not in KINDS:
        raise NotFound("no such route")
    raise _missing(name)


@router.api_route("/api/{t}/{name}/{verb}/{rest:path}", methods=METHODS)
@router.api_route("/api/{t}/{name}/{verb}", methods=METHODS)
def api_repo_verb(t: str, name: str, verb: str, rest: str = "") -> None:
    if t not in KINDS or verb not in VERBS:
        raise NotFound("no such route")
    raise _missing(name)


@router.api_route("/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
def resolve(name: str, rest: str) -> None:
    raise _missing(name)
