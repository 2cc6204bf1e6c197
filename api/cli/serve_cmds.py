"""Commands for the HTTP side: tokens, serve, mirror."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import DataDir, JsonOut, app, console, fail, human, open_vault, out, parse_ref, token_app, user_errors


@token_app.command("create")
def token_create(
    scope: str = typer.Option("read", "--scope", help="read (downloads) or write (uploads, deletes; implies read)."),
    name: str = typer.Option("", "--name", help="A note to remember what the token is for."),
    user: str = typer.Option("weightvault", "--user", help="Who the token speaks for: the name `hf auth whoami` "
                             "shows and the author of the commits it makes."),
    expires: Optional[str] = typer.Option(None, "--expires", help="When it stops working: a duration from now "
                                          "(90m, 12h, 30d, 2w) or an ISO date. Default: never."),
    repo: list[str] = typer.Option([], "--repo", help="Limit the token to these repos (repeatable; org/name or "
                                   "org/*): it writes only to them and reads private repos only among them."),
    data_dir: Optional[Path] = DataDir,
):
    """Create a bearer token and print it (only its hash is kept: copy it now)."""
    from weightvault.dedup.tokens import create_token, parse_expiry

    vault = open_vault(data_dir)
    try:
        expires_at = parse_expiry(expires) if expires else None
        with vault.catalog.write_session() as s:
            secret = create_token(s, scope, name, user, expires_at=expires_at, repos=repo)
    except ValueError as exc:  # InvalidName is one too
        fail(str(exc))
    out.print(secret)


@token_app.command("list")
def token_list(data_dir: Optional[Path] = DataDir, as_json: bool = JsonOut):
    """Every token: its id (for revoke), scope, repos, user, note, creation and expiry (never the secret)."""
    from rich.table import Table

    from weightvault.dedup.tokens import is_live, list_tokens

    vault = open_vault(data_dir)
    with vault.catalog.read_session() as s:
        rows = [{"id": t.id, "scope": t.scope, "repos": t.repos or "*", "user": t.user, "name": t.name,
                 "created": t.created_at.isoformat(timespec="seconds"),
                 "expires": t.expires_at.isoformat(timespec="seconds") if t.expires_at else "never",
                 "expired": not is_live(t)} for t in list_tokens(s)]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} tokens")
    for col in ("id", "scope", "repos", "user", "name", "created", "expires"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c]) + (" (expired)" if c == "expires" and r["expired"] else "")
                        for c in ("id", "scope", "repos", "user", "name", "created", "expires")))
    out.print(table)


@token_app.command("revoke")
def token_revoke(token: str = typer.Argument(..., help="The token itself, or its id from `weightvault token list`."),
                 data_dir: Optional[Path] = DataDir):
    """Delete a token: every node refuses it (and the upload URLs it signed) from the next request on."""
    from weightvault.dedup.tokens import revoke

    vault = open_vault(data_dir)
    with vault.catalog.write_session() as s:
        gone = revoke(s, token.strip())
        label = f"token {gone.id} ({gone.scope}{', ' + gone.name if gone.name else ''})" if gone else None
    if label is None:
        fail("no such token: give the token itself or an id from `weightvault token list`")
    out.print(f"revoked {label}")


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

    Point huggingface_hub at it with HF_ENDPOINT=http://HOST:PORT; nothing else is needed. Clients
    with hf_xet upload through Xet, older ones through LFS; downloads are plain HTTP."""
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
    from weightvault.api.mirror import Mirror

    repo, rev = parse_ref(spec)
    with user_errors():
        vault = open_vault(data_dir)
        result = Mirror(vault, upstream, upstream_token).pull(kind, repo, rev)
    if as_json:
        out.print_json(json.dumps(result.__dict__ if result else {"repo": repo, "revision": rev, "fetched": False}))
    elif result is None:
        out.print(f"{repo}@{rev} is already stored; nothing fetched")
    else:
        out.print(f"{repo}@{rev} mirrored from {upstream} -> commit {result.commit}: {result.files} files, "
                  f"{human(result.raw_bytes)} raw, {human(result.new_stored_bytes)} newly stored")
