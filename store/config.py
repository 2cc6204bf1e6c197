"""Where the store lives: settings read once from the environment.

Embedded default: a data directory holding ``catalog.sqlite`` and ``packs/``.
Scale-out: ``WEIGHTVAULT_DATABASE_URL`` (PostgreSQL) and ``WEIGHTVAULT_S3_BUCKET``
(S3-compatible, credentials and endpoint from the usual AWS environment or
``WEIGHTVAULT_S3_ENDPOINT_URL``), shared by any number of stateless API nodes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    #: Target size of a pack file. Tens of MiB keeps S3 object counts low while
    #: a ranged read still fetches only the frame it needs.
    pack_target_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike | None = None) -> "Settings":
        root = Path(data_dir or os.environ.get("WEIGHTVAULT_DATA_DIR") or Path.home() / ".weightvault").expanduser()
        url = os.environ.get("WEIGHTVAULT_DATABASE_URL") or f"sqlite:///{root / 'catalog.sqlite'}"
        return cls(
            data_dir=root,
            database_url=url,
            s3_bucket=os.environ.get("WEIGHTVAULT_S3_BUCKET") or None,
            s3_prefix=os.environ.get("WEIGHTVAULT_S3_PREFIX", ""),
            s3_endpoint_url=os.environ.get("WEIGHTVAULT_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None,
            pack_target_bytes=int(os.environ.get("WEIGHTVAULT_PACK_BYTES", 64 * 1024 * 1024)),
        )
