"""allotment's NUMA fit against Nova 34's own ``numa_fit_instance_to_host`` on the same
inputs: random host topologies (physnet and tunnel affinity, sockets, usage), instance
topologies (one or two cells, shared or pinned), network metadata and PCI requests of
every ``numa_policy`` against pools on the host's cells (physical functions among them).
The host topology reaches allotment as the JSON Nova stores in
``compute_nodes.numa_topology``, decoded by the Nova DB feeder; both must choose the same
host cells, or both refuse.

One known difference: Nova's fit caches which (host cell, instance cell id) pairs do not
fit, but renumbers the instance cells to host cell ids as it goes, so a later
permutation can be skipped for a pair it never tried; Nova may then refuse (or choose a
later assignment) where allotment finds a valid one. Such a difference is accepted only
when Nova's own rule functions accept allotment's assignment, and must stay rare."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from allotment.scheduler import pci
from allotment.scheduler.nova.feeder import decode_numa
from allotment.scheduler.numa import (
    HostNuma,
    InstanceCell,
    NumaRequest,
    cpu_constraints,
    fit,
)
from allotment.scheduler.records import NetworkMetadata, PciPool
from allotment.scheduler.request import PciRequest
from tests.integration.nova.conftest import NovaDriver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CASES = 600
POLICIES = ("required", "legacy", "preferred", "socket")
VENDORS = ("8086", "10de")


def _subset(rng: random.Random, items: tuple[str, ...]) -> list[str]:
    return [item for item in items if rng.random() < 0.35]


def random_case(rng: random.Random) -> dict[str, Any]:
    pinned = rng.random() < 0.3
    host_cells = []
    next_cpu = 0
    sockets = rng.random() < 0.8
    for cell_id in range(rng.randint(1, 4)):
        size = rng.randint(2, 4)
        cpus = list(range(next_cpu, next_cpu + size))
        next_cpu += size
        memory = rng.choice((1024, 2048, 4096))
        cell: dict[str, Any] = {
            "id": cell_id,
            "memory": memory,
            "memory_usage": rng.choice((0, 0, memory // 2, memory)),
            "physnets": _subset(rng, ("physnet1", "physnet2")),
            "tunneled": rng.random() < 0.25,
            "socket": cell_id // 2 if sockets else None,
        }
        if pinned:
            # One thread per core, as libvirt reports a host without SMT.
            cell.update(
                cpuset=[],
                pcpuset=cpus,
                pinned_cpus=cpus[: rng.randint(0, size)],
                siblings=[[c] for c in cpus],
            )
        else:
            cell.update(cpuset=cpus, pcpuset=[], cpu_usage=rng.randint(0, 2 * size))
        host_cells.append(cell)
    instance_cells = []
    next_cpu = 0
    for cell_id in range(rng.randint(1, min(2, len(host_cells)))):
        size = rng.randint(1, 2)
        cpus = list(range(next_cpu, next_cpu + size))
        next_cpu += size
        memory = rng.choice((256, 512, 1024, 2048))
        cell = {"id": cell_id, "memory": memory}
        cell.update(pcpuset=cpus) if pinned else cell.update(cpuset=cpus)
        instance_cells.append(cell)
    network = None
    if rng.random() < 0.6:
        network = {
            "physnets": _subset(rng, ("physnet1", "physnet2", "physnet3")),
            "tunneled": rng.random() < 0.4,
        }
    nodes = [*range(len(host_cells)), None]
    pools = [
        {
            "vendor_id": rng.choice(VENDORS),
            "product_id": "1520",
            "numa_node": rng.choice(nodes),
            "count": rng.randint(0, 2),
            # One tag each: Nova orders its pools by their number of keys.
            "tags": {"dev_type": rng.choice(("type-PCI", "type-VF", "type-PF"))},
        }
        for _ in range(rng.randint(0, 4))
    ]
    requests = [
        {
            "count": rng.randint(1, 2),
            "spec": [
                {"vendor_id": rng.choice(VENDORS)}
                | ({"dev_type": "type-PF"} if rng.random() < 0.2 else {})
            ],
            "numa_policy": rng.choice(POLICIES),
        }
        for _ in range(rng.choice((0, 1, 1, 2)))
    ]
    return {
        "host": host_cells,
        "instance": instance_cells,
        "cpu_policy": "dedicated" if pinned else None,
        "cpu_allocation_ratio": rng.choice((1.0, 4.0)),
        "ram_allocation_ratio": rng.choice((1.0, 1.5)),
        "network_metadata": network,
        "pci_requests": requests,
        "pci_pools": pools,
    }


def our_fit(case: dict[str, Any], stored_topology: str) -> tuple[list[int] | None, bool]:
    """The cells allotment chooses, and whether networks and devices changed the answer."""
    topology = decode_numa(stored_topology)
    assert topology is not None
    host = HostNuma.from_report(topology)
    vcpus = sum(len(c.get("cpuset", [])) + len(c.get("pcpuset", [])) for c in case["instance"])
    extra = {"hw:cpu_policy": "dedicated"} if case["cpu_policy"] else {}
    request = NumaRequest(
        tuple(
            InstanceCell(
                c["id"],
                frozenset(c.get("cpuset", [])) | frozenset(c.get("pcpuset", [])),
                frozenset(c.get("pcpuset", [])),
                c["memory"],
            )
            for c in case["instance"]
        ),
        cpu_constraints(vcpus, extra, {}),
    )
    network = case["network_metadata"]
    requests = pci.from_request_spec([PciRequest.model_validate(r) for r in case["pci_requests"]])
    pools = [PciPool.model_validate(p) for p in case["pci_pools"]]
    ratios = (case["cpu_allocation_ratio"], case["ram_allocation_ratio"])
    found = fit(
        host,
        request,
        *ratios,
        network=None if network is None else NetworkMetadata.model_validate(network),
        pci_requests=requests,
        pci_pools=pools,
    )
    plain = fit(host, request, *ratios, pci_pools=pools)
    cells = None if found is None else [f.host_cell for f in found]
    plain_cells = None if plain is None else [f.host_cell for f in plain]
    return cells, cells != plain_cells


def test_the_same_cells_as_nova_s_numa_fit_instance_to_host(nova_python: Path) -> None:
    rng = random.Random(20261204)
    cases = [random_case(rng) for _ in range(CASES)]
    answers = NovaDriver(nova_python, "numa_fit.py").run(cases, timeout=300)
    mismatches = []
    constrained = fitted = 0
    for case, answer in zip(cases, answers, strict=True):
        ours, changed = our_fit(case, answer["numa_topology"])
        constrained += changed
        fitted += ours is not None
        if ours != answer["cells"]:
            mismatches.append({"case": case, "nova": answer["cells"], "allotment": ours})
    found = [m for m in mismatches if m["allotment"] is not None]
    checks = [{**m["case"], "check": m["allotment"]} for m in found]
    accepted = NovaDriver(nova_python, "numa_fit.py").run(checks, timeout=300) if checks else []
    wrong = [m for m in mismatches if m["allotment"] is None]
    wrong += [m for m, a in zip(found, accepted, strict=True) if not a["accepted"]]
    assert not wrong, f"{len(wrong)} of {CASES} differ; first: {wrong[0]}"
    # Nova's cache quirk (see the module doc) is rare on these inputs.
    assert len(mismatches) <= CASES // 50, mismatches
    # The cases exercise the rules: networks or devices decide a good share of them, and
    # neither everything nor nothing fits.
    assert constrained > CASES // 10, constrained
    assert CASES // 5 < fitted < CASES - CASES // 5, fitted
