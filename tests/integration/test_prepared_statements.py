"""Every prepared statement gives what SQLAlchemy's own ``Connection.execute`` gives.

``db/prepared.py`` compiles statements with SQLAlchemy's private compiler and type-processor
APIs and runs them on the raw DBAPI cursor. This runs each statement of the store and the
index loader both ways on the same small ledger, on every backend: the same rows (values
and types) for queries, the same rows left in every table for writes (each in a
transaction that is rolled back). A statement added without a case here fails the test.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from allotment.db import migrate
from allotment.db.database import Database
from allotment.db.metadata import all_tables
from allotment.db.prepared import PreparedStatement
from allotment.placement.model import ConsumerWrite, Inventory
from allotment.placement.service import PlacementService

MODULES = [
    "allotment.placement.store.aggregates",
    "allotment.placement.store.allocations",
    "allotment.placement.store.changes",
    "allotment.placement.store.consumers",
    "allotment.placement.store.inventories",
    "allotment.placement.store.providers",
    "allotment.placement.store.resource_classes",
    "allotment.placement.store.traits",
    "allotment.placement.index.loader",
]
NOW = datetime(2026, 12, 3, 18, 0, 0)
NEW_ID = 900001  # explicit ids for inserts: sequences do not roll back on PostgreSQL/MySQL

World = dict[str, Any]
Params = Callable[[World], dict[str, Any]]


def _stamped(**values: Any) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"created_at": NOW, "updated_at": None, **values}


# (module, name) -> the parameters its callers pass, from the world.
CASES: dict[tuple[str, str], Params] = {
    ("aggregates", "_FOR_PROVIDER"): lambda w: {"rp_id": w["root"]},
    ("aggregates", "_BY_UUIDS"): lambda w: {"uuids": [w["agg_uuid"], str(uuid.uuid4())]},
    ("aggregates", "_INSERT"): _stamped(id=NEW_ID, uuid=str(uuid.UUID(int=1))),
    ("aggregates", "_ASSOCIATE"): lambda w: {
        "resource_provider_id": w["child"],
        "aggregate_id": w["agg"],
        "created_at": NOW,
        "updated_at": None,
    },
    ("aggregates", "_DISSOCIATE"): lambda w: {"rp_id": w["root"], "agg_ids": [w["agg"]]},
    ("allocations", "_OF_CONSUMERS"): lambda w: {"consumer_ids": [w["consumer"]]},
    ("allocations", "_PROVIDERS"): lambda w: {"uuids": [w["root_uuid"], w["child_uuid"]]},
    ("allocations", "_CAPACITY"): lambda w: {
        "rp_ids": [w["root"], w["child"]],
        "rc_ids": [w["VCPU"], w["MEMORY_MB"]],
    },
    ("allocations", "_DELETE_OF_CONSUMERS"): lambda w: {"consumer_ids": [w["consumer"]]},
    ("allocations", "_INSERT"): lambda w: {
        "id": NEW_ID,
        "consumer_id": w["consumer"],
        "resource_provider_id": w["child"],
        "resource_class_id": w["VCPU"],
        "used": 1,
        "created_at": NOW,
        "updated_at": None,
    },
    ("allocations", "_BUMP"): lambda w: {"rp_ids": [w["root"]], "now": NOW},
    ("allocations", "_FOR_CONSUMER"): lambda w: {"uuid": w["consumer_uuid"]},
    ("allocations", "_FOR_PROVIDER"): lambda w: {"rp_id": w["root"]},
    ("allocations", "_PROVIDER_USAGE"): lambda w: {"rp_id": w["root"]},
    ("allocations", "_DELETE_BY_IDS"): lambda w: {"ids": [w["allocation"]]},
    ("allocations", "_IDS_OF_CONSUMER"): lambda w: {"uuid": w["consumer_uuid"]},
    ("changes", "_LOCK_COUNTER"): lambda w: {},
    ("changes", "_LATEST"): lambda w: {},
    ("changes", "_APPEND"): lambda w: {
        "seq": NEW_ID,
        "providers": f"{w['root']}",
        "scope": "providers",
        "created_at": NOW,
    },
    ("changes", "_APPEND_RETURNING"): lambda w: {
        "seq": NEW_ID,
        "providers": "",
        "scope": "catalog",
        "created_at": NOW,
    },
    ("consumers", "_BY_UUIDS"): lambda w: {"uuids": [w["consumer_uuid"]]},
    ("consumers", "_LOCK_BY_UUIDS"): lambda w: {"uuids": [w["consumer_uuid"]]},
    ("consumers", "_INSERT"): _stamped(
        id=NEW_ID,
        uuid=str(uuid.UUID(int=2)),
        project_id="p",
        user_id="u",
        generation=0,
        consumer_type_id=None,
    ),
    ("consumers", "_UPDATE"): lambda w: {
        "consumer_id": w["consumer"],
        "expected": w["consumer_generation"],
        "new_generation": w["consumer_generation"] + 1,
        "new_project_id": "p2",
        "new_user_id": "u2",
        "new_type_id": None,
        "now": NOW,
    },
    ("consumers", "_DELETE"): lambda w: {"ids": [w["consumer"]]},
    ("inventories", "_FOR_PROVIDER"): lambda w: {"rp_id": w["root"]},
    ("inventories", "_USAGE"): lambda w: {"rp_id": w["root"]},
    ("inventories", "_INSERT"): lambda w: {
        "id": NEW_ID,
        "resource_provider_id": w["child"],
        "resource_class_id": w["custom_class"],
        "total": 4,
        "reserved": 0,
        "min_unit": 1,
        "max_unit": 4,
        "step_size": 1,
        "allocation_ratio": 1.5,
        "created_at": NOW,
        "updated_at": None,
    },
    ("inventories", "_UPDATE"): lambda w: {
        "rp_id": w["root"],
        "rc_id": w["VCPU"],
        "total": 16,
        "reserved": 1,
        "min_unit": 1,
        "max_unit": 16,
        "step_size": 1,
        "allocation_ratio": 2.0,
        "now": NOW,
    },
    ("inventories", "_DELETE"): lambda w: {"rp_id": w["root"], "rc_ids": [w["MEMORY_MB"]]},
    ("providers", "_BY_UUID"): lambda w: {"uuid": w["root_uuid"]},
    ("providers", "_BY_IDS"): lambda w: {"ids": [w["root"], w["child"]]},
    ("providers", "_LOCK"): lambda w: {"ids": [w["root"], w["child"]]},
    ("providers", "_BUMP"): lambda w: {"rp_id": w["root"], "expected": w["generation"], "now": NOW},
    ("providers", "_INSERT"): _stamped(
        id=NEW_ID,
        uuid=str(uuid.UUID(int=3)),
        name="new",
        generation=0,
        root_provider_id=NEW_ID,
        parent_provider_id=None,
    ),
    ("providers", "_SET_OWN_ROOT"): lambda w: {"rp_id": w["child"]},
    ("providers", "_HAS_CHILDREN"): lambda w: {"rp_id": w["root"]},
    ("providers", "_HAS_ALLOCATIONS"): lambda w: {"rp_id": w["root"]},
    ("resource_classes", "_ALL"): lambda w: {},
    ("resource_classes", "_BY_NAME"): lambda w: {"name": "VCPU"},
    ("resource_classes", "_LOCK_BY_NAME"): lambda w: {"name": "CUSTOM_MAGIC"},
    ("resource_classes", "_SHARE_BY_IDS"): lambda w: {"ids": [w["VCPU"], w["custom_class"]]},
    ("resource_classes", "_INSERT"): _stamped(id=NEW_ID, name="CUSTOM_NEW"),
    ("resource_classes", "_RENAME"): lambda w: {
        "rc_id": w["custom_class"],
        "new_name": "CUSTOM_RENAMED",
        "now": NOW,
    },
    ("resource_classes", "_DELETE"): lambda w: {"rc_id": w["custom_class"]},
    ("resource_classes", "_IN_INVENTORY"): lambda w: {"rc_id": w["VCPU"]},
    ("resource_classes", "_IN_ALLOCATIONS"): lambda w: {"rc_id": w["VCPU"]},
    ("traits", "_ALL"): lambda w: {},
    ("traits", "_BY_NAME"): lambda w: {"name": "CUSTOM_FAST"},
    ("traits", "_LOCK_BY_NAME"): lambda w: {"name": "CUSTOM_FAST"},
    ("traits", "_SHARE_BY_NAMES"): lambda w: {"names": ["CUSTOM_FAST", "HW_CPU_X86_AVX"]},
    ("traits", "_INSERT"): _stamped(id=NEW_ID, name="CUSTOM_NEW"),
    ("traits", "_DELETE"): lambda w: {"trait_id": w["trait"]},
    ("traits", "_ASSOCIATED_IDS"): lambda w: {},
    ("traits", "_IN_USE"): lambda w: {"trait_id": w["trait"]},
    ("traits", "_FOR_PROVIDER"): lambda w: {"rp_id": w["root"]},
    ("traits", "_ADD"): lambda w: {
        "resource_provider_id": w["child"],
        "trait_id": w["trait"],
        "created_at": NOW,
        "updated_at": None,
    },
    ("traits", "_REMOVE"): lambda w: {"rp_id": w["root"], "trait_ids": [w["trait"]]},
}
for _i in range(5):
    CASES[("loader", f"_SOME[{_i}]")] = lambda w: {"ids": [w["root"], w["child"], -1, -1]}


def statements() -> dict[tuple[str, str], PreparedStatement]:
    """Every module-level prepared statement (or tuple of them) of the store and loader."""
    found: dict[tuple[str, str], PreparedStatement] = {}
    for name in MODULES:
        module = importlib.import_module(name)
        short = name.rsplit(".", 1)[1]
        for attr, value in vars(module).items():
            if isinstance(value, PreparedStatement):
                found[(short, attr)] = value
            elif isinstance(value, tuple) and value and isinstance(value[0], PreparedStatement):
                for i, item in enumerate(value):
                    found[(short, f"{attr}[{i}]")] = item
    return found


@pytest.fixture
def ledger(database_url: str) -> Iterator[tuple[Database, World]]:
    db = Database(database_url)
    migrate.upgrade(db)
    placement = PlacementService(db)
    placement.catalog.sync_standard()
    root = placement.create_provider(name="root")
    child = placement.create_provider(name="child", parent_uuid=root.uuid)
    inventory = {
        "VCPU": Inventory("VCPU", total=8, allocation_ratio=4.0),
        "MEMORY_MB": Inventory("MEMORY_MB", total=4096, reserved=512),
    }
    placement.change_inventories(root.uuid, generation=None, put=inventory)
    placement.create_resource_class("CUSTOM_MAGIC")
    placement.ensure_trait("CUSTOM_FAST")
    placement.set_provider_traits(root.uuid, ["CUSTOM_FAST", "HW_CPU_X86_AVX"], generation=None)
    agg_uuid = str(uuid.uuid4())
    placement.set_provider_aggregates(root.uuid, [agg_uuid], generation=None)
    consumer_uuid = str(uuid.uuid4())
    placement.set_allocations(
        {
            consumer_uuid: ConsumerWrite(
                allocations={root.uuid: {"VCPU": 2, "MEMORY_MB": 256}},
                project_id="p",
                user_id="u",
            )
        }
    )
    catalog = placement.catalog
    with db.engine.connect() as conn:
        t = all_tables().tables

        def one(stmt: sa.Select[Any]) -> Any:
            return conn.execute(stmt).scalar_one()

        world: World = {
            "root": root.id,
            "child": child.id,
            "root_uuid": root.uuid,
            "child_uuid": child.uuid,
            "generation": placement.get_provider(root.uuid).generation,
            "VCPU": catalog.resource_classes.id_of("VCPU"),
            "MEMORY_MB": catalog.resource_classes.id_of("MEMORY_MB"),
            "custom_class": catalog.resource_classes.id_of("CUSTOM_MAGIC"),
            "trait": catalog.traits.id_of("CUSTOM_FAST"),
            "agg_uuid": agg_uuid,
            "agg": one(sa.select(t["placement_aggregates"].c.id)),
            "consumer_uuid": consumer_uuid,
            "consumer": one(sa.select(t["consumers"].c.id)),
            "consumer_generation": one(sa.select(t["consumers"].c.generation)),
            "allocation": one(sa.select(sa.func.min(t["allocations"].c.id))),
        }
    yield db, world
    db.dispose()


def _tables(conn: Connection) -> dict[str, list[str]]:
    """Every row of every table, as text, in a stable order."""
    return {
        name: sorted(repr(tuple(row)) for row in conn.execute(sa.select(table)))
        for name, table in all_tables().tables.items()
    }


def _run(db: Database, action: Callable[[Connection], Any]) -> tuple[Any, dict[str, list[str]]]:
    """What ``action`` returns and the tables it leaves, in a transaction rolled back."""
    with db.engine.connect() as conn:
        conn.begin()
        try:
            result = action(conn)
            return result, _tables(conn)
        finally:
            conn.rollback()


def test_every_statement_has_a_case() -> None:
    assert sorted(statements()) == sorted(CASES)


def test_prepared_statements_match_connection_execute(ledger: tuple[Database, World]) -> None:
    db, world = ledger
    if db.dialect != "postgresql":  # RETURNING is only used (and only asked for) there
        skip = {("changes", "_APPEND_RETURNING")}
    else:
        skip = set()
    differences = []
    for key, prepared in sorted(statements().items()):
        if key in skip:
            continue
        params = CASES[key](world)
        statement = prepared.statement
        if isinstance(statement, sa.Select):
            ours, _ = _run(db, lambda conn, p=prepared, a=params: p.rows(conn, a))
            theirs, _ = _run(db, lambda conn, s=statement, a=params: conn.execute(s, a).all())
            ours_text = sorted(repr(tuple(r)) for r in ours)
            theirs_text = sorted(repr(tuple(r)) for r in theirs)
            # Every query finds something on this ledger, so an empty answer is a bad case.
            if ours_text != theirs_text or not ours_text:
                differences.append((key, ours_text, theirs_text))
        else:
            ours_count, ours_tables = _run(
                db, lambda conn, p=prepared, a=params: p.execute(conn, a)
            )
            theirs_count, theirs_tables = _run(
                db, lambda conn, s=statement, a=params: conn.execute(s, a).rowcount
            )
            # SQLAlchemy reports no row count for a PostgreSQL INSERT (-1): an insert is
            # compared by the rows it leaves, and must have added one.
            if isinstance(statement, sa.Insert) and theirs_count == -1:
                theirs_count = 1
            if ours_tables != theirs_tables or ours_count != theirs_count or ours_count < 1:
                differences.append((key, ours_count, theirs_count))
    assert differences == [], "\n".join(map(str, differences))
