"""Networks and PCI devices fitted to the instance's NUMA cells: Nova's
``numa_fit_instance_to_host`` rules for ``network_metadata`` (physnet and tunnel NUMA
affinity) and for PCI requests by ``numa_policy``, and its host-cell order."""

from __future__ import annotations

from typing import Any

import pytest

from allotment.errors import InvalidInput, NoValidHost
from allotment.scheduler import pci
from allotment.scheduler.numa import HostNuma, NumaRequest, fit, numa_request
from allotment.scheduler.records import NetworkMetadata, NumaTopology, PciPool
from tests.unit.scheduler.helpers import Cloud, spec


def host(*cells: dict[str, Any]) -> HostNuma:
    """Host cells of 4 CPUs and 4 GB each unless told otherwise."""
    return HostNuma.from_report(
        NumaTopology.model_validate(
            {
                "cells": [
                    {"id": i, "cpus": [4 * i + c for c in range(4)], "memory_mb": 4096, **c}
                    for i, c in enumerate(cells)
                ]
            }
        )
    )


def instance(vcpus: int = 2, memory_mb: int = 1024, **extra: str) -> NumaRequest:
    request = numa_request(vcpus, memory_mb, {"hw:numa_nodes": "1", **extra}, {})
    assert request is not None
    return request


def networks(*physnets: str, tunneled: bool = False) -> NetworkMetadata:
    return NetworkMetadata(physnets=list(physnets), tunneled=tunneled)


def cells_of(found: Any) -> list[int] | None:
    return None if found is None else [f.host_cell for f in found]


def devices(policy: pci.PciNumaPolicy, count: int = 1) -> list[pci.PciRequest]:
    return [pci.PciRequest("nic", count, ((("vendor_id", "8086"),),), policy)]


def pool(numa_node: int | None, count: int = 1, vendor: str = "8086") -> PciPool:
    return PciPool(vendor_id=vendor, product_id="1520", numa_node=numa_node, count=count)


FULL = {"memory_usage": 4096}


class TestPhysnetAffinity:
    def test_a_physnet_local_to_cell_1_puts_the_instance_on_cell_1(self) -> None:
        topology = host({}, {"network_metadata": {"physnets": ["physnet1"]}})
        assert cells_of(fit(topology, instance(), 4.0, 1.0)) == [0]
        assert cells_of(fit(topology, instance(), 4.0, 1.0, network=networks("physnet1"))) == [1]

    def test_no_fit_when_the_physnet_s_cell_is_full(self) -> None:
        topology = host({}, {"network_metadata": {"physnets": ["physnet1"]}, **FULL})
        assert fit(topology, instance(), 4.0, 1.0, network=networks("physnet1")) is None
        # A physnet no cell claims is local to none: any cell does.
        assert cells_of(fit(topology, instance(), 4.0, 1.0, network=networks("other"))) == [0]

    def test_every_physnet_with_affinity_must_be_on_a_chosen_cell(self) -> None:
        topology = host(
            {"network_metadata": {"physnets": ["a"]}},
            {"network_metadata": {"physnets": ["b"]}},
        )
        assert fit(topology, instance(), 4.0, 1.0, network=networks("a", "b")) is None
        two = instance(4, 2048, **{"hw:numa_nodes": "2"})
        assert cells_of(fit(topology, two, 4.0, 1.0, network=networks("a", "b"))) == [0, 1]

    def test_a_multi_cell_instance_takes_the_cells_its_physnets_are_on(self) -> None:
        topology = host(
            {},
            {},
            {"network_metadata": {"physnets": ["a"]}},
            {"network_metadata": {"physnets": ["b"]}},
        )
        two = instance(4, 2048, **{"hw:numa_nodes": "2"})
        assert cells_of(fit(topology, two, 4.0, 1.0)) == [0, 1]
        found = cells_of(fit(topology, two, 4.0, 1.0, network=networks("a", "b")))
        assert found is not None and sorted(found) == [2, 3]
        half = cells_of(fit(topology, two, 4.0, 1.0, network=networks("b")))
        assert half is not None and 3 in half


