"""Request bodies to disk: streamed to a temp file under the data dir, hashed on the way.

Nothing here holds a whole body in memory; the store then codes the file from
disk (``store_file`` maps it). Temp files live in ``<data dir>/tmp/api`` so they
sit on the same volume as the spool of packs.
"""
from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from weightvault.dedup.formats import safetensors
from weightvault.errors import PayloadTooLarge
from weightvault.store import Vault, leftovers



@dataclass
class Spooled:
    path: Path
    size: int
    sha256: str

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def tmp_dir(vault: Vault) -> Path:
    path = vault.settings.data_dir / "tmp" / "api"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def spool_body(request: Request, vault: Vault, limit: int | None = None) -> Spooled:
    """Write the request body to a temp file; PayloadTooLarge (413) past ``limit`` bytes."""
    fd, name = tempfile.mkstemp(dir=tmp_dir(vault), prefix=leftovers.prefix("body"))
    h, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if limit is not None and size > limit:
                    raise PayloadTooLarge(f"body is larger than the announced {limit} bytes")
                h.update(chunk)
                out.write(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Spooled(Path(name), size, h.hexdigest())


def content_name(path: Path) -> str:
    """A repo path for content uploaded without one (LFS objects are named by hash only).

    The store splits safetensors into tensors only for ``*.safetensors`` paths,
    so a body whose header parses as safetensors is named like one; anything else is a blob.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "upload.bin"
        (n,) = struct.unpack("<Q", head)
        if n > safetensors.MAX_HEADER_BYTES or 8 + n > size:
            return "upload.bin"
        head += f.read(n)
    try:
        safetensors.parse(head, file_size=size)
    except safetensors.SafetensorsError:
        return "upload.bin"
    return "upload.safetensors"
