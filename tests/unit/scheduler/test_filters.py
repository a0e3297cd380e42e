"""Every built-in host filter against Nova's documented semantics."""

from __future__ import annotations

import contextlib
import json

import pytest

from allotment.errors import InvalidInput, NoValidHost
from tests.unit.scheduler.helpers import Cloud, spec


def test_compute_filter_drops_disabled_and_silent_hosts() -> None:
    cloud = Cloud(scheduler={"service_down_time": 60})
    cloud.host("up")
    cloud.host("late-but-up", age=59)
    cloud.host("down", age=61)
    cloud.host("disabled", disabled=True, disabled_reason="maintenance")
    assert cloud.passing(spec(), "ComputeFilter") == {"up", "late-but-up"}


def test_compute_filter_reasons_in_closest_misses() -> None:
    cloud = Cloud()
    cloud.host("down", age=3600)
    cloud.host("disabled", disabled=True, disabled_reason="maintenance")
    cycle = cloud.cycle(spec(), filters=["ComputeFilter"], weighers=[])
    with pytest.raises(Exception) as caught:
        cycle.next_hosts()
    explanation = caught.value.extra["explanation"]  # type: ignore[attr-defined]
    assert explanation["emptied_by"] == {"stage": "ComputeFilter", "kind": "filter"}
    reasons = {m["host"]: m["failed_filters"][0]["reason"] for m in explanation["closest_misses"]}
    assert "maintenance" in reasons["disabled"]
    assert "3600 s" in reasons["down"]


def test_all_hosts_filter_passes_everything() -> None:
    cloud = Cloud()
    cloud.host("a", disabled=True)
    cloud.host("b", age=10_000)
    assert cloud.passing(spec(), "AllHostsFilter") == {"a", "b"}


class TestComputeCapabilities:
    def cloud(self) -> Cloud:
        cloud = Cloud()
        cloud.host(
            "kvm",
            hypervisor_type="QEMU",
            hypervisor_version=8002000,
            cpu_info={"arch": "x86_64", "vendor": "Intel", "maxphysaddr": {"bits": 46}},
            stats={"ssd": "true"},
        )
        cloud.host(
            "arm",
            hypervisor_type="QEMU",
            hypervisor_version=6002000,
            cpu_info={"arch": "aarch64", "vendor": "ARM"},
        )
        return cloud

    def passing(self, **extra_specs: str) -> set[str]:
        cloud = self.cloud()
        return cloud.passing(spec(flavor={"extra_specs": extra_specs}), "ComputeCapabilitiesFilter")

    def test_scoped_path_into_cpu_info(self) -> None:
        assert self.passing(**{"capabilities:cpu_info:arch": "x86_64"}) == {"kvm"}
        assert self.passing(**{"capabilities:cpu_info:vendor": "<or> ARM <or> AMD"}) == {"arm"}

    def test_numeric_operators(self) -> None:
        assert self.passing(**{"capabilities:hypervisor_version": ">= 7000000"}) == {"kvm"}
        assert self.passing(**{"capabilities:hypervisor_version": "= 1"}) == {"kvm", "arm"}

    def test_unscoped_key_applies_only_to_hosts_with_that_attribute_or_stat(self) -> None:
        # Only "kvm" has the stat, so only it is checked; "arm" passes unchecked.
        assert self.passing(ssd="false") == {"arm"}
        assert self.passing(ssd="true") == {"kvm", "arm"}
        assert self.passing(hypervisor_type="s== Xen") == set()

    def test_other_scopes_are_ignored(self) -> None:
        assert self.passing(**{"hw:cpu_cores": "8", "aggregate_instance_extra_specs:x": "1"}) == {
            "kvm",
            "arm",
        }

    def test_missing_capability_fails(self) -> None:
        assert self.passing(**{"capabilities:cpu_info:model": "Skylake"}) == set()

    def test_maxphysaddr_bits(self) -> None:
        assert self.passing(**{"hw:maxphysaddr_bits": "40"}) == {"kvm"}
        assert self.passing(**{"hw:maxphysaddr_bits": "48"}) == set()

    def test_dynamic_attribute(self) -> None:
        cloud = self.cloud()
        cloud.free[cloud.records[0].uuid] = (1024.0, 1e5, 8.0)
        body = spec(flavor={"extra_specs": {"capabilities:free_ram_mb": ">= 2048"}})
        assert cloud.passing(body, "ComputeCapabilitiesFilter") == {"arm"}


