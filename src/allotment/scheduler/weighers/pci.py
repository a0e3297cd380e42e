"""PCIWeigher: prefer hosts with fewer free PCI devices, keeping device-rich hosts for the
requests that need devices (capped at 100 devices, as in Nova)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allotment.scheduler.framework import (
    FloatArray,
    HostView,
    HostWeigher,
    IntArray,
    pci_free_devices,
    setting,
)

MAX_DEVS = 100


@dataclass(frozen=True, slots=True)
class PCIOptions:
    multiplier: float = setting("filter_scheduler.pci_weight_multiplier")


class PCIWeigher(HostWeigher):
    options_type = PCIOptions
    options: PCIOptions
    multiplier_key = "pci_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.options.multiplier

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        free = view.column("pci_free", pos).astype(float)
        if view.pci_requests:
            # Hosts that served devices earlier in this request have fewer left.
            free = np.array([pci_free_devices(view.pci_pools(p)) for p in pos.tolist()], float)
        result: FloatArray = MAX_DEVS - np.minimum(free, MAX_DEVS - 1)
        return result
