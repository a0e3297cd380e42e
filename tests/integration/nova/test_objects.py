"""Nova's objects without Nova: primitives made by real Nova 34 objects decode into our
RequestSpec, and the Selections we encode are what Nova's ``obj_from_primitive`` reads."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from allotment.scheduler.nova import objects
from tests.integration.nova.conftest import NovaDriver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

INSTANCE = "6b8a3c1e-1f4e-4f7b-9c0a-2f0f3f1e2d3c"
GROUP = "8b8a3c1e-1f4e-4f7b-9c0a-2f0f3f1e2d3c"
CELL = "9b8a3c1e-1f4e-4f7b-9c0a-2f0f3f1e2d3c"
NODE = "1b8a3c1e-1f4e-4f7b-9c0a-2f0f3f1e2d3c"


def a_set(*items: Any) -> dict[str, Any]:
    return {"$set": list(items)}


FLAVOR = {
    "$obj": "Flavor",
    "name": "m1.small",
    "flavorid": "2",
    "vcpus": 2,
    "memory_mb": 2048,
    "root_gb": 20,
    "ephemeral_gb": 1,
    "swap": 512,
    "extra_specs": {"hw:cpu_policy": "dedicated", "trait:HW_CPU_X86_AVX2": "required"},
    "rxtx_factor": 1.0,
    "vcpu_weight": 0,
    "is_public": True,
    "disabled": False,
    "description": None,
}
FULL_SPEC = {
    "$obj": "RequestSpec",
    "project_id": "p1",
    "user_id": "u1",
    "num_instances": 2,
    "instance_uuid": INSTANCE,
    "flavor": FLAVOR,
    "image": {
        "$obj": "ImageMeta",
        "id": "a2459075-d96c-40d5-893e-577ff92e721c",
        "name": "cirros",
        "disk_format": "qcow2",
        "container_format": "bare",
        "min_ram": 0,
        "min_disk": 1,
        "size": 1024,
        "status": "active",
        "properties": {"hw_architecture": "x86_64", "img_hv_type": "kvm"},
    },
    "instance_group": {
        "$obj": "InstanceGroup",
        "uuid": GROUP,
        "name": "web",
        "policy": "anti-affinity",
        "rules": {"max_server_per_host": "2"},
        "members": [INSTANCE],
        "hosts": ["h1"],
        "project_id": "p1",
        "user_id": "u1",
    },
    "requested_destination": {
        "$obj": "Destination",
        "host": "h1",
        "node": "n1",
        "cell": {
            "$obj": "CellMapping",
            "uuid": CELL,
            "name": "cell1",
            "transport_url": "rabbit://nova:s3cret@mq/",
            "database_connection": "mysql+pymysql://nova:s3cret@db/nova",
        },
        "aggregates": ["a1,a2"],
        "allow_cross_cell_move": True,
        "forbidden_aggregates": a_set("f1"),
    },
    "numa_topology": {
        "$obj": "InstanceNUMATopology",
        "cells": [
            {
                "$obj": "InstanceNUMACell",
                "id": 0,
                "cpuset": a_set(),
                "pcpuset": a_set(0, 1),
                "memory": 2048,
                "cpu_policy": "dedicated",
            }
        ],
    },
    "pci_requests": {
        "$obj": "InstancePCIRequests",
        "instance_uuid": INSTANCE,
        "requests": [
            {
                "$obj": "InstancePCIRequest",
                "count": 1,
                "spec": [{"vendor_id": "8086", "product_id": "1520"}],
                "alias_name": "nic",
                "request_id": "7b8a3c1e-1f4e-4f7b-9c0a-2f0f3f1e2d3c",
            }
        ],
    },
    "retry": {
        "$obj": "SchedulerRetries",
        "num_attempts": 2,
        "hosts": {
            "$obj": "ComputeNodeList",
            "objects": [{"$obj": "ComputeNode", "host": "h9", "hypervisor_hostname": "n9"}],
        },
    },
    "limits": {
        "$obj": "SchedulerLimits",
        "numa_topology": {
            "$obj": "NUMATopologyLimits",
            "cpu_allocation_ratio": 16.0,
            "ram_allocation_ratio": 1.5,
        },
        "vcpu": 4,
        "disk_gb": None,
        "memory_mb": 4096,
    },
    "scheduler_hints": {"group": [GROUP], "same_host": ["x", "y"]},
    "network_metadata": {
        "$obj": "NetworkMetadata",
        "physnets": a_set("physnet1"),
        "tunneled": True,
    },
    "is_bfv": False,
    "requested_resources": [
        {
            "$obj": "RequestGroup",
            "requester_id": "port-1",
            "resources": {"NET_BW_EGR_KILOBIT_PER_SEC": 1000},
            "required_traits": a_set("CUSTOM_PHYSNET_PHYSNET1"),
            "use_same_provider": True,
        }
    ],
    "request_level_params": {
        "$obj": "RequestLevelParams",
        "root_required": a_set("HW_CPU_X86_AVX"),
        "root_forbidden": a_set("COMPUTE_STATUS_DISABLED"),
        "same_subtree": [["_NET1", "_NET2"]],
    },
    "requested_networks": {
        "$obj": "NetworkRequestList",
        "objects": [
            {
                "$obj": "NetworkRequest",
                "network_id": "net-1",
                "port_id": "5b8a3c1e-1f4e-4f7b-9c0a-2f0f3f1e2d3c",
            }
        ],
    },
    "availability_zone": "az1",
    "ignore_hosts": ["h2"],
    "force_hosts": [],
    "force_nodes": [],
}


def primitive(
    nova: NovaDriver,
    desc: dict[str, Any],
    target: str | None = None,
    manifest: dict[str, str] | None = None,
) -> Any:
    command: dict[str, Any] = {"op": "primitive", "object": desc}
    if target:
        command["target_version"] = target
        command["manifest"] = manifest or {}
    return nova.run([command])[0]


def test_a_full_request_spec_from_nova_decodes_field_by_field(nova_objects: NovaDriver) -> None:
    sent = primitive(nova_objects, FULL_SPEC)
    assert sent["nova_object.version"] == "1.15"
    spec = objects.decode_request_spec(sent)
    assert (spec.project_id, spec.user_id, spec.instance_uuid, spec.num_instances) == (
        "p1",
        "u1",
        INSTANCE,
        2,
    )
    assert spec.flavor.name == "m1.small" and spec.flavor.flavorid == "2"
    assert (spec.flavor.vcpus, spec.flavor.memory_mb, spec.flavor.root_gb) == (2, 2048, 20)
    assert (spec.flavor.ephemeral_gb, spec.flavor.swap) == (1, 512)
    assert spec.extra_specs["trait:HW_CPU_X86_AVX2"] == "required"
    assert spec.image is not None and spec.image.disk_format == "qcow2"
    assert spec.image.status == "active" and spec.image.size == 1024
    assert spec.image_properties == {"hw_architecture": "x86_64", "img_hv_type": "kvm"}
    group = spec.instance_group
    assert group is not None and group.uuid == GROUP and group.name == "web"
    assert group.policy == "anti-affinity" and group.max_server_per_host == 2
    assert (group.members, group.hosts) == ([INSTANCE], ["h1"])
    dest = spec.requested_destination
    assert dest is not None and (dest.host, dest.node) == ("h1", "n1")
    assert dest.cell is not None and (dest.cell.uuid, dest.cell.name) == (CELL, "cell1")
    assert "s3cret" not in spec.model_dump_json()  # the cell's credentials are not kept
    assert dest.aggregates == ["a1,a2"] and dest.forbidden_aggregates == ["f1"]
    assert dest.allow_cross_cell_move is True
    assert spec.numa_topology is not None
    cell = spec.numa_topology.cells[0]
    assert (cell.id, cell.pcpuset, cell.memory, cell.cpu_policy) == (0, [0, 1], 2048, "dedicated")
    assert len(spec.pci_requests) == 1
    pci = spec.pci_requests[0]
    assert (pci.count, pci.alias_name, pci.spec) == (
        1,
        "nic",
        [{"vendor_id": "8086", "product_id": "1520"}],
    )
    assert spec.retry is not None and spec.retry.num_attempts == 2
    assert [(h.host, h.nodename) for h in spec.retry.hosts] == [("h9", "n9")]
    assert spec.limits is not None and (spec.limits.vcpu, spec.limits.memory_mb) == (4, 4096)
    assert spec.limits.disk_gb is None
    assert spec.limits.numa_topology is not None
    assert spec.limits.numa_topology.cpu_allocation_ratio == 16.0
    assert spec.scheduler_hints == {"group": [GROUP], "same_host": ["x", "y"]}
    assert spec.hint("group") == GROUP and spec.hint_list("same_host") == ["x", "y"]
    assert spec.network_metadata is not None
    assert spec.network_metadata.physnets == ["physnet1"] and spec.network_metadata.tunneled
    assert spec.is_bfv is False
    (port,) = spec.requested_resources
    assert port.requester_id == "port-1" and port.resources == {"NET_BW_EGR_KILOBIT_PER_SEC": 1000}
    assert port.required_traits == ["CUSTOM_PHYSNET_PHYSNET1"] and port.use_same_provider
    params = spec.request_level_params
    assert params is not None and params.root_required == ["HW_CPU_X86_AVX"]
    assert params.root_forbidden == ["COMPUTE_STATUS_DISABLED"]
    assert params.same_subtree == [["_NET1", "_NET2"]]
    (network,) = spec.requested_networks
    assert network.network_id == "net-1" and network.port_id is not None
    assert spec.availability_zone == "az1" and spec.ignore_hosts == ["h2"]
    assert spec.force_hosts == [] and spec.force_nodes == []


def test_a_minimal_boot_spec_takes_the_defaults(nova_objects: NovaDriver) -> None:
    sent = primitive(
        nova_objects,
        {"$obj": "RequestSpec", "project_id": "p1", "flavor": FLAVOR, "num_instances": 1},
    )
    spec = objects.decode_request_spec(sent)
    assert spec.user_id is None and spec.image is None and spec.instance_group is None
    assert spec.requested_resources == [] and spec.pci_requests == []
    assert spec.requested_destination is None and spec.scheduler_hints == {}


def test_an_older_spec_as_a_pinned_nova_sends_it(nova_objects: NovaDriver) -> None:
    """RequestSpec 1.10 (Queens) carries an InstanceGroup 1.10 with a ``policies`` list."""
    sent = primitive(nova_objects, FULL_SPEC, target="1.10", manifest={"InstanceGroup": "1.10"})
    assert sent["nova_object.version"] == "1.10"
    group = sent["nova_object.data"]["instance_group"]
    assert group["nova_object.version"] == "1.10" and "policy" not in group["nova_object.data"]
    spec = objects.decode_request_spec(sent)
    assert spec.instance_group is not None and spec.instance_group.policy == "anti-affinity"
    assert spec.requested_resources == [] and spec.request_level_params is None
    assert spec.is_bfv is False and spec.flavor.name == "m1.small"


def legacy(nova: NovaDriver, desc: dict[str, Any]) -> dict[str, Any]:
    """What Nova's SchedulerAPI sends at 4.0 for the RequestSpec DESC, and (``nova``) the
    RequestSpec Nova's own ``from_primitives`` makes of it."""
    answer: dict[str, Any] = nova.run([{"op": "legacy", "object": desc}])[0]
    return answer


