"""Request spec validation and the flavor/image -> placement query translation."""

from __future__ import annotations

from typing import Any

import pytest

from allotment.config import load_settings
from allotment.errors import InvalidInput, NoValidHost
from allotment.scheduler.explain import Funnel
from allotment.scheduler.request import parse_request_spec
from allotment.scheduler.resource_request import ResourceRequest, apply_destination
from tests.unit.scheduler.helpers import Cloud, spec


def translate(body: dict[str, Any], **sections: dict[str, Any]) -> ResourceRequest:
    return ResourceRequest.from_spec(
        parse_request_spec(body), load_settings(None, sections, environ={})
    )


def test_spec_validation_names_the_field() -> None:
    with pytest.raises(InvalidInput, match=r"flavor\.vcpus"):
        parse_request_spec(
            {"project_id": "p", "flavor": {"name": "x", "vcpus": -1, "memory_mb": 1}}
        )
    with pytest.raises(InvalidInput, match=r"instance_group\.policy"):
        parse_request_spec(spec(instance_group={"policy": "sometimes"}))
    with pytest.raises(InvalidInput, match="request_spec: Input should be"):
        parse_request_spec([])


def test_hints_read_like_nova() -> None:
    parsed = parse_request_spec(spec(scheduler_hints={"a": ["x"], "b": ["x", "y"], "c": "z"}))
    assert (parsed.hint("a"), parsed.hint("b"), parsed.hint("c"), parsed.hint("d", 1)) == (
        "x",
        ["x", "y"],
        "z",
        1,
    )
    assert parsed.hint_list("c") == ["z"]
    assert parsed.flavor.extra_specs == {}


def test_extra_spec_values_become_strings() -> None:
    parsed = parse_request_spec(spec(flavor={"extra_specs": {"hw:numa_nodes": 2, "x": True}}))
    assert parsed.extra_specs == {"hw:numa_nodes": "2", "x": "true"}


def test_flavor_resources() -> None:
    request = translate(
        spec(flavor={"vcpus": 2, "memory_mb": 2048, "root_gb": 20, "ephemeral_gb": 5, "swap": 1500})
    )
    assert request.groups[""].resources == {"VCPU": 2, "MEMORY_MB": 2048, "DISK_GB": 27}
    assert request.limit == 1000


def test_boot_from_volume_and_zero_disk() -> None:
    request = translate(spec(is_bfv=True, flavor={"root_gb": 20}))
    assert "DISK_GB" not in request.groups[""].resources
    request = translate(spec(flavor={"root_gb": 0}))
    assert "DISK_GB" not in request.groups[""].resources


