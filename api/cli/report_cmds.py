"""Commands that explain the store: the savings report and the families."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from rich.table import Table

from .common import DataDir, JsonOut, app, human, open_vault, out


@app.command()
def report(data_dir: Optional[Path] = DataDir, as_json: bool = JsonOut):
    """Storage savings per repo, per family and overall."""
    from weightvault.dedup.report import build_report

    vault = open_vault(data_dir)
    with vault.catalog.read_session() as s:
        rep = build_report(s)
    if as_json:
        out.print_json(json.dumps(rep.as_dict()))
        return
    table = Table(title="storage savings")
    for col in ("repo", "family", "raw", "stored", "stored/raw", "file dedup", "tensor dedup", "family delta",
                "ckpt delta", "plane coding"):
        table.add_column(col, justify="left" if col in ("repo", "family") else "right")
    rows = [(r.name, r.family or "", r.savings) for r in rep.repos]
    rows += [(f"family {f.name}", f.base or "", f.savings) for f in rep.families]
    rows.append(("overall", "", rep.overall))
    for name, fam, s in rows:
        table.add_row(name, fam, human(s.raw_bytes), human(s.stored_bytes), f"{s.ratio:.3f}", human(s.file_dedup),
                      human(s.tensor_dedup), human(s.family_delta), human(s.checkpoint_delta), human(s.plane_coding))
    out.print(table)


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
