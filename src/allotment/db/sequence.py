"""Change logs numbered in commit order: the ledger's ``change_log`` and the host cache's
``scheduler_changes`` each append one row per write transaction, and every process polls
for rows after the last sequence number it applied.

Ordering: a poller that has seen sequence N must never later find a committed row < N.
On SQLite writers are globally serialized, so autoincrement order is commit order. On
PostgreSQL and MySQL every write first locks the log's single counter row (held until
commit) and only then draws its sequence number, so numbers are handed out in commit order.
That lock is taken as the last statement of the transaction to keep it short.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db.prepared import PreparedStatement


class CommitOrderedLog:
    """One log table (``seq`` primary key, ``created_at``) and its counter table (one row,
    ``id`` 1). Its statements are prepared: every write appends, every poll asks."""

    def __init__(self, log: sa.Table, counter: sa.Table) -> None:
        self.log = log
        seq = log.c.seq
        self.lock_counter = PreparedStatement(
            counter.update().where(counter.c.id == 1).values(seq=counter.c.seq + 1)
        )
        self.latest_seq = PreparedStatement(sa.select(sa.func.coalesce(sa.func.max(seq), 0)))
        self.append_row = PreparedStatement(log.insert())
        self.append_returning = PreparedStatement(log.insert().returning(seq))

    def append(self, conn: Connection, values: Mapping[str, Any]) -> int:
        """Append a row; returns its sequence number. Call last, just before commit."""
        if conn.dialect.name != "sqlite":
            self.lock_counter.execute(conn)
        if conn.dialect.name == "postgresql":
            return self.append_returning.insert(conn, values)
        return self.append_row.insert(conn, values)

    def latest(self, conn: Connection) -> int:
        """The newest sequence number (0 for an empty log)."""
        return int(self.latest_seq.scalar(conn))

    def oldest(self, conn: Connection) -> int | None:
        value = conn.execute(sa.select(sa.func.min(self.log.c.seq))).scalar_one()
        return None if value is None else int(value)

    def prune(self, conn: Connection, older_than: datetime) -> int:
        """Forget rows older than ``older_than`` (always keeping the newest one)."""
        newest = self.latest(conn)
        result = conn.execute(
            self.log.delete().where(self.log.c.created_at < older_than, self.log.c.seq < newest)
        )
        return int(result.rowcount or 0)
