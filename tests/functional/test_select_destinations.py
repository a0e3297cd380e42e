"""POST /scheduler/v1/select_destinations with the embedded placement: selections, claims,
alternates, all-or-nothing batches, NoValidHost explanations, input checks and roles."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from allotment.app import build_services, create_app
from allotment.log import REQUEST_ID
from allotment.scheduler.placement import ClaimConflict
from tests.conftest import make_settings
from tests.fleet import SCHEDULER, Fleet, flavor, request_spec

MakeFleet = Callable[..., Fleet]


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[MakeFleet]:
    """A fleet over an app built with the given settings sections."""
    opened: list[tuple[TestClient, Any]] = []

    def make(**sections: dict[str, Any]) -> Fleet:
        services = build_services(make_settings(tmp_path / str(len(opened)), **sections))
        client = TestClient(create_app(services))
        client.__enter__()
        opened.append((client, services))
        fleet = Fleet(client)
        fleet.services = services  # type: ignore[attr-defined]
        return fleet

    yield make
    for client, services in opened:
        client.__exit__(None, None, None)
        services.db.dispose()


@pytest.fixture
def fleet(make_fleet: MakeFleet) -> Fleet:
    return make_fleet()


def test_one_list_per_instance_with_the_claimed_host_first(fleet: Fleet) -> None:
    fleet.host("small", vcpus=4)
    fleet.host("big", vcpus=16)
    uuids = [str(uuid.uuid4()) for _ in range(3)]
    response = fleet.select(request_spec(flavor=flavor(vcpus=2)), uuids=uuids)
    assert response.status_code == 200, response.text
    selections = response.json()["selections"]
    assert len(selections) == 3 and all(len(s) == 1 for s in selections)
    first = selections[0][0]
    assert set(first) == {
        "host",
        "nodename",
        "compute_node_uuid",
        "allocation_request",
        "allocation_request_version",
        "limits",
    }
    assert first["host"] == "big" and first["nodename"] == "big"
    assert first["compute_node_uuid"] == fleet.hosts["big"].uuid
    assert first["allocation_request_version"] == "1.39"
    rp = fleet.hosts["big"].uuid
    assert first["allocation_request"] == {
        "allocations": {rp: {"resources": {"VCPU": 2, "MEMORY_MB": 1024, "DISK_GB": 10}}},
        "mappings": {"": [rp]},
    }
    # Every instance's allocation is in placement under its uuid before the answer.
    for instance, chosen in zip(uuids, selections, strict=True):
        held = fleet.allocations(instance)
        assert list(held) == [chosen[0]["compute_node_uuid"]]
        assert held[chosen[0]["compute_node_uuid"]]["resources"]["VCPU"] == 2
    placed = Counter(s[0]["host"] for s in selections)
    assert fleet.usages("big")["VCPU"] == 2 * placed["big"]
    assert fleet.usages("small")["VCPU"] == 2 * placed["small"]


def test_alternates_are_other_hosts_with_unclaimed_allocation_requests(fleet: Fleet) -> None:
    for name in ("a", "b", "c", "d"):
        fleet.host(name)
    uuids = [str(uuid.uuid4()) for _ in range(2)]
    response = fleet.select(request_spec(), uuids=uuids, alternates=True)
    selections = response.json()["selections"]
    chosen = {s[0]["host"] for s in selections}
    assert len(chosen) == 2  # RAM weigher spreads them
    for instance, hosts in zip(uuids, selections, strict=True):
        assert len(hosts) == 3  # max_attempts - 1 alternates
        alternates = hosts[1:]
        assert not chosen & {a["host"] for a in alternates}
        assert [a["host"] for a in alternates] == [a["host"] for a in selections[0][1:]]
        assert list(fleet.allocations(instance)) == [hosts[0]["compute_node_uuid"]]
    for host in {"a", "b", "c", "d"} - chosen:
        assert fleet.usages(host)["VCPU"] == 0


def test_an_alternate_can_be_claimed_after_a_failed_build(fleet: Fleet) -> None:
    """What a conductor does when the build fails on the chosen host: drop that claim and
    claim the alternate's allocation request."""
    fleet.host("a")
    fleet.host("b", ram=8192)
    instance = str(uuid.uuid4())
    selection = fleet.select(request_spec(), uuids=[instance], alternates=True).json()
    chosen, alternate = selection["selections"][0]
    assert (chosen["host"], alternate["host"]) == ("a", "b")
    fleet.call("DELETE", f"/allocations/{instance}", expect=204)
    body = {
        "allocations": alternate["allocation_request"]["allocations"],
        "project_id": "p1",
        "user_id": "u1",
        "consumer_generation": None,
        "consumer_type": "INSTANCE",
    }
    fleet.call("PUT", f"/allocations/{instance}", body, expect=204)
    assert fleet.usages("b")["MEMORY_MB"] == 1024 and fleet.usages("a")["MEMORY_MB"] == 0


