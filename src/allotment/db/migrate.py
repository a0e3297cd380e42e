"""Schema migrations (Alembic), run by ``allotment db upgrade`` and automatically at start-up."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from allotment.db.database import Database
from allotment.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


_LOCK_NAME = "allotment_schema_migration"


@contextmanager
def _migration_lock(db: Database) -> Iterator[Connection]:
    """A connection holding the database-wide migration lock (PostgreSQL advisory lock,
    MySQL GET_LOCK, an flock on a file beside an SQLite database)."""
    with _sqlite_file_lock(db), db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:n))"), {"n": _LOCK_NAME})
        elif db.dialect == "mysql":
            conn.execute(sa.text("SELECT GET_LOCK(:n, 300)"), {"n": _LOCK_NAME})
        conn.commit()
        try:
            yield conn
        finally:
            if db.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:n))"), {"n": _LOCK_NAME})
            elif db.dialect == "mysql":
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": _LOCK_NAME})
            conn.commit()


@contextmanager
def _sqlite_file_lock(db: Database) -> Iterator[None]:
    database = sa.engine.make_url(db.url).database
    if db.dialect != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _upgrade_locked(conn: Connection, revision: str) -> None:
    cfg = _config()
    conn.execution_options(allotment_write=True)
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)
    conn.commit()


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is already there.

    Several processes may start at once against one empty server database: the migration
    lock makes the first one migrate while the others wait and then find the schema current.
    """
    with _migration_lock(db) as conn:
        _upgrade_locked(conn, revision)


def prepare(db: Database) -> None:
    """Create the schema on an empty database; refuse to run on an outdated one."""
    head = head_revision()
    if current_revision(db) == head:
        return
    # Decide under the lock: on MySQL the DDL of a concurrent first start is visible before
    # its revision is stamped, so an unlocked look could mistake it for foreign tables.
    with _migration_lock(db) as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        conn.commit()
        if current == head:
            return
        if current is None:
            if sa.inspect(conn).has_table("resource_providers"):
                raise ConfigError(
                    "the database has allotment tables but no schema revision; it was not "
                    "created by 'allotment db upgrade' and will not be touched"
                )
            _upgrade_locked(conn, "head")
            return
    raise ConfigError(
        f"the database schema is at revision {current} but this allotment needs {head}: "
        "run 'allotment db upgrade' (with the same --database-url) first"
    )


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()
