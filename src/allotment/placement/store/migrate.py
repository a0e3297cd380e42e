"""Schema migrations (Alembic), run by ``allotment db upgrade`` and automatically at start-up."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from allotment.errors import ConfigError
from allotment.placement.store.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


_LOCK_NAME = "allotment_schema_migration"


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is already there.

    Several processes may start at once against one empty server database: a database-level
    advisory lock makes the first one migrate while the others wait and then find the
    schema current.
    """
    cfg = _config()
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:n))"), {"n": _LOCK_NAME})
        elif db.dialect == "mysql":
            conn.execute(sa.text("SELECT GET_LOCK(:n, 300)"), {"n": _LOCK_NAME})
        conn.commit()
        try:
            conn.execution_options(allotment_write=True)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        finally:
            if db.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:n))"), {"n": _LOCK_NAME})
            elif db.dialect == "mysql":
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": _LOCK_NAME})
            conn.commit()


def prepare(db: Database) -> None:
    """Create the schema on an empty database; refuse to run on an outdated one."""
    current = current_revision(db)
    head = head_revision()
    if current == head:
        return
    if current is None:
        if sa.inspect(db.engine).has_table("resource_providers"):
            raise ConfigError(
                "the database has allotment tables but no schema revision; it was not created "
                "by 'allotment db upgrade' and will not be touched"
            )
        upgrade(db)
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
