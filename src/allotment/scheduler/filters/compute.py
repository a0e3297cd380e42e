"""ComputeFilter (the host's service is enabled and alive) and AllHostsFilter."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from allotment.scheduler.filters.base import HostFilter
from allotment.scheduler.snapshot import BoolArray, IntArray

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class ComputeFilter(HostFilter):
    """Hosts that are not disabled and have reported within ``[scheduler]
    service_down_time`` seconds."""

    run_filter_once_per_request = True

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        rows = cycle.rows[pos]
        snap = cycle.snapshot
        down_time = self.settings.scheduler.service_down_time
        up = np.abs(cycle.now - snap.heartbeat[rows]) <= down_time
        result: BoolArray = ~snap.disabled[rows] & up
        return result

    def reason(self, cycle: Cycle, pos: int) -> str:
        record = cycle.record(pos)
        if record.report.disabled:
            why = record.report.disabled_reason or "no reason given"
            return f"compute service is disabled ({why})"
        age = cycle.now - record.heartbeat
        return (
            f"not heard from for {age:.0f} s (service_down_time is "
            f"{self.settings.scheduler.service_down_time:.0f} s)"
        )


class AllHostsFilter(HostFilter):
    """Passes every host (a no-op, as in Nova)."""

    run_filter_once_per_request = True

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        return np.ones(len(pos), np.bool_)
