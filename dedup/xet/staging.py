"""Xet uploads between their xorbs and the commit that names their files, kept in the object store.

Layout (any node sharing the bucket can finish what another started):

- ``xet/staging/<owner>/xorbs/<hash>``: a verified xorb body, as the client sent it;
  ``<hash>.chunks`` beside it lists its chunks and is written last (a xorb is
  staged once its chunk list exists).
- ``xet/staging/<owner>/files/<sha256>``: a file's reconstruction terms from a
  verified shard, named by the sha256 a commit will name it by.
- ``xet/index/<hash>``: a xorb whose staging was dropped, as pointers into stored
  files (chunk hash, size, file sha256, offset). hf_xet keeps the shards it
  uploaded and deduplicates later uploads against their xorbs, so a later shard
  may name a xorb the server dropped long ago; its bytes are read back from the store.
- ``xet/chunks/<hash>``: the indexed xorb holding a chunk, for the chunks hf_xet asks
  about in a global deduplication query (``dedup_answer``).

``owner`` is the id of the bearer token the Xet token was issued to: staging is
private to it and bounded per owner. gc drops staging older than a day.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from weightvault.errors import BadShard, ChecksumMismatch, ObjectMissing, XetContentMissing
from weightvault.store import Vault, leftovers
from weightvault.store.models import File

from ..reader import Reader
from . import hashing, shard as shards, xorb as xorbs
from .shard import FileInfo, Shard

PREFIX = "xet/staging/"
INDEX = "xet/index/"
CHUNKS = "xet/chunks/"
#: hf_xet asks the server about the first chunk of each file and about chunks whose hash's last
#: u64 is 0 mod 1024 (xet-core MDB_SHARD_GLOBAL_DEDUP_CHUNK_MODULUS); only those are indexed.
GLOBAL_DEDUP_MODULUS = 1024
#: An answer also lists the xorbs that follow the chunk's xorb in its file, up to this many: a file
#: spans a xorb per 64 MiB and hf_xet queries only about one chunk in 1024, so without them the
#: tail of a large file is sent again (91.6 MB FP32 base from an empty client cache: 23.5 MB sent
#: with the chunk's xorb alone).
NEIGHBOUR_XORBS = 4
#: How long a client may deduplicate against an answer (the footer's key expiry): stored files
#: can be deleted, so answers are not forever.
DEDUP_ANSWER_TTL = 24 * 3600
_STAGED = struct.Struct("<32sIIIB")    # chunk hash, size, offset, stored bytes, scheme
_INDEXED = struct.Struct("<32sI32sQ")  # chunk hash, size, file sha256 (zeros: none), offset in that file


@dataclass(frozen=True)
class ChunkRef:
    hash: bytes
    size: int
    # staged: where in the xorb body; indexed: which stored file and where
    offset: int
    stored: int = 0
    scheme: int = 0
    sha256: bytes | None = None


@dataclass(frozen=True)
class XorbChunks:
    hash: bytes
    chunks: list[ChunkRef]
    staged: bool


def _owner_prefix(owner: int) -> str:
    return f"{PREFIX}{int(owner)}/"


def staged_bytes(vault: Vault, owner: int) -> int:
    return sum(st.size for st in vault.backend.list(_owner_prefix(owner)))


# -- xorbs ----------------------------------------------------------------------------------

def stage_xorb(vault: Vault, owner: int, body_path: Path, xorb: xorbs.Xorb) -> bool:
    """Keep a verified xorb; False if this owner had it staged already.

    A xorb sent again is written again all the same: gc sweeps staging by age, and
    a session that sends it anew must not lose it to the sweep of the old copy.
    """
    name = f"{_owner_prefix(owner)}xorbs/{hashing.to_hex(xorb.hash)}"
    try:
        vault.backend.size(name + ".chunks")
        inserted = False
    except ObjectMissing:
        inserted = True
    vault.backend.put_file(name, body_path)
    listing = b"".join(_STAGED.pack(c.hash, c.size, c.offset, c.stored, c.scheme) for c in xorb.chunks)
    _put_bytes(vault, name + ".chunks", listing)
    return inserted


def _put_bytes(vault: Vault, name: str, data: bytes) -> None:
    tmp_dir = vault.settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmp_dir, prefix=leftovers.prefix("xet")) as tmp:
        tmp.write(data)
        tmp.flush()
        vault.backend.put_file(name, Path(tmp.name))


def _get_bytes(vault: Vault, name: str) -> bytes:
    return vault.backend.read(name, 0, vault.backend.size(name))


def xorb_chunks(vault: Vault, owner: int, xorb_hash: bytes) -> XorbChunks:
    """The chunks of a xorb this owner staged, else of an indexed one; XetContentMissing if neither."""
    hexed = hashing.to_hex(xorb_hash)
    try:
        raw = _get_bytes(vault, f"{_owner_prefix(owner)}xorbs/{hexed}.chunks")
        chunks = [ChunkRef(h, size, off, stored, scheme) for h, size, off, stored, scheme in _STAGED.iter_unpack(raw)]
        return XorbChunks(xorb_hash, chunks, True)
    except ObjectMissing:
        pass
    try:
        raw = _get_bytes(vault, INDEX + hexed)
    except ObjectMissing:
        raise XetContentMissing(f"xorb {hexed} was never uploaded") from None
    chunks = [ChunkRef(h, size, off, sha256=None if sha == bytes(32) else sha)
              for h, size, sha, off in _INDEXED.iter_unpack(raw)]
    return XorbChunks(xorb_hash, chunks, False)


# -- shards ---------------------------------------------------------------------------------

def check_shard(vault: Vault, owner: int, shard: Shard) -> list[FileInfo]:
    """Verify a parsed shard against the xorbs it names; the files it describes (each with its sha256)."""
    known: dict[bytes, XorbChunks] = {}

    def chunks_of(h: bytes) -> XorbChunks:
        if h not in known:
            known[h] = xorb_chunks(vault, owner, h)
        return known[h]

    for info in shard.xorbs:
        have = chunks_of(info.hash).chunks
        if [(h, size) for h, _, size in info.chunks] != [(c.hash, c.size) for c in have]:
            raise BadShard(f"the CAS entry of xorb {hashing.to_hex(info.hash)} does not list its chunks")
    for f in shard.files:
        name = hashing.to_hex(f.hash)
        if f.sha256 is None:
            raise BadShard(f"file {name} has no metadata entry with its sha256")
        leaves = []
        for t in f.terms:
            have = chunks_of(t.xorb).chunks
            if t.end > len(have):
                raise BadShard(f"file {name} uses chunks [{t.start}, {t.end}) of a xorb of {len(have)}")
            span = have[t.start:t.end]
            if t.size != sum(c.size for c in span):
                raise BadShard(f"file {name}: a term's size disagrees with its chunks")
            if t.verification != hashing.range_hash([c.hash for c in span]):
                raise BadShard(f"file {name}: a term's verification hash is wrong or missing")
            leaves += [(c.hash, c.size) for c in span]
        if hashing.file_hash(leaves) != f.hash:
            raise BadShard(f"file {name}: its terms hash to {hashing.to_hex(hashing.file_hash(leaves))}")
    return shard.files


def stage_files(vault: Vault, owner: int, files: list[FileInfo]) -> None:
    for f in files:
        record = {"hash": hashing.to_hex(f.hash), "size": sum(t.size for t in f.terms),
                  "terms": [[hashing.to_hex(t.xorb), t.start, t.end, t.size] for t in f.terms]}
        _put_bytes(vault, f"{_owner_prefix(owner)}files/{hashing.to_hex(f.sha256)}", json.dumps(record).encode())


def staged_file(vault: Vault, owner: int, sha256: str) -> dict | None:
    try:
        return json.loads(_get_bytes(vault, f"{_owner_prefix(owner)}files/{sha256}"))
    except (ObjectMissing, ValueError):
        return None


# -- rebuilding a committed file ------------------------------------------------------------

def _file_id(vault: Vault, sha256: bytes) -> int | None:
    with vault.catalog.read_session() as s:
        return s.scalar(select(File.id).where(File.sha256 == sha256.hex()))


def _term_bytes(vault: Vault, owner: int, reader: Reader, xc: XorbChunks, start: int, end: int):
    """Yield the unpacked bytes of chunks [start, end), each checked against its hash."""
    span = xc.chunks[start:end]
    if xc.staged:
        name = f"{_owner_prefix(owner)}xorbs/{hashing.to_hex(xc.hash)}"
        base = span[0].offset
        try:
            body = vault.backend.read(name, base, span[-1].offset + 8 + span[-1].stored - base)
        except ObjectMissing:  # swept by gc since the shard named it
            raise XetContentMissing(f"staged xorb {hashing.to_hex(xc.hash)} is gone: upload again") from None
        for c in span:
            data = xorbs.decompress(body[c.offset - base + 8:c.offset - base + 8 + c.stored], c.scheme, c.size)
            if hashing.chunk_hash(data) != c.hash:
                raise XetContentMissing(f"staged xorb {hashing.to_hex(xc.hash)} is damaged")
            yield data
        return
    runs: list[list[ChunkRef]] = []  # chunks that sit back to back in one stored file: one read each
    for c in span:
        if runs and runs[-1][-1].sha256 == c.sha256 and runs[-1][-1].offset + runs[-1][-1].size == c.offset:
            runs[-1].append(c)
        else:
            runs.append([c])
    for run in runs:
        file_id = _file_id(vault, run[0].sha256) if run[0].sha256 else None
        if file_id is None:
            raise XetContentMissing(f"xorb {hashing.to_hex(xc.hash)} is no longer available: upload again")
        pending, buf = iter(run), bytearray()
        chunk = next(pending)
        for piece in reader.iter_file(file_id, run[0].offset, run[-1].offset + run[-1].size):
            buf += piece
            while chunk is not None and len(buf) >= chunk.size:
                data = bytes(buf[:chunk.size])
                del buf[:chunk.size]
                if hashing.chunk_hash(data) != chunk.hash:
                    raise XetContentMissing(f"xorb {hashing.to_hex(xc.hash)} is no longer available: upload again")
                yield data
                chunk = next(pending, None)
        if chunk is not None:
            raise XetContentMissing(f"xorb {hashing.to_hex(xc.hash)} is no longer available: upload again")


def rebuild(vault: Vault, owner: int, sha256: str, record: dict, out_dir: Path) -> Path:
    """Write the file a staged record describes to a temp file; ChecksumMismatch unless it hashes to ``sha256``."""
    reader = Reader(vault)
    fd, name = tempfile.mkstemp(dir=out_dir, prefix=leftovers.prefix("xet"))
    h, size = hashlib.sha256(), 0
    try:
        with open(fd, "wb") as out:
            listings: dict[str, XorbChunks] = {}
            for xorb_hex, start, end, _ in record["terms"]:
                if xorb_hex not in listings:
                    listings[xorb_hex] = xorb_chunks(vault, owner, hashing.from_hex(xorb_hex))
                xc = listings[xorb_hex]
                for data in _term_bytes(vault, owner, reader, xc, start, end):
                    h.update(data)
                    out.write(data)
                    size += len(data)
        if h.hexdigest() != sha256:
            raise ChecksumMismatch(f"the file's bytes hash to sha256 {h.hexdigest()}, not {sha256}")
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def index_file(vault: Vault, owner: int, sha256: str, record: dict) -> None:
    """Point the chunks of a stored file's xorbs at that file, so the xorbs can be dropped."""
    offset, updates = 0, {}
    first_hex, first_start = record["terms"][0][:2] if record["terms"] else (None, None)
    firsts = {first_hex: {first_start}} if first_hex else {}
    for xorb_hex, start, end, _ in record["terms"]:
        xc = xorb_chunks(vault, owner, hashing.from_hex(xorb_hex))
        slots = updates.setdefault(xorb_hex, {})
        for i in range(start, end):
            slots[i] = offset
            offset += xc.chunks[i].size
    raw_sha = bytes.fromhex(sha256)
    order = list(updates)  # the file's xorbs, in file order
    for n, (xorb_hex, slots) in enumerate(updates.items()):
        xc = xorb_chunks(vault, owner, hashing.from_hex(xorb_hex))
        rows = [(c.hash, c.size, c.sha256 or bytes(32), c.offset if not xc.staged else 0) for c in xc.chunks]
        if xc.staged:  # keep what an older index of the same xorb knew
            try:
                old = list(_INDEXED.iter_unpack(_get_bytes(vault, INDEX + xorb_hex)))
                if len(old) == len(rows):
                    rows = old
            except ObjectMissing:
                pass
        for i, off in slots.items():
            rows[i] = (rows[i][0], rows[i][1], raw_sha, off)
        _put_bytes(vault, INDEX + xorb_hex, b"".join(_INDEXED.pack(*r) for r in rows))
        answer = b"".join(hashing.from_hex(h) for h in order[n:n + 1 + NEIGHBOUR_XORBS])
        for i in slots:
            eligible = int.from_bytes(rows[i][0][24:], "little") % GLOBAL_DEDUP_MODULUS == 0
            if eligible or i in firsts.get(xorb_hex, ()):
                _put_bytes(vault, CHUNKS + hashing.to_hex(rows[i][0]), answer)


