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
    data_dir: Optional[Path] = DataDir,
):
    """Create a bearer token and print it (only its hash is kept: copy it now)."""
    from weightvault.dedup.tokens import create_token

    vault = open_vault(data_dir)
    try:
        with vault.catalog.write_session() as s:
            secret = create_token(s, scope, name, user)
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
