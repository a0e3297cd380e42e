"""Inventory rows and the usage sums that guard changes to them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db.prepared import PreparedStatement
from allotment.placement.model import Inventory
from allotment.placement.store.catalog import NameTable
from allotment.placement.store.tables import allocations, inventories

inv = inventories
_COLUMNS = (
    inv.c.resource_class_id,
    inv.c.total,
    inv.c.reserved,
    inv.c.min_unit,
    inv.c.max_unit,
    inv.c.step_size,
    inv.c.allocation_ratio,
    inv.c.created_at,
    inv.c.updated_at,
)
_FOR_PROVIDER = PreparedStatement(
    sa.select(*_COLUMNS)
    .where(inv.c.resource_provider_id == sa.bindparam("rp_id"))
    .order_by(inv.c.resource_class_id)
)
_USAGE = PreparedStatement(
    sa.select(allocations.c.resource_class_id, sa.func.sum(allocations.c.used))
    .where(allocations.c.resource_provider_id == sa.bindparam("rp_id"))
    .group_by(allocations.c.resource_class_id)
)
_INSERT = PreparedStatement(inv.insert())
_UPDATE = PreparedStatement(
    inv.update()
    .where(
        inv.c.resource_provider_id == sa.bindparam("rp_id"),
        inv.c.resource_class_id == sa.bindparam("rc_id"),
    )
    .values(
        total=sa.bindparam("total"),
        reserved=sa.bindparam("reserved"),
        min_unit=sa.bindparam("min_unit"),
        max_unit=sa.bindparam("max_unit"),
        step_size=sa.bindparam("step_size"),
        allocation_ratio=sa.bindparam("allocation_ratio"),
        updated_at=sa.bindparam("now"),
    )
)
_DELETE = PreparedStatement(
    inv.delete().where(
        inv.c.resource_provider_id == sa.bindparam("rp_id"),
        inv.c.resource_class_id.in_(sa.bindparam("rc_ids", expanding=True)),
    )
)


def for_provider(conn: Connection, provider_id: int, classes: NameTable) -> dict[str, Inventory]:
    """The provider's inventories by resource class name."""
    out = {}
    for rc_id, *fields in _FOR_PROVIDER.rows(conn, {"rp_id": provider_id}):
        name = classes.name_of(rc_id)
        out[name] = Inventory(name, *fields)
    return out


def usage(conn: Connection, provider_id: int) -> dict[int, int]:
    """Total allocated amount per resource class id on one provider."""
    return {rc: int(used) for rc, used in _USAGE.rows(conn, {"rp_id": provider_id})}


def _values(inventory: Inventory) -> dict[str, object]:
    return {
        "total": inventory.total,
        "reserved": inventory.reserved,
        "min_unit": inventory.min_unit,
        "max_unit": inventory.max_unit,
        "step_size": inventory.step_size,
        "allocation_ratio": inventory.allocation_ratio,
    }


def insert(
    conn: Connection, provider_id: int, rc_id: int, inventory: Inventory, now: datetime
) -> None:
    insert_many(conn, provider_id, {rc_id: inventory}, now)


def insert_many(
    conn: Connection, provider_id: int, added: Mapping[int, Inventory], now: datetime
) -> None:
    """Insert inventories of one provider by class id, in one driver call."""
    _INSERT.execute_many(
        conn,
        [
            {
                "resource_provider_id": provider_id,
                "resource_class_id": rc_id,
                **_values(inventory),
                "created_at": now,
                "updated_at": now,
            }
            for rc_id, inventory in added.items()
        ],
    )


def update(
    conn: Connection, provider_id: int, rc_id: int, inventory: Inventory, now: datetime
) -> int:
    return _UPDATE.execute(
        conn, {"rp_id": provider_id, "rc_id": rc_id, **_values(inventory), "now": now}
    )


def delete(conn: Connection, provider_id: int, rc_ids: Iterable[int]) -> int:
    ids = sorted(rc_ids)
    if not ids:
        return 0
    return _DELETE.execute(conn, {"rp_id": provider_id, "rc_ids": ids})
