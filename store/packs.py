"""Pack files: many entries in one immutable object, written once, read by range.

Layout (little-endian; docs/FORMAT.md "Pack", golden files in tests/golden/packs)::

    pack    := MAGIC_V2 entry*                    MAGIC_V2 = "WVPACK" 0x00 0x02
    entry   := header(52) payload[length]
    header  := u32 length, u32 crc32(payload), u8 kind, 3 zero bytes, u32 index, key[32],
               u32 crc32(header[0:48])

``kind`` says what the payload is: a codec frame (``FRAME``: key = sha256 of the object it
codes, index = its frame number) or a catalog record (``RECORD``: key = sha256 of the
payload, store/journal.py). With the header CRC a reader can trust a header whose payload
is damaged and go on to the next entry, so one bad frame costs that frame, not the pack.
A pack is named by its content (``packs/<h[:2]>/<h>``, h = sha256 of the whole pack, 40 hex),
so the bucket alone says which entry is which (``weightvault recover``).

Version 1 packs (``"WVPACK" 0x00 0x01``, entry := u32 length, u32 crc32, payload; uuid
names) stay readable: the read path uses catalog offsets only, and ``iter_entries``
parses both headers. Their entries carry no key, so recover cannot place them.

The store does not interpret payloads; the per-entry CRCs let ``verify`` and ``gc`` check
a pack without knowing any codec.

A pack is registered in the catalog *before* it is uploaded, marked
unreferenced; the ingest that fills it clears the mark in the same transaction
that commits its frames. A crash in between leaves a marked pack that ``gc``
removes after its grace period, and never an object the catalog doesn't know.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import struct
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from isal.isal_zlib import crc32
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from weightvault.errors import PackClaimLost, PackCorrupt

from . import leftovers
from .backends import ObjectBackend
from .db import Catalog
from .models import Pack, utcnow

MAGIC_V1 = b"WVPACK\x00\x01"
MAGIC = b"WVPACK\x00\x02"
ENTRY_V1 = struct.Struct("<II")
ENTRY_BODY = struct.Struct("<IIB3xI32s")
ENTRY = struct.Struct("<IIB3xI32sI")  # the v2 header: ENTRY_BODY + its CRC
FRAME, RECORD = 1, 2
KINDS = (FRAME, RECORD)
#: Characters of the content hash in a pack's name (160 bits; names fit the catalog's 64).
NAME_HEX = 40
_spool_ids = itertools.count()


def pack_name(digest_hex: str, prefix: str = "packs") -> str:
    return f"{prefix}/{digest_hex[:2]}/{digest_hex[:NAME_HEX]}"


def payload_crc(payload) -> int:
    """The CRC an entry's header carries for its payload (``PackWriter.add``'s ``crc``): zlib's CRC-32,
    taken with ISA-L's folding kernel. zlib's own ran at 2.4 GB/s here, 26 ms of encode-thread CPU
    for the FP32 base's 74 MB of frames; ISA-L's 23-36 GB/s (the same values)."""
    return crc32(payload)


def entry_header(payload, kind: int, key: bytes, index: int, crc: int | None = None) -> bytes:
    """``crc``: payload_crc(payload), if the caller took it already."""
    body = ENTRY_BODY.pack(len(payload), payload_crc(payload) if crc is None else crc, kind, index, key)
    return body + crc32(body).to_bytes(4, "little")


@dataclass(frozen=True)
class Location:
    """Where an entry's payload lives: pack, payload offset, payload size. Until the pack
    ships, ``pack`` is the writer's spool key; ``PackWriter.flush`` maps it to the catalog id."""

    pack: str
    offset: int
    size: int


@dataclass(frozen=True)
class Entry:
    """One entry as read back from a pack; ``key`` and ``index`` are empty in a version 1 pack."""

    offset: int      # of the payload in the pack
    size: int
    crc: int
    kind: int
    key: bytes
    index: int
    payload: bytes


#: Payload bytes ``PackWriter.add`` lets wait for its writer thread before it waits too: the
#: thread's CRC, sha256 and write run at ~500 MB/s, the coder hands frames on at up to ~1 GB/s.
WRITE_AHEAD_BYTES = 32 << 20


@dataclass
class _Spool:
    """A pack being filled: its spool key, temp file and running content hash (writer thread only)."""

    key: str
    path: Path
    file: object
    hash: object
    size: int


