"""The change sequence: every write appends one ``change_log`` row in its own transaction.

Other processes poll ``change_log`` for rows after the last sequence number they applied
and refresh exactly the providers named there, so each process's capacity index converges
on the truth within the poll interval without rebuilding.

Sequence numbers are handed out in commit order (``allotment.db.sequence``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db.database import utcnow
from allotment.db.sequence import CommitOrderedLog
from allotment.placement.store.tables import change_counter, change_log

SCOPE_PROVIDERS = "providers"
SCOPE_CATALOG = "catalog"

_LOG = CommitOrderedLog(change_log, change_counter)
# Module-level names, so tests/integration/test_prepared_statements.py runs each of them.
_LOCK_COUNTER = _LOG.lock_counter
_LATEST = _LOG.latest_seq
_APPEND = _LOG.append_row
_APPEND_RETURNING = _LOG.append_returning


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    scope: str
    provider_ids: tuple[int, ...]
    created_at: datetime


def record(conn: Connection, provider_ids: Iterable[int] = (), scope: str = SCOPE_PROVIDERS) -> int:
    """Append a change row; returns its sequence number. Call last, just before commit."""
    ids = ",".join(str(i) for i in sorted(set(provider_ids)))
    return _LOG.append(conn, {"providers": ids, "scope": scope, "created_at": utcnow()})


def latest(conn: Connection) -> int:
    """The newest sequence number (0 for an empty log). Prepared: every index refresh asks."""
    return _LOG.latest(conn)


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
    return _LOG.oldest(conn)


def prune(conn: Connection, older_than: datetime) -> int:
    """Forget change rows older than ``older_than`` (always keeping the newest one)."""
    return _LOG.prune(conn, older_than)
