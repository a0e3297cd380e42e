"""NUMATopologyFilter: the instance's NUMA cells (and pinned CPUs) fit the host's free
NUMA resources, within the host's allocation ratios."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from allotment.scheduler import numa
from allotment.scheduler.filters.base import HostFilter
from allotment.scheduler.snapshot import BoolArray, IntArray

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class NUMATopologyFilter(HostFilter):
    vectorized = False

    def applies(self, cycle: Cycle) -> bool:
        return cycle.numa_request is not None

    def _failure(self, cycle: Cycle, pos: int) -> str | None:
        request = cycle.numa_request
        assert request is not None
        topology = cycle.numa(pos)
        if topology is None:
            return "the instance needs a NUMA topology and the host reports none"
        if (
            request.cpu.policy == "dedicated"
            and request.cpu.thread_policy == "require"
            and not topology.has_threads
        ):
            return "cpu_thread_policy=require but the host has no hyperthreads"
        report = cycle.record(pos).report
        fits = numa.fit(topology, request, report.cpu_allocation_ratio, report.ram_allocation_ratio)
        if fits is None:
            return "the instance's NUMA cells do not fit the host's free NUMA resources"
        return None

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        return np.fromiter(
            (self._failure(cycle, p) is None for p in pos.tolist()), np.bool_, len(pos)
        )

    def reason(self, cycle: Cycle, pos: int) -> str:
        return self._failure(cycle, pos) or super().reason(cycle, pos)
