"""``allotment serve --workers 2`` and several servers on one database, as real processes:
the same answers as one process, the same log lines from every worker, no secret in any
process's environment or command line, SIGHUP/SIGTERM/SIGKILL of the supervisor, a
crashed worker restarted, the bootstrap admin token created once per database, and
schedulers in several processes racing for the last slots. SQLite, PostgreSQL and MariaDB
(skipped when unreachable, except under CI=true)."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import LiveServer
from tests.fleet import HEADERS, SCHEDULER, Fleet, flavor, request_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DELAY = 0.5
GRACEFUL = 5.0
# A secret the settings hold but no process may show in its environment or command line.
PLACEMENT_TOKEN = f"placement-secret-{uuid.uuid4().hex}"
DB_PASSWORD = f"db-secret-{uuid.uuid4().hex[:12]}"
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<pid>\d+) (?P<level>[A-Z]+) (?P<name>\S+) "
    r"\[(?P<rid>[^\]]*)\] (?P<message>.*)$"
)


def _config(folder: Path, database_url: str) -> Path:
    """A 0600 configuration file: the only place the secrets are."""
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() == "postgresql":
        # Local PostgreSQL trusts the user: the password is carried, never checked.
        url = url.set(password=DB_PASSWORD)
    path = folder / "allotment.toml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[database]\nurl = "{url.render_as_string(hide_password=False)}"\n'
        f'[placement_client]\ntoken = "{PLACEMENT_TOKEN}"\n'
        f"[server]\ngraceful_timeout = {GRACEFUL}\n"
        f"[scheduler]\nhost_state_sync_delay = {DELAY}\n"
        f"[placement]\nindex_poll_interval = {DELAY}\n"
        # One line per request, with the pid of the worker that answered it.
        "[logging]\naccess_log = true\n"
    )
    path.chmod(0o600)
    return path


def _server(folder: Path, database_url: str, *extra: str) -> LiveServer:
    config = _config(folder, database_url)
    return LiveServer(None, folder / "state", "--config", str(config), *extra, auth="token")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return sorted(int(p) for p in text.split())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _lines(server: LiveServer) -> list[re.Match[str]]:
    text = server.log_path.read_text(errors="replace")
    return [m for m in map(LINE.match, text.splitlines()) if m]


def _until(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, what
        time.sleep(0.05)
    return time.monotonic() - started


def _serving_workers(server: LiveServer, count: int) -> list[int]:
    """The pids of the workers, once ``count`` of them have logged that they serve."""

    def serving() -> list[int]:
        return sorted(
            int(m["pid"])
            for m in _lines(server)
            if m["level"] == "INFO"
            and re.fullmatch(r"worker \d+ \(pid \d+\) serving", m["message"])
        )

    _until(lambda: len(serving()) >= count, 60, f"{count} workers did not start")
    return serving()


def _port_free(port: int) -> bool:
    """Nothing listens there: a new server could bind it (as ours does, SO_REUSEADDR,
    so connections in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _client(server: LiveServer, token: str) -> httpx.Client:
    # A connection per request: each is accepted by whichever worker gets there first.
    headers = {**HEADERS, "x-auth-token": token, "connection": "close"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60, trust_env=False)


@pytest.fixture
def workers(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    server = _server(tmp_path / "w", database_url, "--workers", "2")
    try:
        yield server
    finally:
        server.stop()


def test_workers_serve_one_database_with_several_servers(
    workers: LiveServer, database_url: str, tmp_path: Path
) -> None:
    supervisor = workers.process.pid
    pids = _serving_workers(workers, 2)
    assert sorted(_children(supervisor)) == pids
    # Every line of every process has the configured format; every worker logs INFO lines.
    lines = _lines(workers)
    by_pid = Counter(int(m["pid"]) for m in lines if m["level"] == "INFO")
    assert set(by_pid) >= {supervisor, *pids}, by_pid
    started = {int(m["pid"]) for m in lines if m["message"].startswith("Started server process")}
    assert started == set(pids)
    # No secret anywhere a local user may read it.
    for pid in (supervisor, *pids):
        for what in ("environ", "cmdline"):
            shown = Path(f"/proc/{pid}/{what}").read_bytes()
            assert PLACEMENT_TOKEN.encode() not in shown, (pid, what)
            assert DB_PASSWORD.encode() not in shown, (pid, what)
            assert b"ALLOTMENT_SETTINGS" not in shown, (pid, what)
    assert any("bootstrap admin token created" in m["message"] for m in lines)
    token = (workers.state_dir / "admin-token").read_text().strip()
    headers = {**HEADERS, "x-auth-token": token, "connection": "close"}

    # A second server on the same database finds the bootstrap token and writes no file.
    second = _server(tmp_path / "s", database_url)
    a, b = _client(workers, token), _client(second, token)
    try:
        assert not (second.state_dir / "admin-token").exists()
        assert any(
            "bootstrap admin token exists in the database (created by another process); "
            f"not writing {(second.state_dir / 'admin-token').resolve()}" in m["message"]
            for m in _lines(second)
        )
        for client in (a, b):
            for _ in range(4):
                assert client.get("/resource_providers").status_code == 200

        # Host reports and aggregates through whichever worker; decisions everywhere.
        fleet = Fleet(a, headers=headers)
        hosts = [
            fleet.host(f"cn{i}", vcpus=vcpus, ram=65536, disk=1000)
            for i, vcpus in enumerate((4, 24, 4))
        ]
        agg = fleet.aggregate("az1", ["cn1"], availability_zone="az1")

        def hosts_seen(client: httpx.Client) -> list[Any]:
            resp = client.get(f"{SCHEDULER}/hosts")
            return sorted((h["host"], h["aggregates"]) for h in resp.json()["hosts"])

        def candidates(client: httpx.Client) -> int:
            params = {"resources": "VCPU:1", "member_of": agg}
            resp = client.get("/allocation_candidates", params=params)
            return len(resp.json()["allocation_requests"])

        # Host caches follow within host_state_sync_delay, capacity indexes (the aggregate
        # mirrored into placement) within index_poll_interval: a new connection each time,
        # so every worker is asked sooner or later.
        expected = [("cn0", []), ("cn1", [agg]), ("cn2", [])]
        _until(
            lambda: all(hosts_seen(c) == expected and candidates(c) == 1 for c in (a, a, a, b)),
            10,
            "not synced",
        )
        # The delays bound every worker, also those this loop happened not to ask.
        time.sleep(3 * DELAY)
        # Every worker answers: 20 of 20 placed in az1, by both servers.
        for scheduler in (a, b):
            chosen = [
                Fleet(scheduler, headers=headers).place(request_spec(availability_zone="az1"))[0]
                for _ in range(10)
            ]
            assert chosen == ["cn1"] * 10
        # Instance info sent to the workers reaches the other server.
        infos = {"instances": [{"uuid": str(uuid.uuid4())} for _ in range(2)]}
        assert a.put(f"{SCHEDULER}/hosts/cn0/instances", json=infos).status_code == 204

        def instances(client: httpx.Client) -> list[int]:
            resp = client.get(f"{SCHEDULER}/hosts")
            return [h["instances"] for h in sorted(resp.json()["hosts"], key=lambda h: h["host"])]

        _until(lambda: instances(b)[0] == 2, 10, "instance info not seen by the other server")

        # Racing for the last slots from both servers, eight clients.
        slots = 4 + 24 + 4 - 20
        placed: list[str] = []
        statuses: Counter[str] = Counter()
        lock = threading.Lock()
        spec = request_spec(flavor=flavor(vcpus=1, memory_mb=512, root_gb=1))

        def claim(index: int) -> None:
            scheduler = Fleet((a, b)[index % 2], headers=headers)
            while True:
                resp = scheduler.select(spec)
                with lock:
                    statuses[str(resp.status_code)] += 1
                    if resp.status_code == 200:
                        placed.append(resp.json()["selections"][0][0]["compute_node_uuid"])
                if resp.status_code != 200:
                    return

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # A refusal may only mean "the last claims of the other process were not seen
        # yet": after the sync delay, a sweep finds no slot left over.
        time.sleep(DELAY * 3)
        for scheduler in (a, b, a):
            resp = Fleet(scheduler, headers=headers).select(spec)
            assert resp.status_code == 409, resp.text
            assert resp.json()["errors"][0]["code"] == "allotment.no_valid_host"
        assert set(statuses) <= {"200", "409"}, statuses
        assert len(placed) == slots, (statuses, slots)
        assert [fleet.usages(host.name)["VCPU"] for host in hosts] == [4, 24, 4]
        # Both workers answered select_destinations.
        answered = {
            int(m["pid"])
            for m in _lines(workers)
            if m["name"] == "allotment.access" and "select_destinations" in m["message"]
        }
        assert answered == set(pids), answered
    finally:
        a.close()
        b.close()
        second.stop()


def test_sighup_burst_rebuilds_every_worker_and_sigterm_stops_them(workers: LiveServer) -> None:
    supervisor = workers.process.pid
    pids = _serving_workers(workers, 2)
    before = len(_lines(workers))
    for _ in range(200):
        os.kill(supervisor, signal.SIGHUP)
    burst_end = time.time()

    def rebuilt() -> set[int]:
        return {
            int(m["pid"])
            for m in _lines(workers)[before:]
            if m["message"].startswith("host cache rebuilt from the database")
        }

    _until(lambda: rebuilt() >= set(pids), 20, "not every worker rebuilt its cache")
    # Coalesced: a burst is a few rebuilds per worker, not 200; the last one after the burst.
    stamps = [
        m
        for m in _lines(workers)[before:]
        if m["message"].startswith("host cache rebuilt from the database")
    ]
    assert len(stamps) <= 2 * 4, len(stamps)
    for pid in pids:
        last = max(m[0][:23] for m in stamps if int(m["pid"]) == pid)
        assert last >= time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(burst_end - 1))
    assert workers.process.poll() is None
    assert _children(supervisor) == pids and all(_alive(p) for p in pids)
    token = (workers.state_dir / "admin-token").read_text().strip()
    with _client(workers, token) as client:
        for _ in range(6):
            assert client.get("/resource_providers").status_code == 200

    started = time.monotonic()
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(GRACEFUL + 2) == 0
    took = time.monotonic() - started
    assert took < GRACEFUL, took
    assert not any(_alive(p) for p in pids)
    assert _port_free(workers.port)
    messages = [m["message"] for m in _lines(workers)]
    assert "supervisor stopped" in messages
    assert sum("exited with code 0" in m for m in messages) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_crashed_worker_restarts_and_workers_die_with_the_supervisor(
    workers: LiveServer,
) -> None:
    supervisor = workers.process.pid
    pids = _serving_workers(workers, 2)
    os.kill(pids[0], signal.SIGKILL)
    replaced = _serving_workers(workers, 3)
    assert pids[1] in replaced and pids[0] in replaced
    new = [p for p in replaced if p not in pids]
    assert len(new) == 1 and _children(supervisor) == sorted([pids[1], *new])
    messages = [m["message"] for m in _lines(workers) if m["level"] == "ERROR"]
    assert any(
        re.match(rf"worker 0 \(pid {pids[0]}\) was killed by SIGKILL after .*; restarting", m)
        for m in messages
    ), messages
    token = (workers.state_dir / "admin-token").read_text().strip()
    with _client(workers, token) as client:
        assert client.get("/resource_providers").status_code == 200

    live = _children(supervisor)
    workers.process.kill()
    workers.process.wait(5)
    took = _until(
        lambda: not any(_alive(p) for p in live) and _port_free(workers.port),
        GRACEFUL,
        "a worker outlived its supervisor",
    )
    assert took < GRACEFUL
