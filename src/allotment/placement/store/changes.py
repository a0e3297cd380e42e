"""The change sequence: every write appends one ``change_log`` row in its own transaction.

Other processes poll ``change_log`` for rows after the last sequence number they applied
and refresh exactly the providers named there, so each process's capacity index converges
on the truth within the poll interval without rebuilding.

Ordering: a poller that has seen sequence N must never later find a committed row < N.
On SQLite writers are globally serialized, so autoincrement order is commit order. On
PostgreSQL and MySQL every write first locks the single ``change_counter`` row (held until
commit) and only then draws its sequence number, so numbers are handed out in commit order.
That lock is taken as the last statement of the transaction to keep it short.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db.database import utcnow
from allotment.db.prepared import PreparedStatement
from allotment.placement.store.tables import change_counter, change_log

SCOPE_PROVIDERS = "providers"
SCOPE_CATALOG = "catalog"

_LOCK_COUNTER = PreparedStatement(
    change_counter.update().where(change_counter.c.id == 1).values(seq=change_counter.c.seq + 1)
)


_LATEST = PreparedStatement(sa.select(sa.func.coalesce(sa.func.max(change_log.c.seq), 0)))
_APPEND = PreparedStatement(change_log.insert())
_APPEND_RETURNING = PreparedStatement(change_log.insert().returning(change_log.c.seq))


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    scope: str
    provider_ids: tuple[int, ...]
    created_at: datetime


def record(conn: Connection, provider_ids: Iterable[int] = (), scope: str = SCOPE_PROVIDERS) -> int:
    """Append a change row; returns its sequence number. Call last, just before commit."""
    if conn.dialect.name != "sqlite":
        _LOCK_COUNTER.execute(conn)
    ids = ",".join(str(i) for i in sorted(set(provider_ids)))
    params = {"providers": ids, "scope": scope, "created_at": utcnow()}
    if conn.dialect.name == "postgresql":
        return _APPEND_RETURNING.insert(conn, params)
    return _APPEND.insert(conn, params)


def latest(conn: Connection) -> int:
    """The newest sequence number (0 for an empty log). Prepared: every index refresh asks."""
    return int(_LATEST.scalar(conn))


def since(conn: Connection, seq: int, limit: int = 10000) -> list[Change]:
    rows = conn.execute(
        sa.select(
            change_log.c.seq, change_log.c.scope, change_log.c.providers, change_log.c.created_at
        )
        .where(change_log.c.seq > seq)
        .order_by(change_log.c.seq)
        .limit(limit)
    ).all()
    return [
        Change(
            seq=row.seq,
            scope=row.scope,
            provider_ids=tuple(int(p) for p in row.providers.split(",") if p),
            created_at=row.created_at,
        )
        for row in rows
    ]


def oldest(conn: Connection) -> int | None:
    value = conn.execute(sa.select(sa.func.min(change_log.c.seq))).scalar_one()
    return None if value is None else int(value)


def prune(conn: Connection, older_than: datetime) -> int:
    """Forget change rows older than ``older_than`` (always keeping the newest one)."""
    newest = latest(conn)
    result = conn.execute(
        change_log.delete().where(change_log.c.created_at < older_than, change_log.c.seq < newest)
    )
    return int(result.rowcount or 0)
