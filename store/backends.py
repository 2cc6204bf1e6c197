"""Object backends: where pack files live. One interface, a local folder or S3.

Both give the same guarantees to the pack layer: ``put_file`` is atomic (a
reader sees the whole object or nothing) and durable when it returns, and
``read`` fetches a byte range without reading the rest of the object.
"""
from __future__ import annotations

import mmap
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from weightvault.errors import InvalidName, ObjectMissing

from . import leftovers


@dataclass(frozen=True)
class ObjectStat:
    name: str
    size: int
    mtime: float  # seconds since the epoch


class ObjectBackend(Protocol):
    def put_file(self, name: str, path: Path) -> None: ...
    def read(self, name: str, offset: int, length: int) -> bytes: ...
    def view(self, name: str, offset: int, length: int) -> bytes | memoryview:
        """The same bytes as ``read``, without a copy where the backend can (the read path's call)."""
    def size(self, name: str) -> int: ...
    def delete(self, name: str) -> None: ...
    def list(self, prefix: str = "") -> Iterator[ObjectStat]: ...
    def describe(self) -> str: ...


#: Reads shorter than this are copied with one pread rather than mapped: mapping, faulting in and
#: unmapping cost 40-70 us even for 4 KiB (pread 8-15 us up to 256 KiB), and break even near 1 MiB.
#: A BF16 cast's frames are a few hundred bytes each: 43 of them per read of the file.
MAP_MIN_BYTES = 1 << 20
#: Whole packs kept mapped for reads, at most this many bytes in all. A pack mapped once per
#: read paid its page faults and unmapping on every read: 2.8 MB reads of the FP32 base's pack
#: ran at 6.2 GB of payload per CPU second mapped each time, 22 GB/s from a map kept open, and
#: the faults and munmap were 13% of the server's CPU streaming that file. The bound keeps the
#: server's resident pack pages (page cache, shared) flat whatever it streams.
MAP_CACHE_BYTES = 256 << 20
#: A pack map not read for this long is let go, so that a pack gc deleted (in this process or
#: another) does not keep its disk space for long through the map.
MAP_IDLE_SECONDS = 60.0


class _PackMaps:
    """Read-only maps of whole packs, least recently used first out, bounded in bytes.

    A view keeps its map alive (a memoryview holds the mmap object), so letting a map go
    never pulls bytes from under a reader; the pages go with the last view.
    """

    def __init__(self, capacity: int, idle: float) -> None:
        self.capacity, self.idle = capacity, idle
        self._lock = threading.Lock()
        self._maps: OrderedDict[str, tuple[memoryview, float]] = OrderedDict()  # path -> (map, last use)
        self._bytes = 0

    def get(self, path: str) -> memoryview | None:
        now = time.monotonic()
        with self._lock:
            self._drop_idle(now)
            hit = self._maps.get(path)
            if hit is None:
                return None
            self._maps[path] = (hit[0], now)
            self._maps.move_to_end(path)
            return hit[0]

    def put(self, path: str, whole: memoryview) -> None:
        if len(whole) > self.capacity:
            return
        with self._lock:
            old = self._maps.pop(path, None)
            if old is not None:
                self._bytes -= len(old[0])
            self._maps[path] = (whole, time.monotonic())
            self._bytes += len(whole)
            while self._bytes > self.capacity:
                self._bytes -= len(self._maps.popitem(last=False)[1][0])

    def drop(self, path: str) -> None:
        with self._lock:
            old = self._maps.pop(path, None)
            if old is not None:
                self._bytes -= len(old[0])

    def _drop_idle(self, now: float) -> None:
        while self._maps:
            path, (whole, used) = next(iter(self._maps.items()))
            if now - used <= self.idle:
                return
            del self._maps[path]
            self._bytes -= len(whole)


def _still_whole(path: str, whole: memoryview) -> bool:
    """Whether a kept map may still be read: its file is there at full length. Reading a map
    past the end of a file cut short under it kills the process (SIGBUS); one stat per read
    of a MiB or more turns that into the ObjectMissing a fresh map would give."""
    try:
        return os.stat(path).st_size >= len(whole)
    except FileNotFoundError:
        return False