def test_no_alternates_without_return_alternates_or_with_max_attempts_1(
    make_fleet: MakeFleet,
) -> None:
    fleet = make_fleet(scheduler={"max_attempts": 1})
    fleet.host("a")
    fleet.host("b")
    selections = fleet.select(request_spec(), alternates=True).json()["selections"]
    assert [len(s) for s in selections] == [1]


def test_instances_of_a_batch_consume_capacity_before_the_next_pick(fleet: Fleet) -> None:
    fleet.host("roomy", vcpus=2, ram=65536)  # most free RAM, room for two instances
    fleet.host("other", vcpus=64, ram=16384)
    hosts = fleet.place(request_spec(), 5, alternates=True)
    assert Counter(hosts)["roomy"] == 2
    assert fleet.usages("roomy")["VCPU"] == 2


def test_a_batch_is_all_or_nothing(fleet: Fleet) -> None:
    fleet.host("a", vcpus=2)
    fleet.host("b", vcpus=1)
    uuids = [str(uuid.uuid4()) for _ in range(4)]
    response = fleet.select(request_spec(), uuids=uuids)
    assert response.status_code == 409
    error = response.json()["errors"][0]
    assert error["code"] == "allotment.no_valid_host"
    # One numbering, from 1: the fourth instance is "instance 4" in the summary and the JSON.
    assert error["explanation"]["instance"] == 4
    assert (
        "for instance 4: stage placement_capacity left no host (the instances placed"
        in (error["explanation"]["summary"])
    )
    assert error["explanation"]["emptied_by"]["stage"] == "placement_capacity"
    assert fleet.usages("a")["VCPU"] == 0 and fleet.usages("b")["VCPU"] == 0
    for instance in uuids:
        assert fleet.allocations(instance) == {}
    assert len(fleet.place(request_spec(), 3)) == 3  # exactly what fits still does


def test_placement_explains_which_constraint_left_no_host(fleet: Fleet) -> None:
    fleet.host("a", vcpus=4, traits=["HW_CPU_X86_AVX2"])
    fleet.host("b", vcpus=16)
    fleet.host("c", vcpus=16)
    spec = request_spec(flavor=flavor(vcpus=8, extra_specs={"trait:HW_CPU_X86_AVX2": "required"}))
    response = fleet.select(spec)
    assert response.status_code == 409
    error = response.json()["errors"][0]
    assert error["code"] == "allotment.no_valid_host"
    assert "No valid host was found" in error["detail"]
    explanation = error["explanation"]
    assert explanation["emptied_by"] == {"stage": "placement", "kind": "placement"}
    stage = explanation["stages"][-1]
    assert (stage["stage"], stage["before"], stage["after"]) == ("placement", 3, 0)
    steps = {(c["constraint"], str(c["value"])): c for c in stage["detail"]["constraints"]}
    vcpu = steps[("resources", "VCPU:8")]
    avx2 = steps[("required_trait", "HW_CPU_X86_AVX2")]
    assert (vcpu["before"], vcpu["after"]) == (3, 2)
    assert (avx2["before"], avx2["after"]) == (2, 0)
    # Each alone keeps a host out that every other constraint admits.
    assert vcpu["only_blocker"] == 1 and avx2["only_blocker"] == 2
    assert stage["detail"]["eliminated_by"]["constraint"] == "required_trait"
    assert "HW_CPU_X86_AVX2" in explanation["summary"]


def test_unknown_trait_is_no_valid_host_not_a_bad_request(fleet: Fleet) -> None:
    fleet.host("a")
    spec = request_spec(flavor=flavor(extra_specs={"trait:CUSTOM_NOBODY": "required"}))
    response = fleet.select(spec)
    assert response.status_code == 409
    explanation = response.json()["errors"][0]["explanation"]
    assert "CUSTOM_NOBODY" in explanation["summary"]
    assert explanation["emptied_by"]["stage"] == "placement"


