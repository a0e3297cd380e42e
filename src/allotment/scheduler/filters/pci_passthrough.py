"""PciPassthroughFilter: the host has enough free devices matching each PCI alias the
flavor requests (``pci_passthrough:alias``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from allotment.scheduler import pci
from allotment.scheduler.filters.base import HostFilter
from allotment.scheduler.snapshot import BoolArray, IntArray

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class PciPassthroughFilter(HostFilter):
    vectorized = False

    def applies(self, cycle: Cycle) -> bool:
        return bool(cycle.pci_requests)

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        needed = sum(r.count for r in cycle.pci_requests)
        # Hosts without enough free devices of any kind fail without a per-host look.
        possible = cycle.at(cycle.snapshot.pci_free, pos) >= needed
        ok = np.zeros(len(pos), np.bool_)
        for index in np.flatnonzero(possible).tolist():
            pools = cycle.pci_pools(int(pos[index]))
            ok[index] = pci.allocate(pools, cycle.pci_requests) is not None
        return ok

    def reason(self, cycle: Cycle, pos: int) -> str:
        wanted = ", ".join(f"{r.alias}:{r.count}" for r in cycle.pci_requests)
        free = pci.free_devices(cycle.pci_pools(pos))
        return f"not enough free PCI devices for {wanted} ({free} free)"
