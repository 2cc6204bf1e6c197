"""The overview's repository table: filtered, sorted and cut into pages on the server.

A store with thousands of repos would otherwise send (and a browser lay out)
thousands of rows on every visit; the totals above the table always cover the
whole store, the table shows one page of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

#: How the table can be ordered, as (what the page calls it, sort key): sizes largest first.
SORTS: dict[str, tuple[str, Callable[[dict], object]]] = {
    "stored": ("stored size", lambda r: -r["stored_bytes"]),
    "raw": ("raw size", lambda r: -r["raw_bytes"]),
    "saved": ("bytes saved", lambda r: -(r["raw_bytes"] - r["stored_bytes"])),
    "ratio": ("stored/raw", lambda r: r["stored_bytes"] / r["raw_bytes"] if r["raw_bytes"] else math.inf),
    "name": ("name", lambda r: r["name"]),
    # The report's own order, first ingested first: every key ties and sorted() is stable.
    "ingest": ("ingest order", lambda r: 0),
}
DEFAULT_SORT = "stored"
PER_PAGE = 100
MAX_PER_PAGE = 1000


@dataclass(frozen=True)
class Page:
    rows: list[dict]
    #: Repos matching the filter, across all pages.
    matching: int
    page: int
    pages: int
    per_page: int
    sort: str
    query: str

    @property
    def sort_label(self) -> str:
        return SORTS[self.sort][0]

    @property
    def first(self) -> int:
        """1-based number of the first row shown (0 when none)."""
        return (self.page - 1) * self.per_page + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0

    def url(self, **changes: object) -> str:
        """The overview's address for this listing with ``changes`` applied, defaults left out."""
        state = {"q": self.query, "sort": self.sort, "page": self.page, "per_page": self.per_page, **changes}
        defaults = {"q": "", "sort": DEFAULT_SORT, "page": 1, "per_page": PER_PAGE}
        params = {k: v for k, v in state.items() if v != defaults[k]}
        return "/" + (f"?{urlencode(params)}" if params else "") + "#repos"


def page_of(repos: list[dict], *, query: str = "", sort: str = DEFAULT_SORT, page: int = 1,
            per_page: int = PER_PAGE) -> Page:
    """One page of ``repos`` (report rows) whose name or family contains ``query``, ordered by ``sort``.

    Out-of-range ``page`` and ``per_page`` are clamped rather than refused: a
    stale link (the store shrank) still shows something sensible.
    """
    sort = sort if sort in SORTS else DEFAULT_SORT
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    needle = query.strip().lower()
    matching = [r for r in repos if needle in r["name"].lower() or needle in (r["family"] or "").lower()]
    ordered = sorted(matching, key=SORTS[sort][1])
    pages = max(1, math.ceil(len(ordered) / per_page))
    page = min(max(page, 1), pages)
    start = (page - 1) * per_page
    return Page(ordered[start:start + per_page], len(ordered), page, pages, per_page, sort, query.strip())
