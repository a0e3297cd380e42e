"""The columnar host snapshot: building, deriving from changed rows, lookups."""

from __future__ import annotations

import uuid
from dataclasses import replace

import numpy as np
import pytest

from allotment.scheduler.records import Aggregate, HostRecord, HostReport, InstanceInfo
from allotment.scheduler.snapshot import HostSnapshot, InstanceIndex


def record(
    host: str, node: str | None = None, heartbeat: float = 100.0, **fields: object
) -> HostRecord:
    report = HostReport.model_validate({"compute_node_uuid": str(uuid.uuid4()), **fields})
    return HostRecord(host, node or host, report, heartbeat, heartbeat)


def build() -> HostSnapshot:
    records = [
        record("b", io_ops=2, host_ip="10.0.0.2", metrics=[{"name": "cpu", "value": 0.5}]),
        record(
            "a",
            "a2",
            hypervisor_version=7002000,
            pci_pools=[{"vendor_id": "1", "product_id": "2", "count": 3}],
        ),
        record("a", "a1", disabled=True, host_ip="fd00::1"),
    ]
    aggregates = [
        Aggregate("agg-1", "one", {"availability_zone": "az1", "k": "x,y"}, frozenset({"a"})),
        Aggregate("agg-2", "two", {"k": "z"}, frozenset({"a", "b"})),
    ]
    one = str(uuid.UUID(int=1))
    instances = {"a": {one: InstanceInfo(uuid=one)}}
    return HostSnapshot.build(records, aggregates, instances, metric_names=["cpu"])


def test_rows_are_sorted_and_columns_aligned() -> None:
    snap = build()
    assert (snap.hosts, snap.nodenames) == (["a", "a", "b"], ["a1", "a2", "b"])
    assert snap.disabled.tolist() == [True, False, False]
    assert snap.io_ops.tolist() == [0, 0, 2]
    assert snap.hypervisor_version.tolist() == [0, 7002000, 0]
    assert snap.pci_free.tolist() == [0, 3, 0]
    assert snap.num_instances.tolist() == [1, 1, 0]
    assert snap.ipv4.tolist() == [-1, -1, (10 << 24) + 2]
    assert np.isnan(snap.metrics["cpu"][:2]).all() and snap.metrics["cpu"][2] == 0.5
    assert snap.rows_for([snap.uuids[2], "nope", snap.uuids[0]]).tolist() == [2, -1, 0]
    assert snap.node_rows("a", None) == [0, 1]
    assert snap.node_rows(None, "a2") == [1]


def test_aggregate_sets_are_shared_by_hosts_in_the_same_aggregates() -> None:
    snap = build()
    assert snap.aggregate_set[0] == snap.aggregate_set[1] != snap.aggregate_set[2]
    code = int(snap.aggregate_set[0])
    assert snap.aggregate_metadata(code) == {"availability_zone": {"az1"}, "k": {"x", "y", "z"}}
    assert snap.aggregate_values(code, "k") == {"x,y", "z"}
    assert [a.uuid for a in snap.aggregates_with("availability_zone", "az1")] == ["agg-1"]


def test_up_uses_service_down_time() -> None:
    snap = build()
    assert snap.up(160.0, 60).all()
    assert not snap.up(161.0, 60).any()


def test_columns_are_read_only() -> None:
    with pytest.raises(ValueError, match="read-only"):
        build().io_ops[0] = 1


def test_derive_heartbeat_only_shares_everything_else() -> None:
    snap = build()
    snap.cached("key", lambda: "static answer")
    beat = replace(snap.records[2], heartbeat=500.0)
    new = snap.derive({2: beat}, generation=7)
    assert new.heartbeat.tolist() == [100.0, 100.0, 500.0]
    assert snap.heartbeat.tolist() == [100.0, 100.0, 100.0]
    assert new.io_ops is snap.io_ops
    assert new.cached("key", lambda: "recomputed") == "static answer"
    assert new.generation == 7


def test_derive_report_changes() -> None:
    snap = build()
    snap.cached("key", lambda: "static answer")
    changed = record("b", io_ops=9, metrics=[{"name": "cpu", "value": 0.9}])
    changed = replace(
        changed, report=changed.report.model_copy(update={"compute_node_uuid": snap.uuids[2]})
    )
    new = snap.derive({2: changed}, generation=1)
    assert (new.io_ops.tolist(), snap.io_ops.tolist()) == ([0, 0, 9], [0, 0, 2])
    assert new.metrics["cpu"][2] == 0.9
    # io_ops and metrics are dynamic: static answers survive. host_ip changed: they do not.
    assert new.cached("key", lambda: "recomputed") == "recomputed"


def test_derive_instances() -> None:
    snap = build()
    one = str(uuid.UUID(int=1))
    moved = {"b": {one: InstanceInfo(uuid=one)}, "a": {}}
    new = snap.derive(None, moved, generation=1)
    assert new.num_instances.tolist() == [0, 0, 1]
    assert new.host_of_instance(str(uuid.UUID(int=1))) == "b"
    assert snap.host_of_instance(str(uuid.UUID(int=1))) == "a"


def test_instance_index_layers_and_compacts() -> None:
    base = InstanceIndex({f"i{n}": "h" for n in range(10)})
    layered = base.derive({"i1": None, "new": "h2"})
    assert (layered.get("i1"), layered.get("new"), layered.get("i2")) == (None, "h2", "h")
    assert base.get("i1") == "h"
    big = layered.derive({f"x{n}": "h3" for n in range(2000)})
    assert big.get("x5") == "h3" and big.get("i1") is None and big.get("new") == "h2"


def test_the_minimum_compute_version_follows_derived_reports() -> None:
    cell = str(uuid.UUID(int=7))
    records = [
        record("a", cell_uuid=cell, service_version=74),
        record("b", cell_uuid=cell, service_version=72),
        record("c"),  # reported over HTTP: not a nova-compute
    ]
    snap = HostSnapshot.build(records, [], {})
    assert snap.min_compute_version() == 72
    (row,) = snap.rows_of_host["b"]
    upgraded = replace(
        snap.records[row],
        report=snap.records[row].report.model_copy(update={"service_version": 74}),
    )
    assert snap.derive({row: upgraded}, generation=1).min_compute_version() == 74
    fenced = replace(
        snap.records[row], report=snap.records[row].report.model_copy(update={"forced_down": True})
    )
    assert snap.derive({row: fenced}, generation=2).min_compute_version() == 74
    assert snap.min_compute_version() == 72  # snapshots stay as they were