class TestImageProperties:
    def cloud(self) -> Cloud:
        cloud = Cloud()
        cloud.host(
            "x86",
            supported_instances=[("x86_64", "kvm", "hvm"), ("i686", "kvm", "hvm")],
            hypervisor_version=7002000,
            cpu_info={"maxphysaddr": {"bits": 46}},
        )
        cloud.host(
            "arm", supported_instances=[("aarch64", "kvm", "hvm")], hypervisor_version=6000000
        )
        cloud.host("none", supported_instances=[])
        return cloud

    def passing(self, **props: object) -> set[str]:
        return self.cloud().passing(
            spec(image={"id": "img", "properties": props}), "ImagePropertiesFilter"
        )

    def test_no_relevant_properties_passes_all(self) -> None:
        assert self.passing(os_distro="ubuntu") == {"x86", "arm", "none"}

    def test_architecture_is_canonicalized(self) -> None:
        assert self.passing(hw_architecture="AMD64") == {"x86"}
        assert self.passing(hw_architecture="i386") == {"x86"}
        assert self.passing(hw_architecture="aarch64") == {"arm"}

    def test_hypervisor_type_and_vm_mode(self) -> None:
        assert self.passing(img_hv_type="KVM", hw_vm_mode="hv") == {"x86", "arm"}
        assert self.passing(img_hv_type="xen") == set()

    def test_requested_hypervisor_version(self) -> None:
        assert self.passing(hw_architecture="x86_64", img_hv_requested_version=">=7.0") == {"x86"}
        assert self.passing(img_hv_type="kvm", img_hv_requested_version=">=6.1,<7.0") == set()

    def test_maxphysaddr_bits(self) -> None:
        assert self.passing(hw_architecture="x86_64", hw_maxphysaddr_bits=48) == set()
        assert self.passing(hw_architecture="x86_64", hw_maxphysaddr_bits=40) == {"x86"}

    def test_default_architecture_option(self) -> None:
        cloud = self.cloud()
        cloud.sections["filter_scheduler"] = {"image_properties_default_architecture": "aarch64"}
        assert cloud.passing(spec(image={"id": "i"}), "ImagePropertiesFilter") == {"arm"}

    def reasons(self, **props: object) -> dict[str, int]:
        body = spec(image={"id": "img", "properties": props})
        cycle = self.cloud().cycle(body, filters=["ImagePropertiesFilter"], weighers=[])
        with contextlib.suppress(NoValidHost):
            cycle.next_hosts()
        (stage,) = [s for s in cycle.funnel.stages if s.kind == "filter"]
        return stage.reasons or {}

    def test_rejections_are_counted_by_the_check_that_failed(self) -> None:
        # "none" supports nothing: it fails on the first property the image names.
        assert self.reasons(hw_architecture="x86_64") == {"image_arch": 2}
        assert self.reasons(img_hv_type="xen") == {"image_hv_type": 3}
        assert self.reasons(img_hv_type="kvm", hw_vm_mode="xen") == {
            "image_vm_mode": 2,
            "image_hv_type": 1,
        }
        assert self.reasons(hw_architecture="x86_64", img_hv_requested_version=">=8.0") == {
            "image_hv_version": 1,
            "image_arch": 2,
        }
        assert self.reasons(hw_architecture="x86_64", hw_maxphysaddr_bits=48) == {
            "image_maxphysaddr": 1,
            "image_arch": 2,
        }


