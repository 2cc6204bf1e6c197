"""Conditional downloads as RFC 9110 section 13 has them: If-Match, If-None-Match and If-Range against the ETag.

A download's ETag is strong (it names the exact bytes: a git blob sha1 or a
sha256), so a resumed download with ``If-Range`` gets the rest of the same
version or, if the file changed, the whole new one: never two versions spliced.
Last-Modified is not sent, so an ``If-Range`` date never matches and the full
file is sent (the safe answer the RFC allows).
"""
from __future__ import annotations

import re

_TAG = re.compile(r'(W/)?"([^"]*)"')


def _tags(header: str) -> list[tuple[bool, str]]:
    """(weak, opaque tag) of each entity-tag in a comma-separated list."""
    return [(bool(weak), tag) for weak, tag in _TAG.findall(header)]


def precondition_status(headers, etag: str, method: str) -> int | None:
    """412 when If-Match fails, 304 (GET/HEAD) or 412 when If-None-Match matches, else None (go on)."""
    current = etag.strip('"')
    if_match = headers.get("if-match")
    if if_match is not None and if_match.strip() != "*" and \
            not any(not weak and tag == current for weak, tag in _tags(if_match)):
        return 412
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None and (if_none_match.strip() == "*" or
                                      any(tag == current for _, tag in _tags(if_none_match))):
        return 304 if method in ("GET", "HEAD") else 412
    return None


def range_applies(headers, etag: str) -> bool:
    """False when an If-Range names another version (or a date): the Range is then ignored, 200 with the whole file."""
    if_range = headers.get("if-range")
    if if_range is None:
        return True
    tags = _tags(if_range.strip())
    return len(tags) == 1 and not tags[0][0] and tags[0][1] == etag.strip('"')
