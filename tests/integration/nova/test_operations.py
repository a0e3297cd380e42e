"""Every move operation and RequestSpec field as Nova 34 sends them, end to end: Nova's own
SchedulerAPI (and, where conductor does it, its report client) over the machine's RabbitMQ,
and placement's allocations afterwards.

Conductor's steps around the scheduler are Nova's own code too: before a resize or a
migration it moves the source allocations to the migration record (``move_allocations``);
an evacuation keeps them on the instance; a rebuild only asks whether the host still fits.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from tests.integration.nova.conftest import CELL, Cloud, context, flavor, selections, spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]


def cell(uuid_: str = CELL) -> dict[str, Any]:
    return {"$obj": "CellMapping", "uuid": uuid_, "name": "cell1"}


def destination(**fields: Any) -> dict[str, Any]:
    return {"$obj": "Destination", **fields}


def select(
    request: dict[str, Any], *instances: str, alternates: bool = False, **extra: Any
) -> dict[str, Any]:
    return {
        "method": "select_destinations",
        "context": context(),
        "spec": request,
        "instance_uuids": list(instances),
        "return_objects": True,
        "return_alternates": alternates,
        **extra,
    }


def boot_on(host: str, instance: str, vcpus: int = 2, **fields: Any) -> dict[str, Any]:
    """A boot that lands on ``host`` (a requested destination, as `openstack server
    create --host` sends it)."""
    return select(
        spec(vcpus, instance_uuid=instance, requested_destination=destination(host=host), **fields),
        instance,
    )


def move_allocations(source: str, target: str) -> dict[str, Any]:
    return {"method": "move_allocations", "context": context(), "source": source, "target": target}


def chosen(answer: dict[str, Any]) -> dict[str, Any]:
    ((first, *_),) = selections(answer)
    return first


def held(cloud: Cloud, consumer: str) -> dict[str, dict[str, int]]:
    """Provider uuid -> resources the consumer holds in placement now."""
    return {rp: a["resources"] for rp, a in cloud.fleet.allocations(consumer).items()}


def node(cloud: Cloud, host: str) -> str:
    return cloud.fleet.hosts[host].uuid


def resources(vcpus: int = 2) -> dict[str, int]:
    return {"VCPU": vcpus, "MEMORY_MB": 2048, "DISK_GB": 10}


def test_a_rebuild_check_answers_the_current_host_and_claims_nothing(cloud: Cloud) -> None:
    """nova-api's rebuild: force_hosts/force_nodes are the current host, the destination
    names only the cell. The image filters still run on that host; a forced boot without
    the check-type hint skips every filter, as Nova does."""
    instance, forced = str(uuid.uuid4()), str(uuid.uuid4())
    rebuild = spec(
        instance_uuid=instance,
        scheduler_hints={"_nova_check_type": ["rebuild"]},
        force_hosts=["h1"],
        force_nodes=["h1"],
        requested_destination=destination(cell=cell()),
    )
    xen = {"$obj": "ImageMeta", "properties": {"img_hv_type": "xen"}}
    boot, check, refused, forced_boot = cloud.rpc(
        boot_on("h1", instance),
        select(rebuild, instance),
        select({**rebuild, "image": xen}, instance),
        select(spec(instance_uuid=forced, force_hosts=["H2"], image=xen), forced),
    )
    assert held(cloud, instance) == {node(cloud, "h1"): resources()}
    answer = chosen(check)
    assert (answer["service_host"], answer["nodename"]) == ("h1", "h1")
    assert answer["compute_node_uuid"] == node(cloud, "h1") and answer["cell_uuid"] == CELL
    assert answer["allocation_request"] == "null"
    assert answer["allocation_request_version"] is None
    assert "NoValidHost" in refused["error"]["nova_class"], refused
    assert "ImagePropertiesFilter" in refused["error"]["message"]
    # Nothing claimed by either check: the boot's allocations only.
    assert cloud.fleet.usages("h1") == resources()
    # Forced (no hint): no filters, the host named without regard to case.
    assert chosen(forced_boot)["service_host"] == "h2"
    assert held(cloud, forced) == {node(cloud, "h2"): resources()}
    assert json.loads(chosen(boot)["allocation_request"])["allocations"] == {
        node(cloud, "h1"): {"resources": resources()}
    }


def test_an_evacuation_claims_the_destination_next_to_the_source(cloud: Cloud) -> None:
    """Conductor's evacuate leaves the source allocations on the instance and ignores the
    source host; Nova's claim doubles them up under the consumer generation."""
    instance = str(uuid.uuid4())
    evacuate = spec(instance_uuid=instance, ignore_hosts=["h1"])
    _, answer = cloud.rpc(boot_on("h1", instance), select(evacuate, instance, alternates=True))
    first, *alternates = selections(answer)[0]
    target = first["service_host"]
    assert target in {"h2", "h3"}
    assert held(cloud, instance) == {
        node(cloud, "h1"): resources(),
        node(cloud, target): resources(),
    }
    # The Selection carries the destination's request only (what Nova re-claims from).
    assert json.loads(first["allocation_request"])["allocations"] == {
        node(cloud, target): {"resources": resources()}
    }
    assert [a["service_host"] for a in alternates] == list({"h2", "h3"} - {target})
    consumer = cloud.fleet.call("GET", f"/allocations/{instance}", expect=200).json()
    assert (consumer["project_id"], consumer["user_id"]) == ("p1", "u1")


