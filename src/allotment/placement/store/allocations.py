"""Allocation rows: replacing a set of consumers' allocations with capacity checks, reading
them back by consumer or provider, and the usage sums built from them.

A write (``Replacement``) runs inside one transaction and follows upstream's rules:

* every consumer named loses all its current allocations and gets exactly the new ones;
* capacity is checked against usage *without* those consumers' current allocations:
  ``used + requested <= (total - reserved) * allocation_ratio`` per provider and class,
  the amounts of all consumers in the request added up, plus ``min_unit``, ``max_unit``
  and ``step_size`` for each amount; a provider already over capacity (its inventory
  shrank) still accepts a change that leaves it no worse than before;
* the generation of every provider named in the new allocations (and of the providers
  of a consumer whose allocations are emptied) goes up by one, and so does the
  generation of every consumer whose allocations were written; a consumer left with no
  allocations is deleted.

Provider rows are locked (PostgreSQL/MySQL) before usage is read, so concurrent writers
from any number of processes queue on them instead of over-committing. Consumers are
locked before providers, everywhere, so writers cannot deadlock on each other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment import errors
from allotment.db.database import RetryTransaction
from allotment.db.prepared import PreparedStatement
from allotment.placement.model import Allocation, Consumer, ConsumerWrite
from allotment.placement.store import consumers as consumer_store
from allotment.placement.store import providers as provider_store
from allotment.placement.store.catalog import NameTable
from allotment.placement.store.consumers import ConsumerRow
from allotment.placement.store.tables import (
    allocations,
    consumers,
    inventories,
    resource_providers,
)

a = allocations
c = consumers
inv = inventories
rp = resource_providers

_OF_CONSUMERS = PreparedStatement(
    sa.select(a.c.consumer_id, a.c.resource_provider_id, a.c.resource_class_id, a.c.used)
    .where(a.c.consumer_id.in_(sa.bindparam("consumer_ids", expanding=True)))
    .order_by(a.c.id)
)
_PROVIDERS = PreparedStatement(
    sa.select(rp.c.uuid, rp.c.id).where(rp.c.uuid.in_(sa.bindparam("uuids", expanding=True)))
)
_USED = (
    sa.select(sa.func.sum(a.c.used))
    .where(
        a.c.resource_provider_id == inv.c.resource_provider_id,
        a.c.resource_class_id == inv.c.resource_class_id,
    )
    .scalar_subquery()
)
# Inventory and current usage of the requested classes on the requested providers.
_CAPACITY = PreparedStatement(
    sa.select(
        inv.c.resource_provider_id,
        inv.c.resource_class_id,
        inv.c.total,
        inv.c.reserved,
        inv.c.min_unit,
        inv.c.max_unit,
        inv.c.step_size,
        inv.c.allocation_ratio,
        _USED,
    ).where(
        inv.c.resource_provider_id.in_(sa.bindparam("rp_ids", expanding=True)),
        inv.c.resource_class_id.in_(sa.bindparam("rc_ids", expanding=True)),
    )
)
_DELETE_OF_CONSUMERS = PreparedStatement(
    a.delete().where(a.c.consumer_id.in_(sa.bindparam("consumer_ids", expanding=True)))
)
_INSERT = PreparedStatement(a.insert())
_BUMP = PreparedStatement(
    rp.update()
    .where(rp.c.id.in_(sa.bindparam("rp_ids", expanding=True)))
    .values(generation=rp.c.generation + 1, updated_at=sa.bindparam("now"))
)
_FOR_CONSUMER = PreparedStatement(
    sa.select(
        rp.c.uuid,
        rp.c.generation,
        a.c.resource_class_id,
        a.c.used,
        a.c.created_at,
        a.c.updated_at,
        c.c.project_id,
        c.c.user_id,
        c.c.generation,
        c.c.consumer_type_id,
    )
    .select_from(a.join(c, a.c.consumer_id == c.c.id).join(rp, rp.c.id == a.c.resource_provider_id))
    .where(c.c.uuid == sa.bindparam("uuid"))
    .order_by(a.c.id)
)
_FOR_PROVIDER = PreparedStatement(
    sa.select(
        c.c.uuid,
        c.c.project_id,
        c.c.user_id,
        c.c.generation,
        c.c.consumer_type_id,
        a.c.resource_class_id,
        a.c.used,
        a.c.created_at,
        a.c.updated_at,
    )
    .select_from(a.join(c, a.c.consumer_id == c.c.id))
    .where(a.c.resource_provider_id == sa.bindparam("rp_id"))
    .order_by(a.c.id)
)
_PROVIDER_USAGE = PreparedStatement(
    sa.select(inv.c.resource_class_id, _USED)
    .where(inv.c.resource_provider_id == sa.bindparam("rp_id"))
    .order_by(inv.c.resource_class_id)
)
_DELETE_BY_IDS = PreparedStatement(
    a.delete().where(a.c.id.in_(sa.bindparam("ids", expanding=True)))
)
_IDS_OF_CONSUMER = PreparedStatement(
    sa.select(a.c.id, a.c.consumer_id, a.c.resource_provider_id, a.c.resource_class_id, a.c.used)
    .select_from(a.join(c, a.c.consumer_id == c.c.id))
    .where(c.c.uuid == sa.bindparam("uuid"))
)

Key = tuple[int, int]  # (resource provider id, resource class id)


def bump_generations(conn: Connection, provider_ids: Iterable[int], now: datetime) -> None:
    """Increment the generation of providers this transaction has locked."""
    ids = sorted(set(provider_ids))
    if ids and _BUMP.execute(conn, {"rp_ids": ids, "now": now}) != len(ids):
        raise RetryTransaction  # a provider was deleted under us: look again from scratch


@dataclass
class Replacement:
    """Replace the allocations of some consumers, inside the caller's write transaction.

    Steps, in upstream's order of checks: ``lock_consumers`` (+ ``check_generations``),
    ``lock_providers`` (+ ``check_providers``), then ``apply``. ``rc_ids`` maps every
    resource class named in ``writes`` that exists to its id.
    """

    conn: Connection
    now: datetime
    writes: Mapping[str, ConsumerWrite]
    rc_ids: Mapping[str, int]
    type_ids: Mapping[str, int | None] = field(default_factory=dict)
    existing: dict[str, ConsumerRow] = field(default_factory=dict)
    # Current allocations of the existing consumers: consumer id -> [(rp id, rc id, used)].
    current: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)
    provider_ids: dict[str, int] = field(default_factory=dict)
    # What ``apply`` did, for the change log and the capacity index.
    usage_deltas: dict[Key, int] = field(default_factory=dict)
    bumped: set[int] = field(default_factory=set)

    # -- consumers -----------------------------------------------------------------------

    def lock_consumers(self) -> None:
        self.existing = consumer_store.lock_by_uuids(self.conn, list(self.writes))
        if self.existing:
            ids = [row.id for row in self.existing.values()]
            for consumer_id, rp_id, rc_id, used in _OF_CONSUMERS.rows(
                self.conn, {"consumer_ids": sorted(ids)}
            ):
                self.current.setdefault(consumer_id, []).append((rp_id, rc_id, used))

    def check_generations(self) -> None:
        for uuid, write in self.writes.items():
            if not write.check_generation:
                continue
            row = self.existing.get(uuid)
            if row is None and write.generation is not None:
                raise errors.GenerationConflict(
                    f"consumer generation conflict - expected null but got {write.generation}"
                )
            if row is not None and row.generation != write.generation:
                got = "None" if write.generation is None else write.generation
                raise errors.GenerationConflict(
                    f"consumer generation conflict - expected {row.generation} but got {got}"
                )

    def _emptied(self) -> list[ConsumerRow]:
        """Existing consumers with allocations that the write empties."""
        return [
            row
            for uuid, row in self.existing.items()
            if not self.writes[uuid].allocations and row.id in self.current
        ]

    # -- providers -----------------------------------------------------------------------

    def requested_providers(self) -> list[str]:
        """Provider uuids of the new allocations, in request order."""
        seen: dict[str, None] = {}
        for write in self.writes.values():
            seen.update(dict.fromkeys(write.allocations))
        return list(seen)

    def lock_providers(self, also: Sequence[str] = ()) -> dict[str, int]:
        """Look up (and lock) the providers named in the new allocations and in ``also``,
        plus those whose allocations an emptying write removes. Returns uuid -> id."""
        uuids = list(dict.fromkeys([*self.requested_providers(), *also]))
        found: dict[str, int] = {}
        if uuids:
            found = dict(_PROVIDERS.rows(self.conn, {"uuids": uuids}))
        emptied = {rp_id for row in self._emptied() for rp_id, _, _ in self.current[row.id]}
        provider_store.lock(self.conn, {*found.values(), *emptied})
        self.provider_ids = found
        return found

    def check_providers(self) -> None:
        for uuid in self.requested_providers():
            if uuid not in self.provider_ids:
                raise errors.AllocationProviderNotFound(uuid)

    # -- the write -----------------------------------------------------------------------

    def apply(self) -> None:
        """Check the new allocations against inventory and usage, then write them."""
        new: list[tuple[str, int, int, str, int]] = []  # consumer, rp id, rc id, rp uuid, rc
        names: dict[int, str] = {}
        for consumer_uuid, write in self.writes.items():
            for rp_uuid, resources in write.allocations.items():
                rp_id = self.provider_ids[rp_uuid]
                for rc_name, amount in resources.items():
                    rc_id = self.rc_ids.get(rc_name)
                    if rc_id is None:
                        raise errors.UnknownResourceClass(rc_name)
                    names[rc_id] = rc_name
                    new.append((consumer_uuid, rp_id, rc_id, rp_uuid, amount))
        self._check_capacity(new, names)
        self._write(new)

    def _check_capacity(
        self, new: list[tuple[str, int, int, str, int]], names: dict[int, str]
    ) -> None:
        if not new:
            return
        rp_ids = sorted({rp_id for _, rp_id, _, _, _ in new})
        rc_ids = sorted(names)
        rows = {
            (row[0], row[1]): row
            for row in _CAPACITY.rows(self.conn, {"rp_ids": rp_ids, "rc_ids": rc_ids})
        }
        with_inventory = {rp_id for rp_id, _ in rows}
        missing = list(
            dict.fromkeys(uuid for _, rp_id, _, uuid, _ in new if rp_id not in with_inventory)
        )
        if missing:
            raise errors.InvalidAllocation(
                f"Inventory for '{', '.join(names[i] for i in rc_ids)}' on resource provider "
                f"'{', '.join(missing)}' invalid."
            )
        # Usage once the consumers' current allocations are gone.
        leaving: dict[Key, int] = defaultdict(int)
        for row in self.existing.values():
            for rp_id, rc_id, used in self.current.get(row.id, ()):
                leaving[(rp_id, rc_id)] += used
        wanted: dict[Key, int] = defaultdict(int)
        for _, rp_id, rc_id, rp_uuid, amount in new:
            key = (rp_id, rc_id)
            wanted[key] += amount
            found = rows.get(key)
            if found is None:
                raise errors.InvalidAllocation(
                    f"Inventory for '{names[rc_id]}' on resource provider '{rp_uuid}' invalid."
                )
            _, _, total, reserved, min_unit, max_unit, step_size, ratio, before = found
            if amount < min_unit or amount > max_unit or amount % step_size:
                raise errors.InvalidAllocation(
                    f"Unable to create allocation for '{names[rc_id]}' on resource provider "
                    f"'{rp_uuid}'. The requested amount would violate inventory constraints."
                )
            used = (int(before) if before is not None else 0) - leaving[key]
            capacity = (total - reserved) * ratio
            over = capacity < used + amount or capacity < used + wanted[key]
            # Over capacity is accepted only when it is no worse than before.
            if over and (before is None or used + wanted[key] > int(before)):
                raise errors.InvalidAllocation(
                    f"Unable to create allocation for '{names[rc_id]}' on resource "
                    f"provider '{rp_uuid}'. The requested amount would exceed the capacity."
                )

    def _write(self, new: list[tuple[str, int, int, str, int]]) -> None:
        conn, now = self.conn, self.now
        holding = {consumer for consumer, *_ in new}
        emptied = self._emptied()
        # Providers whose generation moves: those named in the new allocations, and those
        # an emptying write takes allocations from (upstream's rule).
        bumped = {rp_id for _, rp_id, _, _, _ in new}
        for row in emptied:
            bumped.update(rp_id for rp_id, _, _ in self.current[row.id])
        deltas: dict[Key, int] = defaultdict(int)
        replaced = [row.id for row in self.existing.values() if row.id in self.current]
        for consumer_id in replaced:
            for rp_id, rc_id, used in self.current[consumer_id]:
                deltas[(rp_id, rc_id)] -= used
        if replaced:
            _DELETE_OF_CONSUMERS.execute(conn, {"consumer_ids": sorted(replaced)})

        ids: dict[str, int] = {}
        gone: list[int] = []
        for uuid, write in self.writes.items():
            found = self.existing.get(uuid)
            written = uuid in holding or (found is not None and found.id in self.current)
            type_id = self.type_ids.get(uuid)
            if found is None:
                ids[uuid] = self._insert_consumer(uuid, write, type_id, 1 if written else 0)
            elif written and uuid not in holding:
                gone.append(found.id)
            else:
                ids[uuid] = found.id
                if not consumer_store.update(
                    conn,
                    found,
                    generation=found.generation + (1 if written else 0),
                    project_id=write.project_id,
                    user_id=write.user_id,
                    type_id=found.type_id if type_id is None else type_id,
                    now=now,
                ):
                    raise errors.ConcurrentUpdate(
                        "consumer generation conflict: the consumer was changed by another "
                        "request; get its allocations again and retry."
                    )
        consumer_store.delete(conn, gone)
        _INSERT.execute_many(
            conn,
            [
                {
                    "resource_provider_id": rp_id,
                    "consumer_id": ids[consumer],
                    "resource_class_id": rc_id,
                    "used": amount,
                    "created_at": now,
                }
                for consumer, rp_id, rc_id, _, amount in new
            ],
        )
        for _, rp_id, rc_id, _, amount in new:
            deltas[(rp_id, rc_id)] += amount
        bump_generations(conn, bumped, now)
        self.bumped = bumped
        self.usage_deltas = {key: delta for key, delta in deltas.items() if delta}

    def _insert_consumer(
        self, uuid: str, write: ConsumerWrite, type_id: int | None, generation: int
    ) -> int:
        try:
            return consumer_store.insert(
                self.conn,
                uuid=uuid,
                project_id=write.project_id,
                user_id=write.user_id,
                generation=generation,
                type_id=type_id,
                now=self.now,
            )
        except sa.exc.IntegrityError:
            # Another process created this consumer since we looked: look again.
            raise RetryTransaction from None

    @property
    def touched(self) -> set[int]:
        return self.bumped | {rp_id for rp_id, _ in self.usage_deltas}


@dataclass(frozen=True, slots=True)
class Removed:
    """What deleting a consumer's allocations changed."""

    usage_deltas: dict[Key, int]