class LocalBackend:
    """Objects as files under a root folder; writes go through fsync + rename.

    ``view`` slices a map of the whole pack (reads under MAP_MIN_BYTES are copied): no copy (a
    copying read of the FP32 base's frames cost 20 ms of 150 ms of its restore, sha256 included).
    Maps are kept for the next read, at most MAP_CACHE_BYTES of them, so a server's resident
    memory does not grow with the packs it has read (keeping every map open did: 700 MB of mapped
    pack pages after streaming a 537 MB file). Packs are immutable, so a kept map never goes stale.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, str] = {}
        self._maps = _PackMaps(MAP_CACHE_BYTES, MAP_IDLE_SECONDS)

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise InvalidName(f"invalid object name {name!r}")
        return self.root / name

    def _file(self, name: str) -> str:
        """``_path`` as a string, kept per name: building the Path was 8% of the Python time of a
        warm read of the BF16 cast (one per pack read)."""
        path = self._files.get(name)
        if path is None:
            if len(self._files) >= 65536:
                self._files.clear()
            path = self._files[name] = str(self._path(name))
        return path

    def put_file(self, name: str, path: Path) -> None:
        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{leftovers.prefix('tmp')}{threading.get_ident()}-{target.name}"
        try:
            try:
                # A spool file on the same file system is linked, not copied: shipping a 64 MiB
                # pack cost 0.19 s of a 1.6 s ingest of the FP32 base, most of it the copy.
                os.link(path, tmp)
                with open(tmp, "rb") as linked:
                    os.fsync(linked.fileno())
            except OSError:
                with open(tmp, "wb") as out, open(path, "rb") as src:
                    while block := src.read(8 << 20):
                        out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def read(self, name: str, offset: int, length: int) -> bytes:
        return bytes(self.view(name, offset, length))

    def view(self, name: str, offset: int, length: int) -> memoryview:
        path = self._file(name)
        whole = self._maps.get(path) if length >= MAP_MIN_BYTES else None
        if whole is not None and not _still_whole(path, whole):
            self._maps.drop(path)
            whole = None
        if whole is None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise ObjectMissing(name) from None
            try:
                if offset >= 0 and length < MAP_MIN_BYTES:
                    data = os.pread(fd, length, offset)
                    if len(data) == length:
                        return memoryview(data)
                size = os.fstat(fd).st_size
                if offset < 0 or length < MAP_MIN_BYTES or offset + length > size:
                    raise ObjectMissing(f"{name}: wanted {length} bytes at {offset}, object is shorter")
                whole = memoryview(mmap.mmap(fd, size, access=mmap.ACCESS_READ))
            finally:
                os.close(fd)
            self._maps.put(path, whole)
        if offset < 0 or offset + length > len(whole):
            raise ObjectMissing(f"{name}: wanted {length} bytes at {offset}, object is shorter")
        return whole[offset:offset + length]

    def size(self, name: str) -> int:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            raise ObjectMissing(name) from None

    def delete(self, name: str) -> None:
        self._maps.drop(self._file(name))
        self._path(name).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[ObjectStat]:
        base = self.root
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                name = path.relative_to(base).as_posix()
                if name.startswith(prefix):
                    st = path.stat()
                    yield ObjectStat(name, st.st_size, st.st_mtime)

    def describe(self) -> str:
        return f"local folder {self.root}"


class S3Backend:
    """Objects in an S3-compatible bucket through boto3 (a PUT is atomic by S3's contract).

    Reads go through a small cache of aligned blocks: frames of one tensor lie next to each
    other in a pack, so a streaming read asks for one block per ``READ_BLOCK`` bytes instead of
    one GET per 256 KiB frame (on the test server that took the six shared repos' integration
    test from 660 s to well under a minute). Packs are immutable, so cached blocks never go stale.
    """

    READ_BLOCK = 4 << 20
    CACHED_BLOCKS = 8  # at most 32 MiB per process, whatever is being read

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url, config=Config(retries={"max_attempts": 5, "mode": "standard"})
        )
        self.endpoint_url = endpoint_url
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, name: str) -> str:
        return self.prefix + name

    def put_file(self, name: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._key(name))

    def view(self, name: str, offset: int, length: int) -> bytes:
        return self.read(name, offset, length)

    def read(self, name: str, offset: int, length: int) -> bytes:
        if length == 0:
            return b""
        if length > self.READ_BLOCK:
            return self._get(name, offset, length)
        first, last = offset // self.READ_BLOCK, (offset + length - 1) // self.READ_BLOCK
        data = b"".join(self._block(name, i) for i in range(first, last + 1))
        start = offset - first * self.READ_BLOCK
        piece = data[start:start + length]
        if len(piece) != length:
            raise ObjectMissing(f"{name}: wanted {length} bytes at {offset}, object is shorter")
        return piece

    def _block(self, name: str, index: int) -> bytes:
        key = (name, index)
        with self._lock:
            hit = self._blocks.get(key)
            if hit is not None:
                self._blocks.move_to_end(key)
                return hit
        block = self._get(name, index * self.READ_BLOCK, self.READ_BLOCK, exact=False)
        with self._lock:
            self._blocks[key] = block
            while len(self._blocks) > self.CACHED_BLOCKS:
                self._blocks.popitem(last=False)
        return block

    def _get(self, name: str, offset: int, length: int, exact: bool = True) -> bytes:
        try:
            resp = self.client.get_object(
                Bucket=self.bucket, Key=self._key(name), Range=f"bytes={offset}-{offset + length - 1}"
            )
        except self.client.exceptions.NoSuchKey:
            raise ObjectMissing(name) from None
        data = resp["Body"].read()
        if exact and len(data) != length:
            raise ObjectMissing(f"{name}: wanted {length} bytes at {offset}, got {len(data)}")
        return data

    def size(self, name: str) -> int:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(name))["ContentLength"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise ObjectMissing(name) from None
            raise

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))
        with self._lock:
            for key in [k for k in self._blocks if k[0] == name]:
                del self._blocks[key]

    def list(self, prefix: str = "") -> Iterator[ObjectStat]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                yield ObjectStat(item["Key"][len(self.prefix):], item["Size"], item["LastModified"].timestamp())

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"