def test_extra_spec_resources_override_and_granular_groups() -> None:
    request = translate(
        spec(
            flavor={
                "extra_specs": {
                    "resources:VCPU": "0",
                    "resources:PCPU": "1",
                    "resources1:CUSTOM_FPGA": "1",
                    "trait1:CUSTOM_FAST": "required",
                    "resources_gpu:VGPU": "2",
                    "trait_gpu:CUSTOM_OLD": "forbidden",
                    "trait:HW_CPU_X86_AVX2": "required",
                    "group_policy": "isolate",
                }
            }
        )
    )
    assert request.groups[""].resources == {"PCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1}
    assert request.groups[""].required_traits == [frozenset({"HW_CPU_X86_AVX2"})]
    assert request.groups["1"].resources == {"CUSTOM_FPGA": 1}
    assert request.groups["1"].required_traits == [frozenset({"CUSTOM_FAST"})]
    assert request.groups["_gpu"].forbidden_traits == {"CUSTOM_OLD"}
    assert request.group_policy == "isolate"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"resources:NOT_A_CLASS": "1"}, "neither a standard resource class"),
        ({"resources:VCPU": "two"}, "non-negative integers"),
        ({"trait:X": "preferred"}, "'required' or 'forbidden'"),
        ({"group_policy": "some"}, "must be 'none' or 'isolate'"),
        ({"resources1:VGPU": "1", "resources2:VGPU": "1"}, "no group_policy"),
        ({"hw:cpu_policy": "sometimes"}, "hw:cpu_policy='sometimes'"),
        ({"hw:cpu_thread_policy": "isolate"}, "thread policy needs"),
        ({"hw:cpu_policy": "mixed"}, "needs hw:cpu_dedicated_mask"),
    ],
)
def test_malformed_extra_specs_are_400(extra: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        translate(spec(flavor={"extra_specs": extra}))


def test_image_required_traits() -> None:
    request = translate(spec(image={"id": "i", "properties": {"traits_required": ["CUSTOM_T"]}}))
    assert request.groups[""].required_traits == [frozenset({"CUSTOM_T"})]


def test_cpu_pinning_translates_to_pcpu() -> None:
    request = translate(spec(flavor={"vcpus": 4, "extra_specs": {"hw:cpu_policy": "dedicated"}}))
    assert request.groups[""].resources["PCPU"] == 4
    assert "VCPU" not in request.groups[""].resources
    assert request.cpu_pinning_requested


def test_emulator_threads_isolate_adds_a_pcpu() -> None:
    request = translate(
        spec(
            flavor={
                "vcpus": 4,
                "extra_specs": {
                    "hw:cpu_policy": "dedicated",
                    "hw:emulator_threads_policy": "isolate",
                },
            }
        )
    )
    assert request.groups[""].resources["PCPU"] == 5


def test_mixed_policy_splits_vcpu_and_pcpu() -> None:
    request = translate(
        spec(
            flavor={
                "vcpus": 4,
                "extra_specs": {"hw:cpu_policy": "mixed", "hw:cpu_dedicated_mask": "^0-1"},
            }
        )
    )
    assert (request.groups[""].resources["VCPU"], request.groups[""].resources["PCPU"]) == (2, 2)


def test_thread_policies_become_the_hyperthreading_trait() -> None:
    isolate = translate(
        spec(
            flavor={
                "extra_specs": {"hw:cpu_policy": "dedicated", "hw:cpu_thread_policy": "isolate"}
            }
        )
    )
    assert isolate.groups[""].forbidden_traits == {"HW_CPU_HYPERTHREADING"}
    require = translate(
        spec(
            image={"properties": {"hw_cpu_policy": "dedicated", "hw_cpu_thread_policy": "require"}}
        )
    )
    assert require.groups[""].required_traits == [frozenset({"HW_CPU_HYPERTHREADING"})]


def test_image_cannot_pin_against_the_flavor() -> None:
    with pytest.raises(InvalidInput, match="cannot override the flavor"):
        translate(
            spec(
                flavor={"extra_specs": {"hw:cpu_policy": "shared"}},
                image={"properties": {"hw_cpu_policy": "dedicated"}},
            )
        )


def test_pci_in_placement_adds_one_group_per_device() -> None:
    alias = {"name": "gpu", "vendor_id": "10de", "product_id": "1db4", "traits": ["CUSTOM_A"]}
    request = translate(
        spec(flavor={"extra_specs": {"pci_passthrough:alias": "gpu:2"}}),
        filter_scheduler={"pci_in_placement": True},
        pci={"alias": [alias]},
    )
    groups = {s: g for s, g in request.groups.items() if s}
    assert sorted(groups) == ["_pci_gpu_0", "_pci_gpu_1"]
    assert groups["_pci_gpu_0"].resources == {"CUSTOM_PCI_10DE_1DB4": 1}
    assert groups["_pci_gpu_0"].required_traits == [frozenset({"CUSTOM_A"})]
    assert request.group_policy == "none"


PORT = "5b7a1e52-39d4-4c1b-9b0e-2f7c1d2e3a4b"


def port_group(**fields: Any) -> dict[str, Any]:
    return {
        "requester_id": PORT,
        "resources": {"NET_BW_EGR_KILOBIT_PER_SEC": 1000},
        "required_traits": ["CUSTOM_PHYSNET_PUBLIC"],
        **fields,
    }


def test_requested_resources_are_groups_named_by_their_requester() -> None:
    request = translate(
        spec(
            requested_resources=[
                port_group(
                    forbidden_traits=["CUSTOM_SLOW"],
                    aggregates=[["a1", "a2"]],
                    forbidden_aggregates=["a3"],
                    in_tree="rp-1",
                )
            ],
            flavor={"extra_specs": {"resources1:VGPU": "1"}},
        )
    )
    group = request.groups[PORT]
    assert group.resources == {"NET_BW_EGR_KILOBIT_PER_SEC": 1000}
    assert group.required_traits == [frozenset({"CUSTOM_PHYSNET_PUBLIC"})]
    assert group.forbidden_traits == {"CUSTOM_SLOW"}
    assert group.member_of == [frozenset({"a1", "a2"})]
    assert group.forbidden_aggregates == {"a3"} and group.in_tree == "rp-1"
    # One numbered group from the flavor, one from outside: Nova's default policy.
    assert request.group_policy == "none"


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ({"requester_id": None}, "needs a requester_id"),
        ({"requester_id": "a port"}, "cannot be a placement group suffix"),
        ({"requester_id": "1"}, "already a request group suffix"),
        ({"resources": {}, "required_traits": []}, "asks for nothing"),
        ({"resources": {"VGPU": -1}}, "amounts are 0 to"),
    ],
)
def test_bad_requested_resources_are_400(group: dict[str, Any], message: str) -> None:
    body = spec(
        requested_resources=[port_group(**group)],
        flavor={"extra_specs": {"resources1:VGPU": "1"}},
    )
    with pytest.raises(InvalidInput, match=message):
        translate(body)