class TestServerGroups:
    def test_anti_affinity_excludes_hosts_with_members(self) -> None:
        cloud = Cloud()
        for name in ("a", "b", "c"):
            cloud.host(name)
        member = cloud.instance("a")
        cloud.instance("b")  # not a member
        group = {"policy": "anti-affinity", "members": [member]}
        assert cloud.passing(spec(instance_group=group), "ServerGroupAntiAffinityFilter") == {
            "b",
            "c",
        }

    def test_anti_affinity_max_server_per_host(self) -> None:
        cloud = Cloud()
        cloud.host("a")
        cloud.host("b")
        members = [cloud.instance("a"), cloud.instance("a"), cloud.instance("b")]
        group = {"policy": "anti-affinity", "members": members, "rules": {"max_server_per_host": 2}}
        assert cloud.passing(spec(instance_group=group), "ServerGroupAntiAffinityFilter") == {"b"}

    def test_anti_affinity_spreads_a_batch(self) -> None:
        cloud = Cloud()
        for name in ("a", "b", "c"):
            cloud.host(name)
        body = spec(instance_group={"policy": "anti-affinity"})
        chosen = cloud.place(body, 3, filters=["ServerGroupAntiAffinityFilter"])
        assert sorted(chosen) == ["a", "b", "c"]
        with pytest.raises(Exception, match="ServerGroupAntiAffinityFilter"):
            cloud.place(body, 4, filters=["ServerGroupAntiAffinityFilter"])

    def test_anti_affinity_does_not_apply_to_other_policies(self) -> None:
        cloud = Cloud()
        cloud.host("a")
        member = cloud.instance("a")
        body = spec(instance_group={"policy": "soft-anti-affinity", "members": [member]})
        assert cloud.passing(body, "ServerGroupAntiAffinityFilter") == {"a"}

    def test_affinity_sticks_to_group_hosts(self) -> None:
        cloud = Cloud()
        for name in ("a", "b", "c"):
            cloud.host(name)
        body = spec(instance_group={"policy": "affinity", "hosts": ["b"]})
        assert cloud.passing(body, "ServerGroupAffinityFilter") == {"b"}
        body = spec(instance_group={"policy": "affinity", "hosts": []})
        assert cloud.passing(body, "ServerGroupAffinityFilter") == {"a", "b", "c"}

    def test_affinity_batch_lands_on_one_host(self) -> None:
        cloud = Cloud()
        for name in ("a", "b", "c"):
            cloud.host(name)
        chosen = cloud.place(
            spec(instance_group={"policy": "affinity"}), 5, filters=["ServerGroupAffinityFilter"]
        )
        assert len(set(chosen)) == 1


class TestSameAndDifferentHost:
    def cloud(self) -> tuple[Cloud, str, str]:
        cloud = Cloud()
        for name in ("a", "b", "c"):
            cloud.host(name)
        return cloud, cloud.instance("a"), cloud.instance("b")

    def test_same_host(self) -> None:
        cloud, on_a, on_b = self.cloud()
        body = spec(scheduler_hints={"same_host": [on_a, on_b]})
        assert cloud.passing(body, "SameHostFilter") == {"a", "b"}
        body = spec(scheduler_hints={"same_host": on_a})
        assert cloud.passing(body, "SameHostFilter") == {"a"}

    def test_different_host(self) -> None:
        cloud, on_a, _ = self.cloud()
        body = spec(scheduler_hints={"different_host": [on_a]})
        assert cloud.passing(body, "DifferentHostFilter") == {"b", "c"}

    def test_no_hint_passes_all(self) -> None:
        cloud, _, _ = self.cloud()
        assert cloud.passing(spec(), "SameHostFilter", "DifferentHostFilter") == {"a", "b", "c"}


def test_simple_cidr_affinity() -> None:
    cloud = Cloud()
    cloud.host("near", host_ip="10.0.1.7")
    cloud.host("far", host_ip="10.0.2.7")
    cloud.host("v6", host_ip="fd00::1")
    body = spec(scheduler_hints={"build_near_host_ip": "10.0.1.1"})
    assert cloud.passing(body, "SimpleCIDRAffinityFilter") == {"near"}
    body = spec(scheduler_hints={"build_near_host_ip": "10.0.1.1", "cidr": "/16"})
    assert cloud.passing(body, "SimpleCIDRAffinityFilter") == {"near", "far"}
    body = spec(scheduler_hints={"build_near_host_ip": "fd00::9", "cidr": "/64"})
    assert cloud.passing(body, "SimpleCIDRAffinityFilter") == {"v6"}
    assert cloud.passing(spec(), "SimpleCIDRAffinityFilter") == {"near", "far", "v6"}


