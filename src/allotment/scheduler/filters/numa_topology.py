"""NUMATopologyFilter: the instance's NUMA cells (and pinned CPUs) fit the host's free
NUMA resources, within the host's allocation ratios, on cells that also have the PCI
devices the instance asks for (by each request's ``numa_policy``) and the NUMA affinity of
the networks it uses (RequestSpec.network_metadata), as Nova's filter does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from allotment.scheduler.framework import BoolArray, HostFilter, HostView, IntArray, numa_fit


class NUMATopologyFilter(HostFilter):
    vectorized = False
    reason_code = "numa"

    def prepare(self, view: HostView) -> bool:
        return view.numa_request is not None

    def _fits(self, view: HostView, pos: int, *, pci: bool, network: bool) -> bool:
        """Whether the instance fits, counting the PCI devices and the networks or not."""
        request = view.numa_request
        topology = view.numa(pos)
        assert request is not None and topology is not None
        report = view.record(pos).report
        fits = numa_fit(
            topology,
            request,
            report.cpu_allocation_ratio,
            report.ram_allocation_ratio,
            network=view.spec.network_metadata if network else None,
            pci_requests=view.pci_requests if pci else (),
            pci_pools=view.pci_pools(pos),
        )
        return fits is not None

    def _passes(self, view: HostView, pos: int) -> bool:
        request = view.numa_request
        assert request is not None
        topology = view.numa(pos)
        if topology is None:
            return False
        if (
            request.cpu.policy == "dedicated"
            and request.cpu.thread_policy == "require"
            and not topology.has_threads
        ):
            return False
        return self._fits(view, pos, pci=True, network=True)

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        return np.fromiter((self._passes(view, p) for p in pos.tolist()), np.bool_, len(pos))

    def reason(self, view: HostView, pos: int) -> str:
        """Which of Nova's conditions failed, tried from the loosest: the cells alone, then
        with the PCI devices on them, then with the networks' NUMA affinity."""
        request = view.numa_request
        assert request is not None
        topology = view.numa(pos)
        if topology is None:
            return "the instance needs a NUMA topology and the host reports none"
        if (
            request.cpu.policy == "dedicated"
            and request.cpu.thread_policy == "require"
            and not topology.has_threads
        ):
            return "cpu_thread_policy=require but the host has no hyperthreads"
        if not self._fits(view, pos, pci=False, network=False):
            return "the instance's NUMA cells do not fit the host's free NUMA resources"
        if view.pci_requests and not self._fits(view, pos, pci=True, network=False):
            wanted = ", ".join(f"{r.alias}:{r.count} ({r.numa_policy})" for r in view.pci_requests)
            return (
                f"no host NUMA cells the instance fits on have the PCI devices {wanted} "
                "within their NUMA policy"
            )
        network = view.spec.network_metadata
        if network is not None and not self._fits(view, pos, pci=True, network=True):
            names = sorted(network.physnets) + (["tunneled"] if network.tunneled else [])
            wanted = ", ".join(names)
            return (
                f"the instance's networks ({wanted}) have NUMA affinity to host cells it "
                "does not fit on"
            )
        return super().reason(view, pos)

    def limits(self, view: HostView, pos: int) -> Mapping[str, Any]:
        """The host's allocation ratios, which the compute host applies to the NUMA fit,
        and the instance's network metadata, which its claim checks again (Nova's
        NUMATopologyLimits)."""
        report = view.record(pos).report
        limits: dict[str, Any] = {
            "cpu_allocation_ratio": report.cpu_allocation_ratio,
            "ram_allocation_ratio": report.ram_allocation_ratio,
        }
        network = view.spec.network_metadata
        if network is not None:
            limits["network_metadata"] = network.model_dump()
        return {"numa_topology": limits}
