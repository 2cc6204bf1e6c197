"""The REST API under /api/v1: repos, chunked uploads, commits, listings, downloads, the savings report.

Revisions travel in query strings here (``?revision=dev/v1``), so a slash in
a branch name needs no special routing. Large files are uploaded in parts:
each part is streamed to disk and kept in the object backend under
``uploads/<id>/``, so any node sharing the bucket can complete the upload.
"""
from __future__ import annotations

import hashlib
import re
import tempfile
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from weightvault.dedup.commits import delete_repo, find_repo
from weightvault.dedup.names import check_path, check_repo_name, check_revision
from weightvault.dedup.report_cache import visible_report
from weightvault.dedup.uploads import Changes, commit_changes, has_file, store_file
from weightvault.errors import ChecksumMismatch, RepoExists, UploadNotFound, UsageError
from weightvault.store import Vault
from weightvault.store.models import Commit, Ref, Repo

from . import entries
from weightvault.store import leftovers
from weightvault.store.backends import ObjectMissing

from .auth import ReadAccess, VaultDep, WriteAccess
from .bodies import JsonBody, documented
from .hub_write import create_repo
from .limits import Expensive
from .lookup import ref_heads, snapshot, snapshot_file, tag_heads
from .spool import spool_body, tmp_dir
from .streaming import file_response

router = APIRouter(prefix="/api/v1", tags=["rest"])

Kind = Query("model", pattern="^(model|dataset|space)$", description="Repo type.")
Revision = Query("main", description="Branch or commit id (slashes allowed).")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_PARTS = 10_000
COPY_BLOCK = 8 << 20


# Properties received when creating a repo
Sha256 = Annotated[str, Field(pattern="^[0-9a-f]{64}$")]


class RepoCreate(BaseModel):
    name: str = Field(description="org/name", max_length=200)
    kind: str = Field("model", pattern="^(model|dataset|space)$")
    private: bool = False


# Properties received when committing
class CommitCreate(BaseModel):
    revision: str = "main"
    message: str = "Upload files"
    add: dict[str, Sha256] = Field(default_factory=dict, description="path -> sha256 of a completed upload")
    delete: list[str] = Field(default_factory=list, description="paths to remove")
    delete_folders: list[str] = Field(default_factory=list)
    parent: str | None = Field(None, description="fail with 412 unless the branch is at this commit")


class UploadComplete(BaseModel):
    repo: str = Field(description="org/name the file is meant for (its family decides delta coding)")
    path: str = Field("upload.bin", description="intended path; *.safetensors files are stored tensor by tensor")
    sha256: Sha256 | None = Field(None, description="expected sha256; the upload is refused if it differs")


# -- repos ------------------------------------------------------------------------------

@router.get("/repos", summary="List repos and their branches")
def list_repos(vault: VaultDep, access: ReadAccess,
               kind: str | None = Query(None, pattern="^(model|dataset|space)$")) -> list[dict]:
    with vault.catalog.read_session() as s:
        q = select(Repo).order_by(Repo.kind, Repo.name)
        repos = s.scalars(q.where(Repo.kind == kind) if kind else q).all()
        heads = s.execute(select(Ref.repo_id, Ref.name, Commit.oid).join(Commit, Commit.id == Ref.commit_id)).all()
    branches: dict[int, dict[str, str]] = {}
    for repo_id, ref, oid in heads:
        branches.setdefault(repo_id, {})[ref] = oid
    return [{"name": r.name, "kind": r.kind, "private": r.private, "branches": branches.get(r.id, {})}
            for r in repos if access.sees(r)]


@router.post("/repos", status_code=201, summary="Create a repo (with an empty first commit on main)",
             openapi_extra=documented(RepoCreate))
def rest_create_repo(vault: VaultDep, access: WriteAccess, body: JsonBody(RepoCreate)) -> dict:
    check_repo_name(body.name)
    access.check_writable(body.name)
    if not create_repo(vault, body.kind, body.name, body.private, access.user):
        raise RepoExists(f"repo {body.name!r} already exists")
    return {"name": body.name, "kind": body.kind}


