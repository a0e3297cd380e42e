"""Weighers on how busy a host is: I/O operations, instance count, recent build
failures, and the hypervisor version (newer preferred)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from allotment.scheduler.snapshot import FloatArray, IntArray
from allotment.scheduler.weighers.base import HostWeigher

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class IoOpsWeigher(HostWeigher):
    """Fewer concurrent I/O operations win by default (the multiplier is -1.0)."""

    minval = 0
    multiplier_key = "io_ops_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.settings.filter_scheduler.io_ops_weight_multiplier

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        return cycle.io_ops[pos].astype(float)


class NumInstancesWeigher(HostWeigher):
    """Off by default (multiplier 0.0); negative spreads, positive packs."""

    multiplier_key = "num_instances_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.settings.filter_scheduler.num_instances_weight_multiplier

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        return cycle.num_instances[pos].astype(float)


class BuildFailureWeigher(HostWeigher):
    """Hosts with recent failed builds lose (Nova negates this multiplier)."""

    multiplier_key = "build_failure_weight_multiplier"
    negate_multiplier = True

    def multiplier(self) -> float:
        return self.settings.filter_scheduler.build_failure_weight_multiplier

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        return cycle.at(cycle.snapshot.failed_builds, pos).astype(float)


class HypervisorVersionWeigher(HostWeigher):
    multiplier_key = "hypervisor_version_weight_multiplier"

    def multiplier(self) -> float:
        return self.settings.filter_scheduler.hypervisor_version_weight_multiplier

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        return cycle.at(cycle.snapshot.hypervisor_version, pos).astype(float)
