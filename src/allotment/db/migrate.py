"""Schema migrations (Alembic), run by ``allotment db upgrade`` and automatically at start-up."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from allotment.db import locks
from allotment.db.database import Database
from allotment.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


_LOCK_NAME = "allotment_schema_migration"


def _migration_lock(db: Database) -> AbstractContextManager[Connection]:
    return locks.named_lock(db, _LOCK_NAME, ".migrate-lock")


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
