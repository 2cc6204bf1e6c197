"""Pack files: many frames in one immutable object, written once, read by range.

Layout (little-endian)::

    pack   := MAGIC entry*
    entry  := u32 length, u32 crc32(payload), payload[length]

The store does not interpret payloads (they are codec frames); the per-entry
CRC lets ``verify`` and ``gc`` check a pack without knowing any codec.

A pack is registered in the catalog *before* it is uploaded, marked
unreferenced; the ingest that fills it clears the mark in the same transaction
that commits its frames. A crash in between leaves a marked pack that ``gc``
removes after its grace period, and never an object the catalog doesn't know.
"""
from __future__ import annotations

import os
import struct
import tempfile
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sqlalchemy import update

from weightvault.errors import PackClaimLost, PackCorrupt

from . import leftovers
from .backends import ObjectBackend
from .db import Catalog
from .models import Pack, utcnow

MAGIC = b"WVPACK\x00\x01"
ENTRY = struct.Struct("<II")


@dataclass(frozen=True)
class Location:
    """Where an entry's payload lives: pack name, payload offset, payload size."""

    pack: str
    offset: int
    size: int


class PackWriter:
    """Appends entries to a spool file and ships it as a pack when it is full.

    ``add`` is cheap; ``flush`` makes everything added so far durable in the
    backend. Pack ids are returned by ``flush`` for the caller's final
    transaction to claim (``claim_packs``).
    """

    def __init__(self, catalog: Catalog, backend: ObjectBackend, spool_dir: Path, target_bytes: int) -> None:
        self.catalog = catalog
        self.backend = backend
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.target_bytes = target_bytes
        self.shipped: dict[str, int] = {}  # pack name -> catalog id
        self._file = None
        self._spool: Path | None = None
        self._name = ""
        self._size = 0

    def add(self, payload: bytes | memoryview) -> Location:
        if self._file is None:
            self._open()
        header = ENTRY.pack(len(payload), zlib.crc32(payload))
        self._file.write(header)
        self._file.write(payload)
        loc = Location(self._name, self._size + ENTRY.size, len(payload))
        self._size += ENTRY.size + len(payload)
        if self._size >= self.target_bytes:
            self._ship()
        return loc

    def flush(self) -> dict[str, int]:
        if self._file is not None:
            self._ship()
        return dict(self.shipped)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._spool.unlink(missing_ok=True)
            self._file = None

    def _open(self) -> None:
        self._name = f"packs/{uuid.uuid4().hex[:2]}/{uuid.uuid4().hex}"
        fd, path = tempfile.mkstemp(dir=self.spool_dir, prefix=leftovers.prefix("spool"))
        self._file = os.fdopen(fd, "w+b")
        self._spool = Path(path)
        self._file.write(MAGIC)
        self._size = len(MAGIC)

    def _ship(self) -> None:
        f, name, size = self._file, self._name, self._size
        self._file = None
        f.flush()
        path = self._spool
        try:
            with self.catalog.write_session() as s:
                pack = Pack(name=name, size=size, condemned_at=utcnow())
                s.add(pack)
                s.flush()
                pack_id = pack.id
            self.backend.put_file(name, path)
        finally:
            f.close()
            path.unlink(missing_ok=True)
        self.shipped[name] = pack_id


def claim_packs(session, pack_ids: list[int]) -> None:
    """Inside the committing transaction: mark the packs referenced, or fail if gc took one."""
    if not pack_ids:
        return
    result = session.execute(update(Pack).where(Pack.id.in_(pack_ids)).values(condemned_at=None))
    if result.rowcount != len(set(pack_ids)):
        raise PackClaimLost()


def iter_entries(backend: ObjectBackend, name: str, size: int, block: int = 16 << 20) -> Iterator[tuple[int, bytes]]:
    """Walk a whole pack, checking every entry's length and CRC: yields (payload offset, payload)."""
    head = backend.read(name, 0, len(MAGIC))
    if head != MAGIC:
        raise PackCorrupt(f"{name}: bad magic")
    pos = len(MAGIC)
    buf, buf_start = b"", pos
    while pos < size:
        need_end = pos + ENTRY.size
        if need_end > size:
            raise PackCorrupt(f"{name}: truncated entry header at {pos}")
        if need_end > buf_start + len(buf):
            buf_start, buf = pos, backend.read(name, pos, min(block, size - pos))
        length, crc = ENTRY.unpack_from(buf, pos - buf_start)
        start, end = pos + ENTRY.size, pos + ENTRY.size + length
        if end > size:
            raise PackCorrupt(f"{name}: entry at {pos} runs past the end of the pack")
        if end > buf_start + len(buf):
            buf_start, buf = pos, backend.read(name, pos, min(max(block, end - pos), size - pos))
        payload = buf[start - buf_start:end - buf_start]
        if zlib.crc32(payload) != crc:
            raise PackCorrupt(f"{name}: entry at {pos} fails its CRC")
        yield start, payload
        pos = end
