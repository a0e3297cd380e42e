"""The scheduler's host-state HTTP routes, end to end through the app."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from allotment import cli
from tests.conftest import PlacementClient

PREFIX = "/scheduler/v1"
SERVICE = {"x-roles": "service"}


def test_host_report_then_list(client: PlacementClient) -> None:
    node = str(uuid.uuid4())
    body = {
        "compute_node_uuid": node,
        "hypervisor_type": "QEMU",
        "hypervisor_version": 8002000,
        "cpu_info": {"arch": "x86_64", "vendor": "Intel", "model": "Icelake", "features": ["avx"]},
        "numa_topology": {
            "cells": [
                {
                    "id": 0,
                    "cpus": [0, 1],
                    "memory_mb": 2048,
                    "pinned_cpus": [],
                    "siblings": [[0, 1]],
                }
            ]
        },
        "pci_pools": [
            {"vendor_id": "10de", "product_id": "1db4", "numa_node": 0, "count": 2, "tags": {}}
        ],
        "metrics": [
            {
                "name": "cpu.percent",
                "value": 12.5,
                "timestamp": "2025-01-01T00:00:00",
                "source": "libvirt",
            }
        ],
        "io_ops": 1,
        "disabled": False,
    }
    resp = client.put(f"{PREFIX}/hosts/compute-1", body, headers=SERVICE)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "host": "compute-1",
        "nodename": "compute-1",
        "compute_node_uuid": node,
        "disabled": False,
    }
    hosts = client.get(f"{PREFIX}/hosts").json()["hosts"]
    assert [(h["host"], h["up"], h["instances"]) for h in hosts] == [("compute-1", True, 0)]


def test_bad_report_is_400_naming_the_field(client: PlacementClient) -> None:
    resp = client.put(f"{PREFIX}/hosts/c1", {"compute_node_uuid": "nope", "io_ops": -1})
    assert resp.status_code == 400
    detail = resp.json()["errors"][0]["detail"]
    assert "compute_node_uuid" in detail and "io_ops" in detail


def test_only_service_or_admin(client: PlacementClient) -> None:
    resp = client.put(
        f"{PREFIX}/hosts/c1",
        {"compute_node_uuid": str(uuid.uuid4())},
        headers={"x-roles": "reader"},
    )
    assert resp.status_code == 403
    error = resp.json()["errors"][0]
    assert error["request_id"] == resp.headers["x-openstack-request-id"]
    resp = client.post(f"{PREFIX}/reset", headers=SERVICE)
    assert resp.status_code == 403


def test_aggregates(client: PlacementClient) -> None:
    agg = str(uuid.uuid4())
    resp = client.put(
        f"{PREFIX}/aggregates/{agg}",
        {"name": "az1", "hosts": ["c1"], "metadata": {"availability_zone": "az1"}},
    )
    assert resp.status_code == 200
    assert resp.json()["hosts"] == ["c1"]
    client.put(f"{PREFIX}/hosts/c1", {"compute_node_uuid": str(uuid.uuid4())})
    assert client.get(f"{PREFIX}/hosts").json()["hosts"][0]["aggregates"] == [agg]
    assert client.delete(f"{PREFIX}/aggregates/{agg}").status_code == 204
    resp = client.delete(f"{PREFIX}/aggregates/{agg}")
    assert resp.status_code == 404


def test_instances(client: PlacementClient) -> None:
    client.put(f"{PREFIX}/hosts/c1", {"compute_node_uuid": str(uuid.uuid4())})
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    resp = client.put(
        f"{PREFIX}/hosts/c1/instances",
        {"instances": [{"uuid": a, "project_id": "p1"}, {"uuid": b}]},
        headers=SERVICE,
    )
    assert resp.status_code == 204
    assert client.get(f"{PREFIX}/hosts").json()["hosts"][0]["instances"] == 2
    assert client.delete(f"{PREFIX}/hosts/c1/instances/{a}").status_code == 204
    resp = client.post(f"{PREFIX}/hosts/c1/instances/sync", {"instance_uuids": [b]})
    assert resp.json() == {"in_sync": True, "added": [], "removed": []}
    resp = client.post(f"{PREFIX}/hosts/c1/instances/sync", {"instance_uuids": []})
    assert resp.json() == {"in_sync": False, "added": [], "removed": [b]}
    resp = client.put(f"{PREFIX}/hosts/c1/instances", {"instances": "x"})
    assert resp.status_code == 400


def test_reset(client: PlacementClient) -> None:
    client.put(f"{PREFIX}/hosts/c1", {"compute_node_uuid": str(uuid.uuid4())})
    resp = client.post(f"{PREFIX}/reset")
    assert resp.status_code == 200
    assert resp.json()["hosts"] == 1


def test_unknown_paths_and_methods(client: PlacementClient) -> None:
    assert client.get(f"{PREFIX}/nowhere").status_code == 404
    resp = client.post(f"{PREFIX}/hosts")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET"
    resp = client.client.put(f"{PREFIX}/hosts/c1", content=b"{nope", headers=client.headers())
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["code"] == "placement.undefined_code"


def test_bad_plugin_name_stops_start_up_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "allotment.toml"
    config.write_text('[filter_scheduler]\nenabled_filters = ["ComputeFilter", "RamFilter"]\n')
    code = cli.main(
        ["serve", "--config", str(config), "--auth", "noauth", "--state-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot load RamFilter" in err and "valid names:" in err
    assert "Traceback" not in err


def test_show_and_delete_a_host(client: PlacementClient) -> None:
    node = str(uuid.uuid4())
    client.put(f"{PREFIX}/hosts/c1", {"compute_node_uuid": node, "hypervisor_type": "QEMU"})
    client.put(f"{PREFIX}/hosts/c2", {"compute_node_uuid": str(uuid.uuid4())})
    client.put(f"{PREFIX}/hosts/c1/instances", {"instances": [{"uuid": str(uuid.uuid4())}]})
    shown = client.get(f"{PREFIX}/hosts/c1").json()
    assert shown["host"] == "c1"
    [only] = shown["nodes"]
    assert only["compute_node_uuid"] == node and only["instances"] == 1 and only["up"]
    assert only["report"]["hypervisor_type"] == "QEMU" and len(shown["instance_uuids"]) == 1
    assert client.delete(f"{PREFIX}/hosts/c1", headers={"x-roles": "reader"}).status_code == 403
    assert client.delete(f"{PREFIX}/hosts/c1").status_code == 204
    assert [h["host"] for h in client.get(f"{PREFIX}/hosts").json()["hosts"]] == ["c2"]
    resp = client.get(f"{PREFIX}/hosts/c1")
    assert resp.status_code == 404 and "c1" in resp.json()["errors"][0]["detail"]
    resp = client.delete(f"{PREFIX}/hosts/c1")
    assert resp.status_code == 404
    # The same node may report again, starting with no instances.
    client.put(f"{PREFIX}/hosts/c1", {"compute_node_uuid": node})
    assert client.get(f"{PREFIX}/hosts/c1").json()["nodes"][0]["instances"] == 0


def test_show_host_lists_each_of_its_nodes_and_no_other_host(client: PlacementClient) -> None:
    nodes = {f"node-{i}": str(uuid.uuid4()) for i in range(2)}
    for name, node in nodes.items():  # one host, two nodes (the ironic shape)
        client.put(f"{PREFIX}/hosts/bm1", {"compute_node_uuid": node, "nodename": name})
    client.put(f"{PREFIX}/hosts/bm10", {"compute_node_uuid": str(uuid.uuid4())})
    shown = client.get(f"{PREFIX}/hosts/bm1").json()["nodes"]
    assert sorted((n["nodename"], n["compute_node_uuid"]) for n in shown) == sorted(nodes.items())
    assert {n["host"] for n in shown} == {"bm1"}
    assert client.get(f"{PREFIX}/hosts/bm").status_code == 404


def test_capacity_counts_what_fits_per_zone(client: PlacementClient) -> None:
    from tests.fleet import Fleet, flavor

    fleet = Fleet(client.client)
    fleet.host("a1", vcpus=8, ram=16384, disk=100)
    fleet.host("a2", vcpus=4, ram=4096, disk=100, cpu_ratio=2.0)
    fleet.host("b1", vcpus=16, ram=65536, disk=1000, traits=["HW_CPU_X86_AVX2"])
    fleet.host("off", vcpus=64, ram=65536, disk=1000, report={"disabled": True})
    fleet.aggregate("az-a", ["a1", "a2"], availability_zone="az-a")
    small = flavor(2, 2048, 10)
    body = {
        "flavors": [small, flavor(8, 8192, 10, extra_specs={"trait:HW_CPU_X86_AVX2": "required"})]
    }
    resp = client.post(f"{PREFIX}/capacity", {**body, "hosts": True})
    assert resp.status_code == 200, resp.text
    first, second = resp.json()["flavors"]
    # a1: min(8/2, 16384/2048, 100/10) = 4; a2: min(8/2, 2, 10) = 2; b1: min(8, 32, 100) = 8.
    assert first["availability_zones"] == {"az-a": 6, "nova": 8}
    assert first["total"] == 14
    assert [(h["host"], h["fits"]) for h in first["hosts"]] == [("b1", 8), ("a1", 4), ("a2", 2)]
    assert second["total"] == 2 and second["availability_zones"] == {"nova": 2}
    one_zone = client.post(f"{PREFIX}/capacity", {**body, "availability_zone": "az-a"}).json()
    assert one_zone["flavors"][0]["total"] == 6 and "hosts" not in one_zone["flavors"][0]
    assert one_zone["flavors"][1]["total"] == 0 and one_zone["flavors"][1]["reason"]
    for bad in ({}, {"flavors": []}, {"flavors": [{"name": "x"}]}, {"flavors": [small], "x": 1}):
        resp = client.post(f"{PREFIX}/capacity", bad)
        assert resp.status_code == 400, bad
    assert client.post(f"{PREFIX}/capacity", body, headers={"x-roles": "reader"}).status_code == 403