def test_resize_and_cold_migration_claim_the_instance_anew(cloud: Cloud) -> None:
    """Conductor moves the source allocations to the migration uuid first (Nova's
    ``move_allocations``); the instance then claims its new flavor as a new consumer. A
    resize that may stay on its host (``allow_resize_to_same_host``: the host is not
    ignored) doubles up there; a cold migration ignores its source."""
    cloud.fleet.aggregate("solo", ["h2"], availability_zone="solo")
    resized, same, migrated = (str(uuid.uuid4()) for _ in range(3))
    resized_mig, same_mig, migrated_mig = (str(uuid.uuid4()) for _ in range(3))
    answers = cloud.rpc(
        boot_on("h1", resized),
        boot_on("h2", same, availability_zone="solo"),
        boot_on("h3", migrated),
        move_allocations(same, same_mig),
        select(spec(4, instance_uuid=same, availability_zone="solo"), same),
        move_allocations(resized, resized_mig),
        # h2 has 2 VCPUs left: only h3 fits.
        select(spec(4, instance_uuid=resized, ignore_hosts=["h1"]), resized),
        move_allocations(migrated, migrated_mig),
        select(spec(instance_uuid=migrated, ignore_hosts=["h3"]), migrated),
    )
    assert [(i, a["error"]["message"]) for i, a in enumerate(answers) if "error" in a] == []
    # Same host: the new flavor next to the old one on the migration record.
    assert chosen(answers[4])["service_host"] == "h2"
    assert chosen(answers[4])["availability_zone"] == "solo"
    assert chosen(answers[6])["service_host"] == "h3"
    assert held(cloud, resized) == {node(cloud, "h3"): resources(4)}
    assert held(cloud, resized_mig) == {node(cloud, "h1"): resources()}
    assert held(cloud, same) == {node(cloud, "h2"): resources(4)}
    assert held(cloud, same_mig) == {node(cloud, "h2"): resources()}
    migrate_to = chosen(answers[8])["service_host"]
    assert migrate_to != "h3"
    assert held(cloud, migrated) == {node(cloud, migrate_to): resources()}
    assert held(cloud, migrated_mig) == {node(cloud, "h3"): resources()}


def test_live_migration_with_and_without_a_target_and_unshelve(cloud: Cloud) -> None:
    targeted, untargeted, shelved = (str(uuid.uuid4()) for _ in range(3))
    targeted_mig, untargeted_mig = str(uuid.uuid4()), str(uuid.uuid4())
    zone = cloud.fleet.aggregate("zone-b", ["h3"], availability_zone="az-b")
    answers = cloud.rpc(
        boot_on("h1", targeted),
        boot_on("h1", untargeted),
        move_allocations(targeted, targeted_mig),
        select(
            spec(
                instance_uuid=targeted,
                ignore_hosts=["h1"],
                requested_destination=destination(host="h3", cell=cell()),
            ),
            targeted,
        ),
        move_allocations(untargeted, untargeted_mig),
        select(spec(instance_uuid=untargeted, ignore_hosts=["h1"]), untargeted),
        # Unshelving an offloaded instance: it holds nothing; its zone still counts.
        select(spec(instance_uuid=shelved, availability_zone="az-b"), shelved),
        # A live migration to the host it is on is not possible: ignored, no such host left.
        select(
            spec(
                instance_uuid=targeted,
                ignore_hosts=["h3"],
                requested_destination=destination(host="h3"),
            ),
            targeted,
        ),
    )
    assert chosen(answers[3])["service_host"] == "h3"
    assert held(cloud, targeted) == {node(cloud, "h3"): resources()}
    assert held(cloud, targeted_mig) == {node(cloud, "h1"): resources()}
    to = chosen(answers[5])["service_host"]
    assert to in {"h2", "h3"}
    assert held(cloud, untargeted) == {node(cloud, to): resources()}
    assert held(cloud, untargeted_mig) == {node(cloud, "h1"): resources()}
    unshelved = chosen(answers[6])
    assert (unshelved["service_host"], unshelved["availability_zone"]) == ("h3", "az-b")
    assert held(cloud, shelved) == {node(cloud, "h3"): resources()}
    assert zone
    error = answers[7]["error"]
    assert "NoValidHost" in error["nova_class"] and "ignore_hosts" in error["message"], error
    assert held(cloud, targeted) == {node(cloud, "h3"): resources()}


