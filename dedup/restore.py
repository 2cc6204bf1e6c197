"""Write a revision back to a folder, every file checked against its sha256."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from weightvault.store import Vault

from .commits import resolve, tree_of
from .names import check_path
from .reader import Reader


def restore(vault: Vault, repo: str, revision: str, out: Path, *, kind: str = "model",
            progress: Callable[[int], None] = lambda n: None,
            on_file: Callable[[str], None] = lambda p: None) -> dict[str, str]:
    """Returns path -> sha256 of every file written. A file is renamed into place only once verified."""
    with vault.catalog.read_session() as s:
        r = resolve(s, repo, revision, kind)
        tree = tree_of(s, r.commit)
    reader = Reader(vault)
    out = Path(out)
    written = {}
    for path, file in sorted(tree.items()):
        check_path(path)
        on_file(path)
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".wv-")
        try:
            with os.fdopen(fd, "wb") as f:
                for piece in reader.verified_file(file):
                    f.write(piece)
                    progress(len(piece))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written[path] = file.sha256
    return written
