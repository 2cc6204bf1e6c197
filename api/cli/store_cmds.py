"""Commands on the store itself: ingest, get, ls, verify, rm, gc, rebase, db upgrade/fingerprint."""
from __future__ import annotations

import json
from datetime import timedelta
from gc import freeze as freeze_collector  # (gc is the command below)
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import DataDir, JsonOut, app, bytes_progress, console, db_app, fail, human, open_vault, out, parse_ref, user_errors


@app.command()
def ingest(
    path: Path = typer.Argument(..., help="Folder holding the model repo (config, tokenizer, safetensors, ...)."),
    repo: str = typer.Option(..., "--repo", "-r", help="Name to store it under, as org/name."),
    revision: str = typer.Option("main", "--revision", help="Branch to commit to."),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Commit message."),
    previous: Optional[str] = typer.Option(None, "--previous", help="A stored repo this one is the next training "
                                           "checkpoint of: code every tensor against it with the checkpoint codec."),
    keyframe_every: int = typer.Option(5, "--keyframe-every", help="In a folder of checkpoint-<step>/ folders, "
                                       "code every Nth checkpoint alone so restores never walk a long chain."),
    no_rebase: bool = typer.Option(False, "--no-rebase", help="Do not re-code family members this repo predicts "
                                   "better than their base (leave it to `weightvault rebase`)."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """Store a model repo folder as a new revision, deduplicated and delta-coded.

    Files and tensors already stored are kept once; fine-tunes are delta-coded against their
    family base, checkpoints against the previous one, and the rest plane-coded. Then earlier
    family members are re-coded against this repo where it predicts them better (a BF16
    fine-tune stored before the FP32 weights it was cast from), as `weightvault rebase` would."""
    from weightvault.dedup.ingest import ingest_folder, walk_repo

    with user_errors():
        vault = open_vault(data_dir)
        # One ingest per process: what is alive now (modules, the catalog's metadata) stays alive, so
        # it is moved out of the cyclic collector's way. A full collection during an ingest of the
        # FP32 base walked ~100k objects (48-55 ms of its 0.7 s; 31k tracked once frozen), and the
        # collections at exit cost more: `weightvault ingest` of the FP32 base, frozen or not,
        # alternating, 3 runs each: 1.66-1.82 -> 1.53-1.61 s.
        freeze_collector()
        total = sum(real.stat().st_size for _, real in walk_repo(path))
        with bytes_progress(total, f"ingest {repo}", as_json) as (advance, on_file):
            result = ingest_folder(vault, path, repo, revision, message=message, progress=advance, on_file=on_file,
                                   previous=previous, keyframe_every=keyframe_every, rebase=not no_rebase)
        vault.close()  # its connections closed here, not left to the collector at exit
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if as_json:
        out.print_json(json.dumps(result.__dict__))
    elif not result.changed:
        out.print(f"{result.repo}@{result.revision} already holds exactly these {result.files} files: "
                  f"no new commit (head {result.commit})")
    else:
        out.print(f"{result.repo}@{result.revision} -> commit {result.commit}: {result.files} files, "
                  f"{human(result.raw_bytes)} raw, {human(result.new_stored_bytes)} newly stored")
        out.print(f"family {result.family}" + (f", coded against {result.base}" if result.base else ", as its base")
                  + f" ({result.family_reason})")
        for member, tensors, saved in result.rebased:
            out.print(f"re-based {member} on it: {tensors} tensors, {human(saved)} saved "
                      "(`weightvault gc` reclaims the replaced frames)")
        if result.rebased:
            out.print(f"re-basing took {result.rebase_seconds:.1f} s (--no-rebase: leave it to `weightvault rebase`)")
        if result.rebase_deferred:
            out.print(f"not screened (over this ingest's re-basing budget): {', '.join(result.rebase_deferred)}; "
                      "`weightvault rebase` covers them")


@app.command()
def get(
    spec: str = typer.Argument(..., help="org/name or org/name@revision (branch or commit id)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write the files into."),
    verify_only: bool = typer.Option(False, "--verify-only", help="Read and check every file against its "
                                     "sha256 without writing anything."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """Write every file of a revision to a folder, bit-exactly, each checked against its sha256.

    A file that cannot be restored is named with the reason and the others are still written;
    the exit status is then 1."""
    from weightvault.dedup.commits import listing
    from weightvault.dedup.restore import restore

    if out_dir is None and not verify_only:
        fail("give --out FOLDER, or --verify-only to check without writing", code=2)
    repo, rev = parse_ref(spec)
    with user_errors():
        vault = open_vault(data_dir)
        with vault.catalog.read_session() as s:
            total = sum(f.size for f in listing(s, repo, rev).values())
        with bytes_progress(total, f"get {spec}", as_json) as (advance, on_file):
            done = restore(vault, repo, rev, None if verify_only else out_dir, progress=advance, on_file=on_file)
    if as_json:
        out.print_json(json.dumps({"repo": repo, "revision": rev, "files": done.written, "failed": done.failed}))
    else:
        for path, why in done.failed.items():
            console.print(f"[red]FAILED[/red] {path}: {why}")
        where = "checked" if verify_only else f"written to {out_dir}"
        out.print(f"{len(done.written)} files {where}, all sha256 verified"
                  + (f"; {len(done.failed)} could not be restored (named above)" if done.failed else ""))
    if done.failed:
        raise typer.Exit(1)


@app.command("ls")
def list_repos(
    spec: Optional[str] = typer.Argument(None, help="Without it: every repo. With org/name[@rev]: its files."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """List repositories, or the files of one revision."""
    from sqlalchemy import select

    from weightvault.dedup.commits import resolve, tree_of
    from weightvault.store.models import Commit, Ref, Repo

    with user_errors():
        vault = open_vault(data_dir)
        with vault.catalog.read_session() as s:
            if spec:
                repo, rev = parse_ref(spec)
                r = resolve(s, repo, rev)
                rows = [{"path": p, "size": f.size, "sha256": f.sha256} for p, f in sorted(tree_of(s, r.commit).items())]
                title, cols = f"{repo}@{rev} ({r.commit.oid[:12]})", ["path", "size", "sha256"]
            else:
                rows = [{"repo": name, "revision": ref, "commit": oid}
                        for name, ref, oid in s.execute(
                            select(Repo.name, Ref.name, Commit.oid).join(Ref, Ref.repo_id == Repo.id)
                            .join(Commit, Commit.id == Ref.commit_id).order_by(Repo.name, Ref.name))]
                title, cols = "repositories", ["repo", "revision", "commit"]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=title)
    for c in cols:
        table.add_column(c, justify="right" if c == "size" else "left")
    for row in rows:
        table.add_row(*(human(row[c]) if c == "size" else str(row[c])[:16] if c in ("sha256", "commit") else str(row[c])
                        for c in cols))
    out.print(table)


@app.command()
def verify(
    repo: Optional[str] = typer.Option(None, "--repo", "-r", help="Check only this repo's files and packs."),
    deep: bool = typer.Option(False, "--deep", help="Also check that the catalog and the object store agree "
                              "both ways (every pack, frame, repo, branch, tag, commit and file), and say what "
                              "`weightvault recover` would rebuild from the object store alone."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """Re-read every pack, frame and file and check their checksums; exit 1 naming what is wrong."""
    from weightvault.dedup.verify import verify as run
    from weightvault.store.recover import compare, scan

    with user_errors():
        vault = open_vault(data_dir)
        with bytes_progress(None, "verify", as_json) as (advance, _):
            report = run(vault, repo, progress=advance)
            if deep:
                report.problems.extend(compare(vault.catalog, scan(vault.backend, advance)))
    if as_json:
        out.print_json(json.dumps({**report.__dict__, "ok": report.ok}))
    else:
        for p in report.problems:
            console.print(f"[red]BAD[/red] {p}")
        for p in report.leftovers:
            console.print(f"[yellow]LEFTOVER[/yellow] {p}")
        out.print(f"{report.packs} packs, {report.files} files, {human(report.bytes)} checked: "
                  + ("OK" if report.ok else f"{len(report.problems)} problems")
                  + (f"; {len(report.leftovers)} leftovers ({human(report.leftover_bytes)}) that `weightvault gc` "
                     "removes" if report.leftovers else ""))
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def recover(
    dry_run: bool = typer.Option(False, "--dry-run", help="Scan the object store and report what would be "
                                 "rebuilt; write nothing."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """Rebuild a lost catalog from the object store alone.

    Point the store at an empty or new catalog (delete catalog.sqlite, or create an empty
    PostgreSQL database for WEIGHTVAULT_DATABASE_URL) and the same objects folder or bucket.
    Every pack is read: frames are placed by the object and frame number their entries carry,
    and the catalog records written with every change are replayed, so every repo, branch,
    tag, commit id and tree comes back as it was. Damaged entries are skipped and listed.
    Exit 1 when something could not be rebuilt. Restart running servers afterwards: they
    cache frame lists by object id for a few minutes, and the rebuilt catalog numbers
    objects afresh."""
    from dataclasses import asdict

    from weightvault.store.recover import RecoverReport, rebuild, scan

    with user_errors():
        vault = open_vault(data_dir)
        total = sum(o.size for p in ("packs/", "meta/") for o in vault.backend.list(p))
        with bytes_progress(total, "recover: reading packs", as_json) as (advance, _):
            sc = scan(vault.backend, advance)
        if dry_run:
            st = sc.state
            report = RecoverReport(repos=len(st.repos), commits=len(st.commits), refs=len(st.refs),
                                   tags=len(st.tags), files=len(st.files), objects=len(st.objects),
                                   frames=sum(len(o.get("frames", [])) for o in st.objects.values()),
                                   packs=len(sc.packs), records=sc.records, bytes_scanned=sc.bytes,
                                   problems=list(sc.damage))
        else:
            report = rebuild(vault.catalog, sc)
    if as_json:
        out.print_json(json.dumps({**asdict(report), "dry_run": dry_run, "ok": not report.problems}))
    else:
        for p in report.problems:
            console.print(f"[red]BAD[/red] {p}")
        verb = "would rebuild" if dry_run else "rebuilt"
        out.print(f"{verb} {report.repos} repos, {report.commits} commits, {report.refs} branches, {report.tags} tags, "
                  f"{report.files} files, {report.objects} objects ({report.frames} frames) from {report.packs} packs "
                  f"and {report.records} records ({human(report.bytes_scanned)} read)")
    if report.problems:
        raise typer.Exit(1)


@app.command()
def rm(
    repo: str = typer.Argument(..., help="org/name of the repo to remove."),
    data_dir: Optional[Path] = DataDir,
):
    """Remove a repo and its revisions. Space comes back with `weightvault gc`."""
    from weightvault.dedup.commits import delete_repo

    with user_errors():
        vault = open_vault(data_dir)
        with vault.catalog.write_session() as s:
            delete_repo(s, repo)
    out.print(f"removed {repo}; run `weightvault gc` to reclaim its space")


@app.command()
def gc(
    grace_minutes: float = typer.Option(60.0, "--grace-minutes", help="Keep unreferenced packs this long "
                                        "(readers and running ingests may still need them)."),
    now: bool = typer.Option(False, "--now", help="No grace period: free unreferenced packs at once. Only when "
                             "no download, upload or ingest is running on any node."),
    compact_below: float = typer.Option(0.5, "--compact-below", help="Rewrite packs whose live frames fill "
                                        "less than this share of them (0 turns compaction off)."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """Delete files, objects and packs that no revision references any more, and compact sparse packs.

    Packs are deleted in two steps (marked, then deleted after the grace period), so
    downloads and ingests running meanwhile are safe. Temp files of dead processes on this
    node (spool, request bodies, half-written objects) go at once."""
    from weightvault.store.gc import collect, compact

    grace = timedelta(0) if now else timedelta(minutes=grace_minutes)
    with user_errors():
        vault = open_vault(data_dir)
        swept = vault.sweep_leftovers()
        result = collect(vault.catalog, vault.backend, grace)
        if compact_below > 0:
            compact(vault.catalog, vault.backend, vault.pack_writer(), compact_below, result)
            if result.packs_compacted:  # the emptied packs go now if their grace is over, else in a later run
                again = collect(vault.catalog, vault.backend, grace)
                result.packs_deleted += again.packs_deleted
                result.bytes_freed += again.bytes_freed
                result.pending_packs, result.pending_bytes = again.pending_packs, again.pending_bytes
                result.pending_files, result.pending_until = again.pending_files, again.pending_until
    result.leftovers_deleted = len(swept.paths)
    result.bytes_freed += swept.bytes
    if as_json:
        out.print_json(json.dumps(result.__dict__))
        return
    out.print(f"dropped {result.files} files, {result.objects} objects; marked {result.packs_marked} packs; "
              f"deleted {result.packs_deleted} packs; compacted {result.packs_compacted} packs "
              f"({human(result.bytes_moved)} moved); removed {result.leftovers_deleted} temp files of dead "
              f"processes and {result.orphan_packs_deleted} orphan pack objects; freed {human(result.bytes_freed)}")
    if result.pending_packs or result.pending_files:
        out.print(f"{result.pending_files} unreferenced files and {result.pending_packs} unreferenced packs "
                  f"({human(result.pending_bytes)}) wait out the {grace_minutes:g}-minute grace period (uploads "
                  f"and readers may still use them): gc runs until {result.pending_until} free them, or "
                  "`weightvault gc --now` when nothing is running", soft_wrap=True)


@app.command()
def rebase(
    family: Optional[str] = typer.Argument(None, help="Only this family (default: every family)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be re-coded; change nothing."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """Re-code family members against the sibling that predicts them best.

    Ingest codes a repo against a base already stored; a repo that arrives later
    can predict an earlier one far better (a BF16 fine-tune against the FP32
    fine-tune of the same run). Run this after adding related repos, then
    `weightvault gc` to reclaim the replaced frames. Safe while the store serves."""
    from sqlalchemy import func, select

    from weightvault.dedup.rebase import Rebaser
    from weightvault.store.models import Object

    vault = open_vault(data_dir)
    with vault.catalog.read_session() as s:
        total = s.scalar(select(func.sum(Object.raw_size)).where(Object.kind == "tensor")) or 0
    with user_errors(), bytes_progress(total, "rebase", as_json) as (progress, _):
        result = Rebaser(vault, dry_run=dry_run, progress=progress).run(family)
    if as_json:
        out.print_json(json.dumps({"dry_run": dry_run, "bytes_saved": result.bytes_saved,
                                   "members": [m.__dict__ for m in result.members], "screened": result.screened}))
        return
    table = Table(title="rebase" + (" (dry run: nothing changed)" if dry_run else ""))
    for col in ("repo", "now coded against", "tensors", "before", "after"):
        table.add_column(col, justify="right" if col in ("tensors", "before", "after") else "left")
    for m in result.members:
        table.add_row(m.repo, m.base, str(m.tensors), human(m.bytes_before), human(m.bytes_after))
    out.print(table if result.members else "no member gains from another base")
    if result.members and not dry_run:
        out.print(f"saved {human(result.bytes_saved)}; run `weightvault gc` to reclaim the replaced frames")


@db_app.command("checkpoint")
def db_checkpoint(data_dir: Optional[Path] = DataDir):
    """Write the whole catalog to the object store as one record.

    Stores written before catalog records existed (before packs version 2) cannot be
    rebuilt by `weightvault recover` from their history alone: run this once after
    upgrading, and `weightvault gc` (its compaction rewrites version 1 packs)."""
    from weightvault.store import journal

    with user_errors():
        vault = open_vault(data_dir)
        with vault.catalog.write_session() as s:
            journal.record_everything(s)
    out.print(f"catalog recorded in the object store: {vault.describe()}")


@db_app.command("fingerprint")
def db_fingerprint(data_dir: Optional[Path] = DataDir):
    """Fingerprint float tensors stored before fingerprints existed (catalog schema 0005).

    New tensors find their base by content (any name, dtype or container) among fingerprinted
    ones; run this once after upgrading a store so that its older tensors can be found too."""
    from weightvault.dedup import fingerprints
    from weightvault.dedup.reader import Reader

    with user_errors():
        vault = open_vault(data_dir)
        done = fingerprints.backfill(vault, Reader(vault))
    out.print(f"{done} tensors fingerprinted: {vault.describe()}")


@db_app.command("upgrade")
def db_upgrade(data_dir: Optional[Path] = DataDir):
    """Apply catalog migrations (also done automatically on first start)."""
    vault = open_vault(data_dir)
    vault.catalog.upgrade()
    out.print(f"catalog at the newest schema: {vault.describe()}")
