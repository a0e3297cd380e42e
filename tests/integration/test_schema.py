"""Schema set-up: migrations match the table definitions, and several processes starting
together on one empty server database all come up."""

from __future__ import annotations

import multiprocessing

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from allotment.db import migrate
from allotment.db.database import Database
from allotment.db.metadata import all_tables


def test_migrations_create_exactly_the_declared_schema(database_url: str) -> None:
    db = Database(database_url)
    migrate.upgrade(db)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), all_tables())
    db.dispose()
    assert diff == []


def _start(url: str) -> None:
    db = Database(url)
    migrate.prepare(db)
    db.dispose()


def test_concurrent_first_starts_all_succeed(database_url: str) -> None:
    """Processes (alembic is not thread-safe, and real servers are processes)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        pool.map(_start, [database_url] * 4)
    db = Database(database_url)
    assert migrate.current_revision(db) == migrate.head_revision()
    db.dispose()
