"""The operator commands (``allotment hosts|explain|capacity|audit``) through the entry
point, against one live ``allotment serve`` (and, with ``--database-url``, its database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.fleet import Fleet, flavor

HEADERS = {"x-auth-token": "admin", "openstack-api-version": "placement 1.39"}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "allotment.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Fleet, Path]]:
    """Three hosts: a1, a2 in zone az-a, b1 (AVX2) in the default zone; a1 disabled later
    by the tests that need it."""
    tmp = tmp_path_factory.mktemp("cli")
    database = tmp / "cli.sqlite"
    server = LiveServer(f"sqlite:///{database}", tmp / "state")
    http = httpx.Client(base_url=server.url)
    fleet = Fleet(http)
    fleet.host("a1", vcpus=8, ram=16384, disk=100)
    fleet.host("a2", vcpus=4, ram=4096, disk=100, cpu_ratio=2.0)
    fleet.host("b1", vcpus=16, ram=65536, disk=1000, traits=["HW_CPU_X86_AVX2"])
    fleet.aggregate("az-a", ["a1", "a2"], availability_zone="az-a")
    yield server, fleet, database
    http.close()
    server.stop()


def heartbeat(fleet: Fleet) -> None:
    """Report every host again: on a loaded machine a module's tests may take longer than
    service_down_time, and a host not heard from is down (ComputeFilter drops it)."""
    for name, host in fleet.hosts.items():
        body = {
            "compute_node_uuid": host.uuid,
            "hypervisor_type": "QEMU",
            "supported_instances": [["x86_64", "kvm", "hvm"]],
        }
        fleet.call("PUT", f"/scheduler/v1/hosts/{name}", body, expect=200)


def remote(server: LiveServer, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return cli(*args, "--url", server.url, "--token", "admin", **kw)


def test_hosts_list_show_and_a_missing_host(cloud: tuple[LiveServer, Fleet, Path]) -> None:
    server, _, _ = cloud
    done = remote(server, "hosts", "list", "--format", "json")
    assert done.returncode == 0, done.stderr
    hosts = json.loads(done.stdout)
    assert sorted(h["host"] for h in hosts) == ["a1", "a2", "b1"]
    assert all(h["up"] for h in hosts)
    table = remote(server, "hosts", "list")
    assert table.returncode == 0
    assert "3 host(s)" in table.stdout and "a2" in table.stdout and "up" in table.stdout
    shown = remote(server, "hosts", "show", "b1", "--format", "json")
    assert json.loads(shown.stdout)["nodes"][0]["report"]["hypervisor_type"] == "QEMU"
    missing = remote(server, "hosts", "show", "nope")
    assert missing.returncode == 1
    assert "HTTP 404" in missing.stderr and "nope" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_token_is_needed_and_found_in_the_environment(
    cloud: tuple[LiveServer, Fleet, Path], tmp_path: Path
) -> None:
    server, _, _ = cloud
    args = ["hosts", "list", "--url", server.url, "--format", "json"]
    refused = cli(*args, "--config", str(_config(tmp_path)))
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr and "token" in refused.stderr
    done = cli(*args, "--config", str(_config(tmp_path)), env={"ALLOTMENT_TOKEN": "admin"})
    assert done.returncode == 0, done.stderr


def _config(tmp_path: Path) -> Path:
    # A state directory with no bootstrap token in it.
    path = tmp_path / "allotment.toml"
    path.write_text(f'[server]\nstate_dir = "{tmp_path}"\n')
    return path


def test_explain_renders_the_funnel_and_the_ranking(cloud: tuple[LiveServer, Fleet, Path]) -> None:
    server, fleet, _ = cloud
    heartbeat(fleet)
    done = remote(server, "explain", "--flavor", "m1.small:2:2048:10", "--hosts", "3")
    assert done.returncode == 0, done.stderr
    assert "funnel" in done.stdout and "ranking" in done.stdout and "b1" in done.stdout
    found = remote(
        server, "explain", "--flavor", "m1.small:2:2048:10", "--az", "az-a", "--format", "json"
    )
    answer = json.loads(found.stdout)
    assert answer["result"] == "ok"
    assert {h["host"] for h in answer["hosts"]} == {"a1", "a2"}
    big = remote(server, "explain", "--flavor", "huge:64:1024:10", "--format", "json")
    assert big.returncode == 3
    assert json.loads(big.stdout)["result"] == "no_valid_host"
    table = remote(server, "explain", "--flavor", "huge:64:1024:10")
    assert table.returncode == 3 and "no valid host" in table.stdout
    assert "VCPU" in table.stdout
    bad = remote(server, "explain", "--flavor", "m1:x:1:1")
    assert bad.returncode == 2 and "integers" in bad.stderr


def test_capacity_per_zone_remote_and_from_the_database(
    cloud: tuple[LiveServer, Fleet, Path],
) -> None:
    server, fleet, database = cloud
    heartbeat(fleet)
    flavors = ["--flavor", "small:2:2048:10", "--flavor", "avx:8:8192:10"]
    done = remote(server, "capacity", *flavors, "--format", "json")
    assert done.returncode == 0, done.stderr
    small, avx = json.loads(done.stdout)
    # a1: min(8/2, 16384/2048, 100/10) = 4; a2 (ratio 2): min(4, 2, 10) = 2; b1: 8.
    assert small["availability_zones"] == {"az-a": 6, "nova": 8} and small["total"] == 14
    assert avx["total"] == 1 + 0 + 2
    table = remote(server, "capacity", *flavors, "--hosts")
    assert table.returncode == 0 and "az-a" in table.stdout and "14" in table.stdout
    local = cli("capacity", *flavors, "--database-url", f"sqlite:///{database}", "--format", "json")
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout) == [small, avx]
    listed = cli("hosts", "list", "--database-url", f"sqlite:///{database}", "--format", "json")
    assert sorted(h["host"] for h in json.loads(listed.stdout)) == ["a1", "a2", "b1"]
    none = remote(server, "capacity")
    assert none.returncode == 1 and "[metrics] capacity_flavors" in none.stderr


def test_hosts_delete(cloud: tuple[LiveServer, Fleet, Path]) -> None:
    server, fleet, _ = cloud
    extra = fleet.host("gone", vcpus=1, ram=1024, disk=10)
    done = remote(server, "hosts", "delete", "gone")
    assert done.returncode == 0, done.stderr
    listed = json.loads(remote(server, "hosts", "list", "--format", "json").stdout)
    assert "gone" not in {h["host"] for h in listed}
    again = remote(server, "hosts", "delete", "gone")
    assert again.returncode == 1 and "HTTP 404" in again.stderr
    fleet.call("DELETE", f"/resource_providers/{extra.uuid}", expect=204)
    del fleet.hosts["gone"]


def test_audit_finds_and_fixes(cloud: tuple[LiveServer, Fleet, Path]) -> None:
    server, fleet, _ = cloud
    heartbeat(fleet)
    kept, orphan = str(uuid.uuid4()), str(uuid.uuid4())
    spec = {"project_id": "p1", "user_id": "u1", "flavor": flavor(1, 1024, 10)}
    chosen = fleet.select(spec, uuids=[kept]).json()["selections"][0][0]["host"]
    fleet.call(
        "PUT", f"/scheduler/v1/hosts/{chosen}/instances", {"instances": [{"uuid": kept}]},
        expect=204,
    )  # fmt: skip
    fleet.select(spec, uuids=[orphan])  # claimed, never reported by a host
    stray = fleet.call("POST", "/resource_providers", {"name": "stray"}, expect=200).json()
    # A ratio lowered under b1's allocations.
    b1 = fleet.hosts["b1"].uuid
    fleet.select({**spec, "flavor": flavor(12, 1024, 10), "force_hosts": ["b1"]}, 1)
    generation = fleet.call("GET", f"/resource_providers/{b1}", expect=200).json()["generation"]
    fleet.call(
        "PUT", f"/resource_providers/{b1}/inventories/VCPU",
        {"resource_provider_generation": generation, "total": 16, "allocation_ratio": 0.5},
        expect=200,
    )  # fmt: skip
    done = remote(server, "audit", "--format", "json")
    assert done.returncode == 3, done.stderr
    found = json.loads(done.stdout)
    assert [a["consumer"] for a in found["orphaned_allocations"]] == sorted(
        c for c in _consumers(fleet) if c != kept
    )
    assert orphan in [a["consumer"] for a in found["orphaned_allocations"]]
    assert [p["name"] for p in found["providers_without_host"]] == ["stray"]
    [over] = found["over_capacity"]
    assert (over["provider"], over["resource_class"], over["capacity"]) == ("b1", "VCPU", 8)
    assert over["used"] >= 12
    table = remote(server, "audit")
    assert "orphaned allocations" in table.stdout and "stray" in table.stdout
    refused = remote(server, "audit", "--fix")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert fleet.call("GET", f"/allocations/{orphan}").json()["allocations"]
    fixed = remote(server, "audit", "--fix", "--yes", "--format", "json")
    assert json.loads(fixed.stdout)["fix"]["failed"] == []
    assert fleet.call("GET", f"/allocations/{orphan}").json()["allocations"] == {}
    assert fleet.call("GET", f"/allocations/{kept}").json()["allocations"]
    assert fleet.call("GET", f"/resource_providers/{stray['uuid']}").status_code == 404
    after = json.loads(remote(server, "audit", "--format", "json").stdout)
    assert after["orphaned_allocations"] == [] and after["providers_without_host"] == []


def _consumers(fleet: Fleet) -> set[str]:
    found: set[str] = set()
    for host in fleet.hosts.values():
        path = f"/resource_providers/{host.uuid}/allocations"
        found.update(fleet.call("GET", path, expect=200).json()["allocations"])
    return found
