"""Content hashes: sha256 (identity of files and objects) and the git blob sha1 a hub uses as ETag."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    git_sha1: str
    size: int


def digest_bytes(data) -> FileDigest:
    view = memoryview(data)
    git = hashlib.sha1(b"blob %d\x00" % len(view))
    git.update(view)
    return FileDigest(hashlib.sha256(view).hexdigest(), git.hexdigest(), len(view))


def object_digest(data) -> str:
    """Identity of a tensor or blob: sha256 of its raw bytes (collision resistant, SHA-NI fast)."""
    return hashlib.sha256(data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file whose blob sha1 a hub shows as the tree oid of a large file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()
