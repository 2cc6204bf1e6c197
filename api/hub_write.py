"""Hub-compatible write routes: create and delete repos, preupload, NDJSON commits, branches, YAML check.

See /work/shared/docs/hub-protocol.md section 1b. Large files arrive through
the LFS routes (``lfs.py``) before the commit names them; small ones arrive
base64-encoded inside the commit.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from weightvault.dedup.commits import (
    RevisionNotFound, delete_repo, resolve, retrying, tree_of, write_commit,
)
from weightvault.dedup.names import InvalidName, check_path, check_repo_name, check_revision
from weightvault.dedup.uploads import Changes, commit_changes, has_file
from weightvault.errors import UsageError
from weightvault.store.models import Repo

from . import entries, xet
from .auth import AnyToken, VaultDep, WriteAccess
from .bodies import JsonBody, documented
from .limits import Expensive
from .lookup import KINDS, api_revision, kind_of, repo_url
from .spool import spool_body

router = APIRouter(tags=["hub"])
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Hub(BaseModel):
    # Clients send fields this server has no use for (sdk, resourceGroupId, gitAttributes...): ignored.
    model_config = ConfigDict(extra="ignore")


class RepoRef(_Hub):
    """create_repo / delete_repo: ``organization`` may be folded into ``name`` as ``org/name``."""
    name: str = Field(max_length=200)
    organization: str | None = Field(None, max_length=100)
    type: str | None = None
    private: bool | None = None
    visibility: str | None = None


class YamlCheck(_Hub):
    content: str = ""


class PreuploadFile(_Hub):
    path: str
    size: int = Field(0, ge=0)


class Preupload(_Hub):
    files: list[PreuploadFile] = Field(default_factory=list, max_length=10_000)


def _repo_name(body: RepoRef, access) -> tuple[str, str]:
    """(kind, org/name) from a create/delete body: ``{"name", "organization", "type"}``.

    A name without an organisation goes to the token's user, as on the hub: ``push_to_hub("my-model")``
    creates ``alice/my-model`` and carries on with the id from the returned URL.
    """
    kind = body.type or "model"
    if kind not in KINDS.values():
        raise UsageError(f"unknown repo type {kind!r}")
    name, org = body.name, body.organization or access.user
    full = name if "/" in name or not org else f"{org}/{name}"
    return kind, check_repo_name(full)


def create_repo(vault, kind: str, name: str, private: bool, author: str | None = None) -> bool:
    """Create ``name`` with an empty first commit on ``main`` (as the hub's initial commit); False if it exists."""
    def work(session) -> bool:
        if session.scalar(select(Repo.id).where(Repo.kind == kind, Repo.name == name)) is not None:
            return False
        repo = Repo(kind=kind, name=name, private=private)
        session.add(repo)
        session.flush()
        write_commit(session, repo, "main", {}, "initial commit", author=author)
        return True

    return retrying(vault.catalog, work)


@router.post("/api/repos/create", summary="Create a repo (create_repo)", openapi_extra=documented(RepoRef))
async def hub_create_repo(request: Request, vault: VaultDep, access: WriteAccess,
                          body: JsonBody(RepoRef)) -> JSONResponse:
    kind, name = _repo_name(body, access)
    access.check_writable(name)
    private = bool(body.private) or body.visibility == "private"
    url = repo_url(request, kind, name)
    if not await run_in_threadpool(create_repo, vault, kind, name, private, access.user):
        # exist_ok=True still parses this body, so it must carry "url".
        return JSONResponse({"error": "You already created this repo", "url": url}, status_code=409)
    return JSONResponse({"url": url, "name": name, "id": name})


@router.api_route("/api/repos/delete", methods=["DELETE", "POST"], summary="Delete a repo (delete_repo)",
                  openapi_extra=documented(RepoRef))
async def hub_delete_repo(vault: VaultDep, access: WriteAccess, body: JsonBody(RepoRef)) -> dict:
    kind, name = _repo_name(body, access)
    access.check_writable(name)

    def work() -> None:
        with vault.catalog.write_session() as s:
            delete_repo(s, name, kind)

    await run_in_threadpool(work)
    return {}


@router.post("/api/validate-yaml", summary="Check a README's YAML metadata (needs a token, as on the hub)",
             openapi_extra=documented(YamlCheck))
async def validate_yaml(access: AnyToken, body: JsonBody(YamlCheck)) -> JSONResponse:
    errors = await run_in_threadpool(card_errors, body.content)  # a few MB of YAML is seconds of CPU
    return JSONResponse({"errors": errors, "warnings": []}, status_code=400 if errors else 200)


def card_errors(content: str) -> list[dict]:
    if not content.startswith("---"):
        return []
    front, sep, _ = content[3:].partition("\n---")
    try:
        if sep and not isinstance(yaml.safe_load(front) or {}, dict):
            return [{"message": "metadata must be a YAML mapping"}]
    except yaml.YAMLError as exc:
        return [{"message": f"invalid YAML: {exc}"}]
    except RecursionError:
        return [{"message": "invalid YAML: nested too deeply"}]
    return []


@router.post("/api/{t}/{ns}/{name}/preupload/{rest:path}", summary="Which files go through LFS",
             openapi_extra=documented(Preupload))
async def preupload(request: Request, vault: VaultDep, access: WriteAccess, t: str, ns: str, name: str,
                    rest: str, body: JsonBody(Preupload)) -> dict:
    kind, revision = kind_of(t), api_revision(request)
    files = body.files

    def current() -> dict:
        with vault.catalog.read_session() as s:
            try:  # a missing repo still raises RepoNotFound; a new branch has no files yet
                return tree_of(s, resolve(s, f"{ns}/{name}", revision, kind).commit)
            except RevisionNotFound:
                return {}

    tree = await run_in_threadpool(current)
    out = []
    for f in files:
        path, size = f.path, f.size
        lfs = entries.is_lfs(path, size)
        item = {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
        if path in tree:
            # The client skips a file whose local oid equals this one.
            item["oid"] = tree[path].sha256 if lfs else tree[path].git_sha1
        out.append(item)
    return {"files": out, "commitOid": None}


@dataclass
class ParsedCommit:
    message: str = ""
    parent: str | None = None
    changes: Changes = field(default_factory=Changes)


def parse_ndjson(lines) -> ParsedCommit:
    """The NDJSON commit body: a header line, then file, lfsFile, deletedFile and deletedFolder lines."""
    parsed, seen_header = ParsedCommit(), False
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise UsageError(f"line {n}: not a JSON object with 'key' and 'value'") from None
        if not isinstance(value, dict):
            raise UsageError(f"line {n}: 'value' must be an object")
        if key == "header":
            seen_header = True
            summary, description = _text(value, "summary", n), _text(value, "description", n)
            parsed.message = summary + (f"\n\n{description}" if description else "")
            parsed.parent = _text(value, "parentCommit", n) or None
            continue
        if not seen_header:
            raise UsageError("the first line of a commit must be its header")
        path = _checked_path(_text(value, "path", n), n)
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise UsageError(f"line {n}: only base64 content is supported")
            try:
                parsed.changes.add_bytes[path] = base64.b64decode(_text(value, "content", n), validate=True)
            except (binascii.Error, ValueError):
                raise UsageError(f"line {n}: content is not valid base64") from None
        elif key == "lfsFile":
            oid = _text(value, "oid", n)
            if value.get("algo", "sha256") != "sha256" or not _SHA256.match(oid):
                raise UsageError(f"line {n}: lfsFile needs a sha256 oid")
            parsed.changes.add_stored[path] = oid
        elif key == "deletedFile":
            parsed.changes.delete_files.add(path)
        elif key == "deletedFolder":
            parsed.changes.delete_folders.add(path.rstrip("/"))
        else:
            raise UsageError(f"line {n}: unknown key {str(key)[:100]!r}")
    if not seen_header:
        raise UsageError("the commit has no header line")
    return parsed


def _text(value: dict, key: str, n: int) -> str:
    """A string field of a commit line ('' when absent or null)."""
    found = value.get(key)
    if found is None:
        return ""
    if not isinstance(found, str):
        raise UsageError(f"line {n}: {key!r} must be a string")
    return found


def _checked_path(path: str, n: int) -> str:
    try:
        return check_path(path.rstrip("/"))
    except InvalidName as exc:
        raise UsageError(f"line {n}: {exc}") from None


@router.post("/api/{t}/{ns}/{name}/commit/{rest:path}", summary="Commit files (NDJSON, create_commit)")
async def commit(request: Request, vault: VaultDep, access: WriteAccess, _: Expensive, t: str, ns: str, name: str,
                 rest: str) -> dict:
    kind, repo_name = kind_of(t), f"{ns}/{name}"
    revision = check_revision(api_revision(request))
    if request.query_params.get("create_pr", "").lower() in ("1", "true"):
        raise UsageError("pull requests are not supported; commit to a branch")
    body = await spool_body(request, vault)
    try:
        with open(body.path, "rb") as f:
            parsed = await run_in_threadpool(parse_ndjson, f)
    finally:
        body.discard()

    def work() -> str:
        with vault.catalog.read_session() as s:
            resolve(s, repo_name, revision, kind)  # the branch must exist, as on the hub
        missing = {p: oid for p, oid in parsed.changes.add_stored.items() if not has_file(vault, oid)}
        rebuilt = xet.store_staged(vault, access, repo_name, missing)
        never = sorted(p for p, sha in missing.items() if sha not in rebuilt)
        if never:
            raise UsageError(f"LFS content of {', '.join(never)} was never uploaded")
        oid = commit_changes(vault, repo_name, revision, parsed.changes, parsed.message or "Upload files",
                             kind=kind, expected_parent=parsed.parent, author=access.user)
        xet.finish(vault, access, set(parsed.changes.add_stored.values()))
        return oid

    oid = await run_in_threadpool(work)
    url = repo_url(request, kind, repo_name)
    return {"commitOid": oid, "commitUrl": f"{url}/commit/{oid}", "pullRequestUrl": None}
