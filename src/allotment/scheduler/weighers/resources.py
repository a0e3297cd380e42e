"""Spread (or, with negative multipliers, stack) by free RAM, vCPUs and disk, as Nova's
RAMWeigher, CPUWeigher and DiskWeigher. Free amounts are placement's capacity minus
usage for the host's tree, reduced as the cycle places instances."""

from __future__ import annotations

from dataclasses import dataclass

from allotment.scheduler.framework import FloatArray, HostView, HostWeigher, IntArray, setting


@dataclass(frozen=True, slots=True)
class RAMOptions:
    multiplier: float = setting("filter_scheduler.ram_weight_multiplier")


class RAMWeigher(HostWeigher):
    options_type = RAMOptions
    options: RAMOptions
    minval = 0
    multiplier_key = "ram_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.options.multiplier

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        return view.free_ram_mb[pos]


@dataclass(frozen=True, slots=True)
class CPUOptions:
    multiplier: float = setting("filter_scheduler.cpu_weight_multiplier")


class CPUWeigher(HostWeigher):
    options_type = CPUOptions
    options: CPUOptions
    minval = 0
    multiplier_key = "cpu_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.options.multiplier

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        return view.free_vcpus[pos]


@dataclass(frozen=True, slots=True)
class DiskOptions:
    multiplier: float = setting("filter_scheduler.disk_weight_multiplier")


class DiskWeigher(HostWeigher):
    options_type = DiskOptions
    options: DiskOptions
    minval = 0
    multiplier_key = "disk_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.options.multiplier

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        return view.free_disk_mb[pos]
