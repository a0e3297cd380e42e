"""The scheduling cycle: host pre-selection, the funnel and NoValidHost explanations,
consumption across a multi-instance request, rankings and alternates."""

from __future__ import annotations

import uuid

import pytest

from allotment.context import RequestContext
from allotment.errors import NoValidHost
from allotment.scheduler.request import parse_request_spec
from tests.unit.scheduler.helpers import Cloud, spec

CELL_A = "8a2c3f51-3b7e-4d1a-9c4e-2f6b8d0e1a11"
CELL_B = "8a2c3f51-3b7e-4d1a-9c4e-2f6b8d0e1a22"


def three_hosts() -> Cloud:
    cloud = Cloud()
    cloud.host("a", ram=1000)
    cloud.host("b", ram=3000)
    cloud.host("c", ram=2000)
    return cloud


def test_candidates_without_host_records_are_counted() -> None:
    cloud = three_hosts()
    stranger = str(uuid.uuid4())
    pipeline = cloud.pipeline([], [])
    snapshot = cloud.snapshot()
    prepared = pipeline.prepare(RequestContext.internal(), parse_request_spec(spec()), snapshot)
    candidates = cloud.candidates([stranger, *(r.uuid for r in cloud.records)])
    cycle = pipeline.start(prepared, snapshot, candidates)
    stage = cycle.funnel.stages[0]
    assert (stage.name, stage.before, stage.after) == ("host_records", 4, 3)
    assert stage.detail == {"unknown": [stranger]}
    assert len(cycle.next_hosts()) == 3


def test_requested_destination_host_and_node() -> None:
    cloud = Cloud()
    cloud.host("ironic", node="n1")
    cloud.host("ironic", node="n2")
    cloud.host("kvm")
    body = spec(requested_destination={"host": "ironic"})
    assert cloud.passing(body) == {"ironic"}
    cycle = cloud.cycle(spec(requested_destination={"host": "ironic", "node": "n2"}), weighers=[])
    assert [c.nodename for c in cycle.next_hosts()] == ["n2"]


def test_unknown_requested_host_is_explained() -> None:
    cloud = three_hosts()
    with pytest.raises(NoValidHost, match="No such host - host: nowhere") as caught:
        cloud.cycle(spec(requested_destination={"host": "nowhere"}))
    assert caught.value.extra["explanation"]["emptied_by"]["stage"] == "requested_destination"


def test_ignore_hosts_is_case_insensitive() -> None:
    cloud = three_hosts()
    assert cloud.passing(spec(ignore_hosts=["A", "c"])) == {"b"}


def test_forced_hosts_skip_the_filters() -> None:
    cloud = three_hosts()
    cloud.records[0] = cloud.records[0].__class__(
        "a", "a", cloud.records[0].report.model_copy(update={"disabled": True}), 0, 0
    )
    body = spec(force_hosts=["a"])
    assert cloud.passing(body, "ComputeFilter") == {"a"}
    # A rebuild check runs the filters on the forced host, but (Nova's RUN_ON_REBUILD) only
    # those about the image: not the host's usage or service state.
    body = spec(force_hosts=["a"], scheduler_hints={"_nova_check_type": ["rebuild"]})
    assert cloud.passing(body, "ComputeFilter") == {"a"}
    xen = {**body, "image": {"properties": {"img_hv_type": "xen"}}}
    assert cloud.passing(xen, "ComputeFilter", "ImagePropertiesFilter") == set()
    assert cloud.passing({**xen, "scheduler_hints": {}}, "ImagePropertiesFilter") == {"a"}


def test_force_nodes() -> None:
    cloud = Cloud()
    cloud.host("ironic", node="n1")
    cloud.host("ironic", node="n2")
    cycle = cloud.cycle(spec(force_nodes=["n1"]), weighers=[])
    assert [c.nodename for c in cycle.next_hosts()] == ["n1"]


def test_availability_zone_checked_on_hosts_when_not_sent_to_placement() -> None:
    cloud = Cloud(scheduler={"query_placement_for_availability_zone": False})
    cloud.host("in-az1")
    cloud.host("in-az2")
    cloud.host("unzoned")
    cloud.aggregate("z1", ["in-az1"], availability_zone="az1")
    cloud.aggregate("z2", ["in-az2"], availability_zone="az2")
    assert cloud.passing(spec(availability_zone="az1")) == {"in-az1"}
    assert cloud.passing(spec(availability_zone="nova")) == {"unzoned"}
    assert cloud.passing(spec(availability_zone="elsewhere")) == set()