def finish(vault: Vault, owner: int, sha256s: list[str]) -> None:
    """After a commit: drop the files' records, and the staged xorbs no remaining record uses whose every
    chunk a stored file now holds (the index serves them from then on)."""
    prefix = _owner_prefix(owner)
    for sha in sha256s:
        vault.backend.delete(f"{prefix}files/{sha}")
    still_used = set()
    for st in list(vault.backend.list(prefix + "files/")):
        record = staged_file(vault, owner, st.name.rsplit("/", 1)[-1])
        still_used |= {t[0] for t in (record or {}).get("terms", [])}
    for st in list(vault.backend.list(prefix + "xorbs/")):
        if not st.name.endswith(".chunks"):
            continue
        hexed = st.name.rsplit("/", 1)[-1].removesuffix(".chunks")
        if hexed in still_used:
            continue
        try:
            indexed = list(_INDEXED.iter_unpack(_get_bytes(vault, INDEX + hexed)))
        except ObjectMissing:
            continue  # none of it was committed: gc drops it with abandoned staging
        if any(sha == bytes(32) for _, _, sha, _ in indexed):
            continue  # chunks no stored file holds may still be named by this client's next shard
        vault.backend.delete(st.name)  # the chunk list first: without it the xorb is not staged
        vault.backend.delete(st.name.removesuffix(".chunks"))