class TestAggregateFilters:
    def test_instance_extra_specs(self) -> None:
        cloud = Cloud()
        cloud.host("ssd")
        cloud.host("hdd")
        cloud.host("none")
        cloud.aggregate("fast", ["ssd"], ssd="true", speed="10")
        cloud.aggregate("slow", ["hdd"], ssd="false")
        passing = lambda **es: cloud.passing(  # noqa: E731
            spec(flavor={"extra_specs": es}), "AggregateInstanceExtraSpecsFilter"
        )
        assert passing(**{"aggregate_instance_extra_specs:ssd": "true"}) == {"ssd"}
        # Unscoped keys are checked too (Nova's behaviour), other scopes are not.
        assert passing(ssd="false") == {"hdd"}
        assert passing(**{"aggregate_instance_extra_specs:speed": ">= 5"}) == {"ssd"}
        assert passing(**{"hw:cpu_policy": "shared"}) == {"ssd", "hdd", "none"}
        assert cloud.passing(spec(), "AggregateInstanceExtraSpecsFilter") == {"ssd", "hdd", "none"}

    def test_multi_tenancy_isolation(self) -> None:
        cloud = Cloud()
        cloud.host("mine")
        cloud.host("theirs")
        cloud.host("open")
        cloud.aggregate("t1", ["mine"], filter_tenant_id="p1,p9")
        cloud.aggregate("t2", ["theirs"], filter_tenant_id2="p2")
        cloud.aggregate("misc", ["open"], color="blue")
        assert cloud.passing(spec(), "AggregateMultiTenancyIsolation") == {"mine", "open"}
        assert cloud.passing(spec(project_id="p2"), "AggregateMultiTenancyIsolation") == {
            "theirs",
            "open",
        }

    def test_image_properties_isolation(self) -> None:
        cloud = Cloud()
        cloud.host("win")
        cloud.host("linux")
        cloud.host("any")
        cloud.aggregate("w", ["win"], os_type="windows")
        cloud.aggregate("l", ["linux"], os_type="linux,bsd")
        body = spec(image={"id": "i", "properties": {"os_type": "bsd"}})
        assert cloud.passing(body, "AggregateImagePropertiesIsolation") == {"linux", "any"}
        body = spec(image={"id": "i", "properties": {"other": "x"}})
        assert cloud.passing(body, "AggregateImagePropertiesIsolation") == {"win", "linux", "any"}

    def test_image_properties_isolation_namespace(self) -> None:
        cloud = Cloud(filter_scheduler={"aggregate_image_properties_isolation_namespace": "ns"})
        cloud.host("a")
        cloud.host("b")
        cloud.aggregate("x", ["a"], **{"ns.os": "linux", "os": "linux"})
        body = spec(image={"id": "i", "properties": {"ns.os": "windows", "os": "windows"}})
        assert cloud.passing(body, "AggregateImagePropertiesIsolation") == {"b"}
        body = spec(image={"id": "i", "properties": {"ns.os": "linux", "os": "windows"}})
        assert cloud.passing(body, "AggregateImagePropertiesIsolation") == {"a", "b"}

    def test_type_affinity(self) -> None:
        cloud = Cloud()
        cloud.host("small-only")
        cloud.host("open")
        cloud.aggregate("s", ["small-only"], instance_type="m1.tiny, m1.small")
        assert cloud.passing(spec(), "AggregateTypeAffinityFilter") == {"small-only", "open"}
        body = spec(flavor={"name": "m1.large"})
        assert cloud.passing(body, "AggregateTypeAffinityFilter") == {"open"}


class TestLoadFilters:
    def test_io_ops(self) -> None:
        cloud = Cloud(filter_scheduler={"max_io_ops_per_host": 2})
        cloud.host("idle", io_ops=0)
        cloud.host("busy", io_ops=2)
        assert cloud.passing(spec(), "IoOpsFilter") == {"idle"}

    def test_io_ops_counts_instances_placed_in_the_request(self) -> None:
        cloud = Cloud(filter_scheduler={"max_io_ops_per_host": 2})
        cloud.host("only", io_ops=0)
        assert cloud.place(spec(), 2, filters=["IoOpsFilter"]) == ["only", "only"]
        with pytest.raises(Exception, match="IoOpsFilter"):
            cloud.place(spec(), 3, filters=["IoOpsFilter"])

    def test_aggregate_io_ops_uses_smallest_aggregate_value(self) -> None:
        cloud = Cloud(filter_scheduler={"max_io_ops_per_host": 8})
        cloud.host("tight", io_ops=3)
        cloud.host("default", io_ops=3)
        cloud.host("bad-value", io_ops=3)
        cloud.aggregate("a", ["tight"], max_io_ops_per_host="5")
        cloud.aggregate("b", ["tight"], max_io_ops_per_host="3")
        cloud.aggregate("c", ["bad-value"], max_io_ops_per_host="lots")
        assert cloud.passing(spec(), "AggregateIoOpsFilter") == {"default", "bad-value"}

    def test_num_instances(self) -> None:
        cloud = Cloud(filter_scheduler={"max_instances_per_host": 2})
        cloud.host("full")
        cloud.host("room")
        cloud.instance("full")
        cloud.instance("full")
        cloud.instance("room")
        assert cloud.passing(spec(), "NumInstancesFilter") == {"room"}

    def test_aggregate_num_instances(self) -> None:
        cloud = Cloud(filter_scheduler={"max_instances_per_host": 50})
        cloud.host("limited")
        cloud.host("free")
        cloud.instance("limited")
        cloud.aggregate("a", ["limited"], max_instances_per_host="1")
        assert cloud.passing(spec(), "AggregateNumInstancesFilter") == {"free"}