def test_filters_that_empty_the_list_are_named_with_the_closest_misses(
    make_fleet: MakeFleet,
) -> None:
    fleet = make_fleet(
        filter_scheduler={
            "enabled_filters": ["ComputeFilter", "IoOpsFilter"],
            "max_io_ops_per_host": 2,
        }
    )
    fleet.host("busy", report={"io_ops": 5})
    fleet.host("disabled", report={"disabled": True, "io_ops": 5})
    response = fleet.select(request_spec())
    explanation = response.json()["errors"][0]["explanation"]
    assert explanation["emptied_by"] == {"stage": "IoOpsFilter", "kind": "filter"}
    assert "IoOpsFilter removed the last 1 of 2 candidate hosts" in explanation["summary"]
    funnel = [(s["stage"], s.get("before"), s.get("after")) for s in explanation["stages"]]
    assert funnel[-2:] == [("ComputeFilter", 2, 1), ("IoOpsFilter", 1, 0)]
    assert explanation["closest_misses"][0]["host"] == "busy"


def test_compute_status_disabled_trait_keeps_a_host_out_in_placement(fleet: Fleet) -> None:
    fleet.host("off", traits=["COMPUTE_STATUS_DISABLED"])
    fleet.host("on", vcpus=2)
    assert fleet.place(request_spec(), 2) == ["on", "on"]