@pytest.mark.parametrize(
    "desc",
    [
        FULL_SPEC,
        {"$obj": "RequestSpec", "project_id": "p1", "flavor": FLAVOR, "instance_uuid": INSTANCE},
    ],
    ids=["full", "minimal"],
)
def test_the_legacy_dicts_decode_as_novas_from_primitives_reads_them(
    nova_objects: NovaDriver, desc: dict[str, Any]
) -> None:
    sent = legacy(nova_objects, desc)
    spec = objects.decode_legacy_request_spec(sent["request_spec"], sent["filter_properties"])
    assert spec == objects.decode_request_spec(sent["nova"])


def test_what_the_legacy_dicts_lose_stays_lost(nova_objects: NovaDriver) -> None:
    sent = legacy(nova_objects, FULL_SPEC)
    props = sent["filter_properties"]
    assert props["group_updated"] is True and props["scheduler_hints"]["group"] == GROUP
    spec = objects.decode_legacy_request_spec(sent["request_spec"], props)
    assert (spec.project_id, spec.user_id, spec.instance_uuid, spec.num_instances) == (
        "p1",
        "u1",
        INSTANCE,
        2,
    )
    assert spec.flavor.vcpus == 2 and spec.extra_specs["trait:HW_CPU_X86_AVX2"] == "required"
    assert spec.image is not None and spec.image.properties["hw_architecture"] == "x86_64"
    # The group keeps its policy, hosts, members and uuid; its name and rules are lost.
    group = spec.instance_group
    assert group is not None and (group.uuid, group.policy) == (GROUP, "anti-affinity")
    assert (group.hosts, group.members, group.name, group.rules) == (["h1"], [INSTANCE], None, {})
    # Single-valued hints went out unwrapped and come back in lists, as Nova reads them.
    assert spec.scheduler_hints == {"group": [GROUP], "same_host": ["x", "y"]}
    assert spec.retry is not None and spec.retry.num_attempts == 2
    assert [(h.host, h.nodename) for h in spec.retry.hosts] == [("h9", "n9")]
    assert spec.limits is not None and spec.limits.vcpu == 4
    assert spec.limits.numa_topology is not None
    assert spec.limits.numa_topology.cpu_allocation_ratio == 16.0
    assert spec.pci_requests[0].alias_name == "nic" and spec.ignore_hosts == ["h2"]
    assert spec.numa_topology is not None and spec.numa_topology.cells[0].pcpuset == [0, 1]
    destination = spec.requested_destination
    assert destination is not None and destination.cell is not None
    assert (destination.host, destination.cell.uuid) == ("h1", CELL)
    assert spec.availability_zone == "az1"
    # Not in the legacy form at all: Nova defaults them, and so do we.
    assert spec.requested_resources == [] and spec.request_level_params is None
    assert spec.requested_networks == [] and spec.network_metadata is None
    assert spec.is_bfv is False and spec.security_groups == []


