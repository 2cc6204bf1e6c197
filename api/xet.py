"""The Xet CAS protocol, server side: what hf_xet (huggingface_hub >= 1.20) uploads through.

Flow (huggingface/xet-core ``spec/upload_protocol.md``): the client asks the hub
route ``xet-write-token`` for a short-lived token and the CAS URL (this server),
POSTs xorbs to ``/v1/xorbs/default/<hash>``, then shards to ``/v1/shards``, then
commits on the hub API naming each file by its sha256, as LFS commits do. The
commit rebuilds those files from the staged xorbs and stores them like every
other upload (``dedup.xet.staging``). Xet tokens are HMACs keyed with the issuing
bearer token's stored digest, as signed LFS URLs are: any node can check them,
and deleting the bearer token revokes them. Downloads stay plain HTTP.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import mmap
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from weightvault.dedup.commits import find_repo
from weightvault.dedup.tokens import live_digest
from weightvault.dedup.uploads import store_file
from weightvault.dedup.xet import hashing, shard as shards, staging, xorb as xorbs
from weightvault.errors import (AccessDenied, ChecksumMismatch, ChunkNotFound, Unauthorized, UsageError, XetError,
                                XetStagingFull)
from weightvault.store.models import Token

from .auth import ReadAccess, VaultDep, WriteAccess, bearer
from .lookup import kind_of
from .spool import spool_body, tmp_dir

router = APIRouter(tags=["xet"])

#: Seconds a Xet token lives; hf_xet asks for a new one (same route) before it expires.
TOKEN_TTL = 3600


@dataclass(frozen=True)
class XetToken:
    owner: int   # id of the bearer token it was issued to
    scope: str   # read | write
    repo: str    # "<kind>/<ns>/<name>"
    revision: str


def _sign(digest: str, payload: bytes) -> str:
    return hmac.new(digest.encode(), b"xet\n" + payload, hashlib.sha256).hexdigest()


def issue(vault, secret: str, scope: str, repo: str, revision: str) -> tuple[str, int]:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    with vault.catalog.read_session() as s:
        owner = s.scalar(select(Token.id).where(Token.digest == digest))
    exp = int(time.time()) + TOKEN_TTL
    payload = json.dumps({"o": owner, "s": scope, "r": repo, "v": revision, "e": exp}, separators=(",", ":")).encode()
    return f"xet_{base64.urlsafe_b64encode(payload).decode().rstrip('=')}.{_sign(digest, payload)}", exp


def check(request: Request, need: str) -> XetToken:
    """The Xet token of a CAS request: 401 if absent, forged, expired or revoked; 403 if it may only read."""
    secret = bearer(request) or ""
    body, _, sig = secret.removeprefix("xet_").partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        fields = json.loads(payload)
        token = XetToken(int(fields["o"]), str(fields["s"]), str(fields["r"]), str(fields["v"]))
        exp = int(fields["e"])
    except (ValueError, KeyError, TypeError, RecursionError):
        raise Unauthorized("a Xet token from xet-read-token or xet-write-token is required") from None
    with request.app.state.vault.catalog.read_session() as s:
        digest = live_digest(s, token.owner)  # None once the issuing token is revoked or expired
    if digest is None or not hmac.compare_digest(_sign(digest, payload), sig) or exp < time.time():
        raise Unauthorized("the Xet token is invalid or expired: ask for a new one")
    if need == "write" and token.scope != "write":
        raise AccessDenied("this Xet token may only read: ask xet-write-token for one that writes")
    return token


def _token_route(request: Request, vault, access, secret: str | None, scope: str, t: str, ns: str, name: str,
                 rev: str) -> JSONResponse:
    kind, repo = kind_of(t), f"{ns}/{name}"
    with vault.catalog.read_session() as s:
        access.check_visible(find_repo(s, repo, kind))
    if secret is None:
        raise Unauthorized("Xet tokens are issued to token holders: Authorization: Bearer <token>")
    token, exp = issue(vault, secret, scope, f"{kind}/{repo}", rev)
    cas = str(request.base_url).rstrip("/")
    return JSONResponse({"accessToken": token, "exp": exp, "casUrl": cas},
                        headers={"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp)})


@router.get("/api/{t}/{ns}/{name}/xet-write-token/{rev:path}", summary="A Xet token that uploads (hf_xet)")
def write_token(request: Request, vault: VaultDep, access: WriteAccess, t: str, ns: str, name: str,
                rev: str) -> JSONResponse:
    return _token_route(request, vault, access, access.token, "write", t, ns, name, rev)


@router.get("/api/{t}/{ns}/{name}/xet-read-token/{rev:path}", summary="A Xet token that reads (hf_xet)")
def read_token(request: Request, vault: VaultDep, access: ReadAccess, t: str, ns: str, name: str,
               rev: str) -> JSONResponse:
    return _token_route(request, vault, access, access.token, "read", t, ns, name, rev)


@router.post("/v1/xorbs/{prefix}/{xorb_hash}", summary="Upload a xorb (Xet CAS)")
async def upload_xorb(request: Request, vault: VaultDep, prefix: str, xorb_hash: str) -> dict:
    token = check(request, "write")
    if prefix != "default":
        raise UsageError("the only xorb prefix is 'default'")
    try:
        want = hashing.from_hex(xorb_hash)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    body = await spool_body(request, vault, limit=xorbs.MAX_BODY_BYTES)

    def work() -> bool:
        with _mapped(body.path) as data:
            xorb = xorbs.parse(data, want)
        _check_room(request, vault, token, body.size)
        return staging.stage_xorb(vault, token.owner, body.path, xorb)

    try:
        inserted = await run_in_threadpool(work)
    finally:
        body.discard()
    return {"was_inserted": inserted}


@router.post("/v1/shards", summary="Upload a shard: the files' reconstructions (Xet CAS)")
async def upload_shard(request: Request, vault: VaultDep) -> dict:
    token = check(request, "write")
    body = await spool_body(request, vault, limit=shards.MAX_SHARD_BYTES)

    def work() -> None:
        with _mapped(body.path) as data:
            files = staging.check_shard(vault, token.owner, shards.parse(data))
        _check_room(request, vault, token, body.size)
        staging.stage_files(vault, token.owner, files)

    try:
        await run_in_threadpool(work)
    finally:
        body.discard()
    return {"result": 1}


@contextmanager
def _mapped(path: Path) -> Iterator[bytes | mmap.mmap]:
    """A spooled body, mapped rather than read: concurrent 65 MB xorbs stay in the page cache, not the heap."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            yield m