def delete_for_consumer(conn: Connection, uuid: str) -> Removed | None:
    """Delete every allocation of one consumer and the consumer row; None when it had none.

    Provider and consumer generations do not change (upstream's behaviour).
    """
    consumer_store.lock_by_uuids(conn, [uuid])
    rows = _IDS_OF_CONSUMER.rows(conn, {"uuid": uuid})
    if not rows:
        return None
    _DELETE_BY_IDS.execute(conn, {"ids": sorted(row[0] for row in rows)})
    consumer_store.delete(conn, {row[1] for row in rows})
    deltas: dict[Key, int] = defaultdict(int)
    for _, _, rp_id, rc_id, used in rows:
        deltas[(rp_id, rc_id)] -= used
    return Removed(dict(deltas))


# -- reads ---------------------------------------------------------------------------------


def for_consumer(
    conn: Connection, uuid: str, classes: NameTable, types: NameTable
) -> list[Allocation]:
    rows = _FOR_CONSUMER.rows(conn, {"uuid": uuid})
    if not rows:
        return []
    first = rows[0]
    type_id = first[9]
    consumer = Consumer(
        uuid=uuid,
        project_id=first[6],
        user_id=first[7],
        generation=first[8],
        consumer_type=None if type_id is None else types.name_of(type_id),
    )
    return [
        Allocation(
            provider_uuid=rp_uuid,
            provider_generation=rp_gen,
            consumer=consumer,
            resource_class=classes.name_of(rc_id),
            used=used,
            created_at=created,
            updated_at=updated,
        )
        for rp_uuid, rp_gen, rc_id, used, created, updated, *_ in rows
    ]


