"""Fits instance NUMA topologies onto host NUMA topologies with Nova 34's own
``nova.virt.hardware.numa_fit_instance_to_host``, for allotment's differential test.

Runs with the Nova test venv's python, never ours. Reads one JSON list of cases on stdin;
each ``{"host": [{id, cpuset, pcpuset, memory, cpu_usage, memory_usage, pinned_cpus,
physnets, tunneled, socket}], "instance": [{id, cpuset, pcpuset, memory}], "cpu_policy",
"cpu_allocation_ratio", "ram_allocation_ratio", "network_metadata": {physnets, tunneled}
or null, "pci_requests": [{count, spec, numa_policy}], "pci_pools": [{vendor_id,
product_id, numa_node, count, tags}]}``. Writes one JSON list: per case
``{"numa_topology": <the host topology as Nova stores it in compute_nodes>, "cells":
[host cell id per instance cell] or null}``. A case with ``"check": [host cell ids]``
answers ``{"accepted": bool}`` instead: whether Nova's own rule functions (each cell's
``_numa_fit_instance_cell``, ``PciDeviceStats.support_requests`` for those cells,
``_numa_cells_support_network_metadata``) accept that assignment.
"""

import json
import sys

from nova import objects
from nova.pci import stats
from nova.virt import hardware
from novadb import numa as host_topology


def instance_topology(case):
    return objects.InstanceNUMATopology(
        cells=[
            objects.InstanceNUMACell(
                id=c["id"],
                cpuset=set(c.get("cpuset", [])),
                pcpuset=set(c.get("pcpuset", [])),
                memory=c["memory"],
                cpu_policy=case.get("cpu_policy"),
            )
            for c in case["instance"]
        ]
    )


def check(case, host, limits, requests, pci_stats, chosen):
    cells_by_id = {cell.id: cell for cell in host.cells}
    chosen_cells = [cells_by_id[i] for i in chosen]
    fitted = []
    for host_cell, instance_cell in zip(chosen_cells, instance_topology(case).cells, strict=True):
        got = hardware._numa_fit_instance_cell(host_cell, instance_cell, limits, 0)
        if got is None:
            return False
        fitted.append(got)
    if requests and not pci_stats.support_requests(requests, None, fitted):
        return False
    if "network_metadata" in limits:
        return hardware._numa_cells_support_network_metadata(
            host, chosen_cells, limits.network_metadata
        )
    return True


def run(case):
    host = host_topology(case["host"])
    limits = objects.NUMATopologyLimits(
        cpu_allocation_ratio=case["cpu_allocation_ratio"],
        ram_allocation_ratio=case["ram_allocation_ratio"],
    )
    if case.get("network_metadata") is not None:
        network = case["network_metadata"]
        limits.network_metadata = objects.NetworkMetadata(
            physnets=set(network["physnets"]), tunneled=network["tunneled"]
        )
    pools = objects.PciDevicePoolList(
        objects=[objects.PciDevicePool(**pool) for pool in case.get("pci_pools", [])]
    )
    requests = [
        objects.InstancePCIRequest(
            count=r["count"], spec=r["spec"], numa_policy=r["numa_policy"], request_id=None
        )
        for r in case.get("pci_requests", [])
    ]
    # As the scheduler's HostState builds it from the compute node's pci_device_pools.
    pci_stats = stats.PciDeviceStats(host, stats=pools)
    if "check" in case:
        return {"accepted": check(case, host, limits, requests, pci_stats, case["check"])}
    fitted = hardware.numa_fit_instance_to_host(
        host,
        instance_topology(case),
        provider_mapping=None,
        limits=limits,
        pci_requests=requests,
        pci_stats=pci_stats,
    )
    return {
        "numa_topology": host._to_json(),
        "cells": None if fitted is None else [cell.id for cell in fitted.cells],
    }


def main():
    objects.register_all()
    cases = json.load(sys.stdin)
    json.dump([run(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
