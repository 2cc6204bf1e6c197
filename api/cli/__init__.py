"""The ``weightvault`` command line: one Typer app, its commands grouped by what they act on.

Importing a command module registers its commands on the app, in this order in ``--help``.
"""
from . import store_cmds  # noqa: F401
from . import report_cmds  # noqa: F401  (after store_cmds: --help lists commands in import order)
from . import serve_cmds  # noqa: F401
from .common import app


def main() -> None:
    app()