def for_provider(
    conn: Connection, provider_uuid: str, provider_id: int, generation: int, classes: NameTable
) -> list[Allocation]:
    out = []
    known: dict[str, Consumer] = {}
    for uuid, project, user, gen, _type, rc_id, used, created, updated in _FOR_PROVIDER.rows(
        conn, {"rp_id": provider_id}
    ):
        consumer = known.get(uuid)
        if consumer is None:
            consumer = known[uuid] = Consumer(uuid, project, user, gen, None)
        out.append(
            Allocation(
                provider_uuid=provider_uuid,
                provider_generation=generation,
                consumer=consumer,
                resource_class=classes.name_of(rc_id),
                used=used,
                created_at=created,
                updated_at=updated,
            )
        )
    return out


def provider_usage(conn: Connection, provider_id: int, classes: NameTable) -> dict[str, int]:
    """Used amount of every class the provider has inventory of (0 when none is used)."""
    return {
        classes.name_of(rc_id): int(used or 0)
        for rc_id, used in _PROVIDER_USAGE.rows(conn, {"rp_id": provider_id})
    }


def total_usage(
    conn: Connection,
    *,
    project_id: str,
    user_id: str | None,
    type_filter: sa.ColumnElement[bool] | None = None,
    by_type: bool = False,
) -> tuple[list[tuple[int | None, int, int]], dict[int | None, int]]:
    """A project's (and user's) usage: ``[(type id, class id, used)]`` and the number of
    distinct consumers per type id. Without ``by_type`` every row has type id None."""
    joined = a.join(c, a.c.consumer_id == c.c.id)
    where = [c.c.project_id == project_id]
    if user_id:
        where.append(c.c.user_id == user_id)
    if type_filter is not None:
        where.append(type_filter)
    group = [c.c.consumer_type_id] if by_type else []
    type_col: sa.ColumnElement[Any] = c.c.consumer_type_id if by_type else sa.null()
    sums = conn.execute(
        sa.select(type_col, a.c.resource_class_id, sa.func.sum(a.c.used))
        .select_from(joined)
        .where(*where)
        .group_by(*group, a.c.resource_class_id)
        .order_by(*group, a.c.resource_class_id)
    ).all()
    counts = conn.execute(
        sa.select(type_col, sa.func.count(sa.distinct(a.c.consumer_id)))
        .select_from(joined)
        .where(*where)
        .group_by(*group)
    ).all()
    return (
        [(row[0], int(row[1]), int(row[2])) for row in sums],
        {row[0]: int(row[1]) for row in counts},
    )


def type_is(type_id: int | None) -> sa.ColumnElement[bool]:
    if type_id is None:
        return c.c.consumer_type_id.is_(None)
    return c.c.consumer_type_id == type_id
