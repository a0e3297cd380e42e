"""Two ``allotment serve`` processes on one database share one host cache: host reports,
aggregates and instance info sent to one are used by the other within
``[scheduler] host_state_sync_delay``, with no SIGHUP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.fleet import HEADERS, SCHEDULER, Fleet, request_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DELAY = 0.5
# The sync delay plus generous slack for a busy two-core machine.
DEADLINE = DELAY + 3.0


@pytest.fixture
def a_and_b(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    monkeypatch.setenv("ALLOTMENT_SCHEDULER__HOST_STATE_SYNC_DELAY", str(DELAY))
    monkeypatch.setenv("ALLOTMENT_PLACEMENT__INDEX_POLL_INTERVAL", str(DELAY))
    servers = [LiveServer(database_url, tmp_path / "a"), LiveServer(database_url, tmp_path / "b")]
    clients = [httpx.Client(base_url=s.url, timeout=60, trust_env=False) for s in servers]
    try:
        yield clients[0], clients[1]
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()


def _hosts(client: httpx.Client) -> list[dict[str, Any]]:
    resp = client.get(f"{SCHEDULER}/hosts", headers=HEADERS)
    assert resp.status_code == 200, resp.text
    return sorted(resp.json()["hosts"], key=lambda h: str(h["host"]))


def _candidates(client: httpx.Client, aggregate: str) -> int:
    params = {"resources": "VCPU:1", "member_of": aggregate}
    resp = client.get("/allocation_candidates", params=params, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    return len(resp.json()["allocation_requests"])


def _until(check: Callable[[], bool]) -> float:
    """Seconds until ``check()`` holds (fails the test after DEADLINE)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < DEADLINE, "not seen by the other process in time"
        time.sleep(0.02)
    return time.monotonic() - started


def test_state_sent_to_one_process_is_used_by_the_other(
    a_and_b: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = a_and_b
    fleet = Fleet(a)  # host reports and aggregates go to a alone
    for i in range(3):
        fleet.host(f"cn{i}", vcpus=4, ram=8192, disk=100)
    _until(lambda: [h["host"] for h in _hosts(b)] == ["cn0", "cn1", "cn2"])
    assert all(h["up"] for h in _hosts(b))
    agg = fleet.aggregate("az1", ["cn1"], availability_zone="az1")
    _until(lambda: [h["aggregates"] for h in _hosts(b)] == [[], [agg], []])
    # a mirrored the membership into placement; b's capacity index follows the ledger's log.
    _until(lambda: _candidates(b, agg) == 1)
    # b decides with a's state: the AZ of a's aggregate, no false NoValidHost.
    for _ in range(2):
        chosen = Fleet(b).place(request_spec(availability_zone="az1"))
        assert chosen == ["cn1"]
    # Instance info sent to b reaches a.
    infos = {"instances": [{"uuid": str(uuid.uuid4())} for _ in range(2)]}
    resp = b.put(f"{SCHEDULER}/hosts/cn0/instances", json=infos, headers=HEADERS)
    assert resp.status_code == 204, resp.text
    _until(lambda: [h["instances"] for h in _hosts(a)] == [2, 0, 0])
    # A disabled report sent to b stops a from choosing the host.
    node = _hosts(a)[1]["compute_node_uuid"]
    body = {"compute_node_uuid": node, "disabled": True, "disabled_reason": "maintenance"}
    resp = b.put(f"{SCHEDULER}/hosts/cn1", json=body, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    _until(lambda: _hosts(a)[1]["disabled"] is True)
    resp = Fleet(a).select(request_spec(availability_zone="az1"))
    assert resp.status_code == 409, resp.text
