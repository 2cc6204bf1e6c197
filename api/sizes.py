"""Byte counts for people: one formatter for the CLI tables and the dashboard, so the two always agree.

A leaf module (no FastAPI, no Typer) so either side imports it without pulling in the other.
"""
from __future__ import annotations

UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units)."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    unit = UNITS[0]
    for unit in UNITS:
        if n < 1000 or unit == UNITS[-1]:
            break
        n /= 1000
    return f"{sign}{int(n)} B" if unit == "B" else f"{sign}{n:.1f} {unit}"