def test_malformed_legacy_dicts_are_refused_with_the_place(nova_objects: NovaDriver) -> None:
    sent = legacy(nova_objects, FULL_SPEC)
    with pytest.raises(objects.ObjectError, match=r"filter_properties: expected a dict"):
        objects.decode_legacy_request_spec(sent["request_spec"], ["x"])
    no_flavor = {**sent["request_spec"], "instance_type": {}}
    with pytest.raises(objects.ObjectError, match=r"instance_type: the request spec has no"):
        objects.decode_legacy_request_spec(no_flavor, sent["filter_properties"])
    instance = {k: v for k, v in sent["request_spec"]["instance_properties"].items() if k != "uuid"}
    with pytest.raises(objects.ObjectError, match=r"instance_properties: the instance has no uuid"):
        objects.decode_legacy_request_spec(
            {**sent["request_spec"], "instance_properties": instance}, sent["filter_properties"]
        )
    retry = {**sent["filter_properties"], "retry": {"num_attempts": 1, "hosts": ["h1"]}}
    with pytest.raises(objects.ObjectError, match=r"retry\.hosts: expected a list of \["):
        objects.decode_legacy_request_spec(sent["request_spec"], retry)
    group = {**sent["filter_properties"], "group_policies": []}
    with pytest.raises(objects.ObjectError, match=r"group_policies: the instance group has"):
        objects.decode_legacy_request_spec(sent["request_spec"], group)


