"""Physnet NUMA affinity and PCI devices on the instance's NUMA cells, end to end: compute
nodes written by Nova 34's own objects into databases made by ``nova-manage`` (cells with
``network_metadata``, PCI pools with a ``numa_node``), read by ``allotment serve
--nova-config``, and ``select_destinations`` called through Nova's own
``SchedulerAPI`` with RequestSpecs carrying ``numa_topology``, ``network_metadata`` and
``pci_requests``. Each host is only right or wrong by where its networks and devices sit
relative to its free NUMA cell, so only honouring those rules picks the expected host."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.integration.nova.conftest import NovaDriver
from tests.integration.nova.conftest import rabbit_vhost as new_vhost
from tests.integration.nova.test_novadb import (
    RESYNC,
    Cloud,
    make_nova_databases,
    node,
    provider,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

PCI = {"vendor_id": "8086", "product_id": "1520", "count": 1, "tags": {"dev_type": "type-PCI"}}


def cells(*, free: int, physnet_on: int | None = None) -> list[dict[str, Any]]:
    """Two NUMA cells of 4 CPUs and 8 GB; only cell ``free`` has memory left; physnet1
    is local to cell ``physnet_on``."""
    return [
        {
            "id": i,
            "cpuset": list(range(4 * i, 4 * i + 4)),
            "pcpuset": [],
            "memory": 8192,
            "memory_usage": 0 if i == free else 8192,
            "physnets": ["physnet1"] if i == physnet_on else [],
            "siblings": [],
        }
        for i in range(2)
    ]


LAYOUT = {
    # physnet1 is local to every host's cell 1; only this one has cell 1 free.
    "physnet-near": node("physnet-near", numa=cells(free=1, physnet_on=1)),
    "physnet-far": node("physnet-far", numa=cells(free=0, physnet_on=1)),
    # A device on the free cell, and one on the full cell.
    "pci-near": node("pci-near", numa=cells(free=0, physnet_on=1), pci=[{**PCI, "numa_node": 0}]),
    "pci-far": node("pci-far", numa=cells(free=0, physnet_on=1), pci=[{**PCI, "numa_node": 1}]),
}


@dataclass
class NumaCloud:
    cloud: Cloud

    def select(self, *, ignore: tuple[str, ...] = (), **spec: Any) -> dict[str, Any]:
        """One select_destinations through Nova's SchedulerAPI for a one-cell NUMA instance
        with ``spec``'s extra RequestSpec fields; the answer as the driver reads it back."""
        instance = str(uuid.uuid4())
        body = {
            "$obj": "RequestSpec",
            "project_id": "p1",
            "user_id": "u1",
            "instance_uuid": instance,
            "flavor": {
                "$obj": "Flavor",
                "name": "numa",
                "flavorid": "1",
                "vcpus": 2,
                "memory_mb": 2048,
                "root_gb": 1,
                "ephemeral_gb": 0,
                "swap": 0,
                "extra_specs": {"hw:numa_nodes": "1"},
            },
            "numa_topology": {
                "$obj": "InstanceNUMATopology",
                "cells": [
                    {
                        "$obj": "InstanceNUMACell",
                        "id": 0,
                        "cpuset": {"$set": [0, 1]},
                        "pcpuset": {"$set": []},
                        "memory": 2048,
                    }
                ],
            },
            "ignore_hosts": list(ignore),
            "num_instances": 1,
            "is_bfv": False,
            "scheduler_hints": {},
            **spec,
        }
        call = {
            "method": "select_destinations",
            "context": {"user_id": "u1", "project_id": "p1", "roles": ["member"]},
            "spec": body,
            "instance_uuids": [instance],
            "return_objects": True,
            "return_alternates": False,
        }
        (answer,) = self.cloud.rpc.run(
            {"transport_url": self.cloud.nova.transport_url, "calls": [call]}, timeout=300
        )
        assert isinstance(answer, dict)
        return answer

    def host(self, **spec: Any) -> str:
        answer = self.select(**spec)
        assert "result" in answer, answer
        ((selection,),) = answer["result"]
        host: str = selection["fields"]["service_host"]
        return host

    def no_valid_host(self, **spec: Any) -> str:
        answer = self.select(**spec)
        assert "error" in answer, answer
        assert "NoValidHost" in answer["error"]["nova_class"], answer
        message: str = answer["error"]["message"]
        return message


