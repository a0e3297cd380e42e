"""Two processes, one database: what process A writes shows in process B's allocation
candidates within B's poll interval, and claims never leave an index counting usage twice.

Process A runs in the test (its writes go through the service API); process B is a real
``allotment serve`` answering HTTP, with ``index_poll_interval`` set through the environment.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from allotment.app import Services, build_services
from allotment.db.database import utcnow
from allotment.placement.model import CandidateRequest, ConsumerWrite, Inventory, RequestGroup
from allotment.placement.store import changes
from tests.conftest import LiveServer, make_settings

POLL = 0.2
# B's poll interval plus generous slack for a busy two-core machine.
DEADLINE = POLL + 3.0

pytestmark = pytest.mark.integration


@pytest.fixture
def a_and_b(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Services, LiveServer]]:
    a = build_services(make_settings(tmp_path / "a", database={"url": database_url}))
    monkeypatch.setenv("ALLOTMENT_PLACEMENT__INDEX_POLL_INTERVAL", str(POLL))
    b = LiveServer(database_url, tmp_path / "b")
    try:
        yield a, b
    finally:
        b.stop()
        a.db.dispose()


def _b_candidates(b: LiveServer, resources: str) -> dict[str, Any]:
    resp = httpx.get(
        b.url + "/allocation_candidates",
        params={"resources": resources},
        headers={"x-auth-token": "admin", "openstack-api-version": "placement latest"},
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _until(check: Callable[[], bool]) -> float:
    """Seconds until ``check()`` holds (fails the test after DEADLINE)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > DEADLINE:
            pytest.fail(f"process B did not catch up within {DEADLINE}s")
        time.sleep(0.02)
    return time.monotonic() - start


def _claim(a: Services, rp: str, vcpu: int) -> None:
    a.placement.set_allocations(
        {
            str(uuid.uuid4()): ConsumerWrite(
                allocations={rp: {"VCPU": vcpu}},
                project_id="p",
                user_id="u",
                generation=None,
                consumer_type="INSTANCE",
            )
        }
    )


def _used(body: dict[str, Any], rp: str) -> int | None:
    """Used VCPU of ``rp`` in a candidates answer (None while ``rp`` is not in it)."""
    summary = body["provider_summaries"].get(rp)
    return None if summary is None else int(summary["resources"]["VCPU"]["used"])


def test_writes_of_a_reach_b_within_the_poll_interval(
    a_and_b: tuple[Services, LiveServer],
) -> None:
    a, b = a_and_b
    assert _b_candidates(b, "VCPU:1")["allocation_requests"] == []
    rp = a.placement.create_provider(name="cn1").uuid
    a.placement.change_inventories(rp, generation=0, put={"VCPU": Inventory("VCPU", total=8)})
    # A sees its own write at once; B within its poll interval.
    request = CandidateRequest(groups=(RequestGroup(resources={"VCPU": 1}),))
    assert len(a.placement.allocation_candidates(request)) == 1
    _until(lambda: len(_b_candidates(b, "VCPU:1")["allocation_requests"]) == 1)

    _claim(a, rp, 5)
    _until(lambda: _used(_b_candidates(b, "VCPU:1"), rp) == 5)
    assert _b_candidates(b, "VCPU:4")["allocation_requests"] == []

    a.placement.set_provider_traits(rp, ["HW_CPU_X86_AVX2"], generation=None)
    _until(
        lambda: (
            _b_candidates(b, "VCPU:1")["provider_summaries"][rp]["traits"] == ["HW_CPU_X86_AVX2"]
        )
    )


def test_concurrent_claims_are_counted_once(a_and_b: tuple[Services, LiveServer]) -> None:
    """Claims in A race with B's polling and with each other; afterwards A's index (usage
    deltas), B's index (change log) and SQL agree."""
    a, b = a_and_b
    providers = []
    for i in range(3):
        rp = a.placement.create_provider(name=f"cn{i}").uuid
        a.placement.change_inventories(
            rp, generation=0, put={"VCPU": Inventory("VCPU", total=1000)}
        )
        providers.append(rp)

    def claims(worker: int) -> None:
        for k in range(15):
            _claim(a, providers[(worker + k) % 3], 1 + k % 3)

    threads = [threading.Thread(target=claims, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    truth = {rp: a.placement.get_provider_usages(rp)[1]["VCPU"] for rp in providers}
    request = CandidateRequest(groups=(RequestGroup(resources={"VCPU": 1}),))
    mine = {
        s.uuid: s.resources["VCPU"][1]
        for s in a.placement.allocation_candidates(request).summaries()
    }
    assert mine == truth
    _until(lambda: {rp: _used(_b_candidates(b, "VCPU:1"), rp) for rp in providers} == truth)


def test_a_process_behind_a_pruned_change_log_rebuilds(database_url: str, tmp_path: Path) -> None:
    a = build_services(make_settings(tmp_path / "a", database={"url": database_url}))
    b = build_services(make_settings(tmp_path / "b", database={"url": database_url}))
    try:
        b.placement.index.rebuild()
        for i in range(3):
            rp = a.placement.create_provider(name=f"cn{i}").uuid
            a.placement.change_inventories(
                rp, generation=0, put={"VCPU": Inventory("VCPU", total=4)}
            )
        with a.db.write() as conn:
            changes.prune(conn, utcnow() + timedelta(seconds=1))
        b.placement.index.catch_up()
        request = CandidateRequest(groups=(RequestGroup(resources={"VCPU": 1}),))
        assert len(b.placement.allocation_candidates(request)) == 3
    finally:
        a.db.dispose()
        b.db.dispose()