def test_newer_minor_versions_are_read_for_the_fields_known(nova_objects: NovaDriver) -> None:
    sent = primitive(nova_objects, FULL_SPEC)
    newer = copy.deepcopy(sent)
    newer["nova_object.version"] = "1.99"
    newer["nova_object.data"]["a_field_from_the_future"] = {"x": 1}
    newer["nova_object.data"]["flavor"]["nova_object.version"] = "1.7"
    spec = objects.decode_request_spec(newer)
    assert spec == objects.decode_request_spec(sent)


@pytest.mark.parametrize("path", [(), ("flavor",), ("instance_group",)])
def test_an_unknown_major_version_is_a_clear_error(
    nova_objects: NovaDriver, path: tuple[str, ...]
) -> None:
    sent = primitive(nova_objects, FULL_SPEC)
    target = sent
    for field in path:
        target = target["nova_object.data"][field]
    target["nova_object.version"] = "2.0"
    name = target["nova_object.name"]
    with pytest.raises(objects.ObjectError) as caught:
        objects.decode_request_spec(sent)
    assert f"{name} 2.0 is not understood" in caught.value.message
    assert f"{name} 1.x" in caught.value.message


def test_malformed_primitives_are_refused_with_the_place() -> None:
    with pytest.raises(objects.ObjectError, match="expected a RequestSpec"):
        objects.decode_request_spec({"flavor": {}})
    with pytest.raises(objects.ObjectError, match="namespace 'other'"):
        objects.decode_request_spec(
            {"nova_object.name": "RequestSpec", "nova_object.namespace": "other",
             "nova_object.version": "1.15", "nova_object.data": {}}
        )  # fmt: skip
    with pytest.raises(objects.ObjectError, match=r"spec_obj\.flavor: expected a Flavor"):
        objects.decode_request_spec(
            objects.primitive("RequestSpec", "1.15", {"project_id": "p", "flavor": {"x": 1}})
        )
    flavor = objects.primitive("Flavor", "1.2", {"name": "f", "vcpus": -1, "memory_mb": 1})
    with pytest.raises(objects.ObjectError, match=r"spec_obj.flavor.vcpus: Input should be"):
        objects.decode_request_spec(
            objects.primitive("RequestSpec", "1.15", {"project_id": "p", "flavor": flavor})
        )


