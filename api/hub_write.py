"""Hub-compatible write routes: create and delete repos, preupload, NDJSON commits, branches, YAML check.

See /work/shared/docs/hub-protocol.md section 1b. Large files arrive through
the LFS routes (``lfs.py``) before the commit names them; small ones arrive
base64-encoded inside the commit.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from weightvault.dedup.commits import (
    RevisionNotFound, delete_repo, resolve, retrying, tree_of, write_commit,
)
from weightvault.dedup.names import InvalidName, check_path, check_repo_name, check_revision
from weightvault.dedup.uploads import Changes, commit_changes, has_file
from weightvault.store.models import Repo

from . import entries, xet
from .auth import VaultDep, WriteAccess
from .errors import bad_request
from .lookup import KINDS, api_revision, kind_of, repo_url
from .spool import spool_body

router = APIRouter(tags=["hub"])

def _repo_name(body: dict) -> tuple[str, str]:
    """(kind, org/name) from a create/delete body: ``{"name", "organization", "type"}``."""
    kind = body.get("type") or "model"
    if kind not in KINDS.values():
        raise bad_request(f"unknown repo type {kind!r}")
    name, org = body.get("name") or "", body.get("organization")
    full = f"{org}/{name}" if org else name
    if "/" not in full:
        raise bad_request("repo ids need a namespace: org/name")
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


@router.post("/api/repos/create", summary="Create a repo (create_repo)")
async def hub_create_repo(request: Request, vault: VaultDep, access: WriteAccess) -> JSONResponse:
    body = await request.json()
    kind, name = _repo_name(body)
    private = bool(body.get("private")) or body.get("visibility") == "private"
    url = repo_url(request, kind, name)
    if not await run_in_threadpool(create_repo, vault, kind, name, private, access.user):
        # exist_ok=True still parses this body, so it must carry "url".
        return JSONResponse({"error": "You already created this repo", "url": url}, status_code=409)
    return JSONResponse({"url": url, "name": name, "id": name})


@router.api_route("/api/repos/delete", methods=["DELETE", "POST"], summary="Delete a repo (delete_repo)")
async def hub_delete_repo(request: Request, vault: VaultDep, access: WriteAccess) -> dict:
    kind, name = _repo_name(await request.json())

    def work() -> None:
        with vault.catalog.write_session() as s:
            delete_repo(s, name, kind)

    await run_in_threadpool(work)
    return {}


@router.post("/api/validate-yaml", summary="Check a README's YAML metadata")
async def validate_yaml(request: Request) -> JSONResponse:
    content = (await request.json()).get("content") or ""
    errors = []
    if content.startswith("---"):
        front, sep, _ = content[3:].partition("\n---")
        try:
            if sep and not isinstance(yaml.safe_load(front) or {}, dict):
                errors.append({"message": "metadata must be a YAML mapping"})
        except yaml.YAMLError as exc:
            errors.append({"message": f"invalid YAML: {exc}"})
    return JSONResponse({"errors": errors, "warnings": []}, status_code=400 if errors else 200)


@router.post("/api/{t}/{ns}/{name}/preupload/{rest:path}", summary="Which files go through LFS")
async def preupload(request: Request, vault: VaultDep, access: WriteAccess, t: str, ns: str, name: str,
                    rest: str) -> dict:
    kind, revision = kind_of(t), api_revision(request)
    files = (await request.json()).get("files", [])

    def current() -> dict:
        with vault.catalog.read_session() as s:
            try:  # a missing repo still raises RepoNotFound; a new branch has no files yet
                return tree_of(s, resolve(s, f"{ns}/{name}", revision, kind).commit)
            except RevisionNotFound:
                return {}

    tree = await run_in_threadpool(current)
    out = []
    for f in files:
        path, size = str(f.get("path", "")), int(f.get("size") or 0)
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
        except (ValueError, KeyError, TypeError):
            raise bad_request(f"line {n}: not a JSON object with 'key' and 'value'") from None
        if not isinstance(value, dict):
            raise bad_request(f"line {n}: 'value' must be an object")
        if key == "header":
            seen_header = True
            summary, description = value.get("summary") or "", value.get("description") or ""
            parsed.message = summary + (f"\n\n{description}" if description else "")
            parsed.parent = value.get("parentCommit") or None
            continue
        if not seen_header:
            raise bad_request("the first line of a commit must be its header")
        path = _checked_path(value.get("path"), n)
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise bad_request(f"line {n}: only base64 content is supported")
            try:
                parsed.changes.add_bytes[path] = base64.b64decode(value.get("content") or "", validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(f"line {n}: content is not valid base64") from None
        elif key == "lfsFile":
            oid = str(value.get("oid", ""))
            if value.get("algo", "sha256") != "sha256" or len(oid) != 64:
                raise bad_request(f"line {n}: lfsFile needs a sha256 oid")
            parsed.changes.add_stored[path] = oid
        elif key == "deletedFile":
            parsed.changes.delete_files.add(path)
        elif key == "deletedFolder":
            parsed.changes.delete_folders.add(path.rstrip("/"))
        else:
            raise bad_request(f"line {n}: unknown key {key!r}")
    if not seen_header:
        raise bad_request("the commit has no header line")
    return parsed


def _checked_path(path, n: int) -> str:
    try:
        return check_path(str(path or "").rstrip("/"))
    except InvalidName as exc:
        raise bad_request(f"line {n}: {exc}") from None


@router.post("/api/{t}/{ns}/{name}/commit/{rest:path}", summary="Commit files (NDJSON, create_commit)")
async def commit(request: Request, vault: VaultDep, access: WriteAccess, t: str, ns: str, name: str,
                 rest: str) -> dict:
    kind, repo_name = kind_of(t), f"{ns}/{name}"
    revision = check_revision(api_revision(request))
    if request.query_params.get("create_pr", "").lower() in ("1", "true"):
        raise bad_request("pull requests are not supported; commit to a branch")
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
            raise bad_request(f"LFS content of {', '.join(never)} was never uploaded")
        oid = commit_changes(vault, repo_name, revision, parsed.changes, parsed.message or "Upload files",
                             kind=kind, expected_parent=parsed.parent, author=access.user)
        xet.finish(vault, access, set(parsed.changes.add_stored.values()))
        return oid

    oid = await run_in_threadpool(work)
    url = repo_url(request, kind, repo_name)
    return {"commitOid": oid, "commitUrl": f"{url}/commit/{oid}", "pullRequestUrl": None}
