"""Resource provider rows: lookup, create, update (incl. re-parenting), delete, locking."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment import errors
from allotment.db.prepared import PreparedStatement, insert_returning_id
from allotment.placement.model import Provider
from allotment.placement.store.tables import (
    allocations,
    inventories,
    resource_provider_aggregates,
    resource_provider_traits,
    resource_providers,
)

rp = resource_providers
_parent = rp.alias("parent")
_root = rp.alias("root")

_SELECT = sa.select(
    rp.c.id,
    rp.c.uuid,
    rp.c.name,
    rp.c.generation,
    rp.c.root_provider_id,
    rp.c.parent_provider_id,
    _root.c.uuid.label("root_uuid"),
    _parent.c.uuid.label("parent_uuid"),
    rp.c.created_at,
    rp.c.updated_at,
).select_from(
    rp.join(_root, _root.c.id == rp.c.root_provider_id).outerjoin(
        _parent, _parent.c.id == rp.c.parent_provider_id
    )
)


_BY_UUID = PreparedStatement(_SELECT.where(rp.c.uuid == sa.bindparam("uuid")))
_BY_IDS = PreparedStatement(_SELECT.where(rp.c.id.in_(sa.bindparam("ids", expanding=True))))
_LOCK = PreparedStatement(
    sa.select(rp.c.id)
    .where(rp.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(rp.c.id)
    .with_for_update()
)
_BUMP = PreparedStatement(
    rp.update()
    .where(rp.c.id == sa.bindparam("rp_id"), rp.c.generation == sa.bindparam("expected"))
    .values(generation=sa.bindparam("expected") + 1, updated_at=sa.bindparam("now"))
)
_INSERT = insert_returning_id(rp)
_SET_OWN_ROOT = PreparedStatement(
    rp.update().where(rp.c.id == sa.bindparam("rp_id")).values(root_provider_id=rp.c.id)
)
_HAS_CHILDREN = PreparedStatement(
    sa.select(rp.c.id).where(rp.c.parent_provider_id == sa.bindparam("rp_id")).limit(1)
)
_HAS_ALLOCATIONS = PreparedStatement(
    sa.select(allocations.c.id)
    .where(allocations.c.resource_provider_id == sa.bindparam("rp_id"))
    .limit(1)
)


def _provider(row: Sequence[Any]) -> Provider:
    return Provider(*row)


def get_by_uuid(conn: Connection, uuid: str) -> Provider | None:
    row = _BY_UUID.first(conn, {"uuid": uuid})
    return None if row is None else _provider(row)


def require(conn: Connection, uuid: str) -> Provider:
    found = get_by_uuid(conn, uuid)
    if found is None:
        raise errors.NotFound(f"No resource provider with uuid {uuid} found")
    return found


def get_by_ids(conn: Connection, ids: Collection[int]) -> dict[int, Provider]:
    if not ids:
        return {}
    rows = _BY_IDS.rows(conn, {"ids": list(ids)})
    return {p.id: p for p in map(_provider, rows)}


def list_providers(
    conn: Connection,
    *,
    name: str | None = None,
    uuid: str | None = None,
    root_id: int | None = None,
    ids: Iterable[int] | None = None,
) -> list[Provider]:
    """Providers matching every given filter, ordered by id (creation order)."""
    stmt = _SELECT
    if name is not None:
        stmt = stmt.where(rp.c.name == name)
    if uuid is not None:
        stmt = stmt.where(rp.c.uuid == uuid)
    if root_id is not None:
        stmt = stmt.where(rp.c.root_provider_id == root_id)
    if ids is not None:
        stmt = stmt.where(rp.c.id.in_(list(ids)))
    return [_provider(row) for row in conn.execute(stmt.order_by(rp.c.id)).all()]


def lock(conn: Connection, provider_ids: Iterable[int]) -> None:
    """Lock provider rows until commit (in id order, so writers cannot deadlock on them).

    SQLite needs nothing: a write transaction already holds the database write lock.
    """
    ids = sorted(set(provider_ids))
    if ids and conn.dialect.name != "sqlite":
        _LOCK.rows(conn, {"ids": ids})


def bump_generation(
    conn: Connection, provider: Provider, now: datetime, *, expected: int | None = None
) -> int:
    """Increment the provider's generation (compare-and-swap against ``expected`` when given).

    Returns the new generation. A failed compare-and-swap raises ConcurrentUpdate, as upstream.
    """
    base = provider.generation if expected is None else expected
    if _BUMP.execute(conn, {"rp_id": provider.id, "expected": base, "now": now}) != 1:
        raise errors.ConcurrentUpdate(
            "resource provider generation conflict: the provider was changed by another "
            "request; get its current generation and try again."
        )
    return base + 1


def create(
    conn: Connection, *, uuid: str, name: str, parent: Provider | None, now: datetime
) -> Provider:
    new_id = _INSERT.insert(
        conn,
        {
            "uuid": uuid,
            "name": name,
            "generation": 0,
            "root_provider_id": parent.root_id if parent else 0,
            "parent_provider_id": parent.id if parent else None,
            "created_at": now,
            "updated_at": now,
        },
    )
    if parent is None:
        _SET_OWN_ROOT.execute(conn, {"rp_id": new_id})
    return Provider(
        id=new_id,
        uuid=uuid,
        name=name,
        generation=0,
        root_id=parent.root_id if parent else new_id,
        parent_id=parent.id if parent else None,
        root_uuid=parent.root_uuid if parent else uuid,
        parent_uuid=parent.uuid if parent else None,
        created_at=now,
        updated_at=now,
    )


def descendant_ids(conn: Connection, provider: Provider) -> list[int]:
    """Ids of every provider below ``provider`` in its tree (not including it)."""
    rows = conn.execute(
        sa.select(rp.c.id, rp.c.parent_provider_id).where(rp.c.root_provider_id == provider.root_id)
    ).all()
    children: dict[int, list[int]] = {}
    for row in rows:
        if row.parent_provider_id is not None:
            children.setdefault(row.parent_provider_id, []).append(row.id)
    found: list[int] = []
    stack = list(children.get(provider.id, []))
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def set_name_and_parent(
    conn: Connection, provider: Provider, *, name: str, parent: Provider | None, now: datetime
) -> list[int]:
    """Rename and/or move a provider; moves its whole subtree to the new root.

    Returns the ids whose root changed (for the change log).
    """
    new_root = parent.root_id if parent else provider.id
    moved: list[int] = []
    if new_root != provider.root_id:
        moved = [provider.id, *descendant_ids(conn, provider)]
        conn.execute(rp.update().where(rp.c.id.in_(moved)).values(root_provider_id=new_root))
    conn.execute(
        rp.update()
        .where(rp.c.id == provider.id)
        .values(name=name, parent_provider_id=parent.id if parent else None, updated_at=now)
    )
    return moved


def has_children(conn: Connection, provider_id: int) -> bool:
    return _HAS_CHILDREN.first(conn, {"rp_id": provider_id}) is not None


def has_allocations(conn: Connection, provider_id: int) -> bool:
    return _HAS_ALLOCATIONS.first(conn, {"rp_id": provider_id}) is not None


def delete(conn: Connection, provider_id: int) -> None:
    for table in (inventories, resource_provider_traits, resource_provider_aggregates):
        conn.execute(table.delete().where(table.c.resource_provider_id == provider_id))
    conn.execute(rp.delete().where(rp.c.id == provider_id))


def conflicting_fields(conn: Connection, *, uuid: str, name: str) -> list[str]:
    """Which of uuid/name already exist (to explain a unique-constraint failure)."""
    rows = conn.execute(
        sa.select(rp.c.uuid, rp.c.name).where(sa.or_(rp.c.uuid == uuid, rp.c.name == name))
    ).all()
    found = []
    if any(r.uuid == uuid for r in rows):
        found.append(f"uuid: {uuid}")
    if any(r.name == name for r in rows):
        found.append(f"name: {name}")
    return found
