"""Validation of what users name: repositories, revisions, paths inside a repo."""
from __future__ import annotations

import re

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


class InvalidName(ValueError):
    """A repo, revision or path that the store refuses; the message says what is expected."""


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


def check_path(path: str) -> str:
    """A relative POSIX path inside a repo: no '..', no absolute paths, no empty parts."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise InvalidName(f"path {path!r} must be a relative path inside the repo")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidName(f"path {path!r} must not contain empty, '.' or '..' parts")
    if parts[0] == ".git":
        raise InvalidName(f"path {path!r} is inside .git")
    return path