def test_availability_zone_and_tenant_isolation(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(scheduler={"limit_tenants_to_placement_aggregate": True})
    for name in ("z1a", "z1b", "z2a", "private"):
        fleet.host(name)
    fleet.aggregate("az1", ["z1a", "z1b"], availability_zone="az1")
    fleet.aggregate("az2", ["z2a", "private"], availability_zone="az2")
    fleet.aggregate("tenant", ["private"], filter_tenant_id="secret-project")
    assert set(fleet.place(request_spec(availability_zone="az1"), 4)) == {"z1a", "z1b"}
    secret = request_spec(project_id="secret-project")
    assert set(fleet.place(secret, 3)) == {"private"}
    assert set(fleet.place(request_spec(project_id="secret-project", availability_zone="az2"))) == {
        "private"
    }
    response = fleet.select(request_spec(project_id="secret-project", availability_zone="az1"))
    assert response.status_code == 409
    stage = response.json()["errors"][0]["explanation"]["stages"][-1]
    kinds = [c["constraint"] for c in stage["detail"]["constraints"]]
    assert kinds.count("member_of") == 2


def test_nested_gpu_hosts_take_each_gpu_from_its_own_child(fleet: Fleet) -> None:
    gpus = {f"gpu{i}": {"inventories": {"VGPU": {"total": 1}}} for i in range(4)}
    fleet.host("gpu-host", children=gpus)
    fleet.host("plain")
    extra = {"resources1:VGPU": "1", "resources2:VGPU": "1", "group_policy": "isolate"}
    instances = [str(uuid.uuid4()) for _ in range(2)]
    response = fleet.select(request_spec(flavor=flavor(extra_specs=extra)), uuids=instances)
    assert response.status_code == 200, response.text
    used = Counter[str]()
    for chosen in response.json()["selections"]:
        assert chosen[0]["host"] == "gpu-host"
        request = chosen[0]["allocation_request"]
        taken = [rp for rp, a in request["allocations"].items() if "VGPU" in a["resources"]]
        assert len(taken) == 2
        assert set(request["mappings"]) == {"", "1", "2"}
        used.update(taken)
    assert sorted(used.values()) == [1, 1, 1, 1]  # four distinct GPUs over two instances
    third = fleet.select(request_spec(flavor=flavor(extra_specs=extra)))
    assert third.status_code == 409


def test_server_group_affinity_and_anti_affinity_in_one_batch(fleet: Fleet) -> None:
    for name in ("a", "b", "c"):
        fleet.host(name)
    anti = request_spec(instance_group={"policy": "anti-affinity"})
    assert sorted(fleet.place(anti, 3)) == ["a", "b", "c"]
    assert fleet.select(anti, 4).status_code == 409
    same = request_spec(instance_group={"policy": "affinity"})
    assert len(set(fleet.place(same, 3))) == 1


def test_a_claim_lost_to_another_writer_moves_to_the_next_host(fleet: Fleet) -> None:
    """Another scheduler takes the last room on the best host between our candidate query
    and our claim: the batch claim conflicts and the instance lands elsewhere."""
    fleet.host("best", vcpus=1, ram=32768)
    fleet.host("next", vcpus=1)
    services = fleet.services  # type: ignore[attr-defined]
    client = services.scheduler.placement
    claim = client.claim
    stolen: list[str] = []

    def racing_claim(ctx: Any, claims: Any) -> None:
        if not stolen:
            thief = str(uuid.uuid4())
            stolen.append(thief)
            rp = fleet.hosts["best"].uuid
            body = {
                "allocations": {rp: {"resources": {"VCPU": 1}}},
                "project_id": "x",
                "user_id": "x",
                "consumer_generation": None,
                "consumer_type": "INSTANCE",
            }
            fleet.call("PUT", f"/allocations/{thief}", body, expect=204)
        claim(ctx, claims)

    client.claim = racing_claim
    instance = str(uuid.uuid4())
    response = fleet.select(request_spec(), uuids=[instance], alternates=True)
    assert response.status_code == 200, response.text
    assert response.json()["selections"][0][0]["host"] == "next"
    assert fleet.usages("best")["VCPU"] == 1  # the thief's, not ours
    assert list(fleet.allocations(instance)) == [fleet.hosts["next"].uuid]


def test_conflicts_on_every_host_are_explained(fleet: Fleet) -> None:
    fleet.host("a")
    fleet.host("b")
    client = fleet.services.scheduler.placement  # type: ignore[attr-defined]

    def refuse(ctx: Any, claims: Any) -> None:
        raise ClaimConflict("the provider changed meanwhile", "capacity")

    client.claim = refuse
    response = fleet.select(request_spec())
    assert response.status_code == 409
    explanation = response.json()["errors"][0]["explanation"]
    assert explanation["emptied_by"] == {"stage": "claim_conflict", "kind": "hosts"}


def test_an_instance_that_already_holds_allocations_is_moving(fleet: Fleet) -> None:
    """Nova's claim for a consumer with allocations (an evacuation): it keeps what it
    holds and gains the destination's, under its consumer generation."""
    fleet.host("a")
    fleet.host("b")
    instance = str(uuid.uuid4())
    (source,) = fleet.place(request_spec(), uuids=[instance])
    before = fleet.allocations(instance)
    generation = fleet.call("GET", f"/allocations/{instance}", expect=200).json()
    (destination,) = fleet.place(request_spec(ignore_hosts=[source]), uuids=[instance])
    assert destination != source
    held = fleet.allocations(instance)
    assert set(held) == {fleet.hosts["a"].uuid, fleet.hosts["b"].uuid}
    source_rp = fleet.hosts[source].uuid
    assert held[source_rp]["resources"] == before[source_rp]["resources"]
    assert fleet.usages("a")["VCPU"] == fleet.usages("b")["VCPU"] == 1
    after = fleet.call("GET", f"/allocations/{instance}", expect=200).json()
    assert after["consumer_generation"] == generation["consumer_generation"] + 1


def test_a_rebuild_check_claims_nothing_and_runs_the_image_filters(fleet: Fleet) -> None:
    fleet.host("a")
    fleet.host("b")
    instance = str(uuid.uuid4())
    (source,) = fleet.place(request_spec(), uuids=[instance])
    before = fleet.allocations(instance)
    rebuild = request_spec(
        scheduler_hints={"_nova_check_type": ["rebuild"]},
        force_hosts=[source],
        force_nodes=[source],
    )
    response = fleet.select(rebuild, uuids=[instance])
    assert response.status_code == 200, response.text
    ((chosen,),) = response.json()["selections"]
    assert chosen["host"] == source
    assert chosen["allocation_request"] is None and chosen["allocation_request_version"] is None
    assert fleet.allocations(instance) == before
    xen = {**rebuild, "image": {"properties": {"img_hv_type": "xen"}}}
    response = fleet.select(xen, uuids=[instance])
    assert response.status_code == 409, response.text
    assert "ImagePropertiesFilter" in response.text
    assert fleet.allocations(instance) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"request_spec": {}}, "instance_uuids"),
        ({"instance_uuids": []}, "request_spec"),
        ({"instance_uuids": [], "request_spec": request_spec()}, "1 to 1000"),
        ({"instance_uuids": ["nope"], "request_spec": request_spec()}, "not a UUID"),
        (
            {"instance_uuids": [str(uuid.UUID(int=1))] * 2, "request_spec": request_spec()},
            "must not repeat",
        ),
        (
            {
                "instance_uuids": [str(uuid.uuid4()) for _ in range(1001)],
                "request_spec": request_spec(),
            },
            "1 to 1000",
        ),
        (
            {
                "instance_uuids": [str(uuid.uuid4())],
                "request_spec": request_spec(),
                "return_alternates": "yes",
            },
            "return_alternates",
        ),
        (
            {"instance_uuids": [str(uuid.uuid4())], "request_spec": request_spec(), "x": 1},
            "Unknown member(s) x",
        ),
        (
            {"instance_uuids": [str(uuid.uuid4())], "request_spec": {"project_id": "p"}},
            "request_spec",
        ),
        (
            {
                "instance_uuids": [str(uuid.uuid4())],
                "request_spec": request_spec(flavor=flavor(extra_specs={"resources:VCPU": "-1"})),
            },
            "non-negative",
        ),
    ],
)
def test_malformed_requests_are_400_and_change_nothing(
    fleet: Fleet, body: dict[str, Any], message: str
) -> None:
    fleet.host("a")
    response = fleet.call("POST", f"{SCHEDULER}/select_destinations", body, to=fleet.http)
    assert response.status_code == 400, response.text
    assert message in response.json()["errors"][0]["detail"]
    assert fleet.usages("a")["VCPU"] == 0


