"""End to end: Nova 34's own SchedulerAPI calls ``allotment serve --nova-config`` over the
machine's RabbitMQ (a vhost of the test's own), and placement's allocations afterwards
show what was claimed."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from typing import Any

import pytest

from tests.fleet import SCHEDULER
from tests.integration.nova.conftest import CELL, Cloud, context, flavor, selections, spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]


def test_nova_boots_one_instance_with_alternates(cloud: Cloud) -> None:
    instance = str(uuid.uuid4())
    ctx = context()
    (answer,) = cloud.rpc(
        {
            "method": "select_destinations",
            "context": ctx,
            "spec": spec(instance_uuid=instance),
            "instance_uuids": [instance],
            "return_objects": True,
            "return_alternates": True,
        }
    )
    ((chosen, *alternates),) = selections(answer)
    assert chosen["service_host"] in {"h1", "h2", "h3"}
    assert chosen["cell_uuid"] == CELL and chosen["availability_zone"] == "nova"
    assert chosen["allocation_request_version"] == "1.36"
    host = cloud.fleet.hosts[chosen["service_host"]]
    assert chosen["compute_node_uuid"] == host.uuid
    claimed = json.loads(chosen["allocation_request"])
    held = cloud.fleet.allocations(instance)
    assert {rp: a["resources"] for rp, a in held.items()} == {
        rp: a["resources"] for rp, a in claimed["allocations"].items()
    }
    assert held[host.uuid]["resources"] == {"VCPU": 2, "MEMORY_MB": 2048, "DISK_GB": 10}
    # max_attempts 3: two alternates, other hosts, unclaimed, each with its own request.
    assert len(alternates) == 2
    assert {a["service_host"] for a in alternates} == {"h1", "h2", "h3"} - {host.name}
    for alternate in alternates:
        assert cloud.fleet.usages(alternate["service_host"]) == {
            "VCPU": 0,
            "MEMORY_MB": 0,
            "DISK_GB": 0,
        }
        assert (
            alternate["compute_node_uuid"]
            in json.loads(alternate["allocation_request"])["allocations"]
        )
    # The caller's ids reach our log (the request id on the line, the global one in it).
    log = cloud.log()
    assert ctx["request_id"] in log and ctx["global_request_id"] in log


def test_nova_boots_n_instances_and_each_is_claimed(cloud: Cloud) -> None:
    instances = [str(uuid.uuid4()) for _ in range(5)]
    (answer,) = cloud.rpc(
        {
            "method": "select_destinations",
            "context": context(),
            "spec": spec(vcpus=4, num_instances=5),
            "instance_uuids": instances,
            "return_objects": True,
            "return_alternates": True,
        }
    )
    found = selections(answer)
    assert len(found) == 5
    used = {name: cloud.fleet.usages(name)["VCPU"] for name in ("h1", "h2", "h3")}
    assert sum(used.values()) == 20 and max(used.values()) <= 8
    for instance, (chosen, *alternates) in zip(instances, found, strict=True):
        held = cloud.fleet.allocations(instance)
        assert list(held) == [chosen["compute_node_uuid"]]
        assert held[chosen["compute_node_uuid"]]["resources"]["VCPU"] == 4
        assert chosen["service_host"] not in {a["service_host"] for a in alternates}


def test_no_valid_host_arrives_as_novas_exception_with_our_reason(cloud: Cloud) -> None:
    instance = str(uuid.uuid4())
    ctx = context()
    (answer,) = cloud.rpc(
        {
            "method": "select_destinations",
            "context": ctx,
            "spec": spec(vcpus=64),
            "instance_uuids": [instance],
            "return_objects": True,
            "return_alternates": True,
        }
    )
    error = answer["error"]
    assert "NoValidHost" in error["nova_class"], error
    assert "NovaException" in error["nova_class"]
    message = error["message"]
    assert message.startswith("No valid host was found"), message
    assert "VCPU" in message and "\n" not in message.strip()
    assert cloud.fleet.allocations(instance) == {}
    # Logged once at INFO under the caller's request id: the summary, then the whole
    # explanation on the same line.
    lines = [line for line in cloud.log().splitlines() if "No valid host was found" in line]
    assert len(lines) == 1, lines
    assert " INFO " in lines[0] and ctx["request_id"] in lines[0]
    assert "explanation: {" in lines[0] and '"stages"' in lines[0]


def test_a_pinned_conductor_gets_host_dicts(cloud: Cloud) -> None:
    """[upgrade_levels] scheduler = pike (4.4): claims made, dicts back; ocata (4.3): no
    instance uuids, nothing claimed."""
    instance = str(uuid.uuid4())
    (pike,) = cloud.rpc(
        {
            "method": "select_destinations",
            "context": context(),
            "spec": spec(),
            "instance_uuids": [instance],
        },
        upgrade_level="pike",
    )
    (host_dict,) = pike["result"]
    assert set(host_dict) == {"host", "nodename", "limits"}
    node = cloud.fleet.hosts[host_dict["host"]].uuid
    assert cloud.fleet.allocations(instance)[node]["resources"]["VCPU"] == 2
    (ocata,) = cloud.rpc(
        {"method": "select_destinations", "context": context(), "spec": spec(num_instances=2)},
        upgrade_level="ocata",
    )
    assert len(ocata["result"]) == 2
    assert sum(cloud.fleet.usages(name)["VCPU"] for name in ("h1", "h2", "h3")) == 2


def test_a_conductor_pinned_to_4_0_sends_the_legacy_dicts(cloud: Cloud) -> None:
    """[upgrade_levels] scheduler = 4.0: Nova sends request_spec / filter_properties
    dicts with the group as ``group_*`` keys; the group is honoured, host dicts come back,
    and nothing is claimed (4.0 carries no instance uuids)."""
    group = str(uuid.uuid4())
    members = [str(uuid.uuid4()) for _ in range(3)]

    def grouped(policy: str, hosts: list[str], ctx: dict[str, Any]) -> dict[str, Any]:
        return {
            "method": "select_destinations",
            "context": ctx,
            "spec": spec(
                instance_uuid=members[-1],
                instance_group={
                    "$obj": "InstanceGroup",
                    "uuid": group,
                    "policy": policy,
                    "hosts": hosts,
                    "members": members,
                },
                scheduler_hints={"group": [group]},
            ),
        }

    # Two members already run on h1 and h2 (as computes report them to the scheduler).
    cloud.rpc(
        *(
            {
                "method": "update_instance_info",
                "context": context(),
                "host_name": host,
                "instance_info": {
                    "$obj": "InstanceList",
                    "objects": [{"$obj": "Instance", "uuid": member, "project_id": "p1"}],
                },
            }
            for host, member in zip(("h1", "h2"), members, strict=False)
        )
    )

    def hosts() -> dict[str, Any]:
        listed = cloud.fleet.call("GET", f"{SCHEDULER}/hosts", to=cloud.fleet.http).json()
        return {h["host"]: h["instances"] for h in listed["hosts"]}

    assert _wait_for(lambda: hosts() == {"h1": 1, "h2": 1, "h3": 0})
    ctx = context()
    anti, affinity = cloud.rpc(
        grouped("anti-affinity", ["h1", "h2"], ctx),
        grouped("affinity", ["h2"], context()),
        upgrade_level="4.0",
    )
    assert anti["result"] == [{"host": "h3", "nodename": "h3", "limits": {}}], anti
    assert [d["host"] for d in affinity["result"]] == ["h2"], affinity
    assert cloud.fleet.allocations(members[-1]) == {}
    for name in ("h1", "h2", "h3"):
        assert cloud.fleet.usages(name) == {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}
    assert ctx["request_id"] in cloud.log()
    # An affinity group on a host that is gone: Nova's NoValidHost, as for the newer forms.
    (gone,) = cloud.rpc(grouped("affinity", ["h9"], context()), upgrade_level="4.0")
    assert "NoValidHost" in gone["error"]["nova_class"], gone


def _wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_the_fanout_casts_feed_the_host_cache(cloud: Cloud) -> None:
    agg = str(uuid.uuid4())
    aggregate = {
        "$obj": "Aggregate",
        "id": 7,
        "uuid": agg,
        "name": "zone-a",
        "hosts": ["h1"],
        "metadata": {"availability_zone": "az-a"},
    }
    members = [str(uuid.uuid4()), str(uuid.uuid4())]
    cloud.rpc(
        {"method": "update_aggregates", "context": context(), "aggregates": [aggregate]},
        {
            "method": "update_instance_info",
            "context": context(),
            "host_name": "h2",
            "instance_info": {
                "$obj": "InstanceList",
                "objects": [{"$obj": "Instance", "uuid": u, "project_id": "p1"} for u in members],
            },
        },
    )

    def hosts() -> dict[str, Any]:
        listed = cloud.fleet.call("GET", f"{SCHEDULER}/hosts", to=cloud.fleet.http).json()
        return {h["host"]: h for h in listed["hosts"]}

    assert _wait_for(lambda: hosts()["h1"]["aggregates"] and hosts()["h2"]["instances"] == 2)
    instance = str(uuid.uuid4())
    (answer,) = cloud.rpc(
        {
            "method": "select_destinations",
            "context": context(),
            "spec": spec(availability_zone="az-a"),
            "instance_uuids": [instance],
            "return_objects": True,
            "return_alternates": False,
        }
    )
    ((chosen,),) = selections(answer)
    assert (chosen["service_host"], chosen["availability_zone"]) == ("h1", "az-a")
    cloud.rpc(
        {"method": "delete_aggregate", "context": context(), "aggregate": aggregate},
        {
            "method": "delete_instance_info",
            "context": context(),
            "host_name": "h2",
            "instance_uuid": members[0],
        },
        {
            "method": "sync_instance_info",
            "context": context(),
            "host_name": "h2",
            "instance_uuids": [],
        },
    )
    assert _wait_for(lambda: not hosts()["h1"]["aggregates"] and hosts()["h2"]["instances"] == 0)


def test_a_call_longer_than_the_call_monitor_timeout_is_kept_alive(cloud: Cloud) -> None:
    """Nova sends ``call_monitor_timeout = rpc_response_timeout`` (2 s here): without the
    server's heartbeats its client gives up after 2 s. The claim waits on a database
    write lock held for 6 s, so the call takes longer than that and must still answer."""
    instance = str(uuid.uuid4())
    call = {
        "method": "select_destinations",
        "context": context(),
        "spec": spec(),
        "instance_uuids": [instance],
        "return_objects": True,
        "return_alternates": False,
    }
    answers: list[Any] = []
    blocker = sqlite3.connect(cloud.database, isolation_level=None, timeout=30)
    blocker.execute("BEGIN IMMEDIATE")  # the claim's transaction waits behind this one
    started = time.monotonic()
    caller = threading.Thread(
        target=lambda: answers.extend(cloud.rpc(call, rpc_response_timeout=2))
    )
    caller.start()
    time.sleep(6)
    blocker.execute("ROLLBACK")
    blocker.close()
    caller.join(120)
    elapsed = time.monotonic() - started
    (answer,) = answers
    ((chosen,),) = selections(answer)
    assert elapsed > 6 and chosen["compute_node_uuid"] in cloud.fleet.allocations(instance)


def test_nova_reclaims_an_alternate_with_its_own_claim_resources(cloud: Cloud) -> None:
    """A failed build: the claim on the chosen host is dropped and conductor claims the
    first alternate with Nova's ``claim_resources`` at the version the Selection names.
    The same alternate at 1.39 (allotment's HTTP default) fails: Nova sends no
    consumer_type."""
    instance = str(uuid.uuid4())
    boot = {
        "method": "select_destinations",
        "context": context(),
        "spec": spec(instance_uuid=instance),
        "instance_uuids": [instance],
        "return_objects": True,
        "return_alternates": True,
    }
    (answer,) = cloud.rpc(boot)
    ((chosen, alternate, *_),) = selections(answer)
    cloud.fleet.call("DELETE", f"/allocations/{instance}", expect=204)

    def claim(version: str) -> dict[str, Any]:
        (claimed,) = cloud.rpc(
            {
                "method": "claim_resources",
                "context": context(),
                "spec": spec(instance_uuid=instance),
                "instance_uuid": instance,
                "allocation_request": alternate["allocation_request"],
                "allocation_request_version": version,
            }
        )
        return dict(claimed)

    assert claim("1.39") == {"result": False}
    assert cloud.fleet.allocations(instance) == {}
    assert claim(alternate["allocation_request_version"]) == {"result": True}
    held = cloud.fleet.allocations(instance)
    assert list(held) == [alternate["compute_node_uuid"]] != [chosen["compute_node_uuid"]]
    assert held[alternate["compute_node_uuid"]]["resources"]["VCPU"] == 2


def test_many_calls_in_a_row_are_each_answered_promptly(cloud: Cloud) -> None:
    """oslo.messaging's threading executor starts a thread for every message until it has
    64, and each thread keeps database connections of its own: with more threads than
    the connection pool holds, a call waited 30 s for a connection (and failed). 60 calls
    in a row, each claiming, must each be answered within the client's 10 s."""
    for name in ("big1", "big2"):
        cloud.fleet.host(name, vcpus=64, ram=262144, disk=4000)
    instances = [str(uuid.uuid4()) for _ in range(60)]
    calls = [
        {
            "method": "select_destinations",
            "context": context(),
            "spec": spec(vcpus=1, instance_uuid=instance),
            "instance_uuids": [instance],
            "return_objects": True,
            "return_alternates": True,
        }
        for instance in instances
    ]
    answers = cloud.rpc(*calls, rpc_response_timeout=10)
    errors = [answer["error"] for answer in answers if "error" in answer]
    assert errors == []
    for instance, answer in zip(instances, answers, strict=True):
        ((chosen, *_),) = selections(answer)
        assert list(cloud.fleet.allocations(instance)) == [chosen["compute_node_uuid"]]


def _boot(instances: list[str], alternates: bool, **fields: Any) -> dict[str, Any]:
    return {
        "method": "select_destinations",
        "context": context(),
        "spec": spec(num_instances=len(instances), **fields),
        "instance_uuids": instances,
        "return_objects": True,
        "return_alternates": alternates,
    }


def _nothing_held(cloud: Cloud, instances: list[str]) -> None:
    assert {i: cloud.fleet.allocations(i) for i in instances} == {i: {} for i in instances}
    for name in ("h1", "h2", "h3"):
        assert cloud.fleet.usages(name) == {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}


@pytest.mark.parametrize("alternates", [False, True], ids=["plain", "alternates"])
def test_a_multi_create_whose_last_instance_cannot_fit_claims_none(
    cloud: Cloud, alternates: bool
) -> None:
    """Nova boots N instances in one call; when one cannot be placed the answer is
    NoValidHost and none of the N holds an allocation: room for 3 of 4 whole-host
    instances, and an anti-affinity group of 4 on 3 hosts."""
    whole_host = [str(uuid.uuid4()) for _ in range(4)]
    group = [str(uuid.uuid4()) for _ in range(4)]
    anti_affinity = {
        "$obj": "InstanceGroup",
        "uuid": str(uuid.uuid4()),
        "policy": "anti-affinity",
        "members": group,
        "hosts": [],
    }
    too_big, too_spread = cloud.rpc(
        _boot(whole_host, alternates, flavor=flavor(vcpus=8)),
        _boot(group, alternates, instance_group=anti_affinity),
    )
    for answer in (too_big, too_spread):
        error = answer["error"]
        assert "NoValidHost" in error["nova_class"], error
    assert "VCPU" in too_big["error"]["message"]
    assert "anti-affinity" in too_spread["error"]["message"].lower()
    _nothing_held(cloud, whole_host + group)
    # The same hosts take 3 of either at once: only the one too many failed them.
    placed = cloud.rpc(
        _boot(whole_host[:3], alternates, flavor=flavor(vcpus=8)),
    )
    assert len(selections(placed[0])) == 3


def _consumer(cloud: Cloud, consumer: str) -> dict[str, Any]:
    """What a consumer holds (not the providers' generations, which inventory moves)."""
    body = cloud.fleet.call("GET", f"/allocations/{consumer}", expect=200).json()
    body["allocations"] = {rp: a["resources"] for rp, a in body["allocations"].items()}
    return dict(body)


@pytest.mark.parametrize("alternates", [False, True], ids=["plain", "alternates"])
def test_a_multi_create_whose_last_claim_fails_releases_the_claims_before_it(
    cloud: Cloud, alternates: bool
) -> None:
    """A failure after claims were made: the last instance of the request already holds
    allocations on h3 (as a moving instance does), and h3's VCPU ``max_unit`` was lowered
    below them since, so the claim Nova's way (doubled up with what it holds, which
    placement checks against ``max_unit`` again) fails on every host after the first two
    instances were claimed. NoValidHost; those two claims are released, and the last
    instance keeps exactly what it held."""
    first, second, holder = (str(uuid.uuid4()) for _ in range(3))
    h3 = cloud.fleet.hosts["h3"].uuid
    (boot,) = cloud.rpc(
        {
            "method": "select_destinations",
            "context": context(),
            "spec": spec(
                vcpus=8,
                instance_uuid=holder,
                requested_destination={"$obj": "Destination", "host": "h3"},
            ),
            "instance_uuids": [holder],
            "return_objects": True,
        }
    )
    assert selections(boot)[0][0]["service_host"] == "h3"
    before = _consumer(cloud, holder)
    inventory = cloud.fleet.call("GET", f"/resource_providers/{h3}/inventories", expect=200).json()
    vcpu = {**inventory["inventories"]["VCPU"], "max_unit": 4}
    cloud.fleet.call(
        "PUT",
        f"/resource_providers/{h3}/inventories/VCPU",
        {"resource_provider_generation": inventory["resource_provider_generation"], **vcpu},
        expect=200,
    )
    (answer,) = cloud.rpc(_boot([first, second, holder], alternates))
    error = answer["error"]
    assert "NoValidHost" in error["nova_class"], error
    assert cloud.fleet.allocations(first) == {} == cloud.fleet.allocations(second)
    assert _consumer(cloud, holder) == before
    for name in ("h1", "h2"):
        assert cloud.fleet.usages(name) == {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}
    assert "released the claims of 2 instance(s)" in cloud.log()