def network(*physnets: str, tunneled: bool = False) -> dict[str, Any]:
    return {"$obj": "NetworkMetadata", "physnets": {"$set": list(physnets)}, "tunneled": tunneled}


def devices(policy: str) -> dict[str, Any]:
    return {
        "$obj": "InstancePCIRequests",
        "requests": [
            {
                "$obj": "InstancePCIRequest",
                "count": 1,
                "spec": [{"vendor_id": "8086", "product_id": "1520"}],
                "alias_name": "nic",
                "numa_policy": policy,
                "request_id": None,
            }
        ],
    }


@pytest.fixture(scope="module")
def rabbit_vhost() -> Iterator[str]:
    """A transport URL in a vhost of this module's own."""
    with new_vhost("hm-numa-") as url:
        yield url


@pytest.fixture(scope="module")
def numa_cloud(
    tmp_path_factory: pytest.TempPathFactory, nova_python: Path, rabbit_vhost: str
) -> Iterator[NumaCloud]:
    nova, drop = make_nova_databases(nova_python, rabbit_vhost, "hm_")
    try:
        nova.request(
            *(
                {"do": "host", "cell": "cell1", "host": name, "nodes": [spec]}
                for name, spec in LAYOUT.items()
            )
        )
        folder = tmp_path_factory.mktemp("novadb-numa")
        nova_conf = folder / "nova.conf"
        nova_conf.write_text(
            f"[DEFAULT]\ntransport_url = {rabbit_vhost}\nhost = hm-sched\n"
            f"[api_database]\nconnection = {nova.urls['api']}\n"
            f"[database]\nconnection = {nova.urls['cell1']}\n"
        )
        settings = folder / "allotment.toml"
        settings.write_text(
            f"[nova]\nresync_interval = {RESYNC}\n"
            "[scheduler]\nperiodic_interval = 1.0\nservice_down_time = 3600\n"
            "[filter_scheduler]\nhost_subset_size = 1\n"
            'enabled_filters = ["ComputeFilter", "NUMATopologyFilter", "PciPassthroughFilter"]\n'
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
            server.wait_ready(timeout=120)
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for name, spec in LAYOUT.items():
                    provider(http, spec["uuid"], name)
                hosts = {name: ("cell1", spec["uuid"]) for name, spec in LAYOUT.items()}
                cloud = Cloud(
                    nova, server, http, NovaDriver(nova_python, "scheduler_rpc.py"), hosts, ""
                )
                cloud.wait_for(lambda seen: len(seen) == len(LAYOUT))
                yield NumaCloud(cloud)
        finally:
            server.stop()
    finally:
        drop()


def test_a_physnet_s_numa_affinity_picks_the_host_with_that_cell_free(
    numa_cloud: NumaCloud,
) -> None:
    physnet1 = network("physnet1")
    assert {numa_cloud.host(network_metadata=physnet1) for _ in range(3)} == {"physnet-near"}
    message = numa_cloud.no_valid_host(network_metadata=physnet1, ignore=("physnet-near",))
    assert "NUMATopologyFilter" in message
    # A physnet no cell is local to, and no network metadata: every host fits.
    others = ("physnet-near", "pci-far", "pci-near")
    assert numa_cloud.host(network_metadata=network("physnet2"), ignore=others) == "physnet-far"
    assert numa_cloud.host(ignore=others) == "physnet-far"


def test_selection_limits_carry_the_network_metadata_to_the_compute(
    numa_cloud: NumaCloud,
) -> None:
    answer = numa_cloud.select(network_metadata=network("physnet1", tunneled=True))
    ((selection,),) = answer["result"]
    numa_limits = selection["fields"]["limits"]["fields"]["numa_topology"]["fields"]
    metadata = numa_limits["network_metadata"]["fields"]
    assert (metadata["physnets"], metadata["tunneled"]) == (["physnet1"], True)


def test_pci_devices_by_numa_policy(numa_cloud: NumaCloud) -> None:
    for policy in ("required", "legacy"):
        assert numa_cloud.host(pci_requests=devices(policy)) == "pci-near", policy
        message = numa_cloud.no_valid_host(pci_requests=devices(policy), ignore=("pci-near",))
        assert "NUMATopologyFilter" in message, policy
    # preferred: a device on another cell will do when no local one is left.
    assert numa_cloud.host(pci_requests=devices("preferred"), ignore=("pci-near",)) == "pci-far"