class TestIsolatedHosts:
    def cloud(self, restrict: bool, images: list[str]) -> Cloud:
        cloud = Cloud(
            filter_scheduler={
                "isolated_hosts": ["iso"],
                "isolated_images": images,
                "restrict_isolated_hosts_to_isolated_images": restrict,
            }
        )
        cloud.host("iso")
        cloud.host("plain")
        return cloud

    def passing(self, cloud: Cloud, image: str | None) -> set[str]:
        body = spec(image={"id": image}) if image else spec()
        return cloud.passing(body, "IsolatedHostsFilter")

    def test_restricted_matrix(self) -> None:
        cloud = self.cloud(True, ["special"])
        assert self.passing(cloud, "special") == {"iso"}
        assert self.passing(cloud, "ordinary") == {"plain"}
        assert self.passing(cloud, None) == {"plain"}

    def test_unrestricted_matrix(self) -> None:
        cloud = self.cloud(False, ["special"])
        assert self.passing(cloud, "special") == {"iso"}
        assert self.passing(cloud, "ordinary") == {"iso", "plain"}

    def test_no_isolated_images(self) -> None:
        assert self.passing(self.cloud(True, []), "any") == {"plain"}
        assert self.passing(self.cloud(False, []), "any") == {"iso", "plain"}


class TestJsonFilter:
    def cloud(self) -> Cloud:
        cloud = Cloud()
        cloud.host("big", ram=65536, hypervisor_type="QEMU", cpu_info={"arch": "x86_64"})
        cloud.host("small", ram=1024, hypervisor_type="ironic", cpu_info={"arch": "aarch64"})
        return cloud

    def passing(self, query: object) -> set[str]:
        body = spec(scheduler_hints={"query": json.dumps(query)})
        return self.cloud().passing(body, "JsonFilter")

    def test_comparisons_on_dynamic_and_static_attributes(self) -> None:
        assert self.passing([">=", "$free_ram_mb", 2048]) == {"big"}
        assert self.passing(["=", "$hypervisor_type", "ironic"]) == {"small"}
        assert self.passing(["in", "$cpu_info.arch", "x86_64", "i686"]) == {"big"}

    def test_boolean_operators(self) -> None:
        query = ["or", ["=", "$hypervisor_type", "ironic"], [">", "$free_ram_mb", 60000]]
        assert self.passing(query) == {"big", "small"}
        assert self.passing(["not", ["=", "$hypervisor_type", "QEMU"]]) == {"small"}
        query = ["and", ["=", "$hypervisor_type", "QEMU"], ["<", "$free_ram_mb", 100]]
        assert self.passing(query) == set()

    def test_missing_attribute_is_dropped_from_the_arguments(self) -> None:
        # ["=", None, 1] becomes ["=", 1]: fewer than two arguments is False.
        assert self.passing(["=", "$no_such_thing", 1]) == set()

    def test_bad_queries_are_400(self) -> None:
        with pytest.raises(InvalidInput, match="unknown operator"):
            self.passing(["~", "$free_ram_mb", 1])
        body = spec(scheduler_hints={"query": "{not json"})
        with pytest.raises(InvalidInput, match="not valid JSON"):
            self.cloud().passing(body, "JsonFilter")


def test_metrics_filter() -> None:
    cloud = Cloud(metrics={"weight_setting": ["cpu.percent=-1.0", "mem=1"]})
    cloud.host("both", metrics=[{"name": "cpu.percent", "value": 10}, {"name": "mem", "value": 1}])
    cloud.host("one", metrics=[{"name": "cpu.percent", "value": 10}])
    cloud.host("none")
    assert cloud.passing(spec(), "MetricsFilter") == {"both"}


