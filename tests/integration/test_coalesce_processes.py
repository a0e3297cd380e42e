"""Two ``allotment serve`` processes on one PostgreSQL / MariaDB database, each coalescing
the 1-instance ``select_destinations`` calls of several client threads, race for the
same few hosts until they are full: no host is over-committed, every 200 holds its
allocation where it was told, and the cloud ends exactly full (no call was refused while
room was left that a later call then used up to the end).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, drop_server_database, fresh_server_database
from tests.fleet import HEADERS, SCHEDULER, Fleet, request_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = 6
ROOM = 4  # 1-vCPU instances per host
THREADS_PER_PROCESS = 6
DELAY = 0.5


@pytest.fixture(params=["postgresql", "mysql"])
def two_processes(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    url = fresh_server_database(request.param)
    monkeypatch.setenv("ALLOTMENT_SCHEDULER__HOST_STATE_SYNC_DELAY", str(DELAY))
    monkeypatch.setenv("ALLOTMENT_PLACEMENT__INDEX_POLL_INTERVAL", str(DELAY))
    servers: list[LiveServer] = []
    clients: list[httpx.Client] = []
    try:
        # One after the other: the first one migrates and seeds the empty database.
        for name in ("a", "b"):
            servers.append(LiveServer(url, tmp_path / name, wait=False))
            servers[-1].wait_ready(timeout=120)  # a busy machine starts them slowly
        clients = [httpx.Client(base_url=s.url, timeout=60, trust_env=False) for s in servers]
        yield clients[0], clients[1]
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()
        drop_server_database(url)


def _candidates(client: httpx.Client) -> int:
    resp = client.get("/allocation_candidates", params={"resources": "VCPU:1"}, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    return len(resp.json()["allocation_requests"])


def test_two_coalescing_processes_fill_the_cloud_without_over_commit(
    two_processes: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = two_processes
    fleet = Fleet(a, also=(b,))
    for i in range(HOSTS):
        fleet.host(f"cn{i}", vcpus=ROOM, ram=65536, disk=1000)
    deadline = time.monotonic() + 10
    while _candidates(b) < HOSTS:  # b's capacity index follows the ledger's change log
        assert time.monotonic() < deadline, "b never saw a's providers"
        time.sleep(0.05)
    placed: list[tuple[str, str]] = []  # (instance, compute node uuid)
    refused: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(via: httpx.Client) -> None:
        while True:
            instance = str(uuid.uuid4())
            body = {"instance_uuids": [instance], "request_spec": request_spec()}
            resp = via.post(f"{SCHEDULER}/select_destinations", json=body, headers=HEADERS)
            with lock:
                if resp.status_code == 200:
                    node = resp.json()["selections"][0][0]["compute_node_uuid"]
                    placed.append((instance, node))
                    continue
                if resp.status_code == 409 and "no_valid_host" in resp.text:
                    refused.append(resp.text)
                else:
                    failures.append(f"{resp.status_code}: {resp.text[:500]}")
                return

    threads = [
        threading.Thread(target=client, args=(via,))
        for via in (a, b)
        for _ in range(THREADS_PER_PROCESS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert len(refused) == 2 * THREADS_PER_PROCESS
    assert len(placed) == HOSTS * ROOM  # exactly full: no over-commit, no room left unused
    per_node = Counter(node for _, node in placed)
    for name, host in fleet.hosts.items():
        assert fleet.usages(name)["VCPU"] == per_node[host.uuid] == ROOM, name
    for instance, node in placed:
        assert list(fleet.allocations(instance)) == [node]
