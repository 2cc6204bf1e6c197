"""Server settings, read once from the environment when the app is built.

``weightvault serve`` turns its options into these variables so that every
uvicorn worker (and every node) builds the same app from the environment alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class ServerSettings:
    #: ``WEIGHTVAULT_ANONYMOUS_READS``: downloads and listings need no token (private repos still do).
    anonymous_reads: bool = False
    #: ``WEIGHTVAULT_UPSTREAM``: a hub to fetch missing repos from (pull-through mirror), e.g. https://huggingface.co.
    upstream: str | None = None
    #: ``WEIGHTVAULT_UPSTREAM_TOKEN``: bearer token sent to the upstream hub.
    upstream_token: str | None = None
    #: ``WEIGHTVAULT_UPLOAD_URL_TTL``: seconds an LFS upload URL stays valid (it carries its own signature).
    upload_url_ttl: int = 3600
    #: ``WEIGHTVAULT_TREE_PAGE``: tree entries per page before a ``Link: rel="next"`` (the hub uses 1000).
    tree_page_size: int = 1000
    #: ``WEIGHTVAULT_LIST_PAGE``: repos per page of ``/api/models`` listings, and the largest ``limit`` (hub: 1000).
    list_page_size: int = 1000
    #: ``WEIGHTVAULT_XET_STAGING_BYTES``: bytes of Xet xorbs one bearer token may have waiting for a commit.
    xet_staging_bytes: int = 64 << 30
    #: ``WEIGHTVAULT_MAX_JSON_BYTES``: body limit of JSON and form routes (create, preupload, batch, paths-info...).
    max_json_bytes: int = 4 << 20
    #: ``WEIGHTVAULT_MAX_COMMIT_BYTES``: body limit of an NDJSON commit (small files travel base64 inside it).
    max_commit_bytes: int = 256 << 20
    #: ``WEIGHTVAULT_MAX_PART_BYTES``: body limit of one REST upload part (S3's part limit).
    max_part_bytes: int = 5 << 30
    #: ``WEIGHTVAULT_MAX_UPLOAD_BYTES``: largest file an LFS batch will sign an upload URL for.
    max_upload_bytes: int = 1 << 40
    #: ``WEIGHTVAULT_MAX_BUSY``: uploads and commits stored at once (each codes content on a thread).
    max_busy: int = 4
    #: ``WEIGHTVAULT_BUSY_WAIT``: seconds a request waits for one of those slots before a 503 with Retry-After.
    busy_wait: float = 60.0

    @classmethod
    def from_env(cls) -> "ServerSettings":
        env = os.environ
        return cls(
            anonymous_reads=env.get("WEIGHTVAULT_ANONYMOUS_READS", "").lower() in _TRUE,
            upstream=(env.get("WEIGHTVAULT_UPSTREAM") or "").rstrip("/") or None,
            upstream_token=env.get("WEIGHTVAULT_UPSTREAM_TOKEN") or None,
            upload_url_ttl=int(env.get("WEIGHTVAULT_UPLOAD_URL_TTL", 3600)),
            tree_page_size=int(env.get("WEIGHTVAULT_TREE_PAGE", 1000)),
            list_page_size=int(env.get("WEIGHTVAULT_LIST_PAGE", 1000)),
            xet_staging_bytes=int(env.get("WEIGHTVAULT_XET_STAGING_BYTES", 64 << 30)),
            max_json_bytes=int(env.get("WEIGHTVAULT_MAX_JSON_BYTES", cls.max_json_bytes)),
            max_commit_bytes=int(env.get("WEIGHTVAULT_MAX_COMMIT_BYTES", cls.max_commit_bytes)),
            max_part_bytes=int(env.get("WEIGHTVAULT_MAX_PART_BYTES", cls.max_part_bytes)),
            max_upload_bytes=int(env.get("WEIGHTVAULT_MAX_UPLOAD_BYTES", cls.max_upload_bytes)),
            max_busy=int(env.get("WEIGHTVAULT_MAX_BUSY", cls.max_busy)),
            busy_wait=float(env.get("WEIGHTVAULT_BUSY_WAIT", cls.busy_wait)),
        )