def dedup_answer(vault: Vault, chunk_hash: bytes) -> bytes | None:
    """The shard answering a global deduplication query for ``chunk_hash``; None when no stored file holds it.

    It lists the indexed xorb holding the chunk and the ones after it in the same
    file. Chunks whose file left the store are listed under a random hash, so
    their indices stay right and no client can match them.
    """
    try:
        pointer = _get_bytes(vault, CHUNKS + hashing.to_hex(chunk_hash))
    except ObjectMissing:
        return None
    listed = []
    for k in range(0, min(len(pointer), 32 * (1 + NEIGHBOUR_XORBS)), 32):
        xorb_hash = pointer[k:k + 32]
        try:
            listed.append((xorb_hash, list(_INDEXED.iter_unpack(_get_bytes(vault, INDEX + hashing.to_hex(xorb_hash))))))
        except (ObjectMissing, struct.error):
            continue
    shas = {sha.hex() for _, rows in listed for _, _, sha, _ in rows if sha != bytes(32)}
    with vault.catalog.read_session() as s:
        present = {bytes.fromhex(h) for h in s.scalars(select(File.sha256).where(File.sha256.in_(shas)))}
    if not any(h == chunk_hash and sha in present for _, rows in listed for h, _, sha, _ in rows):
        return None
    xorbs_listed = [(xorb_hash, [(h if sha in present else os.urandom(32), size) for h, size, sha, _ in rows])
                    for xorb_hash, rows in listed]
    now = int(time.time())
    return shards.dedup_response(xorbs_listed, os.urandom(32), now, now + DEDUP_ANSWER_TTL)
