"""PciPassthroughFilter: the host has enough free devices matching each PCI alias the
flavor requests (``pci_passthrough:alias``)."""

from __future__ import annotations

import numpy as np

from allotment.scheduler.framework import (
    BoolArray,
    HostFilter,
    HostView,
    IntArray,
    pci_allocate,
    pci_free_devices,
)


class PciPassthroughFilter(HostFilter):
    vectorized = False
    reason_code = "pci_devices"

    def prepare(self, view: HostView) -> bool:
        return bool(view.pci_requests)

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        needed = sum(r.count for r in view.pci_requests)
        # Hosts without enough free devices of any kind fail without a per-host look.
        possible = view.column("pci_free", pos) >= needed
        ok = np.zeros(len(pos), np.bool_)
        for index in np.flatnonzero(possible).tolist():
            pools = view.pci_pools(int(pos[index]))
            ok[index] = pci_allocate(pools, view.pci_requests) is not None
        return ok

    def reason(self, view: HostView, pos: int) -> str:
        wanted = ", ".join(f"{r.alias}:{r.count}" for r in view.pci_requests)
        free = pci_free_devices(view.pci_pools(pos))
        return f"not enough free PCI devices for {wanted} ({free} free)"
