"""An opened store: the catalog plus the object backend, as configured."""
from __future__ import annotations

from pathlib import Path

from . import leftovers
from .backends import LocalBackend, ObjectBackend, S3Backend
from .config import Settings
from .db import Catalog
from .journal import Journal
from .packs import PackWriter


class Vault:
    """Everything a process needs to read and write the store. Stateless beyond its settings:
    any number of processes may open the same database and bucket at once."""

    def __init__(self, settings: Settings, *, upgrade: bool = True) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(settings.database_url)
        if upgrade:
            self.catalog.ensure_schema()
        self.backend: ObjectBackend = (
            S3Backend(settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint_url)
            if settings.s3_bucket
            else LocalBackend(settings.data_dir / "objects")
        )
        self.journal = Journal(self.catalog, self.backend, settings.data_dir / "spool")

    @classmethod
    def open(cls, data_dir: str | Path | None = None, **kw) -> "Vault":
        return cls(Settings.from_env(data_dir), **kw)

    def sweep_leftovers(self, *, dry_run: bool = False) -> leftovers.Leftovers:
        """Temp files and folders of dead processes on this node (see ``store.leftovers``), removed unless ``dry_run``."""
        objects_dir = self.backend.root if isinstance(self.backend, LocalBackend) else None
        run = leftovers.find if dry_run else leftovers.sweep
        return run(self.settings.data_dir, objects_dir)

    def pack_writer(self) -> PackWriter:
        return PackWriter(self.catalog, self.backend, self.settings.data_dir / "spool", self.settings.pack_target_bytes)

    def read(self, pack: str, offset: int, size: int) -> bytes | memoryview:
        """Bytes of a pack, as a view where the backend can give one (they are only read)."""
        return self.backend.view(pack, offset, size)

    def describe(self) -> str:
        db = self.catalog.engine.url.render_as_string(hide_password=True)
        return f"catalog {db}; objects in {self.backend.describe()}"

    def close(self) -> None:
        self.catalog.dispose()
