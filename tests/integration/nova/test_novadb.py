"""Host state from Nova's own databases: MariaDB and PostgreSQL databases made by Nova 34's
``nova-manage`` (API database, cell0, two cells), filled with Nova's own objects, read by
``allotment serve --nova-config``; scheduling follows what Nova's databases say (hosts,
services disabled or forced down, aggregates and their availability zones, instances,
deleted nodes), and every Selection names the host's own cell. Every test runs once per
database server, as Nova supports both."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import IN_CI, SERVER_URLS, LiveServer, _reachable, drop_server_database
from tests.fleet import HEADERS, SCHEDULER, flavor, request_spec
from tests.integration.nova.conftest import NovaDriver
from tests.integration.nova.conftest import rabbit_vhost as new_vhost

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

RESYNC = 1.0
# How long a change in Nova's databases may take to be used: one resync round, the
# host cache's sync delay, and slack for a loaded machine.
SETTLE = RESYNC + 1.0 + 8.0


# The database servers Nova 34 runs on, and the driver its oslo.db connection names
# (PyMySQL, psycopg2: the ones Nova's own docs and tests use).
NOVA_DRIVERS = {"mysql": "mysql+pymysql", "postgresql": "postgresql+psycopg2"}


def _server_base(kind: str) -> sa.engine.URL:
    base = sa.engine.make_url(SERVER_URLS[kind])
    problem = _reachable(base.render_as_string(hide_password=False))
    if problem:
        message = f"{kind} at {base.host}:{base.port} is not reachable ({problem})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return base


@dataclass
class NovaDatabases:
    """A database set of one Nova deployment: the API database, cell0, cell1, cell2."""

    urls: dict[str, str]
    transport_url: str
    driver: NovaDriver
    cells: dict[str, str] = field(default_factory=dict)

    def request(self, *steps: dict[str, Any]) -> list[Any]:
        payload = {
            "api": self.urls["api"],
            "cell0": self.urls["cell0"],
            "cells": {"cell1": self.urls["cell1"], "cell2": self.urls["cell2"]},
            "transport_url": self.transport_url,
            "steps": list(steps),
        }
        answers: list[Any] = self.driver.run(payload, timeout=900)
        return answers


def make_nova_databases(
    nova_python: Path, transport_url: str, prefix: str, kind: str = "mysql"
) -> tuple[NovaDatabases, Callable[[], None]]:
    """Fresh databases on the ``kind`` server (``mysql`` or ``postgresql``) made by
    nova-manage; returns them and a function dropping them."""
    base = _server_base(kind)
    tag = uuid.uuid4().hex[:8]
    names = {part: f"{prefix}{part}_{tag}" for part in ("api", "cell0", "cell1", "cell2")}
    charset = " CHARACTER SET utf8mb4" if kind == "mysql" else " ENCODING 'UTF8' TEMPLATE template0"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for name in names.values():
            conn.execute(sa.text(f"CREATE DATABASE {name}{charset}"))
    engine.dispose()

    def drop() -> None:
        for name in names.values():
            drop_server_database(base.set(database=name).render_as_string(hide_password=False))

    # oslo.db's URLs: its driver name, and for MySQL the charset Nova's docs give.
    query = "?charset=utf8" if kind == "mysql" else ""
    urls = {
        part: base.set(drivername=NOVA_DRIVERS[kind], database=name).render_as_string(
            hide_password=False
        )
        + query
        for part, name in names.items()
    }
    databases = NovaDatabases(urls, transport_url, NovaDriver(nova_python, "novadb.py"))
    try:
        (databases.cells,) = databases.request({"do": "schema"})
    except BaseException:
        drop()
        raise
    return databases, drop


@pytest.fixture(scope="module")
def rabbit_vhost() -> Iterator[str]:
    """A transport URL in a vhost of this module's own."""
    with new_vhost("hd-novadb-") as url:
        yield url


def node(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "hypervisor_hostname": name,
        "vcpus": 8,
        "memory_mb": 16384,
        "local_gb": 200,
        **extra,
    }


