"""A small provider world for tests: described in Python, written straight into the ledger
tables, and readable by the brute-force reference (tests/reference_candidates.py).

Writing rows directly lets tests build any forest (nesting, sharing, traits, aggregates,
partial usage) without depending on every write API.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from allotment.db.database import Database, utcnow
from allotment.placement.store import changes
from allotment.placement.store.catalog import Catalog
from allotment.placement.store.tables import (
    allocations,
    consumers,
    inventories,
    placement_aggregates,
    resource_provider_aggregates,
    resource_provider_traits,
    resource_providers,
)


@dataclass(frozen=True)
class Inv:
    total: int
    reserved: int = 0
    min_unit: int = 1
    max_unit: int = 0  # 0: same as total
    step_size: int = 1
    allocation_ratio: float = 1.0

    @property
    def capacity(self) -> int:
        return int((self.total - self.reserved) * self.allocation_ratio)

    @property
    def max(self) -> int:
        return self.max_unit or self.total


@dataclass
class Prov:
    name: str
    parent: str | None = None  # name of the parent
    inventory: dict[str, Inv] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    traits: set[str] = field(default_factory=set)
    aggregates: set[str] = field(default_factory=set)  # aggregate uuids
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))


class World:
    """Providers by name, parents before children."""

    def __init__(self, providers: list[Prov]) -> None:
        self.providers = {p.name: p for p in providers}
        self.by_uuid = {p.uuid: p for p in providers}

    def __repr__(self) -> str:
        return "World([\n" + "".join(f"    {p!r},\n" for p in self.providers.values()) + "])"

    def root(self, p: Prov) -> Prov:
        while p.parent is not None:
            p = self.providers[p.parent]
        return p

    def parent(self, p: Prov) -> Prov | None:
        return None if p.parent is None else self.providers[p.parent]

    def ancestors(self, p: Prov) -> list[Prov]:
        """``p`` and every provider above it."""
        chain = [p]
        while chain[-1].parent is not None:
            chain.append(self.providers[chain[-1].parent])
        return chain

    def write(self, db: Database, catalog: Catalog) -> None:
        """Replace every provider in ``db`` with this world's (and log one change)."""
        now = utcnow()
        wanted_traits = {t for p in self.providers.values() for t in p.traits}
        catalog.traits.sync(t for t in wanted_traits if t.startswith("CUSTOM_"))
        catalog.reload()
        with db.write() as conn:
            for table in (
                allocations,
                consumers,
                inventories,
                resource_provider_traits,
                resource_provider_aggregates,
                placement_aggregates,
                resource_providers,
            ):
                conn.execute(table.delete())
            ids: dict[str, int] = {}
            for i, p in enumerate(self.providers.values(), start=1):
                ids[p.name] = i
            for p in self.providers.values():
                conn.execute(
                    resource_providers.insert().values(
                        id=ids[p.name],
                        uuid=p.uuid,
                        name=p.name,
                        generation=0,
                        root_provider_id=ids[self.root(p).name],
                        parent_provider_id=None if p.parent is None else ids[p.parent],
                        created_at=now,
                    )
                )
            agg_ids: dict[str, int] = {}
            consumer = 0
            for p in self.providers.values():
                for rc, inv in p.inventory.items():
                    conn.execute(
                        inventories.insert().values(
                            resource_provider_id=ids[p.name],
                            resource_class_id=catalog.resource_classes.id_of(rc),
                            total=inv.total,
                            reserved=inv.reserved,
                            min_unit=inv.min_unit,
                            max_unit=inv.max,
                            step_size=inv.step_size,
                            allocation_ratio=inv.allocation_ratio,
                            created_at=now,
                        )
                    )
                for rc, used in p.used.items():
                    if used:
                        consumer += 1
                        conn.execute(
                            consumers.insert().values(
                                id=consumer,
                                uuid=str(uuidlib.uuid4()),
                                project_id="p",
                                user_id="u",
                                created_at=now,
                            )
                        )
                        conn.execute(
                            allocations.insert().values(
                                resource_provider_id=ids[p.name],
                                consumer_id=consumer,
                                resource_class_id=catalog.resource_classes.id_of(rc),
                                used=used,
                                created_at=now,
                            )
                        )
                for name in sorted(p.traits):
                    conn.execute(
                        resource_provider_traits.insert().values(
                            resource_provider_id=ids[p.name],
                            trait_id=catalog.traits.id_of(name),
                            created_at=now,
                        )
                    )
                for agg in sorted(p.aggregates):
                    if agg not in agg_ids:
                        agg_ids[agg] = len(agg_ids) + 1
                        conn.execute(
                            placement_aggregates.insert().values(
                                id=agg_ids[agg], uuid=agg, created_at=now
                            )
                        )
                    conn.execute(
                        resource_provider_aggregates.insert().values(
                            resource_provider_id=ids[p.name],
                            aggregate_id=agg_ids[agg],
                            created_at=now,
                        )
                    )
            changes.record(conn, ids.values())


Call = Callable[[str, str, Any, str], Any]  # (method, path, body, microversion) -> JSON


def create_over_http(world: World, call: Call) -> None:
    """Create ``world`` through a Placement API."""
    made_traits: set[str] = set()
    for p in world.providers.values():
        body: dict[str, Any] = {"name": p.name + "-" + p.uuid[:8], "uuid": p.uuid}
        if p.parent is not None:
            body["parent_provider_uuid"] = world.providers[p.parent].uuid
        call("POST", "/resource_providers", body, "1.20")
    for p in world.providers.values():
        path = f"/resource_providers/{p.uuid}"
        generation = call("GET", path, None, "1.20")["generation"]
        if p.inventory:
            inventories = {
                rc: {
                    "total": inv.total,
                    "reserved": inv.reserved,
                    "min_unit": inv.min_unit,
                    "max_unit": inv.max,
                    "step_size": inv.step_size,
                    "allocation_ratio": inv.allocation_ratio,
                }
                for rc, inv in p.inventory.items()
            }
            body = {"resource_provider_generation": generation, "inventories": inventories}
            generation = call("PUT", path + "/inventories", body, "1.20")[
                "resource_provider_generation"
            ]
        if p.traits:
            for name in sorted(p.traits - made_traits):
                if name.startswith("CUSTOM_"):
                    call("PUT", f"/traits/{name}", None, "1.20")
                made_traits.add(name)
            body = {"traits": sorted(p.traits), "resource_provider_generation": generation}
            generation = call("PUT", path + "/traits", body, "1.20")["resource_provider_generation"]
        if p.aggregates:
            body = {"aggregates": sorted(p.aggregates), "resource_provider_generation": generation}
            call("PUT", path + "/aggregates", body, "1.20")
        used = {rc: amount for rc, amount in p.used.items() if amount}
        if used:
            consumer = str(uuidlib.uuid4())
            body = {
                "allocations": {p.uuid: {"resources": used}},
                "project_id": "p",
                "user_id": "u",
                "consumer_generation": None,
            }
            call("PUT", f"/allocations/{consumer}", body, "1.28")