def test_a_cross_cell_resize_may_leave_the_cell_the_selection_names(cloud: Cloud) -> None:
    """``allow_cross_cell_move``: the destination names no cell and the Selection names the
    cell of the host chosen; a same-cell move names the source cell and gets it back."""
    instance, same_cell = str(uuid.uuid4()), str(uuid.uuid4())
    mig, same_mig = str(uuid.uuid4()), str(uuid.uuid4())
    answers = cloud.rpc(
        boot_on("h1", instance),
        boot_on("h1", same_cell),
        move_allocations(instance, mig),
        select(
            spec(
                4,
                instance_uuid=instance,
                ignore_hosts=["h1"],
                requested_destination=destination(allow_cross_cell_move=True),
            ),
            instance,
        ),
        move_allocations(same_cell, same_mig),
        select(
            spec(
                4,
                instance_uuid=same_cell,
                ignore_hosts=["h1"],
                requested_destination=destination(cell=cell()),
            ),
            same_cell,
        ),
    )
    cross = chosen(answers[3])
    assert cross["cell_uuid"] == CELL and cross["service_host"] in {"h2", "h3"}
    assert held(cloud, instance) == {node(cloud, cross["service_host"]): resources(4)}
    assert held(cloud, mig) == {node(cloud, "h1"): resources()}
    same = chosen(answers[5])
    assert same["cell_uuid"] == CELL
    assert held(cloud, same_cell) == {node(cloud, same["service_host"]): resources(4)}


def test_a_neutron_port_request_is_mapped_to_the_provider_that_serves_it(cloud: Cloud) -> None:
    """A QoS port's RequestGroup (requester_id = the port) becomes a numbered group; Nova's
    own ``fill_provider_mapping`` finds the bandwidth provider in the Selection.
    ``request_level_params`` reach placement: h5's NIC fits, its root lacks the trait."""
    nic = {
        "nic": {
            "inventories": {"NET_BW_EGR_KILOBIT_PER_SEC": {"total": 10000}},
            "traits": ["CUSTOM_PHYSNET_PUBLIC", "CUSTOM_VNIC_TYPE_NORMAL"],
        }
    }
    cloud.fleet.host("h4", traits=["CUSTOM_QOS_HOST"], children=nic)
    cloud.fleet.host("h5", children=nic)
    port, instance, greedy = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())

    def port_spec(kbps: int, owner: str) -> dict[str, Any]:
        group = {
            "$obj": "RequestGroup",
            "requester_id": port,
            "resources": {"NET_BW_EGR_KILOBIT_PER_SEC": kbps},
            "required_traits": {"$set": ["CUSTOM_PHYSNET_PUBLIC", "CUSTOM_VNIC_TYPE_NORMAL"]},
        }
        params = {"$obj": "RequestLevelParams", "root_required": {"$set": ["CUSTOM_QOS_HOST"]}}
        return spec(instance_uuid=owner, requested_resources=[group], request_level_params=params)

    mapped, too_much = cloud.rpc(
        select(port_spec(1000, instance), instance, fill_provider_mapping=True),
        select(port_spec(20000, greedy), greedy),
    )
    first = mapped["result"]["selections"][0][0]["fields"]
    child = cloud.fleet.hosts["h4"].children["nic"]
    assert first["service_host"] == "h4"
    assert mapped["result"]["provider_uuids"] == {port: [child]}
    assert held(cloud, instance) == {
        node(cloud, "h4"): resources(),
        child: {"NET_BW_EGR_KILOBIT_PER_SEC": 1000},
    }
    error = too_much["error"]
    assert "NoValidHost" in error["nova_class"], error
    assert "NET_BW_EGR_KILOBIT_PER_SEC" in error["message"]
    assert cloud.fleet.allocations(greedy) == {}


