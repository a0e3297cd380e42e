"""Database-wide named locks, for the rare decisions several processes starting at once
must take one at a time (the schema migration, the bootstrap admin token).

PostgreSQL: a session advisory lock; MySQL/MariaDB: ``GET_LOCK``; SQLite: an ``flock`` on a
file beside the database (no lock for an in-memory database, which one process owns).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db.database import Database

# MySQL's GET_LOCK waits at most this long (seconds); PostgreSQL's advisory lock waits.
WAIT_S = 300


@contextmanager
def named_lock(db: Database, name: str, sqlite_suffix: str) -> Iterator[Connection]:
    """A connection holding the lock ``name`` (SQLite: the file ``<database><suffix>``);
    the caller commits its own work on it."""
    with _sqlite_file_lock(db, sqlite_suffix), db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:n))"), {"n": name})
        elif db.dialect == "mysql":
            conn.execute(sa.text("SELECT GET_LOCK(:n, :w)"), {"n": name, "w": WAIT_S})
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            if db.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:n))"), {"n": name})
            elif db.dialect == "mysql":
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": name})
            conn.commit()


@contextmanager
def _sqlite_file_lock(db: Database, suffix: str) -> Iterator[None]:
    database = sa.engine.make_url(db.url).database
    if db.dialect != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}{suffix}", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
