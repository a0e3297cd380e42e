"""Bulk loading a seeded cloud (``allotment.db.bulk``, ``scheduler.store.insert_all``) on
every backend: what it writes is what the API and the host cache read back, and the API's
next inserts get fresh ids on the first attempt.

The second part is the regression test of the ~2-minute first claim on PostgreSQL: rows
loaded with explicit ids left the tables' sequences at 1, so every new consumer collided
with a loaded id and was retried as a lost race, once per loaded consumer. With
``write_retries = 0`` a single collision is a 409 here, whatever the machine's speed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from allotment.app import Services, build_services, create_app
from allotment.db import bulk
from allotment.db.database import utcnow
from allotment.placement.store.tables import allocations, consumers, inventories, resource_providers
from allotment.scheduler import store as host_store
from allotment.scheduler.records import Aggregate, HostRecord, HostReport, InstanceInfo
from tests.conftest import PlacementClient, make_settings

pytestmark = pytest.mark.integration

PROVIDERS = 3
CONSUMERS = 40  # more than write_retries' default (10) + 1 attempts, and any is too many
PROJECT = uuid.uuid4().hex
USER = uuid.uuid4().hex


def _services(database_url: str, tmp_path: Path) -> Services:
    return build_services(
        make_settings(tmp_path, database={"url": database_url, "write_retries": 0})
    )


def _load_placement(services: Services) -> list[str]:
    """PROVIDERS providers with VCPU inventory and CONSUMERS consumers of 1 VCPU each,
    all rows with explicit ids, as the benchmarks' and the simulator's seeds write them;
    returns the provider uuids."""
    vcpu = services.placement.catalog.resource_classes.id_of("VCPU")
    now = utcnow()
    uuids = [str(uuid.uuid4()) for _ in range(PROVIDERS)]
    with services.db.write() as conn:
        bulk.insert_rows(
            conn,
            resource_providers,
            [
                {
                    "id": i,
                    "uuid": rp,
                    "name": f"bulk-{i}",
                    "generation": 1,
                    "root_provider_id": i,
                    "parent_provider_id": None,
                    "created_at": now,
                }
                for i, rp in enumerate(uuids, start=1)
            ],
        )
        bulk.insert_rows(
            conn,
            inventories,
            [
                {
                    "resource_provider_id": i,
                    "resource_class_id": vcpu,
                    "total": CONSUMERS,
                    "reserved": 0,
                    "min_unit": 1,
                    "max_unit": CONSUMERS,
                    "step_size": 1,
                    "allocation_ratio": 1.0,
                    "created_at": now,
                }
                for i in range(1, PROVIDERS + 1)
            ],
        )
        bulk.insert_rows(
            conn,
            consumers,
            [
                {
                    "id": c,
                    "uuid": str(uuid.uuid4()),
                    "project_id": PROJECT,
                    "user_id": USER,
                    "generation": 1,
                    "consumer_type_id": None,
                    "created_at": now,
                }
                for c in range(1, CONSUMERS + 1)
            ],
        )
        bulk.insert_rows(
            conn,
            allocations,
            [
                {
                    "resource_provider_id": 1 + c % PROVIDERS,
                    "consumer_id": c,
                    "resource_class_id": vcpu,
                    "used": 1,
                    "created_at": now,
                }
                for c in range(1, CONSUMERS + 1)
            ],
        )
    return uuids


@pytest.fixture
def loaded(database_url: str, tmp_path: Path) -> Iterator[tuple[PlacementClient, list[str]]]:
    """A database loaded in bulk, then served by a process that starts afterwards."""
    seeding = _services(database_url, tmp_path / "seed")
    try:
        uuids = _load_placement(seeding)
    finally:
        seeding.db.dispose()
    services = _services(database_url, tmp_path / "serve")
    try:
        with TestClient(create_app(services)) as test_client:
            yield PlacementClient(test_client), uuids
    finally:
        services.db.dispose()


def test_loaded_rows_are_what_the_api_reads(loaded: tuple[PlacementClient, list[str]]) -> None:
    client, uuids = loaded
    used = [client.get(f"/resource_providers/{rp}/usages").json()["usages"] for rp in uuids]
    assert sum(u["VCPU"] for u in used) == CONSUMERS
    listed = client.get("/resource_providers").json()["resource_providers"]
    assert sorted(rp["uuid"] for rp in listed) == sorted(uuids)


def test_new_consumer_and_provider_after_a_load_succeed_at_once(
    loaded: tuple[PlacementClient, list[str]],
) -> None:
    client, uuids = loaded
    body = {
        "allocations": {uuids[0]: {"resources": {"VCPU": 1}}},
        "project_id": PROJECT,
        "user_id": USER,
        "consumer_generation": None,
    }
    for _ in range(3):  # each one a new consumer row
        resp = client.put(f"/allocations/{uuid.uuid4()}", body, microversion="1.28")
        assert resp.status_code == 204, resp.text
    created = client.create_provider("after-the-load")
    assert client.get(f"/resource_providers/{created['uuid']}").status_code == 200
    taken = client.post("/resource_providers", {"name": "bulk-1"}, microversion="1.39")
    assert taken.status_code == 409, taken.text  # the loaded names count


def test_host_cache_insert_all_reads_back(database_url: str, tmp_path: Path) -> None:
    services = _services(database_url, tmp_path)
    now = utcnow()
    records = [
        HostRecord(
            f"bulk-{i}",
            f"bulk-{i}",
            HostReport(compute_node_uuid=str(uuid.uuid4()), hypervisor_type="QEMU"),
            1000.0 + i,
            1000.0 + i,
        )
        for i in range(5)
    ]
    # A member that has not reported (Nova's aggregates name hosts, not nodes).
    members = Aggregate(
        str(uuid.uuid4()), "az1", {"availability_zone": "az1"}, frozenset({"bulk-0", "x"})
    )
    infos = {"bulk-1": [InstanceInfo(uuid=str(uuid.uuid4()), project_id=PROJECT)]}
    try:
        with services.db.write() as conn:
            host_store.insert_all(conn, records, [members], infos, now)
        with services.db.read() as conn:
            hosts, aggregates, instances = host_store.load(conn)
    finally:
        services.db.dispose()
    assert sorted((h.host, h.uuid, h.heartbeat) for h in hosts) == sorted(
        (r.host, r.uuid, r.heartbeat) for r in records
    )
    assert aggregates == [members]
    assert {h: list(i.values()) for h, i in instances.items()} == infos
