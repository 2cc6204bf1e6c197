"""How stored files look to hub clients: the one rule for "LFS or regular", ETags and tree entries.

**The rule.** A file is served as an LFS file when it is at least 10 MiB, or
when its name matches a pattern of the hub's default ``.gitattributes``
(``*.safetensors``, ``*.bin``, ``*.pt``, ``*.onnx``, ``*.gguf``, ...); empty files
never are. LFS files get the sha256 of their content as ETag and an ``lfs``
block in tree entries, whose ``oid`` is the git blob sha1 of the LFS pointer
text; other files get their git blob sha1. For repos whose ``.gitattributes``
is the hub's default this gives the same ETags as huggingface.co, so a client
cache warmed there is reused here. Preupload answers ``uploadMode`` with the
same rule.
"""
from __future__ import annotations

import fnmatch
import hashlib
from datetime import datetime

from weightvault.dedup.hashing import LFS_MIN_SIZE, git_blob_sha1, lfs_pointer
from weightvault.store.models import Commit, File, Repo

# LFS_MIN_SIZE: files at least this large are LFS whatever their name (the hub's 10 MB regular-file
# limit); defined in dedup/hashing, which skips their content's git sha1.

#: The name patterns of the hub's default ``.gitattributes`` (``filter=lfs``).
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib", "*.mlmodel",
    "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
    "*.pth", "*.rar", "*.safetensors", "*.tar", "*.tar.*", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst",
    "*tfevents*",
)


def is_lfs(path: str, size: int) -> bool:
    if size <= 0:
        return False
    name = path.rsplit("/", 1)[-1]
    return size >= LFS_MIN_SIZE or any(fnmatch.fnmatchcase(name, p) for p in LFS_PATTERNS)


def etag(path: str, file: File) -> str:
    """The hub ETag: sha256 for LFS files, git blob sha1 otherwise."""
    return file.sha256 if is_lfs(path, file.size) else file.git_sha1


def blob_oid(path: str, file: File) -> str:
    """The git object a hub's tree shows: the pointer's blob for LFS files, the content's otherwise."""
    return git_blob_sha1(lfs_pointer(file.sha256, file.size)) if is_lfs(path, file.size) else file.git_sha1


def lfs_block(path: str, file: File) -> dict | None:
    if not is_lfs(path, file.size):
        return None
    return {"oid": file.sha256, "size": file.size, "pointerSize": len(lfs_pointer(file.sha256, file.size))}


def file_entry(path: str, file: File) -> dict:
    """A tree / paths-info entry. Never ``xetHash``: downloads stay plain HTTP for every client."""
    entry = {"type": "file", "oid": blob_oid(path, file), "size": file.size, "path": path}
    lfs = lfs_block(path, file)
    if lfs:
        entry["lfs"] = lfs
    return entry


def dir_entry(path: str, children: list[str]) -> dict:
    # A stable stand-in for the git tree id: only equality matters to clients.
    return {"type": "directory", "oid": hashlib.sha1("\n".join(sorted(children)).encode()).hexdigest(), "size": 0,
            "path": path}


def sibling(path: str, file: File) -> dict:
    """A ``siblings`` item of model_info (0.x snapshot_download lists files from these)."""
    item = {"rfilename": path, "size": file.size, "blobId": blob_oid(path, file)}
    lfs = lfs_block(path, file)
    if lfs:
        item["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
    return item


def listing(tree: dict[str, File], prefix: str, recursive: bool) -> list[dict]:
    """Tree entries under ``prefix`` ('' for the root): directories first at each level, then files, by path."""
    base = prefix.rstrip("/") + "/" if prefix else ""
    dirs: dict[str, list[str]] = {}
    files: list[dict] = []
    for path in sorted(tree):
        if not path.startswith(base):
            continue
        rest = path[len(base):]
        parts = rest.split("/")
        for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
            dirs.setdefault(base + "/".join(parts[:depth]), []).append(path)
        if recursive or len(parts) == 1:
            files.append(file_entry(path, tree[path]))
    return [dir_entry(d, c) for d, c in sorted(dirs.items())] + files


def repo_item(repo: Repo, head: Commit | None) -> dict:
    """The fields every repo answer carries (model_info, dataset_info and list items); no downloads are counted."""
    kind = repo.kind
    return {
        "_id": f"{kind}-{repo.id}",
        "id": repo.name,
        **({"modelId": repo.name} if kind == "model" else {}),
        "author": repo.name.split("/", 1)[0],
        "sha": head.oid if head else None,
        "lastModified": iso(head.created_at if head else repo.created_at),
        "createdAt": iso(repo.created_at),
        "private": repo.private,
        "disabled": False,
        "gated": False,
        "downloads": 0,
        "likes": 0,
        "trendingScore": 0,
    }


def iso(ts: datetime | None) -> str | None:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000Z") if ts else None
