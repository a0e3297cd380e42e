"""A process's own writes show in its very next search, without waiting for the poller:
providers (root and child), inventories, traits, aggregates, deletion, on every backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from allotment.app import Services, build_services
from allotment.placement.model import CandidateRequest, ConsumerWrite, Inventory, RequestGroup
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    built = build_services(make_settings(tmp_path, database={"url": database_url}))
    built.placement.index.rebuild()  # loaded, as the start-up task leaves it; no poller runs
    yield built
    built.db.dispose()


def _summarized(services: Services, group: RequestGroup) -> set[str]:
    """Uuids of the providers the candidates for ``group`` summarize."""
    found = services.placement.allocation_candidates(CandidateRequest(groups=(group,)))
    return {summary.uuid for summary in found.summaries()}


def _vcpu(services: Services, provider_uuid: str) -> tuple[int, int]:
    """Capacity and usage of VCPU the candidates report for one provider."""
    found = services.placement.allocation_candidates(
        CandidateRequest(groups=(RequestGroup(resources={"VCPU": 1}),))
    )
    summary = next(s for s in found.summaries() if s.uuid == provider_uuid)
    return summary.resources["VCPU"]


def test_own_writes_show_in_the_next_search(services: Services) -> None:
    placement = services.placement
    root = placement.create_provider(name="root", uuid=str(uuid.uuid4()))
    child = placement.create_provider(name="child", uuid=str(uuid.uuid4()), parent_uuid=root.uuid)
    assert placement.index.state.row_of_uuid.keys() >= {root.uuid, child.uuid}

    placement.change_inventories(
        child.uuid, generation=0, put={"VCPU": Inventory("VCPU", total=8)}, replace_all=True
    )
    assert _summarized(services, RequestGroup(resources={"VCPU": 8})) == {root.uuid, child.uuid}
    assert _summarized(services, RequestGroup(resources={"VCPU": 9})) == set()

    avx2 = RequestGroup(resources={"VCPU": 1}, required_traits=(frozenset({"HW_CPU_X86_AVX2"}),))
    placement.set_provider_traits(child.uuid, ["HW_CPU_X86_AVX2"], generation=1)
    assert _summarized(services, avx2) == {
        root.uuid,
        child.uuid,
    }

    aggregate = str(uuid.uuid4())
    placement.set_provider_aggregates(child.uuid, [aggregate], generation=2)
    assert placement.aggregate_members(aggregate) == {child.uuid}

    consumer = str(uuid.uuid4())
    claim = ConsumerWrite(
        allocations={child.uuid: {"VCPU": 2}}, project_id="p", user_id="u", generation=None
    )
    placement.set_allocations({consumer: claim})
    generation = placement.get_provider(child.uuid).generation
    placement.change_inventories(
        child.uuid,
        generation=generation,
        put={"VCPU": Inventory("VCPU", total=16), "DISK_GB": Inventory("DISK_GB", total=5)},
        replace_all=True,
    )
    assert _vcpu(services, child.uuid) == (16, 2)
    assert _summarized(services, avx2) == {root.uuid, child.uuid}
    assert placement.aggregate_members(aggregate) == {child.uuid}

    placement.delete_allocations(consumer)
    assert _vcpu(services, child.uuid) == (16, 0)
    generation = placement.get_provider(child.uuid).generation
    placement.set_provider_aggregates(child.uuid, [], generation=generation)
    placement.delete_provider(child.uuid)
    assert placement.aggregate_members(aggregate) == set()
    assert child.uuid not in placement.index.state.row_of_uuid
    assert _summarized(services, RequestGroup(resources={"VCPU": 1})) == set()