def test_no_valid_host_explanation_names_the_stage_and_closest_misses() -> None:
    cloud = Cloud(filter_scheduler={"max_io_ops_per_host": 2})
    cloud.host("disabled-and-busy", disabled=True, io_ops=5)
    cloud.host("busy", io_ops=3)
    cloud.host("down", age=1000)
    cycle = cloud.cycle(spec(), filters=["ComputeFilter", "IoOpsFilter"], weighers=[])
    with pytest.raises(NoValidHost) as caught:
        cycle.next_hosts()
    explanation = caught.value.extra["explanation"]
    assert caught.value.message == explanation["summary"]
    assert "IoOpsFilter removed the last 1 of 3 candidate hosts" in explanation["summary"]
    assert explanation["emptied_by"] == {"stage": "IoOpsFilter", "kind": "filter"}
    counts = [(s["stage"], s.get("before"), s.get("after")) for s in explanation["stages"]]
    assert counts == [("host_records", 3, 3), ("ComputeFilter", 3, 1), ("IoOpsFilter", 1, 0)]
    misses = explanation["closest_misses"]
    assert [m["host"] for m in misses][:2] == ["busy", "down"]
    assert misses[0]["failed_filters"] == [
        {"filter": "IoOpsFilter", "reason": "3 I/O operations in progress (limit 2)"}
    ]
    assert [f["filter"] for f in misses[2]["failed_filters"]] == ["ComputeFilter", "IoOpsFilter"]


def test_later_instances_only_record_stages_that_removed_hosts() -> None:
    cloud = Cloud(filter_scheduler={"max_io_ops_per_host": 1})
    cloud.host("a")
    cloud.host("b")
    cloud.place(spec(), 2, filters=["ComputeFilter", "IoOpsFilter"])
    cycle = cloud.cycle(spec(), filters=["ComputeFilter", "IoOpsFilter"], weighers=[])
    for _ in range(2):
        cycle.consume(cycle.next_hosts().first.position)
    with pytest.raises(NoValidHost, match="for instance 3") as caught:
        cycle.next_hosts()
    stages = caught.value.extra["explanation"]["stages"]
    # Instances are numbered from 1 (the first's stages leave the number out), as in the
    # summary.
    assert [(s["stage"], s.get("instance", 1), s["after"]) for s in stages[1:]] == [
        ("ComputeFilter", 1, 2),
        ("IoOpsFilter", 1, 2),
        ("IoOpsFilter", 2, 1),
        ("IoOpsFilter", 3, 0),
    ]
    assert caught.value.extra["explanation"]["instance"] == 3


def test_consumption_moves_the_next_instance_elsewhere() -> None:
    cloud = three_hosts()
    body = spec(flavor={"memory_mb": 1500})
    assert cloud.place(body, 3, filters=[], weighers=["RAMWeigher"]) == ["b", "c", "b"]


def test_ranking_iterates_every_host_best_first() -> None:
    cloud = Cloud()
    for i in range(40):
        cloud.host(f"h{i:02}", ram=100 + i)
    ranking = cloud.cycle(spec(), weighers=["RAMWeigher"]).next_hosts()
    hosts = [c.host for c in ranking]
    assert hosts == [f"h{i:02}" for i in reversed(range(40))]
    assert len(ranking) == 40


def test_alternates_exclude_selected_hosts_and_follow_weights() -> None:
    cloud = Cloud()
    for i, ram in enumerate([5000, 4000, 3000, 2000, 1000]):
        cloud.host(f"h{i}", ram=ram)
    cycle = cloud.cycle(spec(flavor={"memory_mb": 1500}), weighers=["RAMWeigher"])
    chosen = []
    for _ in range(2):
        first = cycle.next_hosts().first
        cycle.consume(first.position)
        chosen.append(first.position)
    alternates = cycle.alternates(chosen, 2)
    assert [a.host for a in alternates] == ["h2", "h3"]
    assert cycle.alternates(chosen, 0) == []


