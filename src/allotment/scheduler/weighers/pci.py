"""PCIWeigher: prefer hosts with fewer free PCI devices, keeping device-rich hosts for the
requests that need devices (capped at 100 devices, as in Nova)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from allotment.scheduler import pci
from allotment.scheduler.snapshot import FloatArray, IntArray
from allotment.scheduler.weighers.base import HostWeigher

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle

MAX_DEVS = 100


class PCIWeigher(HostWeigher):
    multiplier_key = "pci_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.settings.filter_scheduler.pci_weight_multiplier

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        free = cycle.at(cycle.snapshot.pci_free, pos).astype(float)
        if cycle.pci_requests:
            # Hosts that served devices earlier in this request have fewer left.
            free = np.array([pci.free_devices(cycle.pci_pools(p)) for p in pos.tolist()], float)
        result: FloatArray = MAX_DEVS - np.minimum(free, MAX_DEVS - 1)
        return result