def test_only_service_and_admin_may_schedule(fleet: Fleet) -> None:
    fleet.host("a")
    for roles, status in (("reader", 403), ("member", 403), ("service", 200), ("admin", 200)):
        response = fleet.select(
            request_spec(), headers={"x-auth-token": "caller:p1", "x-roles": roles}
        )
        assert response.status_code == status, (roles, response.text)
    forbidden = fleet.call(
        "POST",
        f"{SCHEDULER}/select_destinations",
        {"bad": 1},
        to=fleet.http,
        headers={"x-auth-token": "caller:p1", "x-roles": "reader"},
    )
    assert forbidden.status_code == 403  # roles are checked before the body


def test_explain_claims_nothing_and_ranks_hosts_with_weigher_shares(fleet: Fleet) -> None:
    fleet.host("a", ram=8192)
    fleet.host("b", ram=32768)
    fleet.host("c", ram=16384)
    answer = fleet.explain(request_spec(), 2, hosts=2)
    assert answer["result"] == "ok"
    assert len(answer["instances"]) == 2 and answer["instances"][0]["host"] == "b"
    ranked = answer["hosts"]
    assert [(h["rank"], h["host"]) for h in ranked] == [(1, "b"), (2, "c")]
    for host in ranked:
        assert sum(host["weighers"].values()) == pytest.approx(host["weight"], abs=1e-5)
    assert ranked[0]["weighers"]["RAMWeigher"] == pytest.approx(1.0)
    stages = [s["stage"] for s in answer["explanation"]["stages"]]
    assert stages[:2] == ["placement", "host_records"]
    for name in ("a", "b", "c"):
        assert fleet.usages(name)["MEMORY_MB"] == 0
    assert fleet.explain(request_spec(), hosts=0)["hosts"] == []


def test_explain_a_request_that_cannot_be_placed(fleet: Fleet) -> None:
    fleet.host("a", vcpus=2)
    answer = fleet.explain(request_spec(flavor=flavor(vcpus=4)))
    assert answer["result"] == "no_valid_host"
    assert answer["explanation"]["emptied_by"]["stage"] == "placement"
    assert answer["hosts"] == [] and answer["instances"] == []


