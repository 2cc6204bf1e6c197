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
        )
