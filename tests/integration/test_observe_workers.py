"""``allotment serve --workers 2`` on PostgreSQL: every scrape of /metrics, whichever worker
answers it, sums the counters of both workers (prometheus-client's multiprocess mode);
/healthz and /readyz answer; the log is one JSON object per line with the caller's global
request id."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, drop_server_database, fresh_server_database
from tests.fleet import Fleet, flavor, request_spec

pytestmark = pytest.mark.integration
# This suite's ports (shared machine: helpers get disjoint ranges).
PORTS = range(19500, 19600)


def _port() -> int:
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    url = fresh_server_database("postgresql")
    config = tmp_path / "allotment.toml"
    config.write_text(
        '[logging]\nformat = "json"\naccess_log = true\n\n[metrics]\nauth = "none"\n'
        'capacity_flavors = [{name = "small", vcpus = 1, memory_mb = 512}]\n'
    )
    live = LiveServer(
        url, tmp_path / "state", "--workers", "2", "--config", str(config), port=_port(), wait=False
    )
    try:
        # Two workers each load everything before serving: slower than one process.
        live.wait_ready(timeout=120)
        yield live
    finally:
        live.stop()
        drop_server_database(url)


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # A new connection each time: the kernel hands it to either worker.
    response = httpx.get(url + "/metrics", timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_sum_over_workers_and_logs_are_json(server: LiveServer) -> None:
    requests = 40
    caller = f"req-{uuid.uuid4()}"
    for _ in range(requests):
        answer = httpx.get(
            server.url + "/traits",
            headers={
                "x-auth-token": "admin",
                "openstack-api-version": "placement latest",
                "x-openstack-request-id": caller,
            },
            timeout=30,
            trust_env=False,
        )
        assert answer.status_code == 200
    # Both workers answered some: each wrote its own counter file.
    directory = next((server.state_dir / "metrics").glob("supervisor-*"))
    writers = {p.stem.rpartition("_")[2] for p in directory.glob("counter_*.db")}
    assert len(writers) == 2, writers
    route = (("method", "GET"), ("route", "/traits"), ("status", "200"))
    for _ in range(6):
        samples = _scrape(server.url)
        assert samples[("allotment_http_requests_total", route)] == requests
    with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as client:
        fleet = Fleet(client)
        fleet.host("a", vcpus=2)
        assert fleet.select(request_spec(flavor=flavor(vcpus=8))).status_code == 409
        assert len(fleet.place(request_spec())) == 1
    for _ in range(4):
        samples = _scrape(server.url)
        nvh = (
            "allotment_no_valid_host_total",
            (("reason", "resources:VCPU"), ("stage", "placement")),
        )
        assert samples[nvh] == 1
        assert samples[("allotment_select_destinations_total", (("outcome", "selected"),))] == 1
    assert httpx.get(server.url + "/healthz", trust_env=False).status_code == 200
    ready = httpx.get(server.url + "/readyz", trust_env=False, timeout=30)
    assert ready.status_code == 200, ready.text
    server.stop()
    objects: list[dict[str, Any]] = []
    for line in server.log_path.read_text().splitlines():
        if line.startswith("{"):
            objects.append(orjson.loads(line))
    access = [o for o in objects if o["logger"] == "allotment.access" and o["route"] == "/traits"]
    assert len(access) == requests
    assert all(o["global_request_id"] == caller and o["status"] == 200 for o in access)
    refusals = [o for o in objects if "No valid host" in o["message"]]
    assert len(refusals) == 1 and refusals[0]["level"] == "INFO"