class _Records(logging.Handler):
    """Every record with the request id current when it was logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[logging.LogRecord, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record, REQUEST_ID.get()))


def test_logs_carry_request_ids_and_instance_uuids_only_at_debug(fleet: Fleet) -> None:
    fleet.host("a", vcpus=2)
    fleet.host("b", vcpus=1)
    records = _Records()
    logger = logging.getLogger("allotment")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        instances = [str(uuid.uuid4()) for _ in range(5)]
        assert fleet.select(request_spec(), uuids=instances[:2]).status_code == 200
        assert fleet.select(request_spec(), uuids=instances[2:]).status_code == 409
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    mine = [(r, rid) for r, rid in records.seen if r.name.startswith("allotment.scheduler")]
    assert mine
    assert all(rid.startswith("req-") for _, rid in mine)
    for record, _ in records.seen:
        if record.levelno > logging.DEBUG:
            assert not any(i in record.getMessage() for i in instances), record.getMessage()
    assert any(instances[0] in r.getMessage() for r, _ in mine if r.levelno == logging.DEBUG)


def test_a_database_outage_is_placement_unavailable(fleet: Fleet) -> None:
    fleet.host("a")
    services = fleet.services  # type: ignore[attr-defined]

    def outage(request: Any) -> Any:
        raise sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))

    services.placement.allocation_candidates = outage
    response = fleet.select(request_spec())
    assert response.status_code == 503
    assert response.json()["errors"][0]["code"] == "allotment.placement_unavailable"


def test_host_aggregates_are_mirrored_into_placement_and_repaired(fleet: Fleet) -> None:
    fleet.host("a")
    fleet.host("b")
    agg = fleet.aggregate("rack1", ["a", "b"])
    members = fleet.call("GET", f"/resource_providers?member_of={agg}", expect=200)
    assert {rp["name"] for rp in members.json()["resource_providers"]} == {"a", "b"}
    rp = fleet.hosts["a"].uuid
    current = fleet.call("GET", f"/resource_providers/{rp}/aggregates", expect=200).json()
    body = {
        "aggregates": [],
        "resource_provider_generation": current["resource_provider_generation"],
    }
    fleet.call("PUT", f"/resource_providers/{rp}/aggregates", body, expect=200)
    services = fleet.services  # type: ignore[attr-defined]
    services.host_manager.periodic()
    repaired = fleet.call("GET", f"/resource_providers/{rp}/aggregates", expect=200).json()
    assert repaired["aggregates"] == [agg]
    fleet.call(
        "PUT",
        f"{SCHEDULER}/aggregates/{agg}",
        {"name": "rack1", "hosts": ["b"]},
        to=fleet.http,
        expect=200,
    )
    assert fleet.call("GET", f"/resource_providers/{rp}/aggregates").json()["aggregates"] == []


def test_providers_without_a_host_report_are_discovered(fleet: Fleet) -> None:
    fleet.host("reported")
    lonely = fleet.provider("never-reported")
    services = fleet.services  # type: ignore[attr-defined]
    assert services.host_manager.discover() == [(lonely, "never-reported")]


def test_disk_from_a_sharing_provider_is_claimed_with_the_host(fleet: Fleet) -> None:
    fleet.host("a", disk=0)
    fleet.host("b", disk=0)
    nfs = fleet.shared_disk("nfs", 25, str(uuid.uuid4()), "a", "b")
    response = fleet.select(request_spec(flavor=flavor(root_gb=10)), 2)
    assert response.status_code == 200, response.text
    for chosen in response.json()["selections"]:
        allocations = chosen[0]["allocation_request"]["allocations"]
        assert allocations[nfs] == {"resources": {"DISK_GB": 10}}
        assert chosen[0]["host"] in ("a", "b")
    assert fleet.call("GET", f"/resource_providers/{nfs}/usages").json()["usages"] == {
        "DISK_GB": 20
    }
    # The pool, not the hosts, is what is full now.
    refused = fleet.select(request_spec(flavor=flavor(root_gb=10)))
    assert refused.status_code == 409
    stage = refused.json()["errors"][0]["explanation"]["stages"][-1]
    assert stage["stage"] == "placement"


def test_numa_hosts_return_nova_limits(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(
        filter_scheduler={"enabled_filters": ["ComputeFilter", "NUMATopologyFilter"]}
    )
    cells = [{"id": i, "cpus": list(range(4 * i, 4 * i + 4)), "memory_mb": 8192} for i in range(2)]
    fleet.host("numa", report={"numa_topology": {"cells": cells}, "cpu_allocation_ratio": 2.0})
    fleet.host("flat")
    spec = request_spec(flavor=flavor(vcpus=2, extra_specs={"hw:numa_nodes": "1"}))
    chosen = fleet.select(spec).json()["selections"][0][0]
    assert chosen["host"] == "numa"
    assert chosen["limits"] == {
        "numa_topology": {"cpu_allocation_ratio": 2.0, "ram_allocation_ratio": 1.0}
    }
    assert fleet.select(request_spec()).json()["selections"][0][0]["limits"] == {}


def test_host_reports_carry_the_networks_local_to_each_numa_cell(make_fleet: MakeFleet) -> None:
    """A host report's cells say which physnets and tunnel are local to them; an instance
    whose spec names a physnet goes where that cell can take it, and the limits carry the
    network metadata for the compute's claim. A malformed cell is a 400."""
    fleet = make_fleet(
        filter_scheduler={"enabled_filters": ["ComputeFilter", "NUMATopologyFilter"]}
    )

    def cells(free: int) -> list[dict[str, Any]]:
        return [
            {
                "id": i,
                "cpus": list(range(4 * i, 4 * i + 4)),
                "memory_mb": 8192,
                "memory_usage": 0 if i == free else 8192,
                "network_metadata": {"physnets": ["physnet1"] if i == 1 else []},
                "socket": 0,
            }
            for i in range(2)
        ]

    fleet.host("near", report={"numa_topology": {"cells": cells(free=1)}})
    fleet.host("far", report={"numa_topology": {"cells": cells(free=0)}})
    network = {"physnets": ["physnet1"], "tunneled": False}
    spec = request_spec(
        flavor=flavor(vcpus=2, extra_specs={"hw:numa_nodes": "1"}), network_metadata=network
    )
    for _ in range(3):
        chosen = fleet.select(spec).json()["selections"][0][0]
        assert chosen["host"] == "near"
        assert chosen["limits"]["numa_topology"]["network_metadata"] == network
    refused = fleet.select({**spec, "ignore_hosts": ["near"]})
    assert refused.status_code == 409
    assert "networks (physnet1)" in refused.text
    bad = cells(free=0)
    bad[1]["network_metadata"] = {"physnets": "physnet1"}
    response = fleet.http.put(
        f"{SCHEDULER}/hosts/bad",
        json={"compute_node_uuid": str(uuid.uuid4()), "numa_topology": {"cells": bad}},
        headers=fleet.headers,
    )
    assert response.status_code == 400, response.text
    assert "network_metadata.physnets" in response.text
    nearby = [{"count": 1, "spec": [{"vendor_id": "8086"}], "numa_policy": "nearby"}]
    response = fleet.select({**spec, "pci_requests": nearby})
    assert response.status_code == 400, response.text
    assert "numa_policy" in response.text


