"""Validation of what users name: repositories, revisions, paths inside a repo."""
from __future__ import annotations

import re

from weightvault.errors import InvalidName

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


def check_repo_name(name: str) -> str:
    if not _REPO.match(name or "") or ".." in name or name.endswith((".git", ".")):
        raise InvalidName(f"repo name {name!r} is not of the form org/name (letters, digits, '.', '_', '-')")
    return name


def check_user(name: str) -> str:
    """A user name, as the first part of a repo id could be (``alice`` in ``alice/model``)."""
    if not _USER.match(name or "") or ".." in name:
        raise InvalidName(f"user name {name!r} must be letters, digits, '.', '_' or '-' (at most 96)")
    return name


def check_revision(rev: str) -> str:
    parts = (rev or "").split("/")
    if not _REVISION.match(rev or "") or any(p in ("", ".", "..") for p in parts) or rev.endswith(".lock"):
        raise InvalidName(f"revision {rev!r} is not a valid branch name")
    return rev


#: Bytes of one path component: what every common filesystem allows (ext4, xfs, APFS, NTFS).
MAX_COMPONENT_BYTES = 255
#: Bytes of a whole path. Not Linux's 4,096: the catalog's ``tree_entries.path`` is String(1024) and part
#: of a primary key, and PostgreSQL refuses btree index rows above 2,704 bytes; 1,024 holds on every backend.
MAX_PATH_BYTES = 1024
#: Characters of a commit message (kept whole in the catalog; the hub's web UI cuts far earlier).
MAX_MESSAGE_CHARS = 65_536


def _control(text: str) -> str | None:
    """The first control character (C0, DEL, C1) or lone surrogate in ``text``, as an escape; None if clean."""
    for c in text:
        if c < " " or "\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\udfff":
            return c.encode("unicode_escape").decode()
    return None


def check_path(path: str) -> str:
    """A relative POSIX path inside a repo that any client can write back to disk.

    Refused with the rule it breaks: control characters (a newline in a name
    breaks every listing and many filesystems), empty, '.' or '..' parts, an
    absolute path, a backslash, a part over 255 bytes, a path over 1,024 bytes.
    """
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        raise InvalidName(f"path {str(path)[:200]!r} must be a relative path inside the repo, with '/' separators")
    bad = _control(path)
    if bad:
        raise InvalidName(f"path {path[:200]!r} holds the control character {bad}; names must be printable")
    size = len(path.encode("utf-8"))
    if size > MAX_PATH_BYTES:
        raise InvalidName(f"path {path[:80]!r}... is {size} bytes long; paths are limited to {MAX_PATH_BYTES} bytes")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidName(f"path {path!r} must not contain empty, '.' or '..' parts")
    if parts[0] == ".git":
        raise InvalidName(f"path {path!r} is inside .git")
    long = next((p for p in parts if len(p.encode("utf-8")) > MAX_COMPONENT_BYTES), None)
    if long is not None:
        raise InvalidName(f"path {path[:80]!r}...: the name {long[:40]!r}... is over {MAX_COMPONENT_BYTES} bytes")
    return path


def check_tree(paths) -> None:
    """No path of one tree may also be a folder of it (``a`` and ``a/b``): no filesystem can hold both."""
    names = set(paths)
    for path in names:
        parts = path.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in names:
                raise InvalidName(f"{folder!r} is a file, so {path!r} cannot be inside it; remove one of the two")


def check_message(message: str) -> str:
    """A commit message: text without NUL (PostgreSQL text cannot hold it), at most 65,536 characters."""
    if "\x00" in message:
        raise InvalidName("the commit message holds a NUL character")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidName(f"the commit message is {len(message)} characters long; the limit is {MAX_MESSAGE_CHARS}")
    return message