class TestNUMATopology:
    def cloud(self) -> Cloud:
        cloud = Cloud()
        cell = {"cpus": [0, 1, 2, 3], "memory_mb": 4096, "siblings": [[0, 1], [2, 3]]}
        cloud.host("two-cells", numa_topology={"cells": [{"id": 0, **cell}, {"id": 1, **cell}]})
        cloud.host(
            "no-smt",
            numa_topology={"cells": [{"id": 0, "cpus": [0, 1, 2, 3, 4, 5], "memory_mb": 8192}]},
        )
        cloud.host(
            "pinned-full",
            numa_topology={
                "cells": [{"id": 0, "cpus": [0, 1], "memory_mb": 8192, "pinned_cpus": [0, 1]}]
            },
        )
        cloud.host("no-numa")
        return cloud

    def passing(self, vcpus: int, memory: int, **extra_specs: str) -> set[str]:
        body = spec(flavor={"vcpus": vcpus, "memory_mb": memory, "extra_specs": extra_specs})
        return self.cloud().passing(body, "NUMATopologyFilter")

    def test_no_numa_request_passes_all(self) -> None:
        assert self.passing(2, 1024) == {"two-cells", "no-smt", "pinned-full", "no-numa"}

    def test_pinned_needs_free_dedicated_cpus(self) -> None:
        assert self.passing(2, 1024, **{"hw:cpu_policy": "dedicated"}) == {"two-cells", "no-smt"}
        assert self.passing(6, 1024, **{"hw:cpu_policy": "dedicated"}) == {"no-smt"}

    def test_two_numa_nodes_need_two_cells(self) -> None:
        assert self.passing(4, 2048, **{"hw:numa_nodes": "2"}) == {"two-cells"}

    def test_memory_per_cell(self) -> None:
        assert self.passing(2, 6000, **{"hw:numa_nodes": "1"}) == {"no-smt", "pinned-full"}

    def test_thread_policies(self) -> None:
        require = {"hw:cpu_policy": "dedicated", "hw:cpu_thread_policy": "require"}
        assert self.passing(2, 1024, **require) == {"two-cells"}
        isolate = {"hw:cpu_policy": "dedicated", "hw:cpu_thread_policy": "isolate"}
        # Two whole cores in a cell of two cores: fits; three do not.
        assert self.passing(2, 1024, **isolate) == {"two-cells", "no-smt"}
        assert "two-cells" not in self.passing(3, 1024, **isolate)

    def test_the_request_specs_own_topology_is_used(self) -> None:
        """Nova's RequestSpec.numa_topology (cpuset shared, pcpuset pinned, memory in MB)
        decides, even when the flavor says nothing about NUMA."""
        cells = [
            {"id": 0, "cpuset": [0, 1], "memory": 2048},
            {"id": 1, "cpuset": [2, 3], "memory": 2048},
        ]
        body = spec(flavor={"vcpus": 4, "memory_mb": 4096}, numa_topology={"cells": cells})
        assert self.cloud().passing(body, "NUMATopologyFilter") == {"two-cells"}
        one = [{"id": 0, "cpuset": [0, 1], "memory": 6000}]
        body = spec(flavor={"vcpus": 2, "memory_mb": 6000}, numa_topology={"cells": one})
        assert self.cloud().passing(body, "NUMATopologyFilter") == {"no-smt", "pinned-full"}

    def test_consumption_within_a_request(self) -> None:
        cloud = Cloud()
        cloud.host(
            "h", numa_topology={"cells": [{"id": 0, "cpus": [0, 1, 2, 3], "memory_mb": 8192}]}
        )
        body = spec(
            flavor={"vcpus": 2, "memory_mb": 1024, "extra_specs": {"hw:cpu_policy": "dedicated"}}
        )
        assert cloud.place(body, 2, filters=["NUMATopologyFilter"]) == ["h", "h"]
        with pytest.raises(Exception, match="NUMATopologyFilter"):
            cloud.place(body, 3, filters=["NUMATopologyFilter"])