class PackWriter:
    """Appends entries to a spool file and ships it as a pack when it is full.

    ``add`` is cheap: it places the entry and hands it to the writer's own thread, which
    computes the entry's CRCs and the pack's sha256, writes the spool file and ships full
    packs. An ingest did all of that on its main thread, 0.16 of its 0.68 cpu-s for the
    91 MB FP32 base, while its coder thread waited for frames to be taken. ``flush`` makes
    everything added so far durable in the backend (and raises what the thread hit). Pack
    ids are returned by ``flush`` for the caller's final transaction to claim (``claim_packs``).
    """

    def __init__(self, catalog: Catalog, backend: ObjectBackend, spool_dir: Path, target_bytes: int) -> None:
        self.catalog = catalog
        self.backend = backend
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.target_bytes = target_bytes
        self.shipped: dict[str, int] = {}  # pack name -> catalog id
        self._spool: _Spool | None = None  # the one ``add`` places entries in
        self._open_spools: list[_Spool] = []  # not shipped yet (written or being written)
        self._io: ThreadPoolExecutor | None = None
        self._queued: deque[tuple[Future, int]] = deque()
        self._queued_bytes = 0
        self._failed: BaseException | None = None
        self._aborted = False

    def add(self, payload: bytes | memoryview, key: bytes, index: int, kind: int = FRAME,
            crc: int | None = None) -> Location:
        """Append ``payload`` (not changed afterwards: it is written later) with what it is: for a
        frame, the sha256 (32 bytes) of the object it codes and its frame number. ``crc``: its
        ``payload_crc``, taken by the caller on a thread of its own (the writer's thread is the
        one all of an ingest's bytes go through: the CRC was 17 ms of its work per 91 MB)."""
        if self._failed is not None:
            raise self._failed
        if self._spool is None:
            self._open()
        spool = self._spool
        loc = Location(spool.key, spool.size + ENTRY.size, len(payload))
        spool.size += ENTRY.size + len(payload)
        self._submit(len(payload), self._append, spool, payload, kind, key, index, crc)
        if spool.size >= self.target_bytes:
            self._spool = None
            self._submit(0, self._ship, spool)
        return loc

    def flush(self) -> dict[str, int]:
        if self._spool is not None:
            spool, self._spool = self._spool, None
            self._submit(0, self._ship, spool)
        self._drain(0)
        if self._io is not None:
            self._io.shutdown()
            self._io = None
        if self._failed is not None:
            raise self._failed
        return dict(self.shipped)

    def abort(self) -> None:
        """Drop what is not shipped yet (shipped packs stay unreferenced, for gc)."""
        self._aborted = True
        for future, _ in self._queued:
            future.cancel()
        self._drain(0)
        if self._io is not None:
            self._io.shutdown()
            self._io = None
        for spool in self._open_spools:
            spool.file.close()
            spool.path.unlink(missing_ok=True)
        self._open_spools.clear()
        self._spool = None
        self._aborted = False
        self._failed = None

    def _open(self) -> None:
        fd, path = tempfile.mkstemp(dir=self.spool_dir, prefix=leftovers.prefix("spool"))
        f = os.fdopen(fd, "w+b")
        f.write(MAGIC)
        self._spool = _Spool(f"spool:{os.getpid()}:{next(_spool_ids)}", Path(path), f, hashlib.sha256(MAGIC),
                             len(MAGIC))
        self._open_spools.append(self._spool)

    def _submit(self, nbytes: int, job, *args) -> None:
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wv-pack")
        self._queued.append((self._io.submit(self._guarded, job, *args), nbytes))
        self._queued_bytes += nbytes
        self._drain(WRITE_AHEAD_BYTES)

    def _drain(self, limit: int) -> None:
        """Wait for queued jobs until at most ``limit`` bytes wait (0: all done)."""
        while self._queued and (self._queued_bytes > limit or limit == 0 or self._queued[0][0].done()):
            future, nbytes = self._queued.popleft()
            self._queued_bytes -= nbytes
            if not future.cancelled():
                future.result()  # _guarded keeps the error for add and flush to raise

    def _guarded(self, job, *args) -> None:
        if self._failed is not None or self._aborted:
            return  # a spool after a failed write holds a gap: nothing after it is written or shipped
        try:
            job(*args)
        except BaseException as exc:
            self._failed = exc

    @staticmethod
    def _append(spool: _Spool, payload, kind: int, key: bytes, index: int, crc: int | None) -> None:
        header = entry_header(payload, kind, key, index, crc)
        spool.file.write(header)
        spool.file.write(payload)
        spool.hash.update(header)
        spool.hash.update(payload)

    def _ship(self, spool: _Spool) -> None:
        name = pack_name(spool.hash.hexdigest())
        spool.file.flush()
        try:
            pack_id = self._register(name, spool.size)
            self.backend.put_file(name, spool.path)
        finally:
            spool.file.close()
            spool.path.unlink(missing_ok=True)
            self._open_spools.remove(spool)
        self.shipped[spool.key] = pack_id

    def _register(self, name: str, size: int) -> int:
        """The catalog id of pack ``name``, registered unreferenced. Names are content hashes, so
        a pack another writer already registered holds the same bytes (two ingests of the same
        content): it is shared, its grace period restarted if it is not yet claimed."""
        for _ in range(3):
            try:
                with self.catalog.write_session() as s:
                    existing = s.scalar(select(Pack.id).where(Pack.name == name))
                    if existing is not None:
                        s.execute(update(Pack).where(Pack.id == existing, Pack.condemned_at.is_not(None))
                                  .values(condemned_at=utcnow()))
                        return existing
                    pack = Pack(name=name, size=size, condemned_at=utcnow())
                    s.add(pack)
                    s.flush()
                    return pack.id
            except IntegrityError:
                continue  # registered by a concurrent writer between our query and insert: look again
        raise PackClaimLost()