def test_flavor_traits_granular_groups_and_forbidden_aggregates(cloud: Cloud) -> None:
    gpu = {"gpu0": {"inventories": {"VGPU": {"total": 2}}, "traits": ["CUSTOM_GPU_A100"]}}
    cloud.fleet.host("h4", traits=["CUSTOM_FAST"], children=gpu)
    isolated = cloud.fleet.aggregate("isolated", ["h1", "h2"])
    with_gpu, fast, kept_out = (str(uuid.uuid4()) for _ in range(3))
    gpu_flavor = {
        **flavor(),
        "extra_specs": {"resources1:VGPU": "1", "trait1:CUSTOM_GPU_A100": "required"},
    }
    fast_flavor = {**flavor(), "extra_specs": {"trait:CUSTOM_FAST": "required"}}
    forbidden = destination(forbidden_aggregates={"$set": [isolated]})
    answers = cloud.rpc(
        select(spec(instance_uuid=with_gpu, flavor=gpu_flavor), with_gpu),
        select(spec(instance_uuid=fast, flavor=fast_flavor), fast),
        select(spec(instance_uuid=kept_out, requested_destination=forbidden), kept_out),
        select(spec(requested_destination=destination(host="nope")), str(uuid.uuid4())),
    )
    child = cloud.fleet.hosts["h4"].children["gpu0"]
    first = chosen(answers[0])
    assert first["service_host"] == "h4"
    assert json.loads(first["allocation_request"])["mappings"] == {
        "1": [child],
        "": [node(cloud, "h4")],
    }
    assert held(cloud, with_gpu) == {node(cloud, "h4"): resources(), child: {"VGPU": 1}}
    assert chosen(answers[1])["service_host"] == "h4"
    assert chosen(answers[2])["service_host"] in {"h3", "h4"}
    assert "No such host - host: nope node: None" in answers[3]["error"]["message"]


def test_server_groups_count_members_added_later(cloud: Cloud) -> None:
    """Anti-affinity: a member booted after the group's hosts were read (known to the
    scheduler from nova-compute's instance info) keeps its host out too; affinity joins
    the group's host."""
    first, later, third, friend = (str(uuid.uuid4()) for _ in range(4))
    group = str(uuid.uuid4())

    def anti(members: list[str], hosts: list[str], instance: str) -> dict[str, Any]:
        server_group = {
            "$obj": "InstanceGroup",
            "uuid": group,
            "policy": "anti-affinity",
            "members": members,
            "hosts": hosts,
        }
        return spec(instance_uuid=instance, instance_group=server_group)

    instance_info = {
        "method": "update_instance_info",
        "context": context(),
        "host_name": "h2",
        "instance_info": {
            "$obj": "InstanceList",
            "objects": [{"$obj": "Instance", "uuid": later, "project_id": "p1"}],
        },
    }
    first_info = {**instance_info, "host_name": "h1"}
    first_info["instance_info"] = {
        "$obj": "InstanceList",
        "objects": [{"$obj": "Instance", "uuid": first, "project_id": "p1"}],
    }
    affinity = {
        "$obj": "InstanceGroup",
        "uuid": str(uuid.uuid4()),
        "policy": "affinity",
        "members": [later, friend],
        "hosts": ["h2"],
    }
    answers = cloud.rpc(
        boot_on("h1", first),
        first_info,
        boot_on("h2", later),
        instance_info,
    )
    assert [(i, a["error"]["message"]) for i, a in enumerate(answers) if "error" in a] == []
    wait_for_instances(cloud, {"h1": 1, "h2": 1})
    placed, joined = cloud.rpc(
        select(anti([first, later, third], ["h1"], third), third),
        select(spec(instance_uuid=friend, instance_group=affinity), friend),
    )
    assert chosen(placed)["service_host"] == "h3"
    assert held(cloud, third) == {node(cloud, "h3"): resources()}
    assert chosen(joined)["service_host"] == "h2"


def wait_for_instances(cloud: Cloud, counts: dict[str, int]) -> None:
    """Until the fanout casts reached the host cache (they are asynchronous)."""
    deadline = time.monotonic() + 20
    while True:
        listed = cloud.fleet.call("GET", "/scheduler/v1/hosts", to=cloud.fleet.http).json()
        found = {h["host"]: h["instances"] for h in listed["hosts"]}
        if all(found.get(h) == n for h, n in counts.items()) or time.monotonic() > deadline:
            assert all(found.get(h) == n for h, n in counts.items()), found
            return
        time.sleep(0.1)


