"""Consumer rows: the owner (project, user), type and generation of a set of allocations.

A consumer row exists while the consumer holds allocations; writing an empty set of
allocations, or deleting them, removes it (as upstream). A consumer first written with no
allocations at all keeps a row with generation 0, as upstream's does.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db.prepared import PreparedStatement, insert_returning_id
from allotment.placement.store.tables import consumers

c = consumers
_SELECT = sa.select(
    c.c.id, c.c.uuid, c.c.project_id, c.c.user_id, c.c.generation, c.c.consumer_type_id
).order_by(c.c.id)
_BY_UUIDS = PreparedStatement(_SELECT.where(c.c.uuid.in_(sa.bindparam("uuids", expanding=True))))
_LOCK_BY_UUIDS = PreparedStatement(
    _SELECT.where(c.c.uuid.in_(sa.bindparam("uuids", expanding=True))).with_for_update()
)
_INSERT = insert_returning_id(c)
_UPDATE = PreparedStatement(
    c.update()
    .where(c.c.id == sa.bindparam("consumer_id"), c.c.generation == sa.bindparam("expected"))
    .values(
        generation=sa.bindparam("new_generation"),
        project_id=sa.bindparam("new_project_id"),
        user_id=sa.bindparam("new_user_id"),
        consumer_type_id=sa.bindparam("new_type_id"),
        updated_at=sa.bindparam("now"),
    )
)
_DELETE = PreparedStatement(c.delete().where(c.c.id.in_(sa.bindparam("ids", expanding=True))))


@dataclass(frozen=True, slots=True)
class ConsumerRow:
    id: int
    uuid: str
    project_id: str
    user_id: str
    generation: int
    type_id: int | None


def lock_by_uuids(conn: Connection, uuids: Collection[str]) -> dict[str, ConsumerRow]:
    """The existing consumers among ``uuids``, locked until commit on PostgreSQL/MySQL
    (in id order, so writers queue instead of deadlocking)."""
    if not uuids:
        return {}
    stmt = _BY_UUIDS if conn.dialect.name == "sqlite" else _LOCK_BY_UUIDS
    rows = stmt.rows(conn, {"uuids": sorted(set(uuids))})
    return {row[1]: ConsumerRow(*row) for row in rows}


def insert(
    conn: Connection,
    *,
    uuid: str,
    project_id: str,
    user_id: str,
    generation: int,
    type_id: int | None,
    now: datetime,
) -> int:
    return _INSERT.insert(
        conn,
        {
            "uuid": uuid,
            "project_id": project_id,
            "user_id": user_id,
            "generation": generation,
            "consumer_type_id": type_id,
            "created_at": now,
            "updated_at": now,
        },
    )


def update(
    conn: Connection,
    row: ConsumerRow,
    *,
    generation: int,
    project_id: str,
    user_id: str,
    type_id: int | None,
    now: datetime,
) -> bool:
    """Set owner, type and generation, if the row is still at ``row.generation``."""
    changed = _UPDATE.execute(
        conn,
        {
            "consumer_id": row.id,
            "expected": row.generation,
            "new_generation": generation,
            "new_project_id": project_id,
            "new_user_id": user_id,
            "new_type_id": type_id,
            "now": now,
        },
    )
    return changed == 1


def delete(conn: Connection, ids: Iterable[int]) -> None:
    ordered = sorted(set(ids))
    if ordered:
        _DELETE.execute(conn, {"ids": ordered})
