"""The HostManager against a real database: persistence across restarts, heartbeats,
roles, aggregate mirroring, instance tracking, and atomic cache resets."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from allotment.app import HostCacheTasks
from allotment.config import Settings, load_settings
from allotment.context import RequestContext
from allotment.db import migrate
from allotment.db.database import Database
from allotment.errors import Forbidden, NotFound
from allotment.log import RequestIdFilter
from allotment.scheduler.host_manager import HostManager
from allotment.scheduler.records import AggregateBody, HostReport, InstanceInfo

ADMIN = RequestContext(user_id="ops", roles=frozenset({"admin"}), request_id="req-test-admin")
SERVICE = RequestContext(user_id="nova", roles=frozenset({"service"}))


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.prepare(database)
    yield database
    database.dispose()


def make(
    db: Database, clock: Clock | None = None, mirror: Any = None, **sections: Any
) -> HostManager:
    settings: Settings = load_settings(None, sections, environ={})
    manager = HostManager(db, settings, clock=clock or Clock(), mirror=mirror)
    manager.load()
    return manager


def report(node_uuid: str, **fields: Any) -> HostReport:
    return HostReport.model_validate({"compute_node_uuid": node_uuid, **fields})


def test_restart_loses_nothing(db: Database) -> None:
    clock = Clock()
    manager = make(db, clock)
    n1, n2 = str(uuid.uuid4()), str(uuid.uuid4())
    manager.report_host(
        SERVICE,
        "c1",
        report(
            n1,
            hypervisor_version=8000000,
            numa_topology={"cells": [{"id": 0, "cpus": [0, 1], "memory_mb": 1024}]},
            pci_pools=[{"vendor_id": "10de", "product_id": "1", "count": 2}],
        ),
    )
    manager.report_host(SERVICE, "c2", report(n2, disabled=True, disabled_reason="broken"))
    agg = str(uuid.uuid4())
    manager.update_aggregate(
        ADMIN,
        agg,
        AggregateBody(name="az1", hosts=["c1", "later"], metadata={"availability_zone": "az1"}),
    )
    inst = str(uuid.uuid4())
    manager.update_instance_info(
        SERVICE, "c1", [InstanceInfo(uuid=inst, project_id="p1", image_properties={"os": "linux"})]
    )
    clock.now += 30
    manager.report_host(
        SERVICE,
        "c1",
        report(
            n1,
            hypervisor_version=8000000,
            io_ops=4,
            numa_topology={"cells": [{"id": 0, "cpus": [0, 1], "memory_mb": 1024}]},
            pci_pools=[{"vendor_id": "10de", "product_id": "1", "count": 2}],
        ),
    )
    manager.close()

    restarted = make(db, clock).snapshot()
    assert restarted.hosts == ["c1", "c2"]
    row = restarted.row_of_uuid[n1]
    assert restarted.heartbeat[row] == clock.now
    assert restarted.io_ops[row] == 4
    assert restarted.numa[row] is not None
    assert restarted.pci_free[row] == 2
    assert restarted.disabled.tolist() == [False, True]
    assert [a.hosts for a in restarted.aggregates] == [frozenset({"c1", "later"})]
    assert restarted.num_instances.tolist() == [1, 0]
    assert restarted.instances_on("c1")[inst].image_properties == {"os": "linux"}
    assert restarted.host_of_instance(inst) == "c1"


def _stored_heartbeat(db: Database, node: str) -> float:
    with db.read() as conn:
        return float(
            conn.execute(
                sa.text(f"SELECT heartbeat FROM scheduler_hosts WHERE uuid = '{node}'")
            ).scalar_one()
        )


def test_heartbeats_are_written_behind(db: Database) -> None:
    clock = Clock()
    manager = make(db, clock)
    node = str(uuid.uuid4())
    manager.report_host(SERVICE, "c1", report(node))
    first = clock.now
    clock.now += 10
    manager.report_host(SERVICE, "c1", report(node))
    snap = manager.snapshot()
    assert snap.heartbeat.tolist() == [clock.now]
    assert _stored_heartbeat(db, node) == first
    assert manager.flush_heartbeats() == 1
    assert _stored_heartbeat(db, node) == clock.now
    assert manager.flush_heartbeats() == 0


def test_volatile_fields_reach_the_snapshot_at_once_and_sql_on_flush(db: Database) -> None:
    manager = make(db)
    node = str(uuid.uuid4())
    manager.report_host(SERVICE, "c1", report(node, io_ops=1))
    manager.report_host(
        SERVICE, "c1", report(node, io_ops=7, metrics=[{"name": "cpu", "value": 3}])
    )
    assert manager.snapshot().io_ops.tolist() == [7]
    assert make(db).snapshot().io_ops.tolist() == [1]
    manager.flush_heartbeats()
    reloaded = make(db).snapshot()
    assert reloaded.io_ops.tolist() == [7]
    assert reloaded.metric("cpu").tolist() == [3.0]


def test_snapshots_are_immutable_and_derived(db: Database) -> None:
    manager = make(db)
    node = str(uuid.uuid4())
    manager.report_host(SERVICE, "c1", report(node, io_ops=1))
    before = manager.snapshot()
    assert manager.snapshot() is before
    manager.report_host(SERVICE, "c1", report(node, io_ops=2))
    after = manager.snapshot()
    assert (before.io_ops.tolist(), after.io_ops.tolist()) == ([1], [2])
    assert after.generation > before.generation
    with pytest.raises(ValueError, match="read-only"):
        after.io_ops[0] = 5


def test_service_down_time(db: Database) -> None:
    clock = Clock()
    manager = make(db, clock, scheduler={"service_down_time": 30})
    manager.report_host(SERVICE, "c1", report(str(uuid.uuid4())))
    assert [h.up for h in manager.list_hosts(ADMIN)] == [True]
    clock.now += 31
    status = manager.list_hosts(ADMIN)[0]
    assert (status.up, round(status.seconds_since_heartbeat)) == (False, 31)


def test_only_service_and_admin_may_write() -> None:
    settings = load_settings(None, {}, environ={})
    manager = HostManager(Database("sqlite://"), settings)
    reader = RequestContext(roles=frozenset({"reader"}))
    with pytest.raises(Forbidden, match="admin or service role"):
        manager.report_host(reader, "c1", report(str(uuid.uuid4())))
    with pytest.raises(Forbidden):
        manager.update_aggregate(reader, str(uuid.uuid4()), AggregateBody(name="x"))
    with pytest.raises(Forbidden):
        manager.sync_instance_info(None, "c1", [])  # type: ignore[arg-type]
    with pytest.raises(Forbidden):
        manager.reset(reader)


class Mirror:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, list[str], list[str]]] = []
        self.fail = fail

    def update_members(
        self, ctx: RequestContext, aggregate_uuid: str, add: Any, remove: Any
    ) -> None:
        self.calls.append((ctx.request_id, aggregate_uuid, sorted(add), sorted(remove)))
        if self.fail:
            raise ConnectionError("placement is down")


def test_aggregate_membership_is_mirrored_into_placement(db: Database) -> None:
    mirror = Mirror()
    manager = make(db, mirror=mirror)
    n1, n2, n3 = (str(uuid.uuid4()) for _ in range(3))
    manager.report_host(SERVICE, "c1", report(n1))
    manager.report_host(SERVICE, "c2", report(n2))
    agg = str(uuid.uuid4())
    manager.update_aggregate(ADMIN, agg, AggregateBody(name="a", hosts=["c1", "c3"]))
    assert mirror.calls[-1] == ("req-test-admin", agg, [n1], [])
    manager.report_host(SERVICE, "c3", report(n3))
    assert mirror.calls[-1][1:] == (agg, [n3], [])
    manager.update_aggregate(ADMIN, agg, AggregateBody(name="a", hosts=["c2", "c3"]))
    assert mirror.calls[-1][1:] == (agg, [n2], [n1])
    manager.delete_aggregate(ADMIN, agg)
    assert mirror.calls[-1][1:] == (agg, [], sorted([n2, n3]))
    with pytest.raises(NotFound):
        manager.delete_aggregate(ADMIN, agg)


def test_mirror_failures_do_not_fail_the_update(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make(db, mirror=Mirror(fail=True))
    manager.report_host(SERVICE, "c1", report(str(uuid.uuid4())))
    agg = str(uuid.uuid4())
    manager.update_aggregate(ADMIN, agg, AggregateBody(name="a", hosts=["c1"]))
    assert [a.uuid for a in manager.snapshot().aggregates] == [agg]
    assert "could not mirror aggregate" in caplog.text
    manager.periodic()
    assert len(manager.mirror.calls) == 2  # type: ignore[union-attr]


def test_instance_tracking(db: Database) -> None:
    manager = make(db)
    for host in ("c1", "c2"):
        manager.report_host(SERVICE, host, report(str(uuid.uuid4())))
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    manager.update_instance_info(SERVICE, "c1", [InstanceInfo(uuid=a), InstanceInfo(uuid=b)])
    manager.update_instance_info(SERVICE, "c2", [InstanceInfo(uuid=b)])  # b moved
    snap = manager.snapshot()
    assert (snap.host_of_instance(a), snap.host_of_instance(b)) == ("c1", "c2")
    assert snap.num_instances.tolist() == [1, 1]
    manager.delete_instance_info(SERVICE, "c1", a)
    manager.delete_instance_info(SERVICE, "c1", a)  # unknown: ignored
    result = manager.sync_instance_info(SERVICE, "c2", [c])
    assert (result.in_sync, result.added, result.removed) == (False, [c], [b])
    assert manager.sync_instance_info(SERVICE, "c2", [c]).in_sync
    snap = manager.snapshot()
    assert snap.host_of_instance(a) is None and snap.host_of_instance(b) is None
    assert snap.num_instances.tolist() == [0, 1]
    assert make(db).snapshot().num_instances.tolist() == [0, 1]


def test_instances_of_many_hosts_are_deleted_at_once(db: Database) -> None:
    manager = make(db)
    manager.report_host(SERVICE, "c1", report(str(uuid.uuid4())))
    manager.report_host(SERVICE, "c2", report(str(uuid.uuid4())))
    a, b, c, d = (str(uuid.uuid4()) for _ in range(4))
    manager.update_instance_info(SERVICE, "c1", [InstanceInfo(uuid=a), InstanceInfo(uuid=b)])
    manager.update_instance_info(SERVICE, "c2", [InstanceInfo(uuid=c)])
    # d is unknown, and c is not on c1: both skipped.
    gone = manager.delete_instances_info(SERVICE, {"c1": [a, c, d], "c2": [c]})
    assert gone == 2
    snap = manager.snapshot()
    assert snap.host_of_instance(b) == "c1"
    assert [snap.host_of_instance(u) for u in (a, c, d)] == [None, None, None]
    assert snap.num_instances.tolist() == [1, 0]
    # In SQL too: another process sees the same.
    assert make(db).snapshot().num_instances.tolist() == [1, 0]
    with pytest.raises(Forbidden):
        manager.delete_instances_info(RequestContext(roles=frozenset({"reader"})), {"c1": [b]})


def test_instance_tracking_can_be_off(db: Database) -> None:
    manager = make(db, filter_scheduler={"track_instance_changes": False})
    manager.update_instance_info(SERVICE, "c1", [InstanceInfo(uuid=str(uuid.uuid4()))])
    assert manager.snapshot().instances_on("c1") == {}


def test_a_new_node_replaces_the_old_one_of_the_same_name(db: Database) -> None:
    manager = make(db)
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    manager.report_host(SERVICE, "c1", report(old))
    manager.report_host(SERVICE, "c1", report(new))
    assert manager.snapshot().uuids == [new]
    assert make(db).snapshot().uuids == [new]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RequestIdFilter())
        self.lines: list[tuple[int, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.request_id, record.getMessage()))  # type: ignore[attr-defined]


def test_logs_carry_the_request_id_and_hide_instance_ids(db: Database) -> None:
    manager = make(db)
    inst = str(uuid.uuid4())
    collect = _Collect()
    logger = logging.getLogger("allotment.scheduler")
    logger.addHandler(collect)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        manager.report_host(ADMIN, "c1", report(str(uuid.uuid4())))
        manager.update_instance_info(ADMIN, "c1", [InstanceInfo(uuid=inst)])
        manager.delete_instance_info(ADMIN, "c1", inst)
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    assert collect.lines
    assert {request_id for _, request_id, _ in collect.lines} == {"req-test-admin"}
    assert any(inst in line for level_, _, line in collect.lines if level_ == logging.DEBUG)
    assert not any(inst in line for level_, _, line in collect.lines if level_ > logging.DEBUG)


def test_reset_swaps_atomically(db: Database) -> None:
    """Requests running during resets only ever see whole snapshots."""
    manager = make(db)
    other = make(db)  # another process writing to the same database
    hosts = [f"c{i}" for i in range(50)]
    for host in hosts:
        manager.report_host(SERVICE, host, report(str(uuid.uuid4())))
    stop = threading.Event()
    problems: list[str] = []

    def request_loop() -> None:
        seen = 0
        while not stop.is_set():
            snap = manager.snapshot()
            counts = snap.num_instances.tolist()
            if len(set(counts)) > 1:
                problems.append(f"mixed instance counts {sorted(set(counts))}")
            if snap.generation < seen:
                problems.append("generation went back")
            seen = snap.generation

    reader = threading.Thread(target=request_loop)
    reader.start()
    for round_ in range(5):
        # Another process gives every host one more instance, in one transaction each.
        for host in hosts:
            other.update_instance_info(SERVICE, host, [InstanceInfo(uuid=str(uuid.uuid4()))])
        swapped = manager.reset(ADMIN)
        assert swapped.num_instances.tolist() == [round_ + 1] * len(hosts)
    stop.set()
    reader.join()
    assert problems == []


def test_sighup_resets(db: Database) -> None:
    manager = make(db, scheduler={"periodic_interval": 0.05})
    # No sync round: the other process's report must arrive by the reset alone.
    tasks = HostCacheTasks(manager, 0.05, sync_interval=3600)
    tasks.start()
    try:
        make(db).report_host(SERVICE, "late", report(str(uuid.uuid4())))
        assert manager.snapshot().hosts == []
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 10
        while manager.snapshot().hosts != ["late"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert manager.snapshot().hosts == ["late"]
    finally:
        tasks.stop()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


def test_discovery_finds_providers_without_host_reports(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    known = str(uuid.uuid4())
    stranger = (str(uuid.uuid4()), "c9")
    manager = make(db)
    manager.providers = lambda: [(known, "c1"), stranger]
    manager.report_host(SERVICE, "c1", report(known))
    caplog.set_level(logging.WARNING, logger="allotment.scheduler")
    manager.periodic()
    assert manager.unreported == [stranger]
    assert "1 resource provider(s) in placement have no host report" in caplog.text
    caplog.clear()
    manager.periodic()
    assert caplog.text == ""


def test_upgrade_from_the_first_schema(tmp_path: Any) -> None:
    database = Database(f"sqlite:///{tmp_path / 'old.sqlite'}")
    migrate.upgrade(database, "0001")
    assert not sa.inspect(database.engine).has_table("scheduler_hosts")
    migrate.upgrade(database)
    assert sa.inspect(database.engine).has_table("scheduler_hosts")
    database.dispose()
