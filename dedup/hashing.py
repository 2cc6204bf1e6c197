"""Content hashes: sha256 (identity of files and objects) and the git blob sha1 a hub uses as ETag."""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    git_sha1: str  # "" from LFS_MIN_SIZE bytes on
    size: int


#: Files at least this big have their git sha1 computed on a second thread while sha256 runs
#: (hashlib releases the GIL): 0.09 s of a 0.7 cpu-s ingest of the 91 MB FP32 base was the two in turn.
PARALLEL_HASH_BYTES = 4 << 20
_hash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wv-hash")

#: Files this big are LFS files to a hub whatever their name (its default threshold). A hub never
#: shows their content's git blob sha1 (the ETag is the sha256, the tree shows the LFS pointer's
#: blob), so it is not computed for them (``FileDigest.git_sha1`` is ""): it was a second full pass
#: over every large file, 0.05 cpu-s per 91 MB.
LFS_MIN_SIZE = 10 * 1024 * 1024


def _git_sha1(view: memoryview) -> str:
    git = hashlib.sha1(b"blob %d\x00" % len(view))
    git.update(view)
    return git.hexdigest()


def digest_bytes(data) -> FileDigest:
    view = memoryview(data)
    if len(view) >= LFS_MIN_SIZE:
        return FileDigest(hashlib.sha256(view).hexdigest(), "", len(view))
    if len(view) < PARALLEL_HASH_BYTES:
        return FileDigest(hashlib.sha256(view).hexdigest(), _git_sha1(view), len(view))
    git = _hash_pool.submit(_git_sha1, view)
    return FileDigest(hashlib.sha256(view).hexdigest(), git.result(), len(view))


def digest_beside(data, work: Callable[[], T]) -> tuple[FileDigest, T]:
    """``digest_bytes(data)``, on the hash thread while ``work()`` runs on this one for a file of
    LFS_MIN_SIZE bytes or more (its digest is one sha256); a smaller file's digest hands its git sha1
    to the hash thread itself, so it is taken here after ``work()``."""
    view = memoryview(data)
    if len(view) < LFS_MIN_SIZE:
        done = work()
        return digest_bytes(view), done
    digest = _hash_pool.submit(digest_bytes, view)
    try:
        done = work()
    finally:
        found = digest.result()
    return found, done


def object_digest(data) -> str:
    """Identity of a tensor or blob: sha256 of its raw bytes (collision resistant, SHA-NI fast)."""
    return hashlib.sha256(data).hexdigest()


def in_lanes(fn: Callable[[memoryview], T], views: list[memoryview]) -> list[T]:
    """``fn`` of each view: about half the bytes on the hash thread, the rest on this one (``fn``
    must release the GIL on large inputs, as hashlib, blake3 and the native calls do)."""
    lanes: tuple[list[int], list[int]] = ([], [])
    loads = [0, 0]
    for i in sorted(range(len(views)), key=lambda i: -len(views[i])):
        lane = loads.index(min(loads))
        lanes[lane].append(i)
        loads[lane] += len(views[i])
    out: list = [None] * len(views)
    if loads[1] < PARALLEL_HASH_BYTES // 2:  # not worth a hand-over
        lanes = (lanes[0] + lanes[1], [])
    other = _hash_pool.submit(lambda: [fn(views[i]) for i in lanes[1]]) if lanes[1] else None
    for i in lanes[0]:
        out[i] = fn(views[i])
    for i, result in zip(lanes[1], other.result() if other else ()):
        out[i] = result
    return out


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file whose blob sha1 a hub shows as the tree oid of a large file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()
