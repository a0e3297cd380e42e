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