class TestTunnelAffinity:
    def test_the_tunnel_s_cell_is_chosen(self) -> None:
        topology = host({}, {"network_metadata": {"tunneled": True}})
        assert cells_of(fit(topology, instance(), 4.0, 1.0, network=networks(tunneled=True))) == [1]

    def test_no_fit_when_the_tunnel_s_cell_is_full(self) -> None:
        topology = host({}, {"network_metadata": {"tunneled": True}, **FULL})
        assert fit(topology, instance(), 4.0, 1.0, network=networks(tunneled=True)) is None
        # Not tunneled: the tunnel's affinity does not matter.
        assert cells_of(fit(topology, instance(), 4.0, 1.0, network=networks())) == [0]

    def test_a_host_without_tunnel_affinity_takes_tunneled_instances_anywhere(self) -> None:
        topology = host({}, {})
        assert cells_of(fit(topology, instance(), 4.0, 1.0, network=networks(tunneled=True))) == [0]

    def test_physnets_and_tunnel_together(self) -> None:
        topology = host(
            {"network_metadata": {"physnets": ["a"]}},
            {"network_metadata": {"tunneled": True}},
        )
        both = networks("a", tunneled=True)
        assert fit(topology, instance(), 4.0, 1.0, network=both) is None
        two = instance(4, 2048, **{"hw:numa_nodes": "2"})
        assert cells_of(fit(topology, two, 4.0, 1.0, network=both)) == [0, 1]


class TestPciNumaPolicy:
    def test_required_devices_come_from_the_instance_s_cells(self) -> None:
        topology = host({}, {})
        found = fit(
            topology, instance(), 4.0, 1.0, pci_requests=devices("required"), pci_pools=[pool(1)]
        )
        assert cells_of(found) == [1]
        busy = host({}, FULL)
        assert (
            fit(busy, instance(), 4.0, 1.0, pci_requests=devices("required"), pci_pools=[pool(1)])
            is None
        )
        # A device of no known NUMA node is not local to any cell.
        assert (
            fit(
                busy, instance(), 4.0, 1.0, pci_requests=devices("required"), pci_pools=[pool(None)]
            )
            is None
        )

    def test_legacy_also_takes_devices_of_no_known_node(self) -> None:
        busy = host({}, FULL)
        legacy = devices("legacy")
        assert cells_of(
            fit(busy, instance(), 4.0, 1.0, pci_requests=legacy, pci_pools=[pool(None)])
        ) == [0]
        assert fit(busy, instance(), 4.0, 1.0, pci_requests=legacy, pci_pools=[pool(1)]) is None

    def test_preferred_takes_any_device_but_local_ones_first(self) -> None:
        busy = host({}, FULL)
        preferred = devices("preferred")
        assert cells_of(
            fit(busy, instance(), 4.0, 1.0, pci_requests=preferred, pci_pools=[pool(1)])
        ) == [0]
        left = pci.allocate([pool(1), pool(None), pool(0)], preferred, [0])
        assert left is not None and [p.count for p in left] == [1, 1, 0]
        left = pci.allocate([pool(1), pool(None)], preferred, [0])
        assert left is not None and [p.count for p in left] == [1, 0]

    def test_socket_takes_devices_on_a_cell_of_the_same_socket(self) -> None:
        topology = host({"socket": 0}, {"socket": 0, **FULL}, {"socket": 1, **FULL})
        socket = devices("socket")
        assert cells_of(
            fit(topology, instance(), 4.0, 1.0, pci_requests=socket, pci_pools=[pool(1)])
        ) == [0]
        assert fit(topology, instance(), 4.0, 1.0, pci_requests=socket, pci_pools=[pool(2)]) is None
        assert (
            fit(topology, instance(), 4.0, 1.0, pci_requests=socket, pci_pools=[pool(None)]) is None
        )
        unknown = host({}, FULL)
        assert fit(unknown, instance(), 4.0, 1.0, pci_requests=socket, pci_pools=[pool(1)]) is None

    def test_every_policy_uses_local_devices_when_they_are_enough(self) -> None:
        for policy in ("required", "legacy", "preferred", "socket"):
            left = pci.allocate([pool(None), pool(1), pool(0)], devices(policy), [0])
            assert left is not None and [p.count for p in left] == [1, 1, 0], policy

    def test_a_two_cell_instance_may_use_devices_of_either_cell(self) -> None:
        topology = host({}, {})
        two = instance(4, 2048, **{"hw:numa_nodes": "2"})
        found = fit(
            topology,
            two,
            4.0,
            1.0,
            pci_requests=devices("required", 2),
            pci_pools=[pool(0), pool(1)],
        )
        assert found is not None

    def test_without_a_numa_topology_devices_come_from_anywhere(self) -> None:
        assert pci.allocate([pool(1)], devices("required")) is not None


