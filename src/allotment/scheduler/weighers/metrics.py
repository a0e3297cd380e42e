"""MetricsWeigher: ``[metrics] weight_setting = ["name=ratio", ...]``; the weight is the
sum of value * ratio. A host missing a metric weighs ``weight_of_unavailable`` — or, with
``[metrics] required`` (the default), the request fails with an explanation, as Nova
raises ComputeHostMetricNotFound; enable MetricsFilter to drop such hosts first."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from allotment.config import parse_weight_setting
from allotment.scheduler.snapshot import FloatArray, IntArray
from allotment.scheduler.weighers.base import HostWeigher, WeigherFailed

if TYPE_CHECKING:
    from allotment.scheduler.cycle import Cycle


class MetricsWeigher(HostWeigher):
    multiplier_key = "metrics_weight_multiplier"

    def multiplier(self) -> float:
        return self.settings.metrics.weight_multiplier

    def applies(self, cycle: Cycle) -> bool:
        return bool(self.settings.metrics.weight_setting)

    def weigh(self, cycle: Cycle, pos: IntArray) -> FloatArray:
        options = self.settings.metrics
        rows = cycle.rows[pos]
        multiplier = cycle.multiplier(self)
        multipliers = multiplier[pos] if isinstance(multiplier, np.ndarray) else multiplier
        total = np.zeros(len(pos))
        unavailable = np.zeros(len(pos), np.bool_)
        for name, ratio in parse_weight_setting(options.weight_setting):
            values = cycle.snapshot.metric(name)[rows]
            missing = np.isnan(values)
            if options.required and missing.any():
                host = cycle.host(int(pos[int(np.flatnonzero(missing)[0])]))
                raise WeigherFailed(
                    f"host {host} does not report metric {name!r} and [metrics] required is "
                    "true; enable MetricsFilter or set [metrics] required = false"
                )
            unavailable |= missing & (ratio * multipliers != 0)
            total += np.where(missing, 0.0, values * ratio)
        result: FloatArray = np.where(unavailable, options.weight_of_unavailable, total)
        return result