class TestPciPassthrough:
    def cloud(self) -> Cloud:
        cloud = Cloud(
            pci={
                "alias": [
                    {"name": "gpu", "vendor_id": "10de", "product_id": "1db4"},
                    {"name": "vf", "vendor_id": "8086", "device_type": "type-VF"},
                ]
            }
        )
        cloud.host("gpus", pci_pools=[{"vendor_id": "10de", "product_id": "1db4", "count": 2}])
        cloud.host(
            "vfs",
            pci_pools=[
                {
                    "vendor_id": "8086",
                    "product_id": "154c",
                    "count": 4,
                    "tags": {"dev_type": "type-VF"},
                }
            ],
        )
        cloud.host("nothing")
        return cloud

    def passing(self, alias: str | None) -> set[str]:
        extra = {"pci_passthrough:alias": alias} if alias else {}
        return self.cloud().passing(spec(flavor={"extra_specs": extra}), "PciPassthroughFilter")

    def test_requests(self) -> None:
        assert self.passing(None) == {"gpus", "vfs", "nothing"}
        assert self.passing("gpu:2") == {"gpus"}
        assert self.passing("gpu:3") == set()
        assert self.passing("vf:1") == {"vfs"}
        assert self.passing("gpu:1,vf:1") == set()

    def test_unknown_alias_is_400(self) -> None:
        with pytest.raises(InvalidInput, match="unknown PCI alias 'tpu'"):
            self.passing("tpu:1")

    def test_the_request_specs_pci_requests_are_used_as_nova_resolved_them(self) -> None:
        """Nova sends InstancePCIRequests: the flavor's alias read with Nova's own alias
        config (unknown here: not looked up) and SR-IOV ports by physnet-free specs; a
        device matching any spec of a request serves it."""
        extra = {"pci_passthrough:alias": "nova-only:1"}
        vf = {"count": 2, "spec": [{"vendor_id": "8086", "dev_type": "type-VF"}]}
        body = spec(flavor={"extra_specs": extra}, pci_requests=[vf])
        assert self.cloud().passing(body, "PciPassthroughFilter") == {"vfs"}
        either = {
            "count": 2,
            "spec": [{"vendor_id": "10de", "product_id": "1db4"}, {"vendor_id": "8086"}],
        }
        body = spec(pci_requests=[either])
        assert self.cloud().passing(body, "PciPassthroughFilter") == {"gpus", "vfs"}
        body = spec(pci_requests=[{**vf, "count": 5}])
        assert self.cloud().passing(body, "PciPassthroughFilter") == set()

    def test_pfs_vdpa_and_remote_managed_devices_only_when_asked_for(self) -> None:
        """Nova's rule: such a pool serves a request only if one of its specs names that
        kind; keys Nova matches against placement (resource_class, traits) are not pool
        tags."""
        cloud = Cloud()
        for name, tags in (
            ("pf", {"dev_type": "type-PF"}),
            ("vdpa", {"dev_type": "vdpa"}),
            ("remote", {"dev_type": "type-VF", "remote_managed": "true"}),
            ("vf", {"dev_type": "type-VF", "remote_managed": "false"}),
        ):
            pools = [{"vendor_id": "15b3", "product_id": "101e", "count": 1, "tags": tags}]
            cloud.host(name, pci_pools=pools)

        def passing(**wanted: str) -> set[str]:
            request = {"count": 1, "spec": [{"vendor_id": "15b3", **wanted}]}
            return cloud.passing(spec(pci_requests=[request]), "PciPassthroughFilter")

        assert passing() == {"vf"}
        assert passing(dev_type="type-PF") == {"pf"}
        assert passing(dev_type="vdpa") == {"vdpa"}
        assert passing(remote_managed="true") == {"remote"}
        assert passing(resource_class="CUSTOM_NIC", traits="CUSTOM_FAST") == {"vf"}

    def test_devices_are_consumed_within_a_request(self) -> None:
        cloud = self.cloud()
        body = spec(flavor={"extra_specs": {"pci_passthrough:alias": "gpu:1"}})
        assert cloud.place(body, 2, filters=["PciPassthroughFilter"]) == ["gpus", "gpus"]
        with pytest.raises(Exception, match="PciPassthroughFilter"):
            cloud.place(body, 3, filters=["PciPassthroughFilter"])


def test_filters_run_in_configured_order_and_count_what_they_remove() -> None:
    cloud = Cloud()
    cloud.host("a", disabled=True)
    cloud.host("b", io_ops=100)
    cloud.host("c")
    cycle = cloud.cycle(spec(), filters=["ComputeFilter", "IoOpsFilter"], weighers=[])
    assert [c.host for c in cycle.next_hosts()] == ["c"]
    stages = [(s.name, s.before, s.after) for s in cycle.funnel.stages if s.kind == "filter"]
    assert stages == [("ComputeFilter", 3, 2), ("IoOpsFilter", 2, 1)]
