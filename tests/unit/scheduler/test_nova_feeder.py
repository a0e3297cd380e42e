"""Reading Nova's rows: cell URL templates, driver names, the JSON columns of
compute_nodes and a node with its service as a host report."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from allotment import errors
from allotment.scheduler.nova import novadb
from allotment.scheduler.nova.feeder import build_report, decode_numa, decode_pci_stats


def _obj(name: str, version: str, **data: Any) -> dict[str, Any]:
    return {
        "nova_object.name": name,
        "nova_object.namespace": "nova",
        "nova_object.version": version,
        "nova_object.data": data,
    }


def test_cell_url_templates_are_filled_from_the_database_connection() -> None:
    default = "mysql+pymysql://nova:secret@db.example:3307/nova?charset=utf8"
    template = "{scheme}://{username}:{password}@{hostname}:{port}/nova_cell2?{query}"
    assert novadb.format_cell_url(template, default) == (
        "mysql+pymysql://nova:secret@db.example:3307/nova_cell2?charset=utf8"
    )
    assert novadb.format_cell_url("sqlite:///x", None) == "sqlite:///x"
    with pytest.raises(errors.ConfigError, match=r"\[database\] connection"):
        novadb.format_cell_url(template, None)


def test_oslo_db_urls_use_the_drivers_we_ship() -> None:
    assert novadb.sqlalchemy_url("mysql://u@h/nova").startswith("mysql+pymysql://")
    assert novadb.sqlalchemy_url("mysql+pymysql://u@h/nova") == "mysql+pymysql://u@h/nova"
    assert novadb.sqlalchemy_url("postgresql://u@h/nova").startswith("postgresql+psycopg://")
    with pytest.raises(errors.ConfigError):
        novadb.sqlalchemy_url("not a url")


def test_numa_topology_shared_dedicated_and_legacy_cells() -> None:
    cells = [
        _obj("NUMACell", "1.5", id=0, cpuset=[0, 1], pcpuset=[2, 3], memory=4096,
             pinned_cpus=[2], siblings=[[0, 2], [1, 3]], cpu_usage=1, memory_usage=512),
        _obj("NUMACell", "1.5", id=1, cpuset=[4, 5], pcpuset=[4, 5], memory=4096),
    ]  # fmt: skip
    topology = decode_numa(json.dumps(_obj("NUMATopology", "1.2", cells=cells)))
    assert topology is not None
    first, second = topology.cells
    assert (first.cpus, first.pcpus, first.pinned_cpus) == ([0, 1, 2, 3], [2, 3], [2])
    assert (first.siblings, first.cpu_usage, first.memory_usage) == ([[0, 2], [1, 3]], 1, 512)
    assert (second.cpus, second.pcpus) == ([4, 5], None)
    assert decode_numa(None) is None


def test_numa_cells_networks_and_sockets() -> None:
    """NUMACell 1.3+ network_metadata (the compute's [neutron_physnet_*] numa_nodes) and
    1.5 socket are read; older cells have neither."""
    local = _obj("NetworkMetadata", "1.0", physnets=["physnet2", "physnet1"], tunneled=True)
    cells = [
        _obj("NUMACell", "1.5", id=0, cpuset=[0], pcpuset=[], memory=1024,
             network_metadata=local, socket=1),
        _obj("NUMACell", "1.2", id=1, cpuset=[1], pcpuset=[], memory=1024),
    ]  # fmt: skip
    topology = decode_numa(json.dumps(_obj("NUMATopology", "1.2", cells=cells)))
    assert topology is not None
    first, second = topology.cells
    assert first.network_metadata is not None
    assert (first.network_metadata.physnets, first.network_metadata.tunneled) == (
        ["physnet1", "physnet2"],
        True,
    )
    assert (first.socket, second.network_metadata, second.socket) == (1, None, None)


def test_pci_stats_object_and_legacy_forms() -> None:
    pool = _obj("PciDevicePool", "1.1", vendor_id="8086", product_id="1520", numa_node=0,
                count=4, tags={"dev_type": "type-VF"})  # fmt: skip
    listed = _obj("PciDevicePoolList", "1.1", objects=[pool])
    (found,) = decode_pci_stats(json.dumps(listed))
    assert (found.vendor_id, found.count, found.tags) == ("8086", 4, {"dev_type": "type-VF"})
    legacy = [{"vendor_id": "10de", "product_id": "1eb8", "count": 1, "physical_network": "p"}]
    (old,) = decode_pci_stats(json.dumps(legacy))
    assert (old.product_id, old.tags) == ("1eb8", {"physical_network": "p"})
    assert decode_pci_stats(None) == []


def _node(**overrides: Any) -> dict[str, Any]:
    node: dict[str, Any] = dict.fromkeys(novadb.NODE_COLUMNS)
    node.update(
        uuid=str(uuid.uuid4()),
        host="cmp1",
        hypervisor_hostname="cmp1.example",
        hypervisor_type="QEMU",
        hypervisor_version=8002000,
        host_ip="192.0.2.7",
        cpu_info=json.dumps({"arch": "x86_64", "features": ["avx2"], "topology": {"cores": 4}}),
        stats=json.dumps({"io_workload": "2", "failed_builds": "1", "num_instances": "3"}),
        metrics=json.dumps([{"name": "cpu.percent", "value": 0.5, "source": "libvirt"}]),
        supported_instances=json.dumps([["x86_64", "kvm", "hvm"]]),
        cpu_allocation_ratio=0.0,
        ram_allocation_ratio=1.5,
    )
    node.update(overrides)
    return node


def test_a_node_and_its_service_become_a_host_report() -> None:
    cell = str(uuid.uuid4())
    service = novadb.ServiceRow("cmp1", True, "maintenance", True, 1.0e9, 66)
    report = build_report(_node(), service, cell)
    assert (report.nodename, report.cell_uuid) == ("cmp1.example", cell)
    assert (report.disabled, report.disabled_reason, report.forced_down) == (
        True,
        "maintenance",
        True,
    )
    assert (report.io_ops, report.failed_builds) == (2, 1)
    # A ratio Nova has not set reads as initial_cpu_allocation_ratio's default.
    assert (report.cpu_allocation_ratio, report.ram_allocation_ratio) == (4.0, 1.5)
    assert report.cpu_info.arch == "x86_64" and report.cpu_info.features == ["avx2"]
    assert [m.name for m in report.metrics] == ["cpu.percent"]
    assert report.supported_instances == [("x86_64", "kvm", "hvm")]


def test_an_unreadable_json_column_is_left_empty_not_fatal() -> None:
    service = novadb.ServiceRow("cmp1", False, None, False, None, 66)
    report = build_report(
        _node(numa_topology="{not json", metrics="[{}]"), service, str(uuid.uuid4())
    )
    assert report.numa_topology is None and report.metrics == []
