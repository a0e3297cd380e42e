"""Soft server-group policies: prefer hosts with more (soft-affinity) or fewer
(soft-anti-affinity) members of the group, counting members placed earlier in the same
request."""

from __future__ import annotations

from dataclasses import dataclass

from allotment.scheduler.framework import FloatArray, HostView, HostWeigher, IntArray, setting


@dataclass(frozen=True, slots=True)
class SoftAffinityOptions:
    affinity_multiplier: float = setting("filter_scheduler.soft_affinity_weight_multiplier")
    anti_affinity_multiplier: float = setting(
        "filter_scheduler.soft_anti_affinity_weight_multiplier"
    )


class ServerGroupSoftAffinityWeigher(HostWeigher):
    options_type = SoftAffinityOptions
    options: SoftAffinityOptions
    multiplier_key = "soft_affinity_weight_multiplier"
    dynamic = True
    policy = "soft-affinity"

    def multiplier(self) -> float:
        return self.options.affinity_multiplier

    def prepare(self, view: HostView) -> bool:
        group = view.spec.instance_group
        return group is not None and group.policy == self.policy

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        return view.member_counts()[pos].astype(float)


class ServerGroupSoftAntiAffinityWeigher(ServerGroupSoftAffinityWeigher):
    multiplier_key = "soft_anti_affinity_weight_multiplier"
    policy = "soft-anti-affinity"

    def multiplier(self) -> float:
        return self.options.anti_affinity_multiplier

    def weigh(self, view: HostView, pos: IntArray) -> FloatArray:
        return -view.member_counts()[pos].astype(float)
