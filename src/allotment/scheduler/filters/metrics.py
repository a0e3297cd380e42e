"""MetricsFilter: hosts that report every metric ``[metrics] weight_setting`` names, so
the MetricsWeigher never meets a missing one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allotment.config import parse_weight_setting
from allotment.scheduler.framework import BoolArray, HostFilter, HostView, IntArray, setting


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    weight_setting: list[str] = setting("metrics.weight_setting")


class MetricsFilter(HostFilter):
    options_type = MetricsOptions
    options: MetricsOptions
    reason_code = "metrics_missing"

    def _names(self) -> list[str]:
        return sorted({name for name, _ in parse_weight_setting(self.options.weight_setting)})

    def passes(self, view: HostView, pos: IntArray) -> BoolArray:
        ok = np.ones(len(pos), np.bool_)
        for name in self._names():
            ok &= ~np.isnan(view.metric(name, pos))
        return ok

    def reason(self, view: HostView, pos: int) -> str:
        at = np.array([pos])
        missing = [n for n in self._names() if np.isnan(view.metric(n, at)[0])]
        return f"does not report metrics {missing}"