class TestHostCellOrder:
    """Nova tries the host cells most free first when it has more than it needs."""

    def test_most_free_memory_first(self) -> None:
        topology = host({"memory_usage": 1024}, {})
        assert cells_of(fit(topology, instance(), 4.0, 1.0)) == [1]

    def test_least_used_cpus_first_for_shared_instances(self) -> None:
        topology = host({"cpu_usage": 3}, {"cpu_usage": 1})
        assert cells_of(fit(topology, instance(), 4.0, 1.0)) == [1]

    def test_most_free_dedicated_cpus_first_for_pinned_instances(self) -> None:
        topology = host({"pinned_cpus": [0, 1]}, {"pinned_cpus": [4]})
        pinned = instance(1, 512, **{"hw:cpu_policy": "dedicated"})
        assert cells_of(fit(topology, pinned, 4.0, 1.0)) == [1]

    def test_cells_with_devices_first_only_when_devices_are_asked_for(self) -> None:
        topology = host({}, {})
        pools = [pool(1, vendor="10de")]
        assert cells_of(fit(topology, instance(), 4.0, 1.0, pci_pools=pools)) == [0]
        other = [pci.PciRequest("gpu", 1, ((("vendor_id", "10de"),),), "preferred")]
        found = fit(topology, instance(), 4.0, 1.0, pci_requests=other, pci_pools=pools)
        assert cells_of(found) == [1]


