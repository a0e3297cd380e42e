"""Database access: one engine per process, write transactions that serialize correctly on
SQLite, PostgreSQL and MySQL/MariaDB, and server-side retry of transactions that lost a race.

* SQLite: writes start with ``BEGIN IMMEDIATE`` (the database write lock is taken up front,
  so two processes never interleave a read-check-write); WAL journal; ``synchronous`` is
  ``FULL`` by default so a 204 on a claim means the claim survives a power cut.
* PostgreSQL / MySQL: READ COMMITTED; write paths lock the provider rows they touch
  (``SELECT ... FOR UPDATE`` in id order) before checking capacity, so concurrent writers
  queue on the rows instead of over-committing. Deadlocks and lock time-outs are retried.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from allotment.errors import ConcurrentUpdate

LOG = logging.getLogger(__name__)
T = TypeVar("T")
# A result row of any shape (SQLAlchemy 2.1 types rows by their column types).
AnyRow = sa.Row[*tuple[Any, ...]]
Dialect = Literal["sqlite", "postgresql", "mysql"]

# SQLSTATE / driver error numbers that mean "this transaction lost a race; run it again".
_PG_RETRY_STATES = {"40001", "40P01", "55P03"}
_MYSQL_RETRY_ERRNOS = {1205, 1213}


class RetryTransaction(Exception):
    """Raised inside a write transaction to roll it back and run it again from the start."""


def utcnow() -> datetime:
    """Current UTC time without tzinfo or microseconds (what every backend stores alike)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def normalize_url(url: str) -> str:
    """Pick our drivers for bare URLs and make sure an SQLite file's folder exists."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend in ("mysql", "mariadb") and "+" not in parsed.drivername:
        parsed = parsed.set(drivername=f"{backend}+pymysql")
    if backend == "mysql" or backend == "mariadb":
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        parsed = parsed.set(query=query)
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return parsed.render_as_string(hide_password=False)


def _is_retryable(exc: sa.exc.DBAPIError) -> bool:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state in _PG_RETRY_STATES:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_RETRY_ERRNOS:
        return True
    return "database is locked" in str(orig)


class Database:
    """The process's handle on the SQL store."""

    # WAL pages between automatic checkpoints. A checkpoint copies each changed page once
    # however often it changed, so a larger interval makes hot pages (the newest rows of
    # the busy tables) cheap; 10000 pages bounds the WAL at about 40 MB.
    WAL_AUTOCHECKPOINT = 10000

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        sqlite_synchronous: str = "FULL",
        write_retries: int = 10,
        echo: bool = False,
    ) -> None:
        self.url = normalize_url(url)
        self.write_retries = write_retries
        backend = make_url(self.url).get_backend_name()
        self.dialect: Dialect = "mysql" if backend == "mariadb" else backend  # type: ignore[assignment]
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs["pool_size"] = pool_size
        else:
            kwargs.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                pool_recycle=3600,
                isolation_level="READ COMMITTED",
                # A database host that stops answering must fail a request, not hang it.
                connect_args={"connect_timeout": 5},
            )
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        self._local = threading.local()
        if self.dialect == "sqlite":
            self._setup_sqlite(sqlite_synchronous)

    def _setup_sqlite(self, synchronous: str) -> None:
        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control away from the sqlite3 module: we emit BEGIN ourselves.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.execute("PRAGMA cache_size=-65536")
            cur.execute(f"PRAGMA wal_autocheckpoint={self.WAL_AUTOCHECKPOINT}")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("allotment_write", False)
            statement = "BEGIN IMMEDIATE" if write else "BEGIN"
            # Straight to the driver: SQLAlchemy's statement machinery would cost more than
            # the statement itself on every transaction.
            try:
                conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
            except sqlite3.Error as exc:  # wrapped, so "database is locked" is retried
                raise sa.exc.DBAPIError.instance(
                    statement, (), exc, sqlite3.Error, dialect=conn.dialect
                ) from exc

    def _pinned(self, kind: str) -> Connection | None:
        """This thread's long-lived connection of ``kind``, or None if it is busy (nested use).

        Checking a connection out of the pool and resetting it on return costs ~50 us a
        transaction; each thread instead keeps one reading and one writing connection.
        """
        conn: Connection | None = getattr(self._local, kind, None)
        if conn is not None and (conn.closed or conn.invalidated):
            conn.close()
            conn = None
        if conn is None:
            conn = self.engine.connect()
            if kind == "writer":
                conn.execution_options(allotment_write=True)
            setattr(self._local, kind, conn)
            return conn
        return None if conn.in_transaction() else conn

    @contextmanager
    def _transaction(self, kind: str) -> Iterator[Connection]:
        conn = self._pinned(kind)
        if conn is None:  # nested: use a pooled connection of its own
            with self.engine.connect() as own:
                if kind == "writer":
                    own.execution_options(allotment_write=True)
                with own.begin():
                    yield own
            return
        try:
            with conn.begin():
                yield conn
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                conn.close()
                setattr(self._local, kind, None)
            raise

    def read(self) -> AbstractContextManager[Connection]:
        """A read-only transaction (a consistent snapshot on every backend)."""
        return self._transaction("reader")

    def write(self) -> AbstractContextManager[Connection]:
        """One write transaction, committed on success, rolled back on any exception."""
        return self._transaction("writer")

    def transaction(self, work: Callable[[Connection], T], *, retries: int | None = None) -> T:
        """Run ``work`` in a write transaction, running it again if it lost a race.

        ``work`` may raise ``RetryTransaction``; database deadlocks and lock time-outs are
        retried the same way. After the last attempt the caller gets ConcurrentUpdate (409).
        """
        attempts = (self.write_retries if retries is None else retries) + 1
        for attempt in range(attempts):
            try:
                with self.write() as conn:
                    return work(conn)
            except RetryTransaction:
                pass
            except sa.exc.DBAPIError as exc:
                if not _is_retryable(exc):
                    raise
                LOG.debug("write transaction lost a race (attempt %d): %s", attempt + 1, exc.orig)
            if attempt + 1 < attempts:
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise ConcurrentUpdate(
            "Another request changed the same resource providers or consumers at the same "
            "time; the update was retried and still conflicted. Please try again."
        )

    def dispose(self) -> None:
        for kind in ("reader", "writer"):
            conn = getattr(self._local, kind, None)
            if conn is not None:
                conn.close()
                setattr(self._local, kind, None)
        self.engine.dispose()