@dataclass
class Cloud:
    nova: NovaDatabases
    server: LiveServer
    http: httpx.Client
    rpc: NovaDriver
    # host name -> (cell name, compute node uuid)
    hosts: dict[str, tuple[str, str]]
    az1: str

    def hosts_seen(self) -> dict[str, dict[str, Any]]:
        response = self.http.get(f"{SCHEDULER}/hosts", headers=HEADERS)
        assert response.status_code == 200, response.text
        return {h["host"]: h for h in response.json()["hosts"]}

    def place(self, count: int = 1, **spec: Any) -> list[str]:
        chosen = []
        for _ in range(count):
            body = {
                "instance_uuids": [str(uuid.uuid4())],
                "request_spec": request_spec(flavor=flavor(1, 512, 1), **spec),
            }
            response = self.http.post(
                f"{SCHEDULER}/select_destinations", json=body, headers=HEADERS
            )
            assert response.status_code == 200, response.text
            chosen.append(response.json()["selections"][0][0]["host"])
        return chosen

    def wait_for(self, check: Callable[[dict[str, dict[str, Any]]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + SETTLE
        while True:
            seen = self.hosts_seen()
            if check(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"the host cache did not follow Nova's databases: {seen}")
            time.sleep(0.2)


def provider(http: httpx.Client, uuid_: str, name: str) -> None:
    """The compute node's root provider, as Nova's compute creates it (uuid = node)."""
    response = http.post("/resource_providers", json={"name": name, "uuid": uuid_}, headers=HEADERS)
    assert response.status_code == 200, response.text
    inventories = {
        "resource_provider_generation": 0,
        "inventories": {
            "VCPU": {"total": 8, "allocation_ratio": 4.0},
            "MEMORY_MB": {"total": 16384},
            "DISK_GB": {"total": 200},
        },
    }
    response = http.put(
        f"/resource_providers/{uuid_}/inventories", json=inventories, headers=HEADERS
    )
    assert response.status_code == 200, response.text
    # Nova 34's computes (service version 74 here) mark their providers as Nova's own.
    set_traits(http, uuid_, ["OWNER_NOVA"])


def set_traits(http: httpx.Client, uuid_: str, traits: list[str]) -> None:
    current = http.get(f"/resource_providers/{uuid_}/traits", headers=HEADERS)
    assert current.status_code == 200, current.text
    body = {
        "traits": traits,
        "resource_provider_generation": current.json()["resource_provider_generation"],
    }
    response = http.put(f"/resource_providers/{uuid_}/traits", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text


def wait_for_members(http: httpx.Client, aggregate: str, providers: list[str]) -> None:
    deadline = time.monotonic() + SETTLE
    for rp in providers:
        while True:
            response = http.get(f"/resource_providers/{rp}/aggregates", headers=HEADERS)
            if response.status_code == 200 and aggregate in response.json()["aggregates"]:
                break
            assert time.monotonic() < deadline, f"{rp} not in placement aggregate {aggregate}"
            time.sleep(0.2)


@pytest.fixture(scope="module", params=sorted(NOVA_DRIVERS))
def cloud(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    nova_python: Path,
    rabbit_vhost: str,
) -> Iterator[Cloud]:
    nova, drop = make_nova_databases(nova_python, rabbit_vhost, "hd_", request.param)
    try:
        numa = [
            {"id": 0, "cpuset": [0, 1, 2, 3], "pcpuset": [], "memory": 8192, "siblings": []},
            {"id": 1, "cpuset": [4, 5, 6, 7], "pcpuset": [], "memory": 8192, "siblings": []},
        ]
        pci = [{"vendor_id": "8086", "product_id": "1520", "numa_node": 0, "count": 2,
                "tags": {"dev_type": "type-VF", "physical_network": "physnet1"}}]  # fmt: skip
        layout = {
            "c1h1": (
                "cell1",
                node("c1h1", numa=numa, pci=pci, stats={"io_workload": "0", "num_instances": "1"}),
            ),
            "c1h2": ("cell1", node("c1h2", cpu_info={"arch": "x86_64", "vendor": "Intel"})),
            "c1h3": ("cell1", node("c1h3")),
            "c2h1": ("cell2", node("c2h1")),
            "c2h2": ("cell2", node("c2h2")),
        }
        steps: list[dict[str, Any]] = [
            {"do": "host", "cell": cell, "host": name, "nodes": [spec]}
            for name, (cell, spec) in layout.items()
        ]
        steps.append(
            {
                "do": "aggregate",
                "name": "az1-hosts",
                "hosts": ["c1h2", "c2h1"],
                "metadata": {"availability_zone": "az1"},
            }
        )
        steps.append(
            {
                "do": "instance",
                "cell": "cell1",
                "host": "c1h1",
                "node": "c1h1",
                "uuid": str(uuid.uuid4()),
            }
        )
        *_, az1, _ = nova.request(*steps)
        folder = tmp_path_factory.mktemp("novadb")
        nova_conf = folder / "nova.conf"
        nova_conf.write_text(
            f"[DEFAULT]\ntransport_url = {rabbit_vhost}\nhost = hd-sched\n"
            f"[api_database]\nconnection = {nova.urls['api']}\n"
            f"[database]\nconnection = {nova.urls['cell1']}\n"
        )
        settings = folder / "allotment.toml"
        settings.write_text(
            f"[nova]\nresync_interval = {RESYNC}\n"
            # Nothing here reports every 10 s as a compute does: the services' rows keep
            # their creation time as last heartbeat for the length of the module.
            "[scheduler]\nperiodic_interval = 1.0\nservice_down_time = 3600\n"
            # The PCI weigher would keep instances that need no PCI off c1h1 (its PCI
            # pool is read from Nova's pci_stats); here every host should take some.
            "[filter_scheduler]\nhost_subset_size = 1\npci_weight_multiplier = 0.0\n"
        )
        server = LiveServer(
            f"sqlite:///{folder / 'allotment.sqlite'}",
            folder / "state",
            "--config",
            str(settings),
            "--nova-config",
            str(nova_conf),
            wait=False,
        )
        try:
            server.wait_ready(timeout=120)  # oslo.messaging's imports, a loaded machine
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for name, (_, spec) in layout.items():
                    provider(http, spec["uuid"], name)
                hosts = {name: (cell, spec["uuid"]) for name, (cell, spec) in layout.items()}
                # The providers appeared after the feeder's first round: the host cache's
                # periodic round puts them in the aggregate's placement twin.
                wait_for_members(http, az1, [hosts["c1h2"][1], hosts["c2h1"][1]])
                yield Cloud(
                    nova, server, http, NovaDriver(nova_python, "scheduler_rpc.py"), hosts, az1
                )
        finally:
            server.stop()
    finally:
        drop()


def test_the_host_cache_holds_exactly_the_hosts_in_nova_s_cell_databases(cloud: Cloud) -> None:
    seen = cloud.wait_for(lambda seen: len(seen) == 5)
    assert {h: (s["nodename"], s["compute_node_uuid"]) for h, s in seen.items()} == {
        h: (h, node_uuid) for h, (_, node_uuid) in cloud.hosts.items()
    }
    assert all(s["up"] and not s["disabled"] for s in seen.values())
    assert seen["c1h1"]["instances"] == 1
    assert seen["c1h2"]["aggregates"] == [cloud.az1] == seen["c2h1"]["aggregates"]
    # Every host schedulable; the AZ from the aggregate metadata limits the choice.
    assert set(cloud.place(10)) == set(cloud.hosts)
    assert set(cloud.place(6, availability_zone="az1")) == {"c1h2", "c2h1"}


def test_selections_over_rpc_name_each_host_s_own_cell(cloud: Cloud) -> None:
    cloud.wait_for(lambda seen: len(seen) == 5)
    calls = []
    for zone in ("az1", "az1", "nova", "nova", "nova"):
        instance = str(uuid.uuid4())
        calls.append(
            {
                "method": "select_destinations",
                "context": {"user_id": "u1", "project_id": "p1", "roles": ["member"]},
                "spec": {
                    "$obj": "RequestSpec",
                    "project_id": "p1",
                    "user_id": "u1",
                    "instance_uuid": instance,
                    "availability_zone": zone,
                    "flavor": {
                        "$obj": "Flavor",
                        "name": "tiny",
                        "flavorid": "1",
                        "vcpus": 1,
                        "memory_mb": 512,
                        "root_gb": 1,
                        "ephemeral_gb": 0,
                        "swap": 0,
                        "extra_specs": {},
                    },
                    "num_instances": 1,
                    "is_bfv": False,
                    "scheduler_hints": {},
                },
                "instance_uuids": [instance],
                "return_objects": True,
                "return_alternates": True,
            }
        )
    answers = cloud.rpc.run(
        {"transport_url": cloud.nova.transport_url, "calls": calls}, timeout=300
    )
    cells_seen = set()
    for zone, answer in zip(("az1", "az1", "nova", "nova", "nova"), answers, strict=True):
        assert "result" in answer, answer
        for selection in answer["result"][0]:
            fields = selection["fields"]
            cell_name, node_uuid = cloud.hosts[fields["service_host"]]
            assert fields["compute_node_uuid"] == node_uuid
            assert fields["cell_uuid"] == cloud.nova.cells[cell_name]
            assert fields["availability_zone"] == zone
            cells_seen.add(cell_name)
    assert cells_seen == {"cell1", "cell2"}


def test_disabled_and_forced_down_services_stop_receiving_instances(cloud: Cloud) -> None:
    cloud.wait_for(lambda seen: len(seen) == 5)
    cloud.nova.request(
        {"do": "service", "cell": "cell1", "host": "c1h1", "disabled": True,
         "disabled_reason": "maintenance"},
        {"do": "service", "cell": "cell2", "host": "c2h2", "forced_down": True},
    )  # fmt: skip
    seen = cloud.wait_for(lambda seen: seen["c1h1"]["disabled"] and not seen["c2h2"]["up"])
    assert seen["c1h1"]["disabled_reason"] == "maintenance"
    assert set(cloud.place(9)) == {"c1h2", "c1h3", "c2h1"}
    # Back in service: enabled, no longer forced down.
    cloud.nova.request(
        {"do": "service", "cell": "cell1", "host": "c1h1", "disabled": False,
         "disabled_reason": None},
        {"do": "service", "cell": "cell2", "host": "c2h2", "forced_down": False},
    )  # fmt: skip
    cloud.wait_for(lambda seen: all(s["up"] and not s["disabled"] for s in seen.values()))
    # The two emptiest hosts again, now that they are back.
    assert set(cloud.place(2)) == {"c1h1", "c2h2"}


def test_owner_nova_is_required_once_every_compute_is_at_version_73(cloud: Cloud) -> None:
    """Nova 34's owner_nova_filter: the lowest nova-compute version over both cells
    decides. c1h3 runs an older compute (72), which does not mark its provider OWNER_NOVA:
    while it is there the trait is not required and c1h3 keeps taking instances; once it
    reports 74 without the trait yet, it takes none (hosts reported over HTTP, with no
    service version, are tested in the unit tests)."""
    cloud.wait_for(lambda seen: len(seen) == 5)
    _, c1h3 = cloud.hosts["c1h3"]

    def version_seen(version: int) -> None:
        deadline = time.monotonic() + SETTLE
        while True:
            response = cloud.http.get(f"{SCHEDULER}/hosts/c1h3", headers=HEADERS)
            assert response.status_code == 200, response.text
            if response.json()["nodes"][0]["report"]["service_version"] == version:
                return
            assert time.monotonic() < deadline, response.json()
            time.sleep(0.2)

    version_seen(74)
    set_traits(cloud.http, c1h3, [])
    try:
        # Everything at 74: a provider without the trait is not Nova's.
        assert "c1h3" not in set(cloud.place(5))
        cloud.nova.request({"do": "service", "cell": "cell1", "host": "c1h3", "version": 72})
        version_seen(72)
        assert "c1h3" in set(cloud.place(10))
        cloud.nova.request({"do": "service", "cell": "cell1", "host": "c1h3", "version": 74})
        version_seen(74)
        assert "c1h3" not in set(cloud.place(5))
    finally:
        set_traits(cloud.http, c1h3, ["OWNER_NOVA"])


def test_heartbeats_are_read_as_nova_writes_them(cloud: Cloud) -> None:
    """``last_seen_up`` as Nova's db servicegroup driver writes it (naive UTC; DATETIME on
    MariaDB, TIMESTAMP on PostgreSQL) is the heartbeat: a state report makes it fresh, and
    a compute whose last report is two hours old (past ``service_down_time``, an hour
    here) is down."""
    seen = cloud.wait_for(lambda seen: len(seen) == 5)
    before = seen["c1h3"]["seconds_since_heartbeat"]
    cloud.nova.request({"do": "service", "cell": "cell1", "host": "c1h3", "report": True})
    seen = cloud.wait_for(lambda seen: seen["c1h3"]["seconds_since_heartbeat"] < before - 1)
    assert 0 <= seen["c1h3"]["seconds_since_heartbeat"] < SETTLE and seen["c1h3"]["up"]
    stale = node("c1h9")
    cloud.nova.request(
        {"do": "host", "cell": "cell1", "host": "c1h9", "nodes": [stale], "last_seen_up_ago": 7200}
    )
    try:
        seen = cloud.wait_for(lambda seen: "c1h9" in seen)
        assert not seen["c1h9"]["up"]
        assert 7200 <= seen["c1h9"]["seconds_since_heartbeat"] < 7200 + 600
        assert all(seen[h]["up"] for h in cloud.hosts)
    finally:
        cloud.nova.request({"do": "delete_node", "cell": "cell1", "uuid": stale["uuid"]})
        cloud.wait_for(lambda seen: "c1h9" not in seen)


def test_aggregate_changes_and_deleted_nodes_follow_nova(cloud: Cloud) -> None:
    cloud.wait_for(lambda seen: len(seen) == 5)
    cloud.nova.request(
        {"do": "aggregate_remove_host", "uuid": cloud.az1, "host": "c2h1"},
    )
    cloud.wait_for(lambda seen: seen["c2h1"]["aggregates"] == [])
    assert set(cloud.place(4, availability_zone="az1")) == {"c1h2"}
    cell, node_uuid = cloud.hosts["c2h2"]
    cloud.nova.request({"do": "delete_node", "cell": cell, "uuid": node_uuid})
    seen = cloud.wait_for(lambda seen: "c2h2" not in seen)
    assert set(seen) == set(cloud.hosts) - {"c2h2"}
