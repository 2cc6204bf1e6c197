"""Engine, sessions and schema upgrades for the catalog (SQLite or PostgreSQL).

Writers use ``write_session()``. On SQLite it opens ``BEGIN IMMEDIATE`` so
that two processes never both read a snapshot and then fail to upgrade to a
write lock (WAL answers that with SQLITE_BUSY at once, without waiting); on
PostgreSQL ordinary transactions plus unique constraints do the job.
"""
from __future__ import annotations

import contextlib
import contextvars
import fcntl
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

#: The newest migration in migrations/versions (tests check it matches Alembic's head). Known
#: here so that opening a store at the newest schema costs one query, not loading Alembic.
SCHEMA_HEAD = "0005"

_immediate: contextvars.ContextVar[bool] = contextvars.ContextVar("wv_sqlite_immediate", default=False)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if _immediate.get() else "BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class Catalog:
    """The catalog database: sessions for readers and writers, and schema upgrades."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        #: The session factory (store/journal.py hooks its events).
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def read_session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    @contextlib.contextmanager
    def write_session(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error."""
        token = _immediate.set(True)
        try:
            with self.sessions() as session, session.begin():
                yield session
        finally:
            _immediate.reset(token)

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (idempotent; safe from several processes)."""
        from alembic import command

        with self._migration_lock():
            command.upgrade(alembic_config(self.url), "head")

    def needs_upgrade(self) -> bool:
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        try:
            with self.engine.connect() as conn:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:
            return True  # no catalog yet
        return current != SCHEMA_HEAD

    def ensure_schema(self) -> None:
        if self.needs_upgrade():
            self.upgrade()

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT pg_advisory_lock(7311)")
                try:
                    yield
                finally:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(7311)")
                    conn.commit()
            return
        db_path = Path(self.url.split("///", 1)[-1])
        with open(db_path.with_suffix(".migrate.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str):
    from alembic.config import Config

    import weightvault.migrations as migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.attributes["database_url"] = url
    return cfg
