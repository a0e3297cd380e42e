"""select_destinations end to end over HTTP against real ``allotment serve`` processes:
schedulers racing for the last slots, SIGHUP under load, placement going away and coming
back. Run on SQLite; the race also on PostgreSQL and MariaDB (skipped when unreachable,
except in CI).
"""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, drop_server_database, fresh_server_database
from tests.fleet import SCHEDULER, Fleet, flavor, request_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def http(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, trust_env=False)


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.sqlite'}"
        return
    url = fresh_server_database(request.param)
    try:
        yield url
    finally:
        drop_server_database(url)


@dataclass
class Outcome:
    lock: threading.Lock = field(default_factory=threading.Lock)
    placed: dict[str, str] = field(default_factory=dict)  # instance -> compute node uuid
    refused: list[str] = field(default_factory=list)  # instances of refused requests
    statuses: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    def record(self, uuids: list[str], response: httpx.Response) -> None:
        with self.lock:
            if response.status_code == 200:
                self.statuses["200"] += 1
                for instance, chosen in zip(uuids, response.json()["selections"], strict=True):
                    self.placed[instance] = chosen[0]["compute_node_uuid"]
                return
            code = response.json()["errors"][0]["code"]
            self.statuses[f"{response.status_code} {code}"] += 1
            if response.status_code == 409 and code == "allotment.no_valid_host":
                self.refused += uuids
            else:
                self.unexpected.append(response.text)


@pytest.mark.parametrize("database", ["sqlite", "postgresql", "mysql"], indirect=True)
def test_racing_schedulers_fill_the_last_slots_without_overcommit(
    database: str, tmp_path: Path
) -> None:
    """Two scheduler processes on one database, eight clients asking for 1-3 instances at
    a time until nothing fits: every slot is used once, none twice."""
    first = LiveServer(database, tmp_path / "a")
    second = LiveServer(database, tmp_path / "b")
    servers = [first, second]
    clients = [http(s) for s in servers]
    try:
        fleet = Fleet(clients[0], also=(clients[1],))
        hosts = [fleet.host(f"cn{i}", vcpus=4, ram=65536, disk=1000) for i in range(6)]
        slots = 4 * len(hosts)
        outcome = Outcome()
        spec = request_spec(flavor=flavor(vcpus=1, memory_mb=512, root_gb=1))

        def client(index: int) -> None:
            rng = random.Random(index)
            scheduler = Fleet(clients[index % 2])
            for _ in range(40):
                uuids = [str(uuid.uuid4()) for _ in range(rng.choice((1, 1, 2, 3)))]
                response = scheduler.select(spec, uuids=uuids, alternates=True)
                outcome.record(uuids, response)
                if len(uuids) == 1 and response.status_code == 409:
                    return

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Each process sees the other's claims within its index poll interval: then the
        # last free slots, if any, go to single-instance requests.
        time.sleep(1.5)
        for scheduler in clients:
            while True:
                uuids = [str(uuid.uuid4())]
                response = Fleet(scheduler).select(spec, uuids=uuids)
                outcome.record(uuids, response)
                if response.status_code != 200:
                    break
        print(dict(outcome.statuses))
        assert not outcome.unexpected, outcome.unexpected[:3]
        assert len(outcome.placed) == slots
        per_host = Counter(outcome.placed.values())
        for host in hosts:
            usages = fleet.usages(host.name)
            assert usages["VCPU"] == per_host[host.uuid] == 4, (host.name, usages)
        for instance, node in outcome.placed.items():
            assert list(fleet.allocations(instance)) == [node]
        for instance in outcome.refused:
            assert fleet.allocations(instance) == {}
    finally:
        for client_ in clients:
            client_.close()
        for server in servers:
            server.stop()


