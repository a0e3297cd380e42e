"""Weighers on how busy a host is: I/O operations, instance count, recent build
failures, and the hypervisor version (newer preferred)."""

from __future__ import annotations

from dataclasses import dataclass

from allotment.scheduler.framework import FloatArray, HostView, HostWeigher, IntArray, setting


@dataclass(frozen=True, slots=True)
class IoOpsOptions:
    multiplier: float = setting("filter_scheduler.io_ops_weight_multiplier")


class IoOpsWeigher(HostWeigher):
    """Fewer concurrent I/O operations win by default (the multiplier is -1.0)."""

    options_type = IoOpsOptions
    options: IoOpsOptions
    minval = 0
    multiplier_key = "io_ops_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.options.multiplier

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        return view.io_ops[pos].astype(float)


@dataclass(frozen=True, slots=True)
class NumInstancesOptions:
    multiplier: float = setting("filter_scheduler.num_instances_weight_multiplier")


class NumInstancesWeigher(HostWeigher):
    """Off by default (multiplier 0.0); negative spreads, positive packs."""

    options_type = NumInstancesOptions
    options: NumInstancesOptions
    multiplier_key = "num_instances_weight_multiplier"
    dynamic = True

    def multiplier(self) -> float:
        return self.options.multiplier

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        return view.num_instances[pos].astype(float)


@dataclass(frozen=True, slots=True)
class BuildFailureOptions:
    multiplier: float = setting("filter_scheduler.build_failure_weight_multiplier")


class BuildFailureWeigher(HostWeigher):
    """Hosts with recent failed builds lose (Nova negates this multiplier)."""

    options_type = BuildFailureOptions
    options: BuildFailureOptions
    multiplier_key = "build_failure_weight_multiplier"
    negate_multiplier = True

    def multiplier(self) -> float:
        return self.options.multiplier

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        return view.column("failed_builds", pos).astype(float)


@dataclass(frozen=True, slots=True)
class HypervisorVersionOptions:
    multiplier: float = setting("filter_scheduler.hypervisor_version_weight_multiplier")


class HypervisorVersionWeigher(HostWeigher):
    options_type = HypervisorVersionOptions
    options: HypervisorVersionOptions
    multiplier_key = "hypervisor_version_weight_multiplier"

    def multiplier(self) -> float:
        return self.options.multiplier

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        return view.column("hypervisor_version", pos).astype(float)
