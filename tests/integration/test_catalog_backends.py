"""The catalog's service operations on every backend (SQLite, PostgreSQL, MariaDB): row
locking statements, unique-name races and aggregate creation races."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from allotment import errors
from allotment.app import Services, build_services
from allotment.placement.service import PlacementService
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

AGG = "83a3d69d-8920-48e2-8914-cadfd8fa2f91"


@pytest.fixture
def placement(database_url: str, tmp_path: Path) -> Iterator[PlacementService]:
    services: Services = build_services(make_settings(tmp_path, database={"url": database_url}))
    yield services.placement
    services.db.dispose()


def test_resource_class_lifecycle(placement: PlacementService) -> None:
    created = placement.create_resource_class("CUSTOM_GOLD")
    with pytest.raises(errors.ResourceClassExists):
        placement.create_resource_class("CUSTOM_GOLD")
    assert placement.ensure_resource_class("CUSTOM_GOLD") == (created, False)
    renamed = placement.rename_resource_class("CUSTOM_GOLD", "CUSTOM_SILVER")
    assert renamed.id == created.id
    assert placement.catalog.resource_classes.id_of("CUSTOM_SILVER") == created.id
    with pytest.raises(errors.StandardNameReadOnly):
        placement.delete_resource_class("VCPU")
    placement.delete_resource_class("CUSTOM_SILVER")
    with pytest.raises(errors.ResourceClassNotFound):
        placement.get_resource_class("CUSTOM_SILVER")


def test_traits_and_provider_traits(placement: PlacementService) -> None:
    trait, created = placement.ensure_trait("CUSTOM_T1")
    assert created and placement.ensure_trait("CUSTOM_T1") == (trait, False)
    rp = placement.create_provider(name="cn1")
    provider, found = placement.set_provider_traits(
        rp.uuid, ["CUSTOM_T1", "HW_CPU_X86_AVX"], generation=0
    )
    assert provider.generation == 1
    assert {t.name for t in found} == {"CUSTOM_T1", "HW_CPU_X86_AVX"}
    with pytest.raises(errors.TraitInUse):
        placement.delete_trait("CUSTOM_T1")
    with pytest.raises(errors.UnknownTraits):
        placement.set_provider_traits(rp.uuid, ["CUSTOM_NOPE"], generation=1)
    with pytest.raises(errors.ConcurrentUpdate):
        placement.set_provider_traits(rp.uuid, [], generation=0)
    assert [t.name for t in placement.list_traits(associated=True)] == [
        "HW_CPU_X86_AVX",
        "CUSTOM_T1",
    ]
    placement.set_provider_traits(rp.uuid, [], generation=None)
    placement.delete_trait("CUSTOM_T1")
    assert placement.list_traits(prefix="CUSTOM_") == []


def test_concurrent_writers_create_one_aggregate(placement: PlacementService) -> None:
    providers = [placement.create_provider(name=f"cn{i}") for i in range(6)]
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(providers))

    def join(rp_uuid: str) -> None:
        barrier.wait()
        try:
            placement.set_provider_aggregates(rp_uuid, [AGG, str(uuid.uuid4())], generation=0)
        except BaseException as exc:  # reported below, with every thread's outcome
            failures.append(exc)

    threads = [threading.Thread(target=join, args=(rp.uuid,)) for rp in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    for rp in providers:
        provider, aggregates = placement.get_provider_aggregates(rp.uuid)
        assert provider.generation == 1
        assert aggregates[0] == AGG and len(aggregates) == 2


def test_concurrent_trait_creation_is_one_trait(placement: PlacementService) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def ensure() -> None:
        barrier.wait()
        results.append(placement.ensure_trait("CUSTOM_RACE")[1])

    threads = [threading.Thread(target=ensure) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]


def test_processes_starting_at_once_seed_the_standard_names_once(
    placement: PlacementService,
) -> None:
    """Several processes seeding the trait and class catalog of one database at the same
    moment (as a fleet of servers started together does) all succeed, and each name is
    there once: an insert that loses the race reads again and inserts what is left."""
    from allotment.db.database import Database
    from allotment.placement.store.catalog import Catalog

    url = placement.db.url
    with placement.db.write() as conn:  # an empty catalog, as on a database's first start
        for table in (placement.catalog.traits.table, placement.catalog.resource_classes.table):
            conn.execute(table.delete())
    databases = [Database(url) for _ in range(6)]
    barrier = threading.Barrier(len(databases))
    failures: list[BaseException] = []

    def start(db: Database) -> None:
        catalog = Catalog(db)
        barrier.wait()
        try:
            catalog.sync_standard()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        check = Catalog(databases[0])
        check.reload()
        import os_resource_classes
        import os_traits

        assert set(check.traits.names()) == set(os_traits.get_traits())
        assert set(check.resource_classes.names()) == set(os_resource_classes.STANDARDS)
    finally:
        for db in databases:
            db.dispose()