def test_aggregates_and_instance_lists_from_nova(nova_objects: NovaDriver) -> None:
    agg = {
        "$obj": "Aggregate",
        "id": 1,
        "uuid": GROUP,
        "name": "fast",
        "hosts": ["h1", "h2"],
        "metadata": {"availability_zone": "az1", "ssd": "true"},
    }
    one, listed, instances = nova_objects.run(
        [
            {"op": "primitive", "object": agg},
            {"op": "primitive", "object": {"$obj": "AggregateList", "objects": [agg]}},
            {
                "op": "primitive",
                "object": {
                    "$obj": "InstanceList",
                    "objects": [
                        {"$obj": "Instance", "uuid": INSTANCE, "project_id": "p1",
                         "user_id": "u1", "flavor": FLAVOR},
                        {"$obj": "Instance", "uuid": GROUP},
                    ],
                },
            },
        ]
    )  # fmt: skip
    for decoded in (objects.decode_aggregates([one]), objects.decode_aggregates(listed)):
        (found,) = decoded
        assert found.uuid == GROUP and found.body.name == "fast"
        assert found.body.hosts == ["h1", "h2"]
        assert found.body.metadata == {"availability_zone": "az1", "ssd": "true"}
    assert objects.decode_aggregate(one).uuid == GROUP
    infos = objects.decode_instance_info(instances)
    assert [(i.uuid, i.project_id, i.flavor_name) for i in infos] == [
        (INSTANCE, "p1", "m1.small"),
        (GROUP, None, None),
    ]


def read_back(nova: NovaDriver, *sent: dict[str, Any]) -> list[Any]:
    return nova.run([{"op": "from_primitive", "primitive": p} for p in sent])


def test_selections_we_encode_are_what_nova_reads(nova_objects: NovaDriver) -> None:
    allocation = {
        "allocations": {NODE: {"resources": {"VCPU": 2, "MEMORY_MB": 2048}}},
        "mappings": {"": [NODE]},
    }
    selection = objects.NovaSelection(
        service_host="h1",
        nodename="n1",
        compute_node_uuid=NODE,
        cell_uuid=CELL,
        allocation_request=allocation,
        allocation_request_version="1.36",
        limits={"numa_topology": {"cpu_allocation_ratio": 4.0, "ram_allocation_ratio": 1.0}},
        availability_zone="az1",
    )
    bare = objects.NovaSelection("h2", "n2", GROUP, CELL, None, None, {}, None)
    full, unclaimed, old = read_back(
        nova_objects, selection.to_primitive(), bare.to_primitive(), selection.to_primitive("1.0")
    )
    assert full["name"] == "Selection" and full["version"] == "1.1"
    fields = full["fields"]
    assert (fields["service_host"], fields["nodename"]) == ("h1", "n1")
    assert (fields["compute_node_uuid"], fields["cell_uuid"]) == (NODE, CELL)
    assert fields["availability_zone"] == "az1"
    assert fields["allocation_request_version"] == "1.36"
    # A string Nova json-decodes before claiming.
    assert json.loads(fields["allocation_request"]) == allocation
    limits = fields["limits"]
    assert limits["name"] == "SchedulerLimits"
    numa = limits["fields"]["numa_topology"]
    assert numa["name"] == "NUMATopologyLimits"
    assert numa["fields"] == {"cpu_allocation_ratio": 4.0, "ram_allocation_ratio": 1.0}
    assert unclaimed["fields"]["allocation_request"] == "null"
    assert unclaimed["fields"]["limits"]["fields"]["numa_topology"] is None
    assert "availability_zone" not in old["fields"]


def test_nova_refuses_what_is_not_a_selection(nova_objects: NovaDriver) -> None:
    """The check above can fail: Nova does reject a malformed Selection."""
    broken = objects.NovaSelection("h1", "n1", NODE, CELL, None, None, {}, None).to_primitive()
    broken["nova_object.data"]["limits"] = {"vcpu": 1}
    (answer,) = read_back(nova_objects, broken)
    assert "error" in answer
