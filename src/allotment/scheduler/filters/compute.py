"""ComputeFilter (the host's service is enabled and alive) and AllHostsFilter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allotment.scheduler.framework import (
    BoolArray,
    HostFilter,
    HostView,
    IntArray,
    Verdict,
    setting,
)


@dataclass(frozen=True, slots=True)
class ComputeOptions:
    service_down_time: float = setting("scheduler.service_down_time")


class ComputeFilter(HostFilter):
    """Hosts that are not disabled, not forced down, and have reported within
    ``[scheduler] service_down_time`` seconds."""

    options_type = ComputeOptions
    options: ComputeOptions
    run_filter_once_per_request = True

    def passes(self, view: HostView, pos: IntArray) -> Verdict:
        fresh = np.abs(view.now - view.column("heartbeat", pos)) <= self.options.service_down_time
        up = fresh & ~view.column("forced_down", pos)
        disabled: BoolArray = view.column("disabled", pos)
        return Verdict(~disabled & up, {"disabled": disabled, "down": ~up})

    def reason(self, view: HostView, pos: int) -> str:
        record = view.record(pos)
        if record.report.disabled:
            why = record.report.disabled_reason or "no reason given"
            return f"compute service is disabled ({why})"
        if record.report.forced_down:
            return "compute service is forced down"
        age = view.now - record.heartbeat
        return (
            f"not heard from for {age:.0f} s (service_down_time is "
            f"{self.options.service_down_time:.0f} s)"
        )


class AllHostsFilter(HostFilter):
    """Passes every host (a no-op, as in Nova)."""

    run_filter_once_per_request = True

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        return np.ones(len(pos), np.bool_)