def test_sighup_under_load_fails_no_request(tmp_path: Path) -> None:
    server = LiveServer(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "state")
    client = http(server)
    try:
        fleet = Fleet(client)
        for i in range(12):
            fleet.host(f"cn{i}", vcpus=512, ram=1 << 20, disk=100000)
        stop = threading.Event()
        outcome = Outcome()

        def schedule(index: int) -> None:
            rng = random.Random(index)
            scheduler = Fleet(http(server))
            while not stop.is_set():
                uuids = [str(uuid.uuid4()) for _ in range(rng.randint(1, 5))]
                outcome.record(uuids, scheduler.select(request_spec(), uuids=uuids))
                answer = scheduler.explain(request_spec(), 2)
                with outcome.lock:
                    outcome.statuses[f"explain {answer['result']}"] += 1

        def heartbeat() -> None:
            scheduler = Fleet(http(server))
            while not stop.is_set():
                for name, host in fleet.hosts.items():
                    body = {
                        "compute_node_uuid": host.uuid,
                        "hypervisor_type": "QEMU",
                        "supported_instances": [["x86_64", "kvm", "hvm"]],
                    }
                    response = scheduler.call(
                        "PUT", f"{SCHEDULER}/hosts/{name}", body, to=scheduler.http
                    )
                    if response.status_code != 200:
                        outcome.unexpected.append(response.text)

        threads = [threading.Thread(target=schedule, args=(i,)) for i in range(3)]
        threads.append(threading.Thread(target=heartbeat))
        for thread in threads:
            thread.start()
        for _ in range(15):
            time.sleep(0.2)
            server.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join()
        print(dict(outcome.statuses))
        assert not outcome.unexpected, outcome.unexpected[:3]
        assert outcome.statuses["200"] > 20 and not outcome.refused
        assert outcome.statuses["explain ok"] > 20
        assert server.process.poll() is None
        assert server.log_path.read_text().count("host cache rebuilt from the database") >= 10
    finally:
        client.close()
        server.stop()


def test_placement_down_is_a_503_with_its_code_then_recovers(tmp_path: Path) -> None:
    """A scheduler using another allotment as its Placement over HTTP."""
    placement_db = f"sqlite:///{tmp_path / 'placement.sqlite'}"
    placement = LiveServer(placement_db, tmp_path / "placement")
    scheduler = LiveServer(
        f"sqlite:///{tmp_path / 'scheduler.sqlite'}",
        tmp_path / "scheduler",
        "--placement-url",
        placement.url,
        "--placement-token",
        "admin",
    )
    to_placement, to_scheduler = http(placement), http(scheduler)
    restarted: list[LiveServer] = []
    try:
        fleet = Fleet(to_scheduler, placement=to_placement)
        fleet.host("a", vcpus=2)
        fleet.host("b", vcpus=4)
        fleet.aggregate("zone", ["b"], availability_zone="az1")
        selections = fleet.select(request_spec(), 2, alternates=True).json()["selections"]
        assert sorted(s[0]["host"] for s in selections) == ["a", "b"]
        assert fleet.usages("a")["VCPU"] == fleet.usages("b")["VCPU"] == 1
        assert set(fleet.place(request_spec(availability_zone="az1"), 2)) == {"b"}
        refused = fleet.select(request_spec(flavor=flavor(vcpus=8)))
        stage = refused.json()["errors"][0]["explanation"]["stages"][-1]
        assert stage["detail"]["eliminated_by"]["value"] == "VCPU:8"

        placement.stop()
        down = fleet.select(request_spec())
        assert down.status_code == 503, down.text
        error = down.json()["errors"][0]
        assert error["code"] == "allotment.placement_unavailable"
        assert placement.url.split("//")[1] in error["detail"]
        explained = fleet.call(
            "POST",
            f"{SCHEDULER}/explain",
            {"instance_uuids": [str(uuid.uuid4())], "request_spec": request_spec()},
            to=to_scheduler,
        )
        assert explained.status_code == 503

        restarted.append(LiveServer(placement_db, tmp_path / "placement", port=placement.port))
        back = fleet.select(request_spec())
        assert back.status_code == 200, back.text
        assert fleet.usages("a")["VCPU"] + fleet.usages("b")["VCPU"] == 5
    finally:
        for server in (scheduler, placement, *restarted):
            server.stop()
        to_placement.close()
        to_scheduler.close()