def _check_room(request: Request, vault, token: XetToken, size: int) -> None:
    limit = request.app.state.settings.xet_staging_bytes
    if staging.staged_bytes(vault, token.owner) + size > limit:
        raise XetStagingFull(f"more than {limit} bytes of Xet uploads are waiting for a commit under this token: "
                             "commit them first")


@router.get("/v1/chunks/{prefix}/{chunk_hash}", summary="Global deduplication query (Xet CAS)")
def query_chunk(request: Request, vault: VaultDep, prefix: str, chunk_hash: str) -> Response:
    check(request, "read")
    if prefix not in ("default-merkledb", "default"):  # the spec names the first, hf_xet 1.8 sends the second
        raise UsageError("the chunk prefix is 'default-merkledb'")
    try:
        raw = hashing.from_hex(chunk_hash)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    answer = staging.dedup_answer(vault, raw)
    if answer is None:
        raise ChunkNotFound("no stored file holds this chunk")
    return Response(answer, media_type="application/octet-stream")


# -- the commit that names Xet-uploaded files -----------------------------------------------

def _owner(vault, access) -> int | None:
    digest = hashlib.sha256((access.token or "").encode()).hexdigest()
    with vault.catalog.read_session() as s:
        return s.scalar(select(Token.id).where(Token.digest == digest))


def store_staged(vault, access, repo_name: str, wanted: dict[str, str]) -> dict[str, str]:
    """Rebuild and store the files (path -> sha256) this token staged through Xet; {sha256: path} of those stored.

    Each goes through ``store_file``, the path every LFS upload takes, so it is
    deduplicated and coded like any other; a file whose bytes do not hash to the
    sha256 the commit names is refused and nothing of it is stored.
    """
    owner = _owner(vault, access)
    done: dict[str, str] = {}
    for path, sha in wanted.items():
        record = staging.staged_file(vault, owner, sha) if owner is not None and sha not in done else None
        if record is None:
            continue
        try:
            rebuilt = staging.rebuild(vault, owner, sha, record, tmp_dir(vault))
        except (XetError, ChecksumMismatch) as exc:  # say which file
            raise type(exc)(f"{path}: {exc}") from None
        try:
            store_file(vault, repo_name, rebuilt, path)
        finally:
            rebuilt.unlink(missing_ok=True)
        staging.index_file(vault, owner, sha, record)
        done[sha] = path
    return done


def finish(vault, access, committed: set[str]) -> None:
    """After a commit landed: drop the staging of the files it names and the xorbs nothing staged still uses."""
    owner = _owner(vault, access)
    if committed and owner is not None:
        staging.finish(vault, owner, sorted(committed))
