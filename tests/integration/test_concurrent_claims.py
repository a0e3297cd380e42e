"""The concurrency proof: several ``allotment serve`` processes on one database, hammered by
many client threads claiming on the same few providers until they are full.

Afterwards, in SQL and through the API: no provider exceeds its capacity in any class,
each provider's usage is exactly the sum of the claims that got a 204, there is one
consumer (with one allocation row per class) per 204, and each provider's generation went
up exactly once per successful claim on it (no lost or phantom writes).

Runs on an SQLite file with 2 processes, and on fresh PostgreSQL and MariaDB databases
with 3 processes each (skipped when a server is unreachable, except under ``CI=true``).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import drop_server_database, fresh_server_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEADERS = {
    "x-auth-token": "admin",
    "openstack-api-version": "placement 1.39",
    "accept": "application/json",
}
PROVIDERS = 4
THREADS = 16
# Per provider: 96 VCPU (48 x 2.0) and 12288 MEMORY_MB (13312 - 1024 reserved): room for
# about 64 claims of the mix below, so a run makes a few hundred contended writes.
INVENTORY = {
    "VCPU": {"total": 48, "allocation_ratio": 2.0, "max_unit": 8},
    "MEMORY_MB": {"total": 13312, "reserved": 1024, "step_size": 128, "max_unit": 4096},
}
SHAPES = [{"VCPU": 1, "MEMORY_MB": 128}, {"VCPU": 2, "MEMORY_MB": 512}]
CAPACITY = {
    rc: int((inv["total"] - inv.get("reserved", 0)) * inv.get("allocation_ratio", 1.0))
    for rc, inv in INVENTORY.items()
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _start(database_url: str, state: Path) -> Server:
    port = _free_port()
    state.mkdir(parents=True, exist_ok=True)
    log = state / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "allotment.cli", "serve", "--auth", "noauth"]
    cmd += ["--port", str(port), "--database-url", database_url, "--state-dir", str(state)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOTMENT_")}
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    return Server(port, process, log)


def _wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"allotment serve exited:\n{server.log.read_text()[-3000:]}")
        try:
            if requests.get(server.url + "/", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail(f"allotment serve did not answer:\n{server.log.read_text()[-3000:]}")


def _stop(servers: list[Server]) -> None:
    for server in servers:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, list[Server]]]:
    kind, count = request.param
    url = (
        f"sqlite:///{tmp_path / 'shared.sqlite'}"
        if kind == "sqlite"
        else fresh_server_database(kind)
    )
    started: list[Server] = []
    try:
        # The first process creates the schema and the standard classes; the others then
        # start together and find them.
        started.append(_start(url, tmp_path / "state"))
        _wait_ready(started[0])
        started += [_start(url, tmp_path / "state") for _ in range(count - 1)]
        for server in started[1:]:
            _wait_ready(server)
        yield url, started
    finally:
        _stop(started)
        if kind != "sqlite":
            drop_server_database(url)


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[str] = field(default_factory=Counter)
    # Successful claims: consumer -> {provider: resources}.
    claims: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    full: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)


def _hammer(servers: list[Server], providers: list[str], seed: int) -> Tally:
    tally = Tally()
    project = str(uuid.uuid4())
    deadline = time.monotonic() + 120

    def worker(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        session = requests.Session()
        session.trust_env = False
        server = servers[index % len(servers)]
        while time.monotonic() < deadline:
            with tally.lock:
                open_rps = [rp for rp in providers if rp not in tally.full]
            if not open_rps:
                return
            # Mostly one provider, sometimes two (a nested or sharing claim): writers then
            # lock several provider rows and must not deadlock or over-commit either.
            chosen = rng.sample(open_rps, 2 if len(open_rps) > 1 and rng.random() < 0.25 else 1)
            allocations = {rp: dict(rng.choice(SHAPES)) for rp in chosen}
            consumer = str(uuid.uuid4())
            body = {
                "allocations": {rp: {"resources": res} for rp, res in allocations.items()},
                "project_id": project,
                "user_id": project,
                "consumer_generation": None,
                "consumer_type": "INSTANCE",
            }
            resp = session.put(
                f"{server.url}/allocations/{consumer}", json=body, headers=HEADERS, timeout=60
            )
            code = ""
            if resp.status_code >= 400:
                code = resp.json()["errors"][0].get("code", "")
            with tally.lock:
                tally.statuses[f"{resp.status_code} {code}".strip()] += 1
                if resp.status_code == 204:
                    tally.claims[consumer] = allocations
                elif resp.status_code == 409 and code == "placement.undefined_code":
                    if "exceed the capacity" not in resp.text:
                        tally.unexpected.append(resp.text)
                    if len(chosen) == 1 and allocations[chosen[0]] == SHAPES[0]:
                        tally.full.add(chosen[0])  # not even the smallest claim fits
                elif resp.status_code != 409:  # a lost race is a 409 concurrent_update
                    tally.unexpected.append(f"{resp.status_code} {resp.text}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


@pytest.mark.parametrize(
    "servers",
    [("sqlite", 2), ("postgresql", 3), ("mysql", 3)],
    ids=["sqlite-2-processes", "postgresql-3-processes", "mariadb-3-processes"],
    indirect=True,
)
def test_concurrent_claims_never_overcommit(servers: tuple[str, list[Server]]) -> None:
    url, procs = servers
    session = requests.Session()
    session.trust_env = False
    providers = []
    for i in range(PROVIDERS):
        rp_uuid = str(uuid.uuid4())
        resp = session.post(
            f"{procs[0].url}/resource_providers",
            json={"name": f"cn-{i}", "uuid": rp_uuid},
            headers=HEADERS,
        )
        assert resp.status_code == 200, resp.text
        resp = session.put(
            f"{procs[-1].url}/resource_providers/{rp_uuid}/inventories",
            json={"resource_provider_generation": 0, "inventories": INVENTORY},
            headers=HEADERS,
        )
        assert resp.status_code == 200, resp.text
        providers.append(rp_uuid)

    started = time.monotonic()
    tally = _hammer(procs, providers, seed=len(procs))
    elapsed = time.monotonic() - started
    assert not tally.unexpected, tally.unexpected[:5]
    assert tally.full == set(providers), f"stopped before the providers were full: {tally}"
    print(f"{len(procs)} processes, {THREADS} threads: {dict(tally.statuses)} in {elapsed:.1f}s")

    expected: dict[str, Counter[str]] = {rp: Counter() for rp in providers}
    claims_on: Counter[str] = Counter()
    for allocations in tally.claims.values():
        for rp, resources in allocations.items():
            expected[rp].update(resources)
            claims_on[rp] += 1
    for rp in providers:
        # Full means: the smallest claim no longer fits in some class.
        assert any(expected[rp][rc] + SHAPES[0][rc] > CAPACITY[rc] for rc in CAPACITY)

    # Through the API, from every process.
    for server in procs:
        for rp in providers:
            got = session.get(f"{server.url}/resource_providers/{rp}/usages", headers=HEADERS)
            usages = got.json()["usages"]
            assert all(usages[rc] <= CAPACITY[rc] for rc in INVENTORY), f"{rp} over: {usages}"
            assert usages == {rc: expected[rp][rc] for rc in INVENTORY}
            assert got.json()["resource_provider_generation"] == 1 + claims_on[rp]
            held = session.get(f"{server.url}/resource_providers/{rp}/allocations", headers=HEADERS)
            assert len(held.json()["allocations"]) == claims_on[rp]

    # In SQL.
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT rp.uuid, rc.name, SUM(a.used), COUNT(*) FROM allocations a "
                    "JOIN resource_providers rp ON rp.id = a.resource_provider_id "
                    "JOIN resource_classes rc ON rc.id = a.resource_class_id "
                    "GROUP BY rp.uuid, rc.name"
                )
            ).all()
            consumers = conn.execute(sa.text("SELECT COUNT(*) FROM consumers")).scalar_one()
            holding = conn.execute(
                sa.text("SELECT COUNT(DISTINCT consumer_id) FROM allocations")
            ).scalar_one()
    finally:
        engine.dispose()
    used: dict[tuple[str, str], Any] = {(row[0], row[1]): row for row in rows}
    for rp in providers:
        for rc in INVENTORY:
            _, _, total, count = used[(rp, rc)]
            assert int(total) <= CAPACITY[rc], f"{rp} over capacity in {rc}"
            assert int(total) == expected[rp][rc]
            assert int(count) == claims_on[rp]
    assert consumers == holding == len(tally.claims) == tally.statuses["204"]
