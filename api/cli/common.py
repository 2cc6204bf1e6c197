"""What every command shares: the Typer app, store options, progress bars and error reporting."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from ..sizes import human_bytes as human  # noqa: F401  (as the dashboard prints sizes)

HELP = """The ``weightvault`` command line.

Every command works on the store named by ``--data-dir`` (or
``WEIGHTVAULT_DATA_DIR``, default ``~/.weightvault``), with the catalog in
``WEIGHTVAULT_DATABASE_URL`` and packs in ``WEIGHTVAULT_S3_BUCKET`` when set.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode="markdown",
                  context_settings={"help_option_names": ["-h", "--help"]})
db_app = typer.Typer(help="Catalog database maintenance.", no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(db_app, name="db")
token_app = typer.Typer(help="Bearer tokens for the HTTP API.", no_args_is_help=True,
                        rich_markup_mode="markdown")
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
    """Turn weightvault errors into one clear line and the exit code their class carries
    (weightvault/errors), and a missing input folder into exit 2; never a traceback."""
    from weightvault.errors import WeightvaultError

    try:
        yield
    except WeightvaultError as exc:
        fail(str(exc), exc.exit_code)
    except (FileNotFoundError, NotADirectoryError) as exc:
        fail(str(exc), 2)


def parse_ref(spec: str) -> tuple[str, str]:
    repo, _, rev = spec.partition("@")
    return repo, rev or "main"
