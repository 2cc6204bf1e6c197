"""Schema upgrades on a catalog that already holds data, on SQLite and PostgreSQL: each migration runs,
keeps what is there, and leaves the schema the models describe."""
from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from weightvault.store.db import Catalog, alembic_config
from weightvault.store.models import Base


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return request.getfixturevalue("postgres_url")


def test_0002_adds_tags_authors_and_token_users_to_a_filled_catalog(catalog_url):
    command.upgrade(alembic_config(catalog_url), "0001")
    catalog = Catalog(catalog_url)
    with catalog.engine.begin() as conn:
        conn.execute(text("INSERT INTO tokens (digest, scope, name, created_at) VALUES ('d', 'write', 'ci', "
                          "CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO repos (kind, name, private, created_at) VALUES ('model', 'acme/a', false, "
                          "CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO commits (repo_id, oid, message, created_at) VALUES (1, :oid, 'm', "
                          "CURRENT_TIMESTAMP)"), {"oid": "a" * 40})
    catalog.upgrade()
    assert not catalog.needs_upgrade()
    with catalog.engine.begin() as conn:
        assert conn.execute(text("SELECT \"user\" FROM tokens")).scalar() == "weightvault"
        assert conn.execute(text("SELECT author FROM commits")).scalar() is None
        conn.execute(text("INSERT INTO tags (repo_id, name, commit_id, message, created_at) "
                          "VALUES (1, 'v1', 1, '', CURRENT_TIMESTAMP)"))
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    catalog.dispose()


def test_0003_adds_token_expiry_and_repo_scopes_keeping_tokens(catalog_url):
    command.upgrade(alembic_config(catalog_url), "0002")
    catalog = Catalog(catalog_url)
    with catalog.engine.begin() as conn:
        conn.execute(text("INSERT INTO tokens (digest, scope, name, \"user\", created_at) VALUES ('d', 'write', 'ci', "
                          "'alice', CURRENT_TIMESTAMP)"))
    catalog.upgrade()
    assert not catalog.needs_upgrade()
    with catalog.engine.begin() as conn:
        row = conn.execute(text("SELECT scope, expires_at, repos FROM tokens")).one()
        assert tuple(row) == ("write", None, None)  # an existing token keeps every right and never expires
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    catalog.dispose()