def test_request_level_params() -> None:
    request = translate(
        spec(
            requested_resources=[port_group()],
            flavor={"extra_specs": {"resources1:VGPU": "1", "group_policy": "none"}},
            request_level_params={
                "root_required": ["CUSTOM_A"],
                "root_forbidden": ["CUSTOM_B"],
                "same_subtree": [["1", PORT]],
            },
        )
    )
    assert "CUSTOM_A" in request.root_required and "CUSTOM_B" in request.root_forbidden
    assert request.same_subtree == [frozenset({"1", PORT})]
    with pytest.raises(InvalidInput, match="do not exist: 2"):
        translate(spec(request_level_params={"same_subtree": [["2"]]}))


class TestDestination:
    def apply(self, cloud: Cloud, body: dict[str, Any]) -> ResourceRequest:
        parsed = parse_request_spec(body)
        request = ResourceRequest.from_spec(parsed, cloud.settings())
        apply_destination(request, parsed, cloud.snapshot(), Funnel())
        return request

    def cloud(self) -> Cloud:
        cloud = Cloud()
        cloud.host("kvm")
        cloud.host("ironic", node="n1")
        cloud.host("ironic", node="n2")
        return cloud

    def test_single_node_becomes_in_tree(self) -> None:
        cloud = self.cloud()
        request = self.apply(cloud, spec(requested_destination={"host": "kvm"}))
        assert request.groups[""].in_tree == cloud.records[0].uuid
        request = self.apply(cloud, spec(force_nodes=["n2"]))
        assert request.groups[""].in_tree == cloud.records[2].uuid

    def test_several_nodes_lift_the_limit(self) -> None:
        request = self.apply(self.cloud(), spec(force_hosts=["ironic"]))
        assert request.groups[""].in_tree is None
        assert request.limit is None

    def test_unknown_host(self) -> None:
        with pytest.raises(NoValidHost, match="No such host"):
            self.apply(self.cloud(), spec(force_hosts=["elsewhere"]))

    def test_forbidden_aggregates_join_the_unsuffixed_group(self) -> None:
        body = spec(requested_destination={"forbidden_aggregates": ["x", "y"]})
        assert self.apply(self.cloud(), body).groups[""].forbidden_aggregates == {"x", "y"}

    def test_aggregates_are_anded_lists_of_any_of(self) -> None:
        request = self.apply(self.cloud(), spec(requested_destination={"aggregates": ["a,b", "c"]}))
        assert request.groups[""].member_of == [frozenset({"a", "b"}), frozenset({"c"})]

    @pytest.mark.parametrize(
        "hints", [{"group": "g"}, {"same_host": ["x"]}, {"different_host": "x"}]
    )
    def test_affinity_hints_lift_the_limit(self, hints: dict[str, Any]) -> None:
        assert self.apply(self.cloud(), spec(scheduler_hints=hints)).limit is None

    def test_server_group_lifts_the_limit(self) -> None:
        body = spec(instance_group={"policy": "soft-affinity"})
        assert self.apply(self.cloud(), body).limit is None
