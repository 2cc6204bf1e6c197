"""The ``weightvault`` command line.

Every command works on the store named by ``--data-dir`` (or
``WEIGHTVAULT_DATA_DIR``, default ``~/.weightvault``), with the catalog in
``WEIGHTVAULT_DATABASE_URL`` and packs in ``WEIGHTVAULT_S3_BUCKET`` when set.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]})
db_app = typer.Typer(help="Catalog database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
token_app = typer.Typer(help="Bearer tokens for the HTTP API.", no_args_is_help=True)
app.add_typer(token_app, name="token")
console = Console(stderr=True)
out = Console()

DataDir = typer.Option(None, "--data-dir", "-d", envvar="WEIGHTVAULT_DATA_DIR",
                       help="Store folder (catalog and packs for the embedded default).")
JsonOut = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def open_vault(data_dir: Optional[Path]):
    from weightvault.store import Vault

    return Vault.open(data_dir)


@contextmanager
def bytes_progress(total: int | None, label: str, quiet: bool):
    """A bytes-and-files progress bar on stderr (hidden with --json or when not a terminal)."""
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[files]}")]
    with Progress(*columns, console=console, transient=True, disable=quiet or not console.is_terminal) as bar:
        task = bar.add_task(label, total=total, files="")
        count = [0]

        def on_file(path: str) -> None:
            count[0] += 1
            bar.update(task, files=f"{count[0]} files  {path[-40:]}")

        yield (lambda n: bar.advance(task, n)), on_file


def fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@contextmanager
def user_errors():
    """Turn the errors users cause into one clear line and a non-zero exit, never a traceback."""
    from weightvault.dedup.commits import CommitConflict, RepoNotFound, RevisionNotFound
    from weightvault.dedup.content import StaleReference
    from weightvault.dedup.names import InvalidName
    from weightvault.dedup.reader import IntegrityError
    from weightvault.dedup.safetensors import SafetensorsError

    try:
        yield
    except (InvalidName, SafetensorsError, RepoNotFound, RevisionNotFound, CommitConflict, StaleReference,
            IntegrityError, FileNotFoundError, NotADirectoryError) as exc:
        fail(str(exc))


def parse_ref(spec: str) -> tuple[str, str]:
    repo, _, rev = spec.partition("@")
    return repo, rev or "main"


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return str(n)


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
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """Store a model repo folder as a new revision: dedup files and tensors, delta-code fine-tunes
    against their family base and checkpoints against the previous one, plane-code the rest."""
    from weightvault.dedup.ingest import ingest_folder, walk_repo

    with user_errors():
        vault = open_vault(data_dir)
        total = sum(real.stat().st_size for _, real in walk_repo(path))
        with bytes_progress(total, f"ingest {repo}", as_json) as (advance, on_file):
            result = ingest_folder(vault, path, repo, revision, message=message, progress=advance, on_file=on_file,
                                   previous=previous, keyframe_every=keyframe_every)
    if as_json:
        out.print_json(json.dumps(result.__dict__))
    else:
        out.print(f"{result.repo}@{result.revision} -> commit {result.commit}: {result.files} files, "
                  f"{human(result.raw_bytes)} raw, {human(result.new_stored_bytes)} newly stored")
        out.print(f"family {result.family}" + (f", coded against {result.base}" if result.base else ", as its base")
                  + f" ({result.family_reason})")


@app.command()
def get(
    spec: str = typer.Argument(..., help="org/name or org/name@revision (branch or commit id)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder to write the files into."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """Write every file of a revision to a folder, bit-exactly, each checked against its sha256."""
    from weightvault.dedup.commits import resolve, tree_of
    from weightvault.dedup.restore import restore

    repo, rev = parse_ref(spec)
    with user_errors():
        vault = open_vault(data_dir)
        with vault.catalog.read_session() as s:
            total = sum(f.size for f in tree_of(s, resolve(s, repo, rev).commit).values())
        with bytes_progress(total, f"get {spec}", as_json) as (advance, on_file):
            written = restore(vault, repo, rev, out_dir, progress=advance, on_file=on_file)
    if as_json:
        out.print_json(json.dumps({"repo": repo, "revision": rev, "files": written}))
    else:
        out.print(f"{len(written)} files written to {out_dir} ({human(total)}), all sha256 verified")


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
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """Re-read every pack, frame and file and check their checksums; exit 1 naming what is wrong."""
    from weightvault.dedup.verify import verify as run

    with user_errors():
        vault = open_vault(data_dir)
        with bytes_progress(None, "verify", as_json) as (advance, _):
            report = run(vault, repo, progress=advance)
    if as_json:
        out.print_json(json.dumps({**report.__dict__, "ok": report.ok}))
    else:
        for p in report.problems:
            console.print(f"[red]BAD[/red] {p}")
        out.print(f"{report.packs} packs, {report.files} files, {human(report.bytes)} checked: "
                  + ("OK" if report.ok else f"{len(report.problems)} problems"))
    if not report.ok:
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
    compact_below: float = typer.Option(0.5, "--compact-below", help="Rewrite packs whose live frames fill "
                                        "less than this share of them (0 turns compaction off)."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """Delete files, objects and packs that no revision references any more, and compact sparse packs.

    Packs are deleted in two steps (marked, then deleted after the grace period), so
    downloads and ingests running meanwhile are safe."""
    from weightvault.store.gc import collect, compact

    vault = open_vault(data_dir)
    grace = timedelta(minutes=grace_minutes)
    result = collect(vault.catalog, vault.backend, grace)
    if compact_below > 0:
        compact(vault.catalog, vault.backend, vault.pack_writer(), compact_below, result)
        if result.packs_compacted:  # the emptied packs go now if their grace is over, else in a later run
            again = collect(vault.catalog, vault.backend, grace)
            result.packs_deleted += again.packs_deleted
            result.bytes_freed += again.bytes_freed
    if as_json:
        out.print_json(json.dumps(result.__dict__))
    else:
        out.print(f"dropped {result.files} files, {result.objects} objects; marked {result.packs_marked} packs; "
                  f"deleted {result.packs_deleted} packs ({human(result.bytes_freed)}); "
                  f"compacted {result.packs_compacted} packs ({human(result.bytes_moved)} moved)")


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


@token_app.command("create")
def token_create(
    scope: str = typer.Option("read", "--scope", help="read (downloads) or write (uploads, deletes; implies read)."),
    name: str = typer.Option("", "--name", help="A note to remember what the token is for."),
    data_dir: Optional[Path] = DataDir,
):
    """Create a bearer token and print it (only its hash is kept: copy it now)."""
    from weightvault.dedup.tokens import create_token

    vault = open_vault(data_dir)
    try:
        with vault.catalog.write_session() as s:
            secret = create_token(s, scope, name)
    except ValueError as exc:
        fail(str(exc))
    out.print(secret)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", "-p", help="TCP port."),
    workers: int = typer.Option(1, "--workers", help="Worker processes (each streams independently)."),
    anonymous_reads: bool = typer.Option(False, "--anonymous-reads", envvar="WEIGHTVAULT_ANONYMOUS_READS", help="Serve downloads and listings without "
                                         "a token (private repos still need one; writes always do)."),
    upstream: Optional[str] = typer.Option(None, "--upstream", envvar="WEIGHTVAULT_UPSTREAM",
                                           help="Pull-through mirror: fetch repos missing here from this hub "
                                           "(e.g. https://huggingface.co), store them, serve them."),
    upstream_token: Optional[str] = typer.Option(None, "--upstream-token", envvar="WEIGHTVAULT_UPSTREAM_TOKEN",
                                                 help="Bearer token for the upstream hub."),
    data_dir: Optional[Path] = DataDir,
):
    """Serve the REST API (/api/v1, docs at /docs) and the hub-compatible routes over HTTP.

    Point huggingface_hub at it with HF_ENDPOINT=http://HOST:PORT. Clients with hf_xet installed
    upload with HF_HUB_DISABLE_XET=1 (this server speaks LFS, not Xet); downloads need no setting."""
    import os

    import uvicorn

    # The app reads its settings from the environment, so every worker builds the same one.
    if data_dir:
        os.environ["WEIGHTVAULT_DATA_DIR"] = str(data_dir)
    os.environ["WEIGHTVAULT_ANONYMOUS_READS"] = "1" if anonymous_reads else ""
    os.environ["WEIGHTVAULT_UPSTREAM"] = upstream or ""
    os.environ["WEIGHTVAULT_UPSTREAM_TOKEN"] = upstream_token or ""
    open_vault(data_dir).close()  # apply migrations once, before workers race to
    console.print(f"weightvault on http://{host}:{port} (docs at /docs)"
                  + (f", mirroring {upstream}" if upstream else ""))
    uvicorn.run("weightvault.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning")


@app.command()
def mirror(
    spec: str = typer.Argument(..., help="org/name or org/name@revision to fetch from the upstream hub."),
    upstream: str = typer.Option("https://huggingface.co", "--upstream", envvar="WEIGHTVAULT_UPSTREAM",
                                 help="Hub to fetch from."),
    upstream_token: Optional[str] = typer.Option(None, "--upstream-token", envvar="WEIGHTVAULT_UPSTREAM_TOKEN",
                                                 help="Bearer token for the upstream hub."),
    kind: str = typer.Option("model", "--type", help="model, dataset or space."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonOut,
):
    """Fetch a repo from an upstream hub ahead of time, so `serve --upstream` never has to."""
    from weightvault.api.mirror import Mirror, UpstreamMissing

    repo, rev = parse_ref(spec)
    with user_errors():
        vault = open_vault(data_dir)
        try:
            result = Mirror(vault, upstream, upstream_token).pull(kind, repo, rev)
        except UpstreamMissing as exc:
            fail(str(exc))
    if as_json:
        out.print_json(json.dumps(result.__dict__ if result else {"repo": repo, "revision": rev, "fetched": False}))
    elif result is None:
        out.print(f"{repo}@{rev} is already stored; nothing fetched")
    else:
        out.print(f"{repo}@{rev} mirrored from {upstream} -> commit {result.commit}: {result.files} files, "
                  f"{human(result.raw_bytes)} raw, {human(result.new_stored_bytes)} newly stored")


@db_app.command("upgrade")
def db_upgrade(data_dir: Optional[Path] = DataDir):
    """Apply catalog migrations (also done automatically on first start)."""
    vault = open_vault(data_dir)
    vault.catalog.upgrade()
    out.print(f"catalog at the newest schema: {vault.describe()}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
