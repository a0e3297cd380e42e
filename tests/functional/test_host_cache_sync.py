"""Two HostManagers on one database, as two processes run them: each one's writes reach
the other's cache through the scheduler change log (``catch_up``), heartbeats included,
and a host is up if either recorded a fresh heartbeat."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from allotment.app import HostCacheTasks
from allotment.config import Settings, load_settings
from allotment.context import RequestContext
from allotment.db import migrate
from allotment.db.database import Database, utcnow
from allotment.scheduler import store
from allotment.scheduler.host_manager import HostManager
from allotment.scheduler.records import AggregateBody, HostReport, InstanceInfo

ADMIN = RequestContext(user_id="ops", roles=frozenset({"admin"}))
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


def make(db: Database, clock: Clock, **sections: Any) -> HostManager:
    settings: Settings = load_settings(None, sections, environ={})
    manager = HostManager(db, settings, clock=clock)
    manager.load()
    return manager


def report(node_uuid: str, **fields: Any) -> HostReport:
    return HostReport.model_validate({"compute_node_uuid": node_uuid, **fields})


def hosts_of(manager: HostManager) -> list[tuple[str, str, bool, bool, int]]:
    return sorted(
        (s.host, s.compute_node_uuid, s.up, s.disabled, s.instances)
        for s in manager.list_hosts(ADMIN)
    )


def test_host_reports_reach_the_other_process(db: Database) -> None:
    clock = Clock()
    a, b = make(db, clock), make(db, clock)
    n1, n2 = str(uuid.uuid4()), str(uuid.uuid4())
    a.report_host(SERVICE, "c1", report(n1))
    b.report_host(SERVICE, "c2", report(n2))
    assert a.catch_up() == 1
    assert b.catch_up() == 1
    expected = [("c1", n1, True, False, 0), ("c2", n2, True, False, 0)]
    assert hosts_of(a) == hosts_of(b) == expected
    # Nothing new: a process's own writes are not read back.
    assert a.catch_up() == 0
    a.report_host(SERVICE, "c2", report(n2, disabled=True, disabled_reason="broken"))
    b.catch_up()
    assert hosts_of(b)[1] == ("c2", n2, True, True, 0)
    # A new node takes over c1's name: the old node disappears everywhere.
    n3 = str(uuid.uuid4())
    b.report_host(SERVICE, "c1", report(n3))
    a.catch_up()
    assert [h[1] for h in hosts_of(a)] == [n3, n2]
    assert [h[1] for h in hosts_of(b)] == [n3, n2]


def test_heartbeats_are_shared_and_the_freshest_wins(db: Database) -> None:
    clock = Clock()
    down = 60.0
    a = make(db, clock, scheduler={"service_down_time": down})
    b = make(db, clock, scheduler={"service_down_time": down})
    node = str(uuid.uuid4())
    b.report_host(SERVICE, "c1", report(node))
    a.catch_up()
    # Later the host reports (heartbeat only) to a alone; b would call it down.
    clock.now += down + 10
    a.report_host(SERVICE, "c1", report(node))
    assert b.catch_up() == 0  # not flushed yet
    assert hosts_of(b)[0][2] is False
    assert a.flush_heartbeats() == 1
    assert b.catch_up() == 1
    assert hosts_of(b)[0][2] is True
    # An older heartbeat flushed by b never lowers the one stored.
    beat = clock.now
    clock.now -= 30
    b.report_host(SERVICE, "c1", report(node, io_ops=3))  # volatile: written with the flush
    b.flush_heartbeats()
    with db.read() as conn:
        assert store.load_hosts(conn)[0].heartbeat == beat
    a.catch_up()
    (record,) = a.snapshot().records
    assert record.heartbeat == beat
    assert record.report.io_ops == 3


def test_aggregates_and_instances_reach_the_other_process(db: Database) -> None:
    clock = Clock()
    a, b = make(db, clock), make(db, clock)
    n1, n2 = str(uuid.uuid4()), str(uuid.uuid4())
    a.report_host(SERVICE, "c1", report(n1))
    a.report_host(SERVICE, "c2", report(n2))
    agg = str(uuid.uuid4())
    a.update_aggregate(ADMIN, agg, AggregateBody(name="az1", hosts=["c1"], metadata={}))
    i1, i2 = str(uuid.uuid4()), str(uuid.uuid4())
    a.update_instance_info(SERVICE, "c1", [InstanceInfo(uuid=i1), InstanceInfo(uuid=i2)])
    b.catch_up()
    assert [h[4] for h in hosts_of(b)] == [2, 0]
    snap = b.snapshot()
    assert [a_.uuid for a_ in snap.aggregates_of(int(snap.aggregate_set[0]))] == [agg]
    # b moves an instance, a learns where it went (and that it left c1).
    b.update_instance_info(SERVICE, "c2", [InstanceInfo(uuid=i2)])
    a.catch_up()
    assert [h[4] for h in hosts_of(a)] == [1, 1]
    a.delete_instance_info(SERVICE, "c1", i1)
    b.sync_instance_info(SERVICE, "c2", [])
    a.delete_aggregate(ADMIN, agg)
    a.catch_up()
    b.catch_up()
    assert [h[4] for h in hosts_of(a)] == [h[4] for h in hosts_of(b)] == [0, 0]
    assert b.snapshot().aggregates_of(int(b.snapshot().aggregate_set[0])) == []


def test_a_pruned_change_log_rebuilds(db: Database) -> None:
    clock = Clock()
    a, b = make(db, clock), make(db, clock)
    for i in range(3):
        a.report_host(SERVICE, f"c{i}", report(str(uuid.uuid4())))
    with db.write() as conn:
        assert store.prune_changes(conn, utcnow() + timedelta(days=1)) == 2
    b.catch_up()
    assert [h[0] for h in hosts_of(b)] == ["c0", "c1", "c2"]


def test_the_sync_round_shows_a_report_elsewhere_within_the_delay(db: Database) -> None:
    delay = 0.4
    a = make(db, Clock())
    b = make(db, Clock())
    tasks = [
        HostCacheTasks(m, 3600, sync_interval=delay / 2, change_log_retention_s=3600)
        for m in (a, b)
    ]
    for task in tasks:
        task.start()
    try:
        node = str(uuid.uuid4())
        sent = time.monotonic()
        a.report_host(SERVICE, "c1", report(node))
        while not b.snapshot().hosts and time.monotonic() - sent < 10:
            time.sleep(0.01)
        seen = time.monotonic() - sent
        assert b.snapshot().hosts == ["c1"]
        # Generous slack for a shared two-core machine; the design bound is ``delay``.
        assert seen < delay + 2.0
    finally:
        # Last started, first stopped: each put back the SIGHUP handler it found.
        for task in reversed(tasks):
            task.stop()


def test_a_deleted_host_is_gone_in_the_other_process(db: Database) -> None:
    clock = Clock()
    one, two = make(db, clock), make(db, clock)
    node = str(uuid.uuid4())
    one.report_host(SERVICE, "c1", report(node))
    one.update_instance_info(SERVICE, "c1", [InstanceInfo(uuid=str(uuid.uuid4()))])
    two.catch_up()
    assert [h[0] for h in hosts_of(two)] == ["c1"]
    assert two.delete_host(ADMIN, "c1") == [node]
    one.catch_up()
    assert hosts_of(one) == []
    assert len(one.snapshot()) == 0 and not one.snapshot().instances_on("c1")
    assert not make(db, clock).list_hosts(ADMIN)