@router.delete("/repos/{ns}/{name}", status_code=204, summary="Delete a repo (space returns with gc)")
def rest_delete_repo(vault: VaultDep, access: WriteAccess, ns: str, name: str, kind: str = Kind) -> Response:
    with vault.catalog.write_session() as s:
        delete_repo(s, f"{ns}/{name}", kind)
    return Response(status_code=204)


@router.get("/repos/{ns}/{name}/revisions", summary="Branches, tags and commits of a repo")
def revisions(vault: VaultDep, access: ReadAccess, ns: str, name: str, kind: str = Kind) -> dict:
    with vault.catalog.read_session() as s:
        repo = find_repo(s, f"{ns}/{name}", kind)
        access.check_visible(repo)
        refs, tags = ref_heads(s, repo), tag_heads(s, repo)
        commits = s.scalars(select(Commit).where(Commit.repo_id == repo.id).order_by(Commit.id.desc())).all()
    return {"branches": [{"name": n, "commit": oid} for n, oid in refs],
            "tags": [{"name": n, "commit": oid} for n, oid in tags],
            "commits": [{"oid": c.oid, "parent": c.parent_oid, "message": c.message, "author": c.author,
                         "created_at": entries.iso(c.created_at)} for c in commits]}


@router.get("/repos/{ns}/{name}/files", summary="Files of a revision")
def list_files(request: Request, access: ReadAccess, ns: str, name: str, revision: str = Revision,
               kind: str = Kind) -> dict:
    snap = snapshot(request, access, f"{ns}/{name}", revision, kind)
    return {"commit": snap.commit.oid, "files": [
        {"path": p, "size": f.size, "sha256": f.sha256, "etag": entries.etag(p, f), "lfs": entries.is_lfs(p, f.size)}
        for p, f in sorted(snap.tree.items())]}


@router.api_route("/repos/{ns}/{name}/files/{path:path}", methods=["GET", "HEAD"],
                  summary="Download a file (streamed, Range supported)")
def download(request: Request, vault: VaultDep, access: ReadAccess, ns: str, name: str, path: str,
             revision: str = Revision, kind: str = Kind) -> Response:
    check_path(path)
    snap, file = snapshot_file(request, access, f"{ns}/{name}", revision, kind, path)
    return file_response(request, vault, file, {"X-Repo-Commit": snap.commit.oid, "ETag": f'"{file.sha256}"'})


@router.post("/repos/{ns}/{name}/commits", summary="Commit completed uploads and deletions as a new revision",
             openapi_extra=documented(CommitCreate))
def rest_commit(vault: VaultDep, access: WriteAccess, _: Expensive, ns: str, name: str, body: JsonBody(CommitCreate),
                kind: str = Kind) -> dict:
    repo_name, revision = f"{ns}/{name}", check_revision(body.revision)
    with vault.catalog.read_session() as s:
        find_repo(s, repo_name, kind)
    missing = sorted(p for p, sha in body.add.items() if not has_file(vault, sha))
    if missing:
        raise UsageError(f"no completed upload for {', '.join(missing)}")
    changes = Changes(add_stored=dict(body.add), delete_files=set(body.delete), delete_folders=set(body.delete_folders))
    oid = commit_changes(vault, repo_name, revision, changes, body.message, kind=kind, expected_parent=body.parent,
                         author=access.user)
    return {"commit": oid, "revision": revision}


# -- uploads in parts ---------------------------------------------------------------------

#: The object that marks an upload as started (parts are ``00001``...; any node can check it).
STARTED = "started"


def _upload_prefix(vault: Vault, upload_id: str) -> str:
    """``uploads/<id>/`` of an upload that was started, else 404."""
    prefix = f"uploads/{upload_id}/"
    try:
        if _UPLOAD_ID.match(upload_id):
            vault.backend.size(prefix + STARTED)
            return prefix
    except ObjectMissing:
        pass
    raise UploadNotFound(f"no upload {upload_id[:64]!r} was started (POST /api/v1/uploads)")


