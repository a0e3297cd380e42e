"""The operator's view through the HTTP interface: /metrics (parsed with prometheus-client's
own parser), /healthz and /readyz, JSON log lines, the global request id, and the one
INFO line of every NoValidHost."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from allotment import log
from allotment.app import build_services, create_app
from tests.conftest import make_settings
from tests.fleet import Fleet, flavor, request_spec

MakeFleet = Callable[..., Fleet]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[MakeFleet]:
    opened: list[tuple[TestClient, Any]] = []

    def make(**sections: dict[str, Any]) -> Fleet:
        services = build_services(make_settings(tmp_path / str(len(opened)), **sections))
        client = TestClient(create_app(services))
        client.__enter__()
        opened.append((client, services))
        fleet = Fleet(client)
        fleet.services = services  # type: ignore[attr-defined]
        return fleet

    yield make
    for client, services in opened:
        client.__exit__(None, None, None)
        services.db.dispose()


def scrape(fleet: Fleet, **headers: str) -> Samples:
    response = fleet.http.get("/metrics", headers={"x-auth-token": "admin", **headers})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_template_and_status(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    fleet.host("a")
    rp = fleet.hosts["a"].uuid
    template = "/resource_providers/{uuid}"
    # Publishing the host looked for its provider before creating it (a 404 of its own).
    before = value(
        scrape(fleet), "allotment_http_requests_total", method="GET", route=template, status="404"
    )
    for _ in range(3):
        fleet.call("GET", f"/resource_providers/{rp}", expect=200)
    fleet.call("GET", f"/resource_providers/{uuid.uuid4()}", expect=404)
    fleet.call("GET", "/no/such/thing", expect=404)
    samples = scrape(fleet)
    # fleet.host reads the provider twice (for the inventory and trait generations).
    got = value(
        samples, "allotment_http_requests_total", method="GET", route=template, status="200"
    )
    assert got >= 3
    assert value(
        samples, "allotment_http_requests_total", method="GET", route=template, status="404"
    ) == (before + 1)
    assert value(
        samples, "allotment_http_requests_total", method="GET", route="unmatched", status="404"
    ) == (1)
    # No raw path ever becomes a label.
    assert not any(rp in str(labels) for _, labels in samples)
    count = value(
        samples, "allotment_http_request_duration_seconds_count", method="GET", route=template
    )
    assert count == got + before + 1  # every GET of the template, whatever its status
    assert value(
        samples,
        "allotment_http_request_duration_seconds_bucket",
        method="GET",
        route=template,
        le="+Inf",
    ) == (count)
    scheduler_route = value(
        samples,
        "allotment_http_requests_total",
        method="PUT",
        route="/scheduler/v1/hosts/{host}",
        status="200",
    )
    assert scheduler_route >= 1


def test_select_destinations_outcomes_and_no_valid_host_reasons(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(
        filter_scheduler={"enabled_filters": ["ComputeFilter"]},
    )
    fleet.host("a", vcpus=2)
    fleet.host("off", vcpus=2, report={"disabled": True})
    assert len(fleet.place(request_spec(), 2)) == 2
    assert fleet.select(request_spec(flavor=flavor(vcpus=64))).status_code == 409
    assert fleet.select(request_spec()).status_code == 409  # a is full, off is disabled
    assert fleet.select({"flavor": "nonsense"}).status_code == 400
    samples = scrape(fleet)
    assert value(samples, "allotment_select_destinations_total", outcome="selected") == 1
    assert value(samples, "allotment_instances_scheduled_total") == 2
    assert value(samples, "allotment_select_destinations_total", outcome="no_valid_host") == 2
    assert value(
        samples, "allotment_no_valid_host_total", stage="placement", reason="resources:VCPU"
    ) == (1)
    assert value(
        samples, "allotment_no_valid_host_total", stage="ComputeFilter", reason="disabled"
    ) == (1)
    assert value(
        samples, "allotment_select_destinations_duration_seconds_count", outcome="selected"
    ) == (1)


def test_claim_conflicts_and_retries_are_counted(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    fleet.host("a", vcpus=4)
    fleet.host("b", vcpus=4)
    services = fleet.services  # type: ignore[attr-defined]
    client = services.placement_client
    real_claim = client.claim
    calls = {"n": 0}

    def first_claim_loses_a_race(ctx: Any, claims: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            # Another scheduler took host a's room between the query and the claim.
            other = str(uuid.uuid4())
            fleet.call(
                "PUT",
                f"/allocations/{other}",
                {
                    "allocations": {fleet.hosts[n].uuid: {"resources": {"VCPU": 4}} for n in "ab"},
                    "project_id": "p",
                    "user_id": "u",
                    "consumer_generation": None,
                    "consumer_type": "INSTANCE",
                },
                expect=204,
            )
            real_claim(ctx, claims)
            return
        real_claim(ctx, claims)

    client.claim = first_claim_loses_a_race
    assert fleet.select(request_spec()).status_code == 409
    samples = scrape(fleet)
    assert value(samples, "allotment_claim_conflicts_total", kind="capacity") == 1
    assert value(samples, "allotment_claim_retries_total", mode="one_by_one") == 1


def test_hosts_by_state_and_capacity_per_flavor_and_zone(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(
        metrics={
            "capacity_flavors": [
                {"name": "small", "vcpus": 1, "memory_mb": 1024},
                {"name": "big", "vcpus": 8, "memory_mb": 8192, "disk_gb": 100},
            ]
        }
    )
    services = fleet.services  # type: ignore[attr-defined]
    fleet.host("z1a", vcpus=8, ram=4096)  # small: 4 (RAM), big: 0 (RAM)
    fleet.host("z1b", vcpus=16, ram=65536)  # small: 16, big: 2
    fleet.host("z2a", vcpus=4, ram=65536)  # small: 4, big: 0
    fleet.host("off", vcpus=64, ram=65536, report={"disabled": True})
    real_clock = services.host_manager.clock
    services.host_manager.clock = lambda: real_clock() - 600
    fleet.host("gone", vcpus=64, ram=65536)  # last heard from 10 minutes ago
    services.host_manager.clock = real_clock
    fleet.aggregate("zone1", ["z1a", "z1b"], availability_zone="az1")
    fleet.aggregate("zone2", ["z2a"], availability_zone="az2")
    samples = scrape(fleet)
    assert value(samples, "allotment_hosts", state="up") == 3
    assert value(samples, "allotment_hosts", state="down") == 1
    assert value(samples, "allotment_hosts", state="disabled") == 1
    capacity = "allotment_capacity_instances"
    assert value(samples, capacity, flavor="small", az="az1") == 4 + 16
    assert value(samples, capacity, flavor="small", az="az2") == 4
    assert value(samples, capacity, flavor="big", az="az1") == 2
    assert value(samples, capacity, flavor="big", az="az2") == 0
    # Down and disabled hosts (in the default zone) count for nothing.
    assert value(samples, capacity, flavor="small", az="nova") == 0
    # Usage counts: 8 VCPU and 8 GiB taken on z1b leave 8 small and 1 big there.
    fleet.call(
        "PUT",
        f"/allocations/{uuid.uuid4()}",
        {
            "allocations": {fleet.hosts["z1b"].uuid: {"resources": {"VCPU": 8, "MEMORY_MB": 8192}}},
            "project_id": "p",
            "user_id": "u",
            "consumer_generation": None,
            "consumer_type": "INSTANCE",
        },
        expect=204,
    )
    samples = scrape(fleet)
    assert value(samples, capacity, flavor="small", az="az1") == 4 + 8
    assert value(samples, capacity, flavor="big", az="az1") == 1


def test_metrics_need_a_reader_unless_auth_is_none(make_fleet: MakeFleet, tmp_path: Path) -> None:
    fleet = make_fleet(server={"auth": "token"})
    services = fleet.services  # type: ignore[attr-defined]
    member = services.tokens.create("m", ["member"], project_id="p1")
    reader = services.tokens.create("r", ["reader"])
    assert fleet.http.get("/metrics").status_code == 401
    refused = fleet.http.get("/metrics", headers={"x-auth-token": member})
    assert refused.status_code == 403
    assert "reader role" in refused.json()["errors"][0]["detail"]
    assert fleet.http.get("/metrics", headers={"x-auth-token": reader}).status_code == 200
    open_fleet = make_fleet(server={"auth": "token"}, metrics={"auth": "none"})
    assert open_fleet.http.get("/metrics").status_code == 200
    assert open_fleet.http.post("/metrics").status_code == 405


def test_healthz_and_readyz_need_no_credentials(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(server={"auth": "token"})
    alive = fleet.http.get("/healthz")
    assert (alive.status_code, alive.json()) == (200, {"status": "alive"})
    ready = fleet.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "migrations", "capacity_index", "host_cache"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["migrations"]["current"] == body["checks"]["migrations"]["expected"]


def test_readyz_is_503_naming_what_is_wrong(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    services = fleet.services  # type: ignore[attr-defined]
    with services.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))
    services.host_manager.caught_up_at -= 3600
    answer = fleet.http.get("/readyz")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["migrations"] == {
        "ok": False,
        "current": "older",
        "expected": checks["migrations"]["expected"],
    }
    assert checks["host_cache"]["ok"] is False and checks["host_cache"]["lag_s"] >= 3600
    assert checks["capacity_index"]["ok"] is True
    services.db.engine.dispose()
    url = services.db.engine.url
    Path(str(url.database)).unlink()
    Path(str(url.database)).mkdir()  # a file that can no longer be opened as a database
    down = fleet.http.get("/readyz").json()["checks"]
    assert down["database"]["ok"] is False and "error" in down["database"]
    assert fleet.http.get("/healthz").status_code == 200


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    log.setup("INFO", access_log=True, fmt="json")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    logging.getLogger("allotment.access").setLevel(logging.WARNING)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_log_lines_carry_ids_route_status_and_duration(
    make_fleet: MakeFleet, json_logs: io.StringIO
) -> None:
    fleet = make_fleet()
    fleet.host("a", vcpus=1)
    caller = f"req-{uuid.uuid4()}"
    fleet.call("GET", "/resource_providers", headers={"x-openstack-request-id": caller})
    refused = fleet.select(
        request_spec(flavor=flavor(vcpus=4)), headers={"x-openstack-request-id": caller}
    )
    assert refused.status_code == 409
    own_id = refused.headers["x-openstack-request-id"]
    assert own_id != caller and own_id.startswith("req-")
    found = lines(json_logs)
    access = [e for e in found if e["logger"] == "allotment.access"]
    listing = next(
        e for e in access if e["route"] == "/resource_providers" and e["method"] == "GET"
    )
    assert listing["global_request_id"] == caller
    assert listing["status"] == 200 and listing["method"] == "GET"
    assert isinstance(listing["duration_ms"], float)
    assert listing["level"] == "INFO" and listing["time"].endswith("+00:00")
    refusal = [e for e in found if e.get("request_id") == own_id]
    assert {e["logger"] for e in refusal} >= {"allotment.scheduler.manager", "allotment.access"}
    nvh = [e for e in refusal if e["logger"] == "allotment.scheduler.manager"]
    # Logged once, at INFO, by its summary; with the caller's ids.
    assert len([e for e in nvh if "No valid host" in e["message"]]) == 1
    line = next(e for e in nvh if "No valid host" in e["message"])
    assert line["level"] == "INFO"
    assert line["message"] == refused.json()["errors"][0]["explanation"]["summary"]
    assert line["global_request_id"] == caller
    assert line["user_id"] == "admin" and line["project_id"] == "admin"


def test_a_malformed_inbound_request_id_is_ignored(
    make_fleet: MakeFleet, json_logs: io.StringIO
) -> None:
    fleet = make_fleet()
    for bad in ("req-not-a-uuid", f"{uuid.uuid4()}", f"req-{uuid.uuid4()}x", "x" * 300):
        fleet.call("GET", "/traits", headers={"x-openstack-request-id": bad}, expect=200)
    access = [e for e in lines(json_logs) if e["logger"] == "allotment.access"]
    assert len(access) == 4
    assert all("global_request_id" not in e for e in access)