def test_groups_that_cannot_be_met_together_are_explained_as_such(fleet: Fleet) -> None:
    gpus = {
        "gpu0": {"inventories": {"VGPU": {"total": 1}}, "traits": ["CUSTOM_A100"]},
        "gpu1": {"inventories": {"VGPU": {"total": 1}}},
    }
    fleet.host("g", children=gpus)
    extra = {
        "resources1:VGPU": "1",
        "trait1:CUSTOM_A100": "required",
        "resources2:VGPU": "1",
        "trait2:CUSTOM_A100": "required",
        "group_policy": "isolate",
    }
    response = fleet.select(request_spec(flavor=flavor(extra_specs=extra)))
    explanation = response.json()["errors"][0]["explanation"]
    assert (
        "1 host(s) meet every constraint on its own but none meets them together"
        in (explanation["summary"])
    )
    steps = explanation["stages"][-1]["detail"]["constraints"]
    assert {s["group"] for s in steps if "group" in s} == {"1", "2"}
    assert all(s["after"] == 1 for s in steps)


def test_each_filter_stage_counts_its_rejections_per_reason(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(filter_scheduler={"enabled_filters": ["ComputeFilter", "IoOpsFilter"]})
    services = fleet.services  # type: ignore[attr-defined]
    real_clock = services.host_manager.clock
    # Two hosts last heard from ten minutes ago (service_down_time is 60 s).
    services.host_manager.clock = lambda: real_clock() - 600
    fleet.host("stale1")
    fleet.host("stale2")
    services.host_manager.clock = real_clock
    for name in ("off1", "off2", "off3"):
        fleet.host(name, report={"disabled": True, "disabled_reason": "maintenance"})
    fleet.host("busy", report={"io_ops": 50})
    for explanation in (
        fleet.select(request_spec()).json()["errors"][0]["explanation"],
        fleet.explain(request_spec())["explanation"],
    ):
        stages = {s["stage"]: s for s in explanation["stages"] if s["kind"] == "filter"}
        compute, io_ops = stages["ComputeFilter"], stages["IoOpsFilter"]
        assert (compute["before"], compute["after"]) == (6, 1)
        assert compute["reasons"] == {"disabled": 3, "down": 2}
        assert (io_ops["before"], io_ops["after"], io_ops["reasons"]) == (1, 0, {"io_ops": 1})
        assert explanation["emptied_by"] == {"stage": "IoOpsFilter", "kind": "filter"}


def test_the_one_line_tally_names_every_reason_and_the_real_blocker(fleet: Fleet) -> None:
    """kube-scheduler's line: every host counted once, by the stage and reason that left
    it out; the closest misses are the hosts that got furthest (anti-affinity here), not
    the five down hosts an earlier filter removed."""
    services = fleet.services  # type: ignore[attr-defined]
    real_clock = services.host_manager.clock
    services.host_manager.clock = lambda: real_clock() - 600
    for i in range(5):
        fleet.host(f"stale{i}")
    services.host_manager.clock = real_clock
    for name in ("a", "b", "c"):
        fleet.host(name)
    fleet.host("small1", vcpus=1)
    fleet.host("small2", vcpus=1)
    fleet.host("z2a")
    fleet.host("z2b")
    zone1 = ["a", "b", "c", "small1", "small2"] + [f"stale{i}" for i in range(5)]
    fleet.aggregate("zone1", zone1, availability_zone="az1")
    fleet.aggregate("zone2", ["z2a", "z2b"], availability_zone="az2")
    spec = request_spec(
        flavor=flavor(vcpus=2),
        availability_zone="az1",
        instance_group={"policy": "anti-affinity"},
    )
    response = fleet.select(spec, 4)
    assert response.status_code == 409
    explanation = response.json()["errors"][0]["explanation"]
    line = "0/12 hosts: 5 down, 3 anti-affinity, 2 VCPU short, 2 not in az1"
    assert explanation["tally"]["line"] == line
    assert explanation["summary"] == (
        "No valid host was found for instance 4: ServerGroupAntiAffinityFilter removed the "
        f"last 1 of 12 candidate hosts. {line}."
    )
    assert explanation["instance"] == 4
    assert explanation["tally"]["blocker"] == "anti_affinity"
    reasons = {(r["stage"], r["code"]): r["hosts"] for r in explanation["tally"]["reasons"]}
    assert reasons == {
        ("ComputeFilter", "down"): 5,
        ("ServerGroupAntiAffinityFilter", "anti_affinity"): 3,
        ("placement", "resources:VCPU"): 2,
        ("placement", "member_of"): 2,
    }
    # Placement's drop is counted per constraint although it offered hosts.
    placement = next(s for s in explanation["stages"] if s["stage"] == "placement")
    assert (placement["before"], placement["after"]) == (12, 8)
    misses = explanation["closest_misses"]
    assert {m["host"] for m in misses[:3]} == {"a", "b", "c"}
    assert all(m["stopped_by"] == "ServerGroupAntiAffinityFilter" for m in misses[:3])
    assert all(m["stopped_by"] == "ComputeFilter" for m in misses[3:])


def test_capacity_earlier_instances_took_is_named_by_resource_class(fleet: Fleet) -> None:
    fleet.host("a", vcpus=2, ram=65536)
    fleet.host("b", vcpus=8, ram=1024)
    response = fleet.select(request_spec(flavor=flavor(vcpus=1, memory_mb=1024)), 4)
    assert response.status_code == 409
    explanation = response.json()["errors"][0]["explanation"]
    assert explanation["instance"] == 4
    assert explanation["tally"]["line"] == (
        "0/2 hosts: 1 MEMORY_MB taken by earlier instances, 1 VCPU taken by earlier instances"
    )
    stage = explanation["stages"][-1]
    assert stage["stage"] == "placement_capacity"
    assert stage["reasons"] == {"VCPU": 1, "MEMORY_MB": 1}
    taken = [m["failed_filters"][-1] for m in explanation["closest_misses"]]
    assert {t["filter"] for t in taken} == {"placement_capacity"}
    assert {t["reason"].rpartition(": ")[2] for t in taken} == {"VCPU", "MEMORY_MB"}
