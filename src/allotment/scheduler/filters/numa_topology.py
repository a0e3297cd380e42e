"""NUMATopologyFilter: the instance's NUMA cells (and pinned CPUs) fit the host's free
NUMA resources, within the host's allocation ratios."""

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

    def _failure(self, view: HostView, pos: int) -> str | None:
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
        report = view.record(pos).report
        fits = numa_fit(topology, request, report.cpu_allocation_ratio, report.ram_allocation_ratio)
        if fits is None:
            return "the instance's NUMA cells do not fit the host's free NUMA resources"
        return None

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        return np.fromiter(
            (self._failure(view, p) is None for p in pos.tolist()), np.bool_, len(pos)
        )

    def reason(self, view: HostView, pos: int) -> str:
        return self._failure(view, pos) or super().reason(view, pos)

    def limits(self, view: HostView, pos: int) -> Mapping[str, Any]:
        """The host's allocation ratios, which the compute host applies to the NUMA fit."""
        report = view.record(pos).report
        return {
            "numa_topology": {
                "cpu_allocation_ratio": report.cpu_allocation_ratio,
                "ram_allocation_ratio": report.ram_allocation_ratio,
            }
        }
