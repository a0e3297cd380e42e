"""Aggregates (bare uuids, created on first use) and which providers are in them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db.prepared import PreparedStatement, insert_returning_id, many
from allotment.placement.store.tables import placement_aggregates, resource_provider_aggregates

agg = placement_aggregates
rpa = resource_provider_aggregates

_FOR_PROVIDER = PreparedStatement(
    sa.select(agg.c.id, agg.c.uuid)
    .select_from(rpa.join(agg, agg.c.id == rpa.c.aggregate_id))
    .where(rpa.c.resource_provider_id == sa.bindparam("rp_id"))
    .order_by(agg.c.id)
)
_BY_UUIDS = PreparedStatement(
    sa.select(agg.c.uuid, agg.c.id).where(agg.c.uuid.in_(sa.bindparam("uuids", expanding=True)))
)
_INSERT = insert_returning_id(agg)
_ASSOCIATE = PreparedStatement(rpa.insert())
_DISSOCIATE = PreparedStatement(
    rpa.delete().where(
        rpa.c.resource_provider_id == sa.bindparam("rp_id"),
        rpa.c.aggregate_id.in_(sa.bindparam("agg_ids", expanding=True)),
    )
)


def for_provider(conn: Connection, provider_id: int) -> dict[int, str]:
    """The provider's aggregates: id -> uuid, in id order (the order they were first seen)."""
    return dict(_FOR_PROVIDER.rows(conn, {"rp_id": provider_id}))


def ensure(conn: Connection, uuids: Sequence[str], now: datetime) -> dict[str, int]:
    """Ids of the aggregates with these uuids, creating the ones never seen before (in the
    given order, so a provider lists new aggregates in the order it was given them).

    Two writers creating the same new aggregate at once: the loser gets an IntegrityError
    from the unique uuid; its caller runs the transaction again and then finds the row.
    """
    if not uuids:
        return {}
    found: dict[str, int] = dict(_BY_UUIDS.rows(conn, {"uuids": sorted(uuids)}))
    for uuid in [u for u in dict.fromkeys(uuids) if u not in found]:
        found[uuid] = _INSERT.insert(conn, {"uuid": uuid, "created_at": now})
    return found


def associate(conn: Connection, provider_id: int, agg_ids: Iterable[int], now: datetime) -> None:
    many(
        conn,
        _ASSOCIATE,
        (
            {"resource_provider_id": provider_id, "aggregate_id": agg_id, "created_at": now}
            for agg_id in sorted(agg_ids)
        ),
    )


def dissociate(conn: Connection, provider_id: int, agg_ids: Iterable[int]) -> None:
    ids = sorted(agg_ids)
    if ids:
        _DISSOCIATE.execute(conn, {"rp_id": provider_id, "agg_ids": ids})
