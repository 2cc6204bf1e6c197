"""Human-readable figures for the pages.

Sizes use the same decimal units and precision as the ``weightvault report``
table, so a number read off the page matches the terminal. Exact integers go
into ``data-*`` attributes beside the text; these helpers are for people.
"""
from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape

from ..sizes import human_bytes  # noqa: F401  (the one formatter; the CLI uses it too)


def percent(part: float, whole: float) -> str:
    """A share of ``whole`` as '12.3%'; '—' when there is nothing to share."""
    return f"{100 * part / whole:.1f}%" if whole else "—"


def ratio(stored: int, raw: int) -> str:
    """stored/raw to three places, as the CLI table's 'stored/raw' column."""
    return f"{stored / raw:.3f}" if raw else "—"


def when(at: datetime | str) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM' UTC-as-stored, short enough for a table cell."""
    text = at.isoformat() if isinstance(at, datetime) else at
    return text[:16].replace("T", " ")


def breakable(name: str) -> Markup:
    """A dotted or slashed name (a tensor, a path) that may wrap after its separators, never mid-word."""
    return Markup(str(escape(name)).replace(".", ".<wbr>").replace("/", "/<wbr>"))