def claim_packs(session, pack_ids: list[int]) -> None:
    """Inside the committing transaction: mark the packs referenced, or fail if gc took one."""
    if not pack_ids:
        return
    result = session.execute(update(Pack).where(Pack.id.in_(pack_ids)).values(condemned_at=None))
    if result.rowcount != len(set(pack_ids)):
        raise PackClaimLost()


def iter_entries(backend: ObjectBackend, name: str, size: int, block: int = 16 << 20) -> Iterator[Entry]:
    """Walk a whole pack (version 1 or 2), checking every header and CRC; PackCorrupt at the first fault."""
    def fail(problem: PackCorrupt, resumable: bool) -> None:
        raise problem
    yield from scan_entries(backend, name, size, fail, block)


def scan_entries(backend: ObjectBackend, name: str, size: int,
                 on_damage: Callable[[PackCorrupt, bool], None], block: int = 16 << 20) -> Iterator[Entry]:
    """Walk a pack, yielding its sound entries; each fault goes to ``on_damage(error, resumable)``.

    A payload that fails its CRC under a sound version 2 header is skipped and the walk goes
    on (resumable); a bad magic, a damaged header or a truncation ends the walk."""
    head = backend.read(name, 0, min(len(MAGIC), size))
    if head not in (MAGIC, MAGIC_V1):
        return on_damage(PackCorrupt(f"{name}: bad magic (not a weightvault pack)"), False)
    v2 = head == MAGIC
    header = ENTRY if v2 else ENTRY_V1
    pos = len(MAGIC)
    buf, buf_start = b"", pos
    while pos < size:
        need_end = pos + header.size
        if need_end > size:
            return on_damage(PackCorrupt(f"{name}: truncated entry header at {pos}"), False)
        if need_end > buf_start + len(buf):
            buf_start, buf = pos, backend.read(name, pos, min(block, size - pos))
        at = pos - buf_start
        if v2:
            length, crc, kind, index, key, hcrc = ENTRY.unpack_from(buf, at)
            if crc32(buf[at:at + ENTRY_BODY.size]) != hcrc or kind not in KINDS:
                return on_damage(PackCorrupt(f"{name}: entry header at {pos} is damaged"), False)
        else:
            (length, crc), kind, index, key = ENTRY_V1.unpack_from(buf, at), FRAME, 0, b""
        start, end = pos + header.size, pos + header.size + length
        if end > size:
            return on_damage(PackCorrupt(f"{name}: entry at {pos} runs past the end of the pack"), False)
        if end > buf_start + len(buf):
            buf_start, buf = pos, backend.read(name, pos, min(max(block, end - pos), size - pos))
        payload = buf[start - buf_start:end - buf_start]
        pos = end
        if crc32(payload) != crc:
            on_damage(PackCorrupt(f"{name}: entry at {start - header.size} fails its CRC"
                                  + (f" (frame {index} of object {key.hex()[:16]})" if v2 and kind == FRAME else "")),
                      v2)
            if not v2:
                return None
            continue
        yield Entry(start, length, crc, kind, key, index, payload)