class TestThroughTheFilter:
    """RequestSpec.network_metadata and PCI requests as NUMATopologyFilter sees them."""

    def cloud(self) -> Cloud:
        cloud = Cloud(
            pci={"alias": [{"name": "nic", "vendor_id": "8086", "numa_policy": "required"}]}
        )
        near = {"network_metadata": {"physnets": ["physnet1"]}}
        cloud.host(
            "physnet-on-free-cell",
            numa_topology={
                "cells": [
                    {"id": 0, "cpus": [0, 1], "memory_mb": 4096},
                    {"id": 1, "cpus": [2, 3], "memory_mb": 4096, **near},
                ]
            },
        )
        cloud.host(
            "physnet-on-full-cell",
            numa_topology={
                "cells": [
                    {"id": 0, "cpus": [0, 1], "memory_mb": 4096},
                    {"id": 1, "cpus": [2, 3], "memory_mb": 4096, "memory_usage": 4096, **near},
                ]
            },
        )
        cloud.host(
            "nic-on-full-cell",
            numa_topology={
                "cells": [
                    {"id": 0, "cpus": [0, 1], "memory_mb": 4096},
                    {"id": 1, "cpus": [2, 3], "memory_mb": 4096, "memory_usage": 4096},
                ]
            },
            pci_pools=[{"vendor_id": "8086", "product_id": "1520", "numa_node": 1, "count": 2}],
        )
        return cloud

    def body(self, **fields: Any) -> dict[str, Any]:
        extra = {"hw:numa_nodes": "1", **fields.pop("extra_specs", {})}
        return spec(
            flavor={"vcpus": 2, "memory_mb": 1024, "extra_specs": extra},
            **fields,
        )

    def test_network_metadata_from_the_spec(self) -> None:
        cloud = self.cloud()
        everyone = {"physnet-on-free-cell", "physnet-on-full-cell", "nic-on-full-cell"}
        assert cloud.passing(self.body(), "NUMATopologyFilter") == everyone
        body = self.body(network_metadata={"physnets": ["physnet1"], "tunneled": False})
        assert cloud.passing(body, "NUMATopologyFilter") == {
            "physnet-on-free-cell",
            "nic-on-full-cell",
        }

    def test_the_alias_policy_and_the_flavor_s_override(self) -> None:
        cloud = self.cloud()
        body = self.body(extra_specs={"pci_passthrough:alias": "nic:1"})
        assert cloud.passing(body, "NUMATopologyFilter") == set()
        preferred = {"pci_passthrough:alias": "nic:1", "hw:pci_numa_affinity_policy": "preferred"}
        assert cloud.passing(self.body(extra_specs=preferred), "NUMATopologyFilter") == {
            "nic-on-full-cell"
        }
        image = {"properties": {"hw_pci_numa_affinity_policy": "preferred"}}
        body = self.body(extra_specs={"pci_passthrough:alias": "nic:1"}, image=image)
        assert cloud.passing(body, "NUMATopologyFilter") == {"nic-on-full-cell"}

    def test_the_spec_s_pci_requests_carry_their_policy(self) -> None:
        cloud = self.cloud()
        request = {"count": 1, "spec": [{"vendor_id": "8086"}], "numa_policy": "required"}
        body = self.body(pci_requests=[request])
        assert cloud.passing(body, "NUMATopologyFilter") == set()
        body = self.body(pci_requests=[{**request, "numa_policy": "preferred"}])
        assert cloud.passing(body, "NUMATopologyFilter") == {"nic-on-full-cell"}

    @pytest.mark.parametrize(
        ("extra", "image", "message"),
        [
            ({"hw:pci_numa_affinity_policy": "nearby"}, {}, "is not one of"),
            (
                {"hw:pci_numa_affinity_policy": "required"},
                {"hw_pci_numa_affinity_policy": "legacy"},
                "disagree",
            ),
        ],
    )
    def test_bad_policies_are_400(
        self, extra: dict[str, str], image: dict[str, str], message: str
    ) -> None:
        body = self.body(
            extra_specs={"pci_passthrough:alias": "nic:1", **extra},
            image={"properties": image},
        )
        with pytest.raises(InvalidInput, match=message):
            self.cloud().passing(body, "NUMATopologyFilter")

    def reasons(self, body: dict[str, Any], *hosts: str) -> dict[str, str]:
        """Why each of ``hosts`` (the cloud's other hosts left out) fails the filter."""
        cloud = self.cloud()
        cloud.records = [r for r in cloud.records if r.host in hosts]
        cycle = cloud.cycle(body, filters=["NUMATopologyFilter"], weighers=[])
        with pytest.raises(NoValidHost) as caught:
            cycle.next_hosts()
        misses = caught.value.extra["explanation"]["closest_misses"]
        return {m["host"]: m["failed_filters"][0]["reason"] for m in misses}

    def test_reasons_name_what_failed(self) -> None:
        body = self.body(extra_specs={"pci_passthrough:alias": "nic:1"})
        reasons = self.reasons(body, "nic-on-full-cell", "physnet-on-free-cell")
        assert "PCI devices nic:1 (required)" in reasons["nic-on-full-cell"]
        assert "PCI devices nic:1" in reasons["physnet-on-free-cell"]
        body = self.body(network_metadata={"physnets": ["physnet1"]})
        reasons = self.reasons(body, "physnet-on-full-cell")
        assert "networks (physnet1) have NUMA affinity" in reasons["physnet-on-full-cell"]
        big = {**body, "flavor": {**body["flavor"], "memory_mb": 8192}}
        reasons = self.reasons(big, "physnet-on-full-cell")
        assert "do not fit" in reasons["physnet-on-full-cell"]

    def test_devices_are_consumed_from_the_chosen_cells(self) -> None:
        """Two instances needing a local NIC each: the second must go to the other
        cell's NIC, so the host takes exactly two."""
        cloud = Cloud(
            pci={"alias": [{"name": "nic", "vendor_id": "8086", "numa_policy": "required"}]}
        )
        cloud.host(
            "h",
            numa_topology={
                "cells": [
                    {"id": 0, "cpus": [0, 1, 2, 3], "memory_mb": 8192},
                    {"id": 1, "cpus": [4, 5, 6, 7], "memory_mb": 8192},
                ]
            },
            pci_pools=[
                {"vendor_id": "8086", "product_id": "1520", "numa_node": 0, "count": 1},
                {"vendor_id": "8086", "product_id": "1520", "numa_node": 1, "count": 1},
            ],
        )
        body = self.body(extra_specs={"pci_passthrough:alias": "nic:1"})
        assert cloud.place(body, 2, filters=["NUMATopologyFilter"]) == ["h", "h"]
        with pytest.raises(Exception, match="NUMATopologyFilter"):
            cloud.place(body, 3, filters=["NUMATopologyFilter"])

    def test_limits_carry_the_network_metadata(self) -> None:
        cloud = self.cloud()
        body = self.body(network_metadata={"physnets": ["physnet1"], "tunneled": True})
        cycle = cloud.cycle(body, filters=["NUMATopologyFilter"], weighers=[])
        first = cycle.next_hosts().first
        limits = cycle.limits(first.position)
        assert limits["numa_topology"]["network_metadata"] == {
            "physnets": ["physnet1"],
            "tunneled": True,
        }
