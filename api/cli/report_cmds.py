"""Commands that explain the store: the savings report and the families."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from rich.table import Table

from .common import DataDir, JsonOut, app, human, open_vault, out


@app.command()
def report(data_dir: Optional[Path] = DataDir, as_json: bool = JsonOut):
    """Storage savings per repo, per family and overall.

    First the stored size, then the share of raw bytes each mechanism saved (`--json` gives
    the bytes)."""
    from weightvault.dedup.report import build_report

    vault = open_vault(data_dir)
    with vault.catalog.read_session() as s:
        rep = build_report(s)
    if as_json:
        out.print_json(json.dumps(rep.as_dict()))
        return
    out.print(_sizes_table(rep))
    out.print(_savings_table(rep))


def _grouped(rep) -> list[tuple[str, object, bool]]:
    """(label, savings, ends a section): each family's members then its total, repos without a
    family, then the overall row."""
    rows = []
    for fam in rep.families:
        rows += [(r.name, r.savings, False) for r in rep.repos if r.family == fam.name]
        rows.append((f"family {fam.name}", fam.savings, True))
    rows += [(r.name, r.savings, False) for r in rep.repos if r.family is None]
    rows.append(("overall", rep.overall, True))
    return rows


def _table(title: str, columns: tuple[str, ...]) -> Table:
    # Two narrow tables instead of one of ten columns, so the report reads at 80 columns;
    # repo names fold onto a second line rather than being cut.
    table = Table(title=title)
    table.add_column("repo", overflow="fold", min_width=16)
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True)
    return table


def _sizes_table(rep) -> Table:
    table = _table("stored size per repo and family", ("raw", "stored", "stored/raw"))
    for label, s, last in _grouped(rep):
        table.add_row(label, human(s.raw_bytes), human(s.stored_bytes), f"{s.ratio:.3f}", end_section=last)
    return table


def _savings_table(rep) -> Table:
    table = _table("share of raw bytes saved, by mechanism", ("file\ndedup", "tensor\ndedup", "family\ndelta",
                                                              "ckpt\ndelta", "plane\ncoding"))
    for label, s, last in _grouped(rep):
        saved = (s.file_dedup, s.tensor_dedup, s.family_delta, s.checkpoint_delta, s.plane_coding)
        table.add_row(label, *(f"{b / s.raw_bytes:.1%}" if s.raw_bytes else "-" for b in saved), end_section=last)
    return table


@app.command()
def families(data_dir: Optional[Path] = DataDir, as_json: bool = JsonOut):
    """Model families: members, the family base, and what each member is coded against and why."""
    from sqlalchemy import select

    from weightvault.store.models import Family, Repo

    vault = open_vault(data_dir)
    with vault.catalog.read_session() as s:
        names = dict(s.execute(select(Repo.id, Repo.name)).all())
        rows = []
        for fam in s.scalars(select(Family).order_by(Family.name)):
            members = s.scalars(select(Repo).where(Repo.family_id == fam.id).order_by(Repo.id)).all()
            rows.append({"family": fam.name, "base": names.get(fam.base_repo_id),
                         "members": [{"repo": m.name, "coded_against": names.get(m.base_repo_id),
                                      "why": m.family_reason} for m in members]})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="families")
    for col in ("family", "member", "coded against", "why"):
        table.add_column(col)
    for fam in rows:
        for i, m in enumerate(fam["members"]):
            table.add_row(fam["family"] if i == 0 else "", m["repo"], m["coded_against"] or "(base)", m["why"] or "")
    out.print(table)
