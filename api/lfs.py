"""The git-LFS batch API as huggingface_hub uses it: batch, then PUT, then verify.

Objects the store already holds get no ``actions``, so the client uploads
nothing (dedup across every repo of the store). The PUT carries no
credentials (the client drops them), so its URL is signed (see ``auth``). The
PUT is checked against the announced sha256 and size before anything is
stored: a mismatch is refused and leaves no trace.
"""
from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from weightvault.dedup.commits import find_repo
from weightvault.dedup.uploads import has_file, store_file
from weightvault.errors import ChecksumMismatch, LfsObjectNotFound, UsageError

from .auth import VaultDep, WriteAccess, check_upload, sign_upload
from .bodies import JsonBody, documented
from .limits import Expensive
from .lookup import KINDS
from .spool import content_name, spool_body

router = APIRouter(tags=["lfs"])

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
LFS_JSON = "application/vnd.git-lfs+json"


class Batch(BaseModel):
    model_config = ConfigDict(extra="ignore")
    operation: str
    # Objects are checked one by one: a bad one gets an error entry, the others their actions.
    objects: list[dict] = Field(default_factory=list, max_length=10_000)


def _batch(request: Request, vault, access, kind: str, name: str, body: Batch) -> JSONResponse:
    if body.operation != "upload":
        raise UsageError("only the upload operation is supported; download files through /resolve")
    with vault.catalog.read_session() as s:
        access.check_visible(find_repo(s, name, kind))
    base = str(request.base_url).rstrip("/")
    ttl = request.app.state.settings.upload_url_ttl
    out = []
    limit = request.app.state.settings.max_upload_bytes
    for obj in body.objects:
        oid, size = obj.get("oid"), obj.get("size")
        if not isinstance(oid, str) or not _SHA256.match(oid) or type(size) is not int or not 0 <= size <= limit:
            out.append({"oid": str(oid)[:64], "size": size if type(size) is int else None,
                        "error": {"code": 422, "message": f"oid must be a sha256, 0 <= size <= {limit}"}})
            continue
        item = {"oid": oid, "size": size, "authenticated": True}
        if not has_file(vault, oid):
            target = f"{kind}/{name}"
            query = urlencode(sign_upload(vault, access, target, oid, size, ttl))
            href = f"{base}/api/v1/lfs/{target}/{oid}"
            item["actions"] = {"upload": {"href": f"{href}?{query}", "expires_in": ttl},
                               "verify": {"href": f"{href}/verify", "expires_in": ttl}}
        out.append(item)
    return JSONResponse({"transfer": "basic", "objects": out, "hash_algo": "sha256"}, media_type=LFS_JSON)


def _add_batch_route(prefix: str, kind: str) -> None:
    @router.post(prefix + "/{ns}/{name}.git/info/lfs/objects/batch", summary=f"LFS batch ({kind}s)",
                 name=f"lfs_batch_{kind}", openapi_extra=documented(Batch))
    async def batch(request: Request, vault: VaultDep, access: WriteAccess, ns: str, name: str,
                    body: JsonBody(Batch)) -> JSONResponse:
        return await run_in_threadpool(_batch, request, vault, access, kind, f"{ns}/{name}", body)


for _plural, _kind in KINDS.items():
    _add_batch_route("" if _kind == "model" else f"/{_plural}", _kind)


def signed_size(request: Request, vault: VaultDep, kind: str, ns: str, name: str, oid: str) -> int:
    """The size the upload URL's signature allows (403 otherwise): checked before any slot or body byte."""
    return check_upload(vault, f"{kind}/{ns}/{name}", oid, dict(request.query_params))


@router.put("/api/v1/lfs/{kind}/{ns}/{name}/{oid}", summary="Upload one LFS object (signed URL from the batch API)")
async def upload_object(request: Request, vault: VaultDep, kind: str, ns: str, name: str, oid: str,
                        size: Annotated[int, Depends(signed_size)], _: Expensive) -> dict:
    body = await spool_body(request, vault, limit=size)
    try:
        if body.size != size or body.sha256 != oid:
            raise ChecksumMismatch(f"uploaded {body.size} bytes with sha256 {body.sha256}, expected {size} bytes with {oid}")
        await run_in_threadpool(store_file, vault, f"{ns}/{name}", body.path, content_name(body.path))
    finally:
        body.discard()
    return {"oid": oid, "size": size}


@router.post("/api/v1/lfs/{kind}/{ns}/{name}/{oid}/verify", summary="Confirm an LFS object is stored")
def verify_object(vault: VaultDep, access: WriteAccess, kind: str, ns: str, name: str, oid: str) -> dict:
    if not has_file(vault, oid):
        raise LfsObjectNotFound(f"object {oid} was not uploaded")
    return {"oid": oid}
