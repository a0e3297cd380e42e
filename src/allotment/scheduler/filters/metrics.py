"""MetricsFilter: hosts that report every metric ``[metrics] weight_setting`` names, so
the MetricsWeigher never meets a missing one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from allotment.config import parse_weight_setting
from allotment.scheduler.filters.base import HostFilter
from allotment.scheduler.snapshot import BoolArray, IntArray

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class MetricsFilter(HostFilter):
    def _names(self) -> list[str]:
        return sorted(
            {name for name, _ in parse_weight_setting(self.settings.metrics.weight_setting)}
        )

    def passes(self, cycle: Cycle, pos: IntArray) -> BoolArray:
        ok = np.ones(len(pos), np.bool_)
        rows = cycle.rows[pos]
        for name in self._names():
            ok &= ~np.isnan(cycle.snapshot.metric(name)[rows])
        return ok

    def reason(self, cycle: Cycle, pos: int) -> str:
        row = cycle.rows[pos]
        missing = [n for n in self._names() if np.isnan(cycle.snapshot.metric(n)[row])]
        return f"does not report metrics {missing}"