def test_alternates_beside_a_host_stay_in_its_cell() -> None:
    """Nova's ``_get_alternate_hosts``: a build is retried in the cell it went to."""
    cloud = Cloud()
    cells = {"h0": CELL_A, "h1": CELL_B, "h2": CELL_A, "h3": CELL_B, "h4": CELL_A}
    for i, ram in enumerate([5000, 4000, 3000, 2000, 1000]):
        cloud.host(f"h{i}", ram=ram, cell_uuid=cells[f"h{i}"])
    cycle = cloud.cycle(spec(), weighers=["RAMWeigher"])
    first = cycle.next_hosts().first
    assert first.host == "h0"
    assert [a.host for a in cycle.alternates([first.position], 2)] == ["h1", "h2"]
    beside = cycle.alternates([first.position], 2, beside=first.position)
    assert [a.host for a in beside] == ["h2", "h4"]
    second = next(c for c in cycle.next_hosts() if c.host == "h1")
    picked = [first.position, second.position]
    assert [a.host for a in cycle.alternates(picked, 2, beside=second.position)] == ["h3"]


def test_choice_maps_back_to_the_candidates() -> None:
    cloud = three_hosts()
    cycle = cloud.cycle(spec(), weighers=["RAMWeigher"])
    first = cycle.next_hosts().first
    assert first.host == "b"
    assert cloud.candidates().uuids[first.candidate] == first.compute_node_uuid


def test_dropped_hosts_leave_the_rest_of_the_request() -> None:
    cloud = Cloud()
    for i, ram in enumerate([5000, 4000, 3000]):
        cloud.host(f"h{i}", ram=ram)
    cycle = cloud.cycle(spec(), weighers=["RAMWeigher"], instances=["i1", "i2"])
    best = cycle.next_hosts("i1").first
    assert best.host == "h0"
    cycle.drop([best.position], "placement_capacity", reason="full")
    assert [c.host for c in cycle.next_hosts("i2")] == ["h1", "h2"]
    stage = next(s for s in cycle.funnel.stages if s.name == "placement_capacity")
    assert (stage.before, stage.after, stage.detail) == (3, 2, {"reason": "full"})
    assert [a.host for a in cycle.alternates([], 5)] == ["h1", "h2"]


def test_dropping_every_host_is_explained_by_the_drop() -> None:
    cloud = three_hosts()
    cycle = cloud.cycle(spec(), weighers=["RAMWeigher"], instances=["i1", "i2"])
    cycle.drop([c.position for c in cycle.next_hosts("i1")], "claim_conflict")
    cycle.drop([0], "claim_conflict")  # already gone: nothing recorded
    with pytest.raises(NoValidHost) as caught:
        cycle.next_hosts("i2")
    explanation = caught.value.extra["explanation"]
    assert explanation["emptied_by"] == {"stage": "claim_conflict", "kind": "hosts"}
    assert sum(s["stage"] == "claim_conflict" for s in explanation["stages"]) == 1


def test_weight_breakdown_adds_up_to_the_weights() -> None:
    cloud = Cloud()
    cloud.host("a", ram=1000, vcpus=30)
    cloud.host("b", ram=3000, vcpus=10)
    cloud.host("c", ram=2000, vcpus=20)
    cycle = cloud.cycle(spec(), weighers=["RAMWeigher", "CPUWeigher"])
    ranking = list(cycle.next_hosts())
    shares = cycle.weight_breakdown([c.position for c in ranking])
    assert set(shares) == {"RAMWeigher", "CPUWeigher"}
    for i, choice in enumerate(ranking):
        assert sum(float(v[i]) for v in shares.values()) == pytest.approx(choice.weight)
    # RAMWeigher's minval is 0: free RAM over the most free RAM.
    assert [float(v) for v in shares["RAMWeigher"]] == pytest.approx(
        [{"a": 1 / 3, "b": 1.0, "c": 2 / 3}[c.host] for c in ranking]
    )


def test_summary_counts_hosts_from_the_first_stage_that_counted_them() -> None:
    cloud = Cloud()
    cloud.host("zoned", io_ops=9)
    cloud.host("also-zoned", io_ops=9)
    cloud.aggregate("z1", ["zoned", "also-zoned"], availability_zone="az1")
    cycle = cloud.cycle(spec(availability_zone="az1"), filters=["IoOpsFilter"], weighers=[])
    assert cycle.funnel.stages[0].before is None  # the AZ request filter counts no hosts
    with pytest.raises(NoValidHost, match="removed the last 2 of 2 candidate hosts"):
        cycle.next_hosts()