def _parts(vault: Vault, prefix: str) -> list:
    return sorted((st for st in vault.backend.list(prefix) if st.name[len(prefix):].isdigit()), key=lambda st: st.name)


@router.post("/uploads", status_code=201, summary="Start an upload; then PUT its parts and complete it")
def start_upload(vault: VaultDep, access: WriteAccess) -> dict:
    upload_id = uuid.uuid4().hex
    with tempfile.NamedTemporaryFile(dir=tmp_dir(vault), prefix=leftovers.prefix("start")) as marker:
        vault.backend.put_file(f"uploads/{upload_id}/{STARTED}", Path(marker.name))
    return {"upload_id": upload_id}


@router.put("/uploads/{upload_id}/parts/{part}", summary="Upload one part (streamed; any size)")
async def put_part(request: Request, vault: VaultDep, access: WriteAccess, upload_id: str, part: int,
                   _: Expensive) -> dict:
    prefix = await run_in_threadpool(_upload_prefix, vault, upload_id)
    if not 1 <= part <= MAX_PARTS:
        raise UsageError(f"part numbers go from 1 to {MAX_PARTS}")
    body = await spool_body(request, vault)
    try:
        await run_in_threadpool(vault.backend.put_file, f"{prefix}{part:05d}", body.path)
    finally:
        body.discard()
    return {"part": part, "size": body.size, "sha256": body.sha256}


@router.delete("/uploads/{upload_id}", status_code=204, summary="Abandon an upload")
def abort_upload(vault: VaultDep, access: WriteAccess, upload_id: str) -> Response:
    prefix = _upload_prefix(vault, upload_id)
    for stat in list(vault.backend.list(prefix)):
        vault.backend.delete(stat.name)
    return Response(status_code=204)


@router.post("/uploads/{upload_id}/complete", summary="Join the parts, check the sha256, store the file",
             openapi_extra=documented(UploadComplete))
def complete_upload(vault: VaultDep, access: WriteAccess, _: Expensive, upload_id: str,
                    body: JsonBody(UploadComplete)) -> JSONResponse:
    check_repo_name(body.repo)
    access.check_writable(body.repo)
    check_path(body.path)
    prefix = _upload_prefix(vault, upload_id)
    parts = _parts(vault, prefix)
    if not parts:
        raise UploadNotFound(f"upload {upload_id} has no parts")
    if [int(st.name[len(prefix):]) for st in parts] != list(range(1, len(parts) + 1)):
        raise UsageError("parts must be numbered 1..N with none missing")
    joined, sha, size = _join(vault, parts, Path(body.path).suffix)
    try:
        if body.sha256 and body.sha256 != sha:
            raise ChecksumMismatch(f"the parts hash to {sha}, not {body.sha256}")
        _, warnings = store_file(vault, body.repo, joined, body.path)
    finally:
        joined.unlink(missing_ok=True)
    for st in list(vault.backend.list(prefix)):
        vault.backend.delete(st.name)
    return JSONResponse({"sha256": sha, "size": size, "warnings": warnings}, status_code=201)


def _join(vault: Vault, parts, suffix: str) -> tuple[Path, str, int]:
    """Concatenate the parts into one temp file, hashing as they stream through."""
    fd, name = tempfile.mkstemp(dir=tmp_dir(vault), prefix=leftovers.prefix("join"), suffix=suffix)
    h, size = hashlib.sha256(), 0
    with open(fd, "wb") as out:
        for st in parts:
            for offset in range(0, st.size, COPY_BLOCK):
                block = vault.backend.read(st.name, offset, min(COPY_BLOCK, st.size - offset))
                h.update(block)
                out.write(block)
                size += len(block)
    return Path(name), h.hexdigest(), size


# -- report -------------------------------------------------------------------------------

@router.get("/report", summary="Storage savings per repo, per family and overall")
def report(vault: VaultDep, access: ReadAccess) -> dict:
    return visible_report(vault.catalog, access.sees)

