"""ReportClient against a real ``allotment serve``: what a compute host publishes (providers,
inventories, traits, aggregates, its host report) and how it copes with another writer
changing a provider between its read and its write."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from allotment import errors
from allotment.client import HttpTransport, ProviderSpec, ReportClient, Transport
from tests.conftest import LiveServer

pytestmark = pytest.mark.integration
HEADERS = {"x-auth-token": "admin", "openstack-api-version": "placement 1.39"}


@pytest.fixture
def placement(live_server: LiveServer) -> Iterator[HttpTransport]:
    transport = HttpTransport(live_server.url, token="admin", retries=0)
    yield transport
    transport.close()


@pytest.fixture
def other_writer(live_server: LiveServer) -> Iterator[httpx.Client]:
    """Someone else writing to placement: a scheduler claiming, an operator."""
    with httpx.Client(base_url=live_server.url, headers=HEADERS, timeout=30) as client:
        yield client


class Interfering:
    """The host's transport, letting ``interfere`` run just before chosen requests reach
    placement: the window between ReportClient reading a generation and writing with it."""

    def __init__(self, inner: Transport, when: Callable[[str, str], bool], times: int) -> None:
        self.inner = inner
        self.when = when
        self.times = times
        self.interfere: Callable[[], None] = lambda: None
        self.sent: list[tuple[str, str, int]] = []

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        microversion: str | None = None,
    ) -> httpx.Response:
        if self.times and self.when(method, path):
            self.times -= 1
            self.interfere()
        response = self.inner.request(
            method, path, json=json, params=params, microversion=microversion
        )
        self.sent.append((method, path, response.status_code))
        return response


def read(client: httpx.Client, path: str) -> Any:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def compute_tree(name: str) -> list[ProviderSpec]:
    root = ProviderSpec(
        name,
        str(uuid.uuid4()),
        inventories={
            "VCPU": {"total": 8, "allocation_ratio": 4.0},
            "MEMORY_MB": {"total": 16384, "reserved": 512},
        },
        traits={"HW_CPU_X86_AVX2", "CUSTOM_RACK_A"},
        aggregates={str(uuid.uuid4())},
    )
    gpu = ProviderSpec(
        f"{name}_gpu0",
        str(uuid.uuid4()),
        root.uuid,
        inventories={"CUSTOM_GPU_A100": {"total": 2}},
        traits={"CUSTOM_NVLINK"},
    )
    numa = ProviderSpec(f"{name}_numa0", str(uuid.uuid4()), root.uuid)
    return [gpu, root, numa]  # children first: publish must order them itself


def test_publish_creates_updates_and_prunes_a_provider_tree(
    placement: HttpTransport, other_writer: httpx.Client
) -> None:
    gpu, root, numa = tree = compute_tree("cn1")
    ReportClient(placement).publish(tree)

    listed = read(other_writer, f"/resource_providers?in_tree={root.uuid}")
    parents = {rp["uuid"]: rp["parent_provider_uuid"] for rp in listed["resource_providers"]}
    assert parents == {root.uuid: None, gpu.uuid: root.uuid, numa.uuid: root.uuid}
    inventories = read(other_writer, f"/resource_providers/{root.uuid}/inventories")
    assert inventories["inventories"]["VCPU"]["allocation_ratio"] == 4.0
    assert inventories["inventories"]["MEMORY_MB"]["reserved"] == 512
    assert (
        read(other_writer, f"/resource_providers/{gpu.uuid}/inventories")["inventories"][
            "CUSTOM_GPU_A100"
        ]["total"]
        == 2
    )
    traits = read(other_writer, f"/resource_providers/{root.uuid}/traits")["traits"]
    assert sorted(traits) == ["CUSTOM_RACK_A", "HW_CPU_X86_AVX2"]
    aggregates = read(other_writer, f"/resource_providers/{root.uuid}/aggregates")
    assert sorted(aggregates["aggregates"]) == sorted(root.aggregates)
    assert read(other_writer, f"/resource_providers/{numa.uuid}")["generation"] == 0

    # The host changes: more memory, a trait gone, another aggregate, a renamed root,
    # the GPU removed and a second NUMA cell added.
    root.name = "cn1.example.org"
    root.inventories["MEMORY_MB"]["total"] = 32768
    root.traits.discard("CUSTOM_RACK_A")
    root.aggregates.add(str(uuid.uuid4()))
    numa1 = ProviderSpec("cn1_numa1", str(uuid.uuid4()), root.uuid, {"VCPU": {"total": 4}})
    ReportClient(placement).publish([root, numa, numa1])

    listed = read(other_writer, f"/resource_providers?in_tree={root.uuid}")
    assert {rp["uuid"] for rp in listed["resource_providers"]} == {
        root.uuid,
        numa.uuid,
        numa1.uuid,
    }
    assert other_writer.get(f"/resource_providers/{gpu.uuid}").status_code == 404
    assert read(other_writer, f"/resource_providers/{root.uuid}")["name"] == "cn1.example.org"
    inventories = read(other_writer, f"/resource_providers/{root.uuid}/inventories")
    assert inventories["inventories"]["MEMORY_MB"]["total"] == 32768
    assert read(other_writer, f"/resource_providers/{root.uuid}/traits")["traits"] == [
        "HW_CPU_X86_AVX2"
    ]
    aggregates = read(other_writer, f"/resource_providers/{root.uuid}/aggregates")
    assert sorted(aggregates["aggregates"]) == sorted(root.aggregates)

    # Publishing an unchanged tree again changes nothing.
    ReportClient(placement).publish([root, numa, numa1])
    listed = read(other_writer, f"/resource_providers?in_tree={root.uuid}")
    assert len(listed["resource_providers"]) == 3
    assert (
        read(other_writer, f"/resource_providers/{root.uuid}/inventories")["inventories"]
        == inventories["inventories"]
    )
    assert read(other_writer, f"/resource_providers/{root.uuid}/traits")["traits"] == [
        "HW_CPU_X86_AVX2"
    ]

    client = ReportClient(placement)
    for leaf in (numa1, numa):
        client.delete_provider(leaf.uuid)
    client.delete_provider(root.uuid)
    client.delete_provider(root.uuid)  # already gone: nothing to do
    assert other_writer.get(f"/resource_providers/{root.uuid}").status_code == 404


def test_bad_inventory_is_refused_with_placements_reason(placement: HttpTransport) -> None:
    spec = ProviderSpec("cn-bad", str(uuid.uuid4()), inventories={"VCPU": {"total": 0}})
    with pytest.raises(errors.AllotmentError, match=rf"set inventories of {spec.uuid}: HTTP 400"):
        ReportClient(placement).publish([spec])


def test_another_writer_between_read_and_write_is_retried_not_overwritten(
    placement: HttpTransport, other_writer: httpx.Client
) -> None:
    """A claim lands on the host's provider after ReportClient read its generation: the
    inventory write gets a generation conflict, reads again and succeeds, and the claim
    (the other writer's change) is still there."""
    _, root, _ = tree = compute_tree("cn2")
    ReportClient(placement).publish(tree)
    consumer = str(uuid.uuid4())
    inventory_write = f"/resource_providers/{root.uuid}/inventories"
    host = Interfering(
        placement, lambda method, path: (method, path) == ("PUT", inventory_write), 1
    )

    def claim() -> None:
        generation = read(other_writer, f"/resource_providers/{root.uuid}")["generation"]
        body = {
            "allocations": {root.uuid: {"resources": {"VCPU": 3, "MEMORY_MB": 2048}}},
            "project_id": "p1",
            "user_id": "u1",
            "consumer_generation": None,
            "consumer_type": "INSTANCE",
        }
        response = other_writer.put(f"/allocations/{consumer}", json=body)
        assert response.status_code == 204, response.text
        after = read(other_writer, f"/resource_providers/{root.uuid}")["generation"]
        assert after > generation  # the claim moved the generation ReportClient holds

    host.interfere = claim
    root.inventories["VCPU"]["total"] = 16
    ReportClient(host).publish(tree)

    writes = [status for method, path, status in host.sent if path == inventory_write]
    assert writes == [409, 200]
    inventories = read(other_writer, f"/resource_providers/{root.uuid}/inventories")
    assert inventories["inventories"]["VCPU"]["total"] == 16
    usages = read(other_writer, f"/resource_providers/{root.uuid}/usages")["usages"]
    assert usages == {"VCPU": 3, "MEMORY_MB": 2048}
    assert read(other_writer, f"/allocations/{consumer}")["allocations"][root.uuid][
        "resources"
    ] == {"VCPU": 3, "MEMORY_MB": 2048}


def test_a_provider_that_keeps_changing_gives_up_with_a_clear_error(
    placement: HttpTransport, other_writer: httpx.Client
) -> None:
    root = ProviderSpec("cn3", str(uuid.uuid4()), inventories={"VCPU": {"total": 4}})
    ReportClient(placement).publish([root])
    trait_write = f"/resource_providers/{root.uuid}/traits"

    def bump() -> None:
        generation = read(other_writer, f"/resource_providers/{root.uuid}")["generation"]
        body = {"resource_provider_generation": generation, "aggregates": [str(uuid.uuid4())]}
        response = other_writer.put(f"/resource_providers/{root.uuid}/aggregates", json=body)
        assert response.status_code == 200, response.text

    host = Interfering(placement, lambda method, path: (method, path) == ("PUT", trait_write), 99)
    host.interfere = bump
    root.traits = {"HW_CPU_X86_SSE42"}
    with pytest.raises(errors.ConcurrentUpdate, match=f"traits of provider {root.uuid}"):
        ReportClient(host, conflict_retries=2).publish([root])
    assert [status for _, path, status in host.sent if path == trait_write] == [409, 409, 409]
    assert read(other_writer, f"/resource_providers/{root.uuid}/traits")["traits"] == []


def test_host_report_and_heartbeat_reach_the_scheduler(
    live_server: LiveServer, placement: HttpTransport
) -> None:
    (root,) = [ProviderSpec("cn4", str(uuid.uuid4()), inventories={"VCPU": {"total": 4}})]
    scheduler = HttpTransport(live_server.url + "/scheduler/v1", token="admin", retries=0)
    client = ReportClient(placement, scheduler)
    with pytest.raises(errors.ConfigError, match="no report was sent for host cn4"):
        client.heartbeat("cn4")
    client.publish([root])
    report = {
        "compute_node_uuid": root.uuid,
        "hypervisor_type": "QEMU",
        "supported_instances": [["x86_64", "kvm", "hvm"]],
    }
    client.report_host("cn4", report)
    client.heartbeat("cn4")
    hosts = scheduler.request("GET", "/hosts").json()["hosts"]
    (seen,) = [host for host in hosts if host["host"] == "cn4"]
    assert seen["compute_node_uuid"] == root.uuid
    with pytest.raises(errors.AllotmentError, match="could not report host cn5: HTTP 400"):
        client.report_host("cn5", {"compute_node_uuid": "not-a-uuid"})
    with pytest.raises(errors.ConfigError, match="no scheduler endpoint"):
        ReportClient(placement).report_host("cn4", report)
    scheduler.close()