def forced(
    cloud: Cloud, instance: str, source: str, dest: str, migration: str | None = None
) -> dict[str, Any]:
    """Conductor's claim for a forced host (the scheduler bypassed): Nova's own
    ``claim_resources_on_destination``, for a live migration after it moved the source
    allocations to ``migration``, for an evacuation with them still on the instance."""
    call: dict[str, Any] = {
        "method": "claim_resources_on_destination",
        "context": context(),
        "instance": {
            "uuid": instance,
            "project_id": "p1",
            "user_id": "u1",
            "host": source,
            "node": source,
        },
        "source": {"uuid": node(cloud, source), "host": source},
        "dest": {"uuid": node(cloud, dest), "host": dest},
    }
    if migration:
        call["migration"] = migration
    return call


def test_a_forced_evacuation_claims_as_conductor_does_like_a_scheduled_one(cloud: Cloud) -> None:
    """``evacuate --force``: conductor copies the source allocations to the forced host
    with Nova's ``claim_resources_on_destination`` under the consumer generation it read;
    the instance holds both hosts, as after an evacuation the scheduler claimed. A forced
    host without room is Nova's NoValidHost, and the instance keeps only its source."""
    scheduled, forced_one, refused = (str(uuid.uuid4()) for _ in range(3))
    filler = str(uuid.uuid4())
    answers = cloud.rpc(
        boot_on("h1", scheduled),
        boot_on("h1", forced_one),
        boot_on("h1", refused),
        boot_on("h3", filler, vcpus=8),
        select(
            spec(
                instance_uuid=scheduled,
                ignore_hosts=["h1"],
                requested_destination=destination(host="h2"),
            ),
            scheduled,
        ),
        forced(cloud, forced_one, "h1", "h2"),
        forced(cloud, refused, "h1", "h3"),
    )
    assert [(i, a["error"]["message"]) for i, a in enumerate(answers[:6]) if "error" in a] == []
    assert chosen(answers[4])["service_host"] == "h2"
    both = {node(cloud, "h1"): resources(), node(cloud, "h2"): resources()}
    assert held(cloud, scheduled) == both == held(cloud, forced_one)
    for consumer in (scheduled, forced_one):
        body = cloud.fleet.call("GET", f"/allocations/{consumer}", expect=200).json()
        assert (body["project_id"], body["user_id"]) == ("p1", "u1")
    error = answers[6]["error"]
    assert "NoValidHost" in error["nova_class"], error
    assert "not enough capacity" in error["message"]
    assert held(cloud, refused) == {node(cloud, "h1"): resources()}
    # Two instances on h2 now, nothing of the refused one on h3.
    assert cloud.fleet.usages("h2") == {k: 2 * v for k, v in resources().items()}
    assert cloud.fleet.usages("h3") == resources(8)


def test_a_forced_live_migration_claims_as_conductor_does_like_a_scheduled_one(
    cloud: Cloud,
) -> None:
    """``live-migration --force``: conductor moves the source allocations to the migration
    record (Nova's ``replace_allocation_with_migration``), then claims the forced host for
    the instance as a new consumer; the same shape as a live migration to a requested
    destination through the scheduler."""
    scheduled, forced_one = str(uuid.uuid4()), str(uuid.uuid4())
    scheduled_mig, forced_mig = str(uuid.uuid4()), str(uuid.uuid4())
    answers = cloud.rpc(
        boot_on("h1", scheduled),
        boot_on("h1", forced_one),
        move_allocations(scheduled, scheduled_mig),
        select(
            spec(
                instance_uuid=scheduled,
                ignore_hosts=["h1"],
                requested_destination=destination(host="h3", cell=cell()),
            ),
            scheduled,
        ),
        forced(cloud, forced_one, "h1", "h3", migration=forced_mig),
    )
    assert [(i, a["error"]["message"]) for i, a in enumerate(answers) if "error" in a] == []
    assert chosen(answers[3])["service_host"] == "h3"
    # Nova's own read of what the migration record took over: the source allocations.
    taken_over = {rp: a["resources"] for rp, a in answers[4]["result"].items()}
    assert taken_over == {node(cloud, "h1"): resources()}
    for instance, migration in ((scheduled, scheduled_mig), (forced_one, forced_mig)):
        assert held(cloud, instance) == {node(cloud, "h3"): resources()}
        assert held(cloud, migration) == {node(cloud, "h1"): resources()}
