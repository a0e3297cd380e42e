"""Reading the facts the capacity index holds from SQL: for every provider, or for some.

One snapshot per read (REPEATABLE READ on PostgreSQL and MySQL, a read transaction on
SQLite), so a refresh never mixes two states of the same provider. Rows come back as plain
tuples; ``CapacityIndex`` turns them into arrays.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db.database import Database
from allotment.db.prepared import PreparedStatement
from allotment.placement.store import changes
from allotment.placement.store.tables import (
    allocations,
    inventories,
    placement_aggregates,
    resource_provider_aggregates,
    resource_provider_traits,
    resource_providers,
)

rp = resource_providers
inv = inventories
alloc = allocations
rpt = resource_provider_traits
rpa = resource_provider_aggregates
agg = placement_aggregates

_PROVIDERS = sa.select(rp.c.id, rp.c.uuid, rp.c.root_provider_id, rp.c.parent_provider_id)
_INVENTORIES = sa.select(
    inv.c.resource_provider_id,
    inv.c.resource_class_id,
    inv.c.total,
    inv.c.reserved,
    inv.c.min_unit,
    inv.c.max_unit,
    inv.c.step_size,
    inv.c.allocation_ratio,
)
_USAGES = sa.select(
    alloc.c.resource_provider_id, alloc.c.resource_class_id, sa.func.sum(alloc.c.used)
).group_by(alloc.c.resource_provider_id, alloc.c.resource_class_id)
_TRAITS = sa.select(rpt.c.resource_provider_id, rpt.c.trait_id)
_AGGREGATES = sa.select(rpa.c.resource_provider_id, rpa.c.aggregate_id, agg.c.uuid).select_from(
    rpa.join(agg, agg.c.id == rpa.c.aggregate_id)
)

_IDS: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
_SOME = (
    PreparedStatement(_PROVIDERS.where(rp.c.id.in_(_IDS))),
    PreparedStatement(_INVENTORIES.where(inv.c.resource_provider_id.in_(_IDS))),
    PreparedStatement(_USAGES.where(alloc.c.resource_provider_id.in_(_IDS))),
    PreparedStatement(_TRAITS.where(rpt.c.resource_provider_id.in_(_IDS))),
    PreparedStatement(_AGGREGATES.where(rpa.c.resource_provider_id.in_(_IDS))),
)
# IN lists are padded to a power of two (with an id no row has) so that only a handful of
# statement shapes are ever compiled.
_MAX_IN = 1024


@dataclass
class Facts:
    """Ledger rows of some providers. Providers asked for but absent were deleted."""

    providers: list[tuple[int, str, int, int | None]] = field(default_factory=list)
    # provider id, class id, total, reserved, min_unit, max_unit, step_size, ratio
    inventories: list[tuple[int, int, int, int, int, int, int, float]] = field(default_factory=list)
    usages: list[tuple[int, int, int]] = field(default_factory=list)
    traits: list[tuple[int, int]] = field(default_factory=list)
    # provider id, aggregate id, aggregate uuid (canonical spelling)
    aggregates: list[tuple[int, int, str]] = field(default_factory=list)
    # The change-log position of the snapshot: every write up to it is in these facts.
    seq: int = 0

    def extend(self, other: Facts) -> None:
        self.providers += other.providers
        self.inventories += other.inventories
        self.usages += other.usages
        self.traits += other.traits
        self.aggregates += other.aggregates


def canonical_uuid(value: str) -> str:
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        return value


@contextmanager
def snapshot(db: Database) -> Iterator[Connection]:
    """A read transaction in which every statement sees the same committed state."""
    if db.dialect == "sqlite":
        with db.read() as conn:
            yield conn
        return
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def _convert(facts: Facts, raw: list[list[tuple[Any, ...]]]) -> None:
    providers, invs, usages, traits, aggs = raw
    facts.providers += [
        (int(i), str(u), int(r), None if p is None else int(p)) for i, u, r, p in providers
    ]
    facts.inventories += [
        (int(a), int(b), int(c), int(d), int(e), int(f), int(g), float(h))
        for a, b, c, d, e, f, g, h in invs
    ]
    # SUM() is a Decimal on MySQL.
    facts.usages += [(int(a), int(b), int(c or 0)) for a, b, c in usages]
    facts.traits += [(int(a), int(b)) for a, b in traits]
    facts.aggregates += [(int(a), int(b), canonical_uuid(str(u))) for a, b, u in aggs]


@dataclass
class IndexRead:
    """Every provider as arrays (what the index is built from at start-up), ordered by
    provider id. Read in chunks, so building never holds all rows as Python objects."""

    seq: int
    ids: npt.NDArray[np.int64]
    uuids: list[str]
    roots: npt.NDArray[np.int64]
    parents: npt.NDArray[np.int64]  # -1: none
    # provider id, class id, total, reserved, min_unit, max_unit, step_size
    inventories: npt.NDArray[np.int64]
    ratios: npt.NDArray[np.float64]
    usages: npt.NDArray[np.int64]  # provider id, class id, used
    traits: npt.NDArray[np.int64]  # provider id, trait id
    memberships: npt.NDArray[np.int64]  # provider id, aggregate id
    aggregates: dict[int, str]  # aggregate id -> uuid (canonical spelling)


_CHUNK = 50000


def _matrix(conn: Connection, stmt: sa.Select[Any], width: int) -> npt.NDArray[np.float64]:
    """All rows of a numeric query as a float matrix (exact for integers below 2**53, which
    every column here is), converted chunk by chunk."""
    parts = [
        np.array([tuple(row) for row in part], dtype=np.float64).reshape(-1, width)
        for part in conn.execute(stmt.execution_options(yield_per=_CHUNK)).partitions()
    ]
    return np.concatenate(parts) if parts else np.zeros((0, width))


def read_all(db: Database) -> IndexRead:
    """Every provider. The change-log position is read first, so any later write is
    replayed by the poller (refreshing is idempotent)."""
    with snapshot(db) as conn:
        seq = changes.latest(conn)
        ids: list[int] = []
        uuids: list[str] = []
        roots: list[int] = []
        parents: list[int] = []
        query = _PROVIDERS.order_by(rp.c.id).execution_options(yield_per=_CHUNK)
        for part in conn.execute(query).partitions():
            for pid, uuid, root, parent in part:
                ids.append(pid)
                uuids.append(uuid)
                roots.append(root)
                parents.append(-1 if parent is None else parent)
        inv = _matrix(conn, _INVENTORIES, 8)
        aggregates = {
            int(agg_id): canonical_uuid(str(uuid))
            for agg_id, uuid in conn.execute(sa.select(agg.c.id, agg.c.uuid))
        }
        return IndexRead(
            seq=seq,
            ids=np.array(ids, dtype=np.int64),
            uuids=uuids,
            roots=np.array(roots, dtype=np.int64),
            parents=np.array(parents, dtype=np.int64),
            inventories=inv[:, :7].astype(np.int64),
            ratios=inv[:, 7].copy(),
            usages=_matrix(conn, _USAGES, 3).astype(np.int64),
            traits=_matrix(conn, _TRAITS, 2).astype(np.int64),
            memberships=_matrix(
                conn, sa.select(rpa.c.resource_provider_id, rpa.c.aggregate_id), 2
            ).astype(np.int64),
            aggregates=aggregates,
        )


def read_some(
    db: Database, provider_ids: Collection[int], known: Callable[[int], bool] = lambda _: False
) -> Facts:
    """The providers ``provider_ids``, plus their roots and parents unless ``known``."""
    facts = Facts()
    wanted = sorted(set(provider_ids))
    seen: set[int] = set()
    with snapshot(db) as conn:
        facts.seq = changes.latest(conn)
        while wanted:
            seen.update(wanted)
            part = read_providers(conn, wanted)
            facts.extend(part)
            wanted = sorted(
                {r for _, _, r, _ in part.providers} | {p for *_, p in part.providers if p}
            )
            wanted = [i for i in wanted if i not in seen and not known(i)]
    return facts


def read_links(conn: Connection, provider_id: int) -> Facts:
    """Only the traits and aggregates of one provider, as ``conn`` sees them."""
    facts = Facts()
    params = {"ids": [provider_id]}
    _convert(facts, [[], [], [], _SOME[3].rows(conn, params), _SOME[4].rows(conn, params)])
    return facts


def read_providers(conn: Connection, provider_ids: Collection[int]) -> Facts:
    """The rows of exactly ``provider_ids`` as ``conn`` sees them (``seq`` left at 0)."""
    facts = Facts()
    wanted = sorted(set(provider_ids))
    for start in range(0, len(wanted), _MAX_IN):
        chunk = wanted[start : start + _MAX_IN]
        size = 1 << (len(chunk) - 1).bit_length()
        params = {"ids": chunk + [-1] * (size - len(chunk))}
        _convert(facts, [q.rows(conn, params) for q in _SOME])
    return facts
