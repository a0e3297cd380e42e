"""Spread (or, with negative multipliers, stack) by free RAM, vCPUs and disk, as Nova's
RAMWeigher, CPUWeigher and DiskWeigher. Free amounts are placement's capacity minus
usage for the host's tree, reduced as the cycle places instances."""

from __future__ import annotations

from typing import TYPE_CHECKING

from allotment.scheduler.snapshot import FloatArray, IntArray
from allotment.scheduler.weighers.base import HostWeigher

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class RAMWeigher(HostWeigher):
    minval = 0
    multiplier_key = "ram_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.settings.filter_scheduler.ram_weight_multiplier

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        return cycle.free_ram_mb[pos]


class CPUWeigher(HostWeigher):
    minval = 0
    multiplier_key = "cpu_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.settings.filter_scheduler.cpu_weight_multiplier

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        return cycle.free_vcpus[pos]


class DiskWeigher(HostWeigher):
    minval = 0
    multiplier_key = "disk_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.settings.filter_scheduler.disk_weight_multiplier

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        return cycle.free_disk_mb[pos]
