"""Soft server-group policies: prefer hosts with more (soft-affinity) or fewer
(soft-anti-affinity) members of the group, counting members placed earlier in the same
request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from allotment.scheduler.snapshot import FloatArray, IntArray
from allotment.scheduler.weighers.base import HostWeigher

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class ServerGroupSoftAffinityWeigher(HostWeigher):
    multiplier_key = "soft_affinity_weight_multiplier"
    dynamic = True
    policy = "soft-affinity"

    def multiplier(self) -> float:
        return self.settings.filter_scheduler.soft_affinity_weight_multiplier

    def applies(self, cycle: Cycle) -> bool:
        group = cycle.spec.instance_group
        return group is not None and group.policy == self.policy

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        return cycle.member_counts()[pos].astype(float)


class ServerGroupSoftAntiAffinityWeigher(ServerGroupSoftAffinityWeigher):
    multiplier_key = "soft_anti_affinity_weight_multiplier"
    policy = "soft-anti-affinity"

    def multiplier(self) -> float:
        return self.settings.filter_scheduler.soft_anti_affinity_weight_multiplier

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        return -cycle.member_counts()[pos].astype(float)
