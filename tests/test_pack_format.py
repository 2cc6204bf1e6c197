"""Golden packs (tests/golden/packs/): bytes written by pack versions 1 and 2 and a catalog
record, as docs/FORMAT.md "Pack" and "Record" specify them. The files must keep reading
(old stores open) and the writer must keep producing them byte for byte.

Regenerate after a deliberate format change (and bump the version):
    .venv/bin/python tests/test_pack_format.py
"""
from __future__ import annotations

import hashlib
import json
import struct
import sys
import zlib
from pathlib import Path

import pytest
import zstandard

from weightvault.store.backends import LocalBackend
from weightvault.store.journal import read_record
from weightvault.store.packs import (FRAME, MAGIC, MAGIC_V1, RECORD, PackWriter, entry_header, iter_entries,
                                     pack_name)

GOLDEN = Path(__file__).resolve().parent / "golden" / "packs"
PAYLOADS = [b"first frame payload", b"", bytes(range(256)) * 3]
KEY = hashlib.sha256(b"object").digest()
RECORD_DOC = {"format": 1, "time_ns": 1764720000000000000,
              "ops": [["ref", {"repo": ["model", "org/a"], "name": "main", "commit": ["model", "org/a", "ab" * 20]}]]}


def v2_pack() -> bytes:
    return MAGIC + b"".join(entry_header(p, FRAME, KEY, i) + p for i, p in enumerate(PAYLOADS))


def v1_pack() -> bytes:
    return MAGIC_V1 + b"".join(struct.pack("<II", len(p), zlib.crc32(p)) + p for p in PAYLOADS)


def record_pack() -> bytes:
    payload = zstandard.ZstdCompressor(level=9).compress(json.dumps(RECORD_DOC, separators=(",", ":")).encode())
    return MAGIC + entry_header(payload, RECORD, hashlib.sha256(payload).digest(), 0) + payload


BUILDERS = {"v2.pack": v2_pack, "v1.pack": v1_pack, "record.pack": record_pack}


def test_golden_bytes_are_what_the_writer_writes():
    for name, build in BUILDERS.items():
        assert (GOLDEN / name).read_bytes() == build(), name


def test_golden_packs_read():
    backend = LocalBackend(GOLDEN)
    v2 = list(iter_entries(backend, "v2.pack", (GOLDEN / "v2.pack").stat().st_size))
    assert [e.payload for e in v2] == PAYLOADS
    assert [(e.kind, e.key, e.index) for e in v2] == [(FRAME, KEY, i) for i in range(3)]
    assert v2[0].offset == 8 + 52
    v1 = list(iter_entries(backend, "v1.pack", (GOLDEN / "v1.pack").stat().st_size))
    assert [e.payload for e in v1] == PAYLOADS and v1[0].offset == 8 + 8
    (rec,) = iter_entries(backend, "record.pack", (GOLDEN / "record.pack").stat().st_size)
    assert rec.kind == RECORD and read_record(rec.payload) == RECORD_DOC


def test_names_derive_from_content():
    body = v2_pack()
    h = hashlib.sha256(body).hexdigest()
    assert pack_name(h) == f"packs/{h[:2]}/{h[:40]}"
    assert pack_name(h, "meta").startswith("meta/")


def test_writer_thread_writes_the_golden_bytes(vault):
    """PackWriter writes and ships on its own thread: the pack is still v2.pack byte for byte, and a
    full pack ships before the next entry's (target below one pack)."""
    writer = vault.pack_writer()
    locs = [writer.add(p, KEY, i) for i, p in enumerate(PAYLOADS)]
    shipped = writer.flush()
    (pack_id,) = shipped.values()
    body = v2_pack()
    name = pack_name(hashlib.sha256(body).hexdigest())
    assert vault.backend.size(name) == len(body) and vault.backend.read(name, 0, len(body)) == body
    assert [body[loc.offset:loc.offset + loc.size] for loc in locs] == PAYLOADS
    small = PackWriter(vault.catalog, vault.backend, vault.settings.data_dir / "spool", target_bytes=100)
    locs = [small.add(p, KEY, i) for i, p in enumerate(PAYLOADS)]
    assert len(small.flush()) == 2 and locs[0].pack == locs[1].pack != locs[2].pack
    assert list((vault.settings.data_dir / "spool").iterdir()) == []


def test_writer_thread_failure_reaches_the_caller(vault, monkeypatch):
    """A write or ship that fails on the writer's thread is raised by flush (and by add after it),
    and leaves no spool file; abort drops the packs not shipped."""
    spool = vault.settings.data_dir / "spool"
    writer = vault.pack_writer()
    monkeypatch.setattr(vault.backend, "put_file", lambda name, path: (_ for _ in ()).throw(OSError("disk full")))
    writer.add(PAYLOADS[0], KEY, 0)
    with pytest.raises(OSError, match="disk full"):
        writer.flush()
    with pytest.raises(OSError, match="disk full"):
        writer.add(PAYLOADS[1], KEY, 1)
    writer.abort()
    assert list(spool.iterdir()) == []
    monkeypatch.undo()
    writer.add(PAYLOADS[0], KEY, 0)
    writer.abort()
    assert list(spool.iterdir()) == [] and writer.flush() == {}


if __name__ == "__main__":
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        (GOLDEN / name).write_bytes(build())
    print(f"wrote {len(BUILDERS)} golden packs to {GOLDEN}", file=sys.stderr)
