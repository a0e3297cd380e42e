"""The change log: sequence numbers in commit order, reading since a point, pruning."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from allotment.db import migrate
from allotment.db.database import Database, utcnow
from allotment.periodic import PeriodicTask
from allotment.placement.store import changes


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    migrate.upgrade(database)
    return database


def test_sequence_grows_and_since_returns_later_changes(db: Database) -> None:
    with db.write() as conn:
        first = changes.record(conn, [3, 1, 3])
    with db.write() as conn:
        second = changes.record(conn, [], changes.SCOPE_CATALOG)
    assert second > first
    with db.read() as conn:
        assert changes.latest(conn) == second
        found = changes.since(conn, first - 1)
    assert [(c.seq, c.scope, c.provider_ids) for c in found] == [
        (first, "providers", (1, 3)),
        (second, "catalog", ()),
    ]
    db.dispose()


def test_prune_keeps_the_newest_row(db: Database) -> None:
    with db.write() as conn:
        changes.record(conn, [1])
        last = changes.record(conn, [2])
    with db.write() as conn:
        removed = changes.prune(conn, utcnow() + timedelta(days=1))
    assert removed == 1
    with db.read() as conn:
        assert changes.oldest(conn) == last == changes.latest(conn)
    db.dispose()


def test_periodic_task_runs_and_stops_promptly(tmp_path: Path) -> None:
    ran = threading.Event()
    task = PeriodicTask("probe", 0.01, ran.set)
    task.start()
    assert ran.wait(2.0)
    task.stop()
    ran.clear()
    assert not ran.wait(0.1)


def test_periodic_task_survives_a_failing_run() -> None:
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    task = PeriodicTask("flaky", 0.01, flaky)
    task.start()
    deadline = threading.Event()
    for _ in range(200):
        if len(calls) >= 2:
            break
        deadline.wait(0.01)
    task.stop()
    assert len(calls) >= 2
