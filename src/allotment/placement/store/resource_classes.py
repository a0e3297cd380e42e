"""Resource class rows: list, lookup, create, rename, delete and the in-use check."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db.prepared import PreparedStatement, insert_returning_id
from allotment.placement.model import CatalogEntry
from allotment.placement.store.tables import allocations, inventories, resource_classes

rc = resource_classes
_SELECT = sa.select(rc.c.id, rc.c.name, rc.c.created_at, rc.c.updated_at)

# Standard classes get the lowest ids in os-resource-classes order, so id order lists them
# first, as upstream does.
_ALL = PreparedStatement(_SELECT.order_by(rc.c.id))
_BY_NAME = PreparedStatement(_SELECT.where(rc.c.name == sa.bindparam("name")))
# Taken by writers that change or remove a class, so a concurrent delete and an inventory
# write on PostgreSQL/MySQL serialize on the row (SQLite's write lock already does).
_LOCK_BY_NAME = PreparedStatement(
    _SELECT.where(rc.c.name == sa.bindparam("name")).with_for_update()
)
# Taken by writers that add rows referring to custom classes (inventories, allocations):
# a class delete, which locks the row for update first, waits for them or they see it gone.
_SHARE_BY_IDS = PreparedStatement(
    sa.select(rc.c.id)
    .where(rc.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(rc.c.id)
    .with_for_update(read=True)
)
_INSERT = insert_returning_id(rc)
_RENAME = PreparedStatement(
    rc.update()
    .where(rc.c.id == sa.bindparam("rc_id"))
    .values(name=sa.bindparam("new_name"), updated_at=sa.bindparam("now"))
)
_DELETE = PreparedStatement(rc.delete().where(rc.c.id == sa.bindparam("rc_id")))
_IN_INVENTORY = PreparedStatement(
    sa.select(inventories.c.id)
    .where(inventories.c.resource_class_id == sa.bindparam("rc_id"))
    .limit(1)
)
_IN_ALLOCATIONS = PreparedStatement(
    sa.select(allocations.c.id)
    .where(allocations.c.resource_class_id == sa.bindparam("rc_id"))
    .limit(1)
)


def _entry(row: tuple[Any, ...] | None) -> CatalogEntry | None:
    return None if row is None else CatalogEntry(*row)


def all_classes(conn: Connection) -> list[CatalogEntry]:
    return [CatalogEntry(*row) for row in _ALL.rows(conn)]


def get(conn: Connection, name: str, *, lock: bool = False) -> CatalogEntry | None:
    return _entry((_LOCK_BY_NAME if lock else _BY_NAME).first(conn, {"name": name}))


def create(conn: Connection, name: str, now: datetime) -> CatalogEntry:
    new_id = _INSERT.insert(conn, {"name": name, "created_at": now})
    return CatalogEntry(new_id, name, now, None)


def rename(conn: Connection, entry: CatalogEntry, new_name: str, now: datetime) -> CatalogEntry:
    _RENAME.execute(conn, {"rc_id": entry.id, "new_name": new_name, "now": now})
    return CatalogEntry(entry.id, new_name, entry.created_at, now)


def in_use(conn: Connection, rc_id: int) -> bool:
    """Whether any provider has inventory (or, defensively, allocations) of the class."""
    params = {"rc_id": rc_id}
    return _IN_INVENTORY.first(conn, params) is not None or (
        _IN_ALLOCATIONS.first(conn, params) is not None
    )


def delete(conn: Connection, rc_id: int) -> None:
    _DELETE.execute(conn, {"rc_id": rc_id})


def share_existing(conn: Connection, ids: Collection[int]) -> set[int]:
    """Which of ``ids`` still exist, share-locked until commit (no-op on SQLite, whose write
    lock already serializes class deletes with everything else)."""
    if not ids or conn.dialect.name == "sqlite":
        return set(ids)
    return {row[0] for row in _SHARE_BY_IDS.rows(conn, {"ids": sorted(ids)})}
