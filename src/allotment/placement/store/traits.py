"""Trait rows and the traits of each provider."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db.prepared import PreparedStatement, insert_returning_id, many
from allotment.placement.model import CatalogEntry
from allotment.placement.store.tables import resource_provider_traits, traits

t = traits
rpt = resource_provider_traits
_SELECT = sa.select(t.c.id, t.c.name, t.c.created_at, t.c.updated_at)

_ALL = PreparedStatement(_SELECT.order_by(t.c.id))
_BY_NAME = PreparedStatement(_SELECT.where(t.c.name == sa.bindparam("name")))
# A trait being deleted is locked first; providers taking traits hold a shared lock on
# them, so on PostgreSQL/MySQL a delete cannot slip in between the in-use check and an
# association being added (SQLite's write lock already serializes both).
_LOCK_BY_NAME = PreparedStatement(_SELECT.where(t.c.name == sa.bindparam("name")).with_for_update())
_SHARE_BY_NAMES = PreparedStatement(
    _SELECT.where(t.c.name.in_(sa.bindparam("names", expanding=True)))
    .order_by(t.c.id)
    .with_for_update(read=True)
)
_INSERT = insert_returning_id(t)
_DELETE = PreparedStatement(t.delete().where(t.c.id == sa.bindparam("trait_id")))

_ASSOCIATED_IDS = PreparedStatement(sa.select(rpt.c.trait_id).distinct())
_IN_USE = PreparedStatement(
    sa.select(rpt.c.resource_provider_id).where(rpt.c.trait_id == sa.bindparam("trait_id")).limit(1)
)
_FOR_PROVIDER = PreparedStatement(
    _SELECT.select_from(rpt.join(t, t.c.id == rpt.c.trait_id))
    .where(rpt.c.resource_provider_id == sa.bindparam("rp_id"))
    .order_by(t.c.id)
)
_ADD = PreparedStatement(rpt.insert())
_REMOVE = PreparedStatement(
    rpt.delete().where(
        rpt.c.resource_provider_id == sa.bindparam("rp_id"),
        rpt.c.trait_id.in_(sa.bindparam("trait_ids", expanding=True)),
    )
)


def _entries(rows: Iterable[tuple[Any, ...]]) -> list[CatalogEntry]:
    return [CatalogEntry(*row) for row in rows]


def all_traits(conn: Connection) -> list[CatalogEntry]:
    """Every trait, in id order (standard traits first, then custom ones as created)."""
    return _entries(_ALL.rows(conn))


def associated_ids(conn: Connection) -> set[int]:
    """Ids of the traits at least one provider has."""
    return {row[0] for row in _ASSOCIATED_IDS.rows(conn)}


def get(conn: Connection, name: str, *, lock: bool = False) -> CatalogEntry | None:
    row = (_LOCK_BY_NAME if lock else _BY_NAME).first(conn, {"name": name})
    return None if row is None else CatalogEntry(*row)


def share_by_names(conn: Connection, names: Collection[str]) -> list[CatalogEntry]:
    """The existing traits among ``names``, share-locked until commit."""
    if not names:
        return []
    return _entries(_SHARE_BY_NAMES.rows(conn, {"names": sorted(names)}))


def create(conn: Connection, name: str, now: datetime) -> CatalogEntry:
    new_id = _INSERT.insert(conn, {"name": name, "created_at": now})
    return CatalogEntry(new_id, name, now, None)


def in_use(conn: Connection, trait_id: int) -> bool:
    return _IN_USE.first(conn, {"trait_id": trait_id}) is not None


def delete(conn: Connection, trait_id: int) -> None:
    _DELETE.execute(conn, {"trait_id": trait_id})


def for_provider(conn: Connection, provider_id: int) -> list[CatalogEntry]:
    """The provider's traits, in id order."""
    return _entries(_FOR_PROVIDER.rows(conn, {"rp_id": provider_id}))


def add_to_provider(
    conn: Connection, provider_id: int, trait_ids: Iterable[int], now: datetime
) -> None:
    many(
        conn,
        _ADD,
        (
            {"resource_provider_id": provider_id, "trait_id": trait_id, "created_at": now}
            for trait_id in sorted(trait_ids)
        ),
    )


def remove_from_provider(conn: Connection, provider_id: int, trait_ids: Iterable[int]) -> None:
    ids = sorted(trait_ids)
    if ids:
        _REMOVE.execute(conn, {"rp_id": provider_id, "trait_ids": ids})
