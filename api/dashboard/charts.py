"""Charts drawn on the server as inline SVG: nothing is fetched from elsewhere when a page loads.

Each function takes figures straight from the report and returns SVG markup
(already escaped) for a template to embed. Sizes are in a fixed viewBox and the
SVG scales to its container's width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from .fmt import human_bytes, percent, when

#: The parts a repo's raw bytes split into: what is stored, then what each mechanism saved, and what
#: that mechanism is. Colours are picked to stay distinct for the common kinds of colour blindness.
PARTS: tuple[tuple[str, str, str, str], ...] = (
    ("stored_bytes", "stored", "#34495e", "what the bytes take after coding: in packs, headers in the catalog"),
    ("file_dedup", "file dedup", "#4e79a7", "whole files already stored by an earlier repo"),
    ("tensor_dedup", "tensor dedup", "#76b7b2", "single tensors already stored, in files that differ"),
    ("family_delta", "family delta", "#f28e2b", "tensors coded as a difference from the family base"),
    ("checkpoint_delta", "checkpoint delta", "#e15759", "checkpoints coded against the previous one"),
    ("plane_coding", "plane coding", "#59a14f", "tensors coded on their own: byte planes with rANS, or zstd"),
)


@dataclass(frozen=True)
class Segment:
    key: str
    label: str
    color: str
    meaning: str
    value: int


def parts_of(figures: dict) -> list[Segment]:
    """A Savings dict (from ``Report.as_dict``) as the bar's segments, stored first."""
    return [Segment(key, label, color, meaning, int(figures[key])) for key, label, color, meaning in PARTS]


def stacked_bar(figures: dict, *, height: int = 44, label: str = "raw bytes by where they went") -> Markup:
    """One horizontal bar as long as the raw bytes: stored, then each mechanism's savings.

    Positions are percentages rather than a stretched viewBox, so the bar fills
    any width while its labels keep their shape. A mechanism can come out
    slightly negative (framing overhead on incompressible data); it is drawn
    as zero width, while the legend table beside the chart gives the exact figure.
    """
    segments = parts_of(figures)
    total = sum(max(s.value, 0) for s in segments)
    out = [f'<svg class="chart stacked" width="100%" height="{height}" role="img" '
           f'aria-label="{escape(label)}" data-raw-bytes="{int(figures["raw_bytes"])}">']
    if not total:
        out.append('<rect x="0" y="0" width="100%" height="100%" fill="#e5e8ec"/>')
    x = 0.0
    for s in segments:
        if s.value <= 0 or not total:
            continue
        w = 100 * s.value / total
        share = percent(s.value, figures["raw_bytes"])
        title = f"{s.label}: {human_bytes(s.value)} ({share} of raw)"
        out.append(f'<rect x="{x:.3f}%" y="0" width="{w:.3f}%" height="100%" fill="{s.color}" '
                   f'data-part="{s.key}"><title>{escape(title)}</title></rect>')
        if w >= 6:  # a label only where it fits; the legend table always has every figure
            out.append(f'<text x="{x + w / 2:.3f}%" y="{height / 2 + 5}" text-anchor="middle" class="seg">'
                       f'{share}</text>')
        x += w
    out.append("</svg>")
    return Markup("".join(out))


def mini_bar(figures: dict) -> Markup:
    """The stacked bar shrunk to a table cell, as plain HTML (cheap for a thousand rows)."""
    segments = parts_of(figures)
    total = sum(max(s.value, 0) for s in segments)
    if not total:
        return Markup('<span class="minibar empty"></span>')
    spans = "".join(f'<span style="width:{100 * s.value / total:.2f}%;background:{s.color}"></span>'
                    for s in segments if s.value > 0)
    return Markup(f'<span class="minibar" aria-hidden="true">{spans}</span>')


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick spacing (1, 2 or 5 times a power of ten) giving about ``ticks`` intervals."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next((mult * power for mult in (1, 2, 5) if mult * power >= raw), 10 * power)


def timeline_chart(timeline: list[dict], *, max_points_with_tips: int = 200) -> Markup:
    """Cumulative raw bytes against cumulative stored bytes, one step per ingest, as two areas.

    The x axis counts ingests rather than wall time: a store fills in bursts
    (a migration ingests hundreds of repos in minutes), and a time axis would
    squash those into a vertical line.
    """
    w, h = 1000, 320
    left, right, top, bottom = 78, 16, 14, 44
    pw, ph = w - left - right, h - top - bottom
    raw_cum, stored_cum = [0], [0]
    for ev in timeline:
        raw_cum.append(raw_cum[-1] + int(ev["raw_bytes"]))
        stored_cum.append(stored_cum[-1] + int(ev["new_stored_bytes"]))
    n = len(timeline)
    step = nice_step(max(raw_cum[-1], 1))
    ymax = step * max(1, math.ceil(raw_cum[-1] / step))

    def xy(i: int, v: int) -> tuple[float, float]:
        return left + pw * i / max(n, 1), top + ph * (1 - v / ymax)

    def area(values: list[int]) -> tuple[str, str]:
        pts = [xy(i, v) for i, v in enumerate(values)]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        return f"M{line} L{pts[-1][0]:.1f},{top + ph} L{left},{top + ph} Z", f"M{line}"

    out = [f'<svg class="chart timeline" viewBox="0 0 {w} {h}" role="img" '
           f'aria-label="cumulative raw and stored bytes per ingest" data-events="{n}" '
           f'data-raw-bytes="{raw_cum[-1]}" data-stored-bytes="{stored_cum[-1]}">']
    tick = 0.0
    while tick <= ymax + step / 2:
        _, y = xy(0, int(tick))
        out.append(f'<line class="grid" x1="{left}" x2="{w - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="axis" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{human_bytes(tick)}</text>')
        tick += step
    if n:
        for values, cls in ((raw_cum, "raw"), (stored_cum, "stored")):
            fill, stroke = area(values)
            out.append(f'<path class="area {cls}" d="{fill}"/><path class="line {cls}" d="{stroke}"/>')
        if n <= max_points_with_tips:
            for i, ev in enumerate(timeline, start=1):
                x, y = xy(i, raw_cum[i])
                stored = int(ev["new_stored_bytes"])  # negative after a rebase re-coded a repo smaller
                tip = (f"#{i} {when(ev['at'])} {ev['repo']}: +{human_bytes(ev['raw_bytes'])} raw, "
                       f"{'+' if stored >= 0 else '-'}{human_bytes(abs(stored))} stored; "
                       f"total {human_bytes(raw_cum[i])} raw, "
                       f"{human_bytes(stored_cum[i])} stored")
                out.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="4">'
                           f'<title>{escape(tip)}</title></circle>')
        first, last = when(timeline[0]["at"]), when(timeline[-1]["at"])
        out.append(f'<text class="axis" x="{left}" y="{h - 22}">#1 · {escape(first)}</text>'
                   f'<text class="axis" x="{w - right}" y="{h - 22}" text-anchor="end">#{n} · {escape(last)}</text>')
    else:
        out.append(f'<text class="axis" x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle">'
                   f'nothing ingested yet</text>')
    out.append(f'<text class="axis title" x="{left + pw / 2}" y="{h - 4}" text-anchor="middle">'
               f'ingests, in order</text>')
    out.append(f'<line class="axisline" x1="{left}" x2="{w - right}" y1="{top + ph}" y2="{top + ph}"/></svg>')
    return Markup("".join(out))
